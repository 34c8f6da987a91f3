"""`mgiad bench`: runs, reports ratios to the baseline, writes JSON (tiny models, CPU)."""

from __future__ import annotations

import json

import pytest

from mgiad.cli import main
from mgiad.perf.bench import bench, parse_spec

TINY = ["resnet20:widths=(4,8,16)", "mgiad:widths=(8,16,32),c_K=4,g_s=4"]


def test_parse_spec() -> None:
    assert parse_spec("mgiad:c_K=16,g_s=4") == ("mgiad", {"c_K": 16, "g_s": 4})
    assert parse_spec("resnet20") == ("resnet20", {})
    assert parse_spec("mgiad:widths=(8,16,32),c_K=4") == ("mgiad", {"widths": (8, 16, 32), "c_K": 4})


def test_bench_measures_every_model() -> None:
    results = bench(TINY, batch=8, steps=1, rounds=2, warmup=1, device="cpu")
    assert [r.name for r in results] == TINY
    for r in results:
        assert r.weights > 0 and r.gflops > 0
        assert len(r.train_rounds) == 2 and r.train_img_s > 0 and r.infer_img_s > 0
        assert r.peak_mem_mb > 0
    # the saved-activation memory grows with the batch
    big = bench(TINY[:1], batch=32, steps=1, rounds=1, warmup=0, device="cpu")[0]
    assert big.peak_mem_mb > results[0].peak_mem_mb


def test_bench_cli_prints_ratios_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", *TINY, "--batch", "8", "--steps", "1", "--rounds", "1",
                 "--device", "cpu", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert " vs" in text and "1.00" in text
    data = json.loads(out.read_text())
    assert data["machine"] and len(data["results"]) == 2
    assert [r["baseline"] for r in data["results"]] == [TINY[0]] * 2
    assert data["results"][0]["train_ratio"] == 1.0
    # the FLOP ratio to the baseline and the fraction of it the speed ratio achieves
    base, other = data["results"]
    assert other["flop_ratio"] == pytest.approx(base["gflops"] / other["gflops"])
    assert other["train_flop_fraction"] == pytest.approx(other["train_ratio"] / other["flop_ratio"])
    assert "FLOP×" in text and "%FLOP train/infer" in text


def test_each_model_compares_with_the_nearest_baseline_before_it(capsys) -> None:
    models = [TINY[0], TINY[1], "resnet20:widths=(2,4,8)", "mgiad_3lvl:widths=(8,16,32),c_K=4"]
    assert main(["bench", *models, "--baseline", TINY[0], "--baseline", models[2], "--batch", "4",
                 "--steps", "1", "--rounds", "1", "--device", "cpu", "--no-memory"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the comments name the machine and the fast paths; the baselines are stock PyTorch
    assert any(ln.startswith("# ") and "baselines: stock PyTorch modules" in ln for ln in lines)
    rows = [ln for ln in lines if ln and not ln.startswith(("#", "model "))]
    assert [row.split()[-1] for row in rows] == [TINY[0], TINY[0], models[2], models[2]]


def test_unknown_baseline_is_an_error_before_measuring(capsys) -> None:
    assert main(["bench", *TINY, "--baseline", "resnet18", "--device", "cpu"]) == 2
    assert "baseline 'resnet18' is not one of the measured models" in capsys.readouterr().err
