"""`mgiad bench`: runs, reports ratios to the baseline, writes JSON (tiny models, CPU)."""

from __future__ import annotations

import json

from mgiad.bench import bench, parse_spec
from mgiad.cli import main

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
    assert "×base" in text and "1.00" in text
    data = json.loads(out.read_text())
    assert data["machine"] and len(data["results"]) == 2
