"""benchmarks/onnx_runtime.py on two small models: it exports them with the package's checked
ONNX path, runs each in PyTorch eager (native kernels, channels_last) and in ONNX Runtime, and
the two give the same logits; its record holds a ratio per model, runtime and batch, and ORT's
profile splits the 3-level MGiaD's time into its grouped and dense convolutions."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "onnx_runtime.py"


def _script():
    spec = importlib.util.spec_from_file_location("onnx_runtime_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_onnx_bench_small_models(tmp_path: Path) -> None:
    out = tmp_path / "onnx-runtime-test"
    threads = torch.get_num_threads()
    try:
        rc = _script().main(["--models", "resnet20", "mgiad_3lvl", "--rounds", "2", "--batch", "4",
                             "1", "--min-time", "0", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # the script sets 1 for the whole process
    assert rc == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["threads"] == 1
    rows = {(r["model"], r["batch"]): r for r in record["results"]}
    assert set(rows) == {(m, b) for m in ("resnet20", "mgiad_3lvl") for b in (4, 1)}
    for (model, _), row in rows.items():
        assert row["baseline"] == "resnet20"
        assert len(row["eager_rounds_ms"]) == len(row["ort_rounds_ms"]) == 2
        for key in ("eager_ratio", "ort_ratio", "ort_over_eager"):
            assert math.isfinite(row[key]) and row[key] > 0
        if model == "resnet20":
            assert row["eager_ratio"] == row["ort_ratio"] == 1.0
    for model, diff in record["logit_max_diff"].items():
        assert diff < 1e-4, model  # eager (native kernels, channels_last) = ORT (built-in Conv)
    prof = record["ort_profile"]["mgiad_3lvl"]
    assert prof["batch"] == 4 and prof["total_ms"] > 0
    assert {"Conv grouped", "Conv dense"} <= set(prof["nodes"]) | {k.replace("FusedConv", "Conv") for k in prof["nodes"]}
    text = out.with_suffix(".txt").read_text()
    assert "batch 4:" in text and "batch 1:" in text and "load after" in text
