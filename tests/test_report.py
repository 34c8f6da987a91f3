"""`mgiad report` and `mgiad plot` from records: the paper's layout, our numbers beside the
paper's with Δ, Markdown and CSV files, Figure 7 and training curves as valid PNG and SVG.

The records are written by hand (no training), so the expected numbers are known exactly.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pytest

from mgiad import cli
from mgiad.experiments.records import append_record, write_variant
from mgiad.experiments.report import summarize, write_report
from mgiad.experiments.variant import find_variant, make_variant, plan

PNG = b"\x89PNG\r\n\x1a\n"


def fake_records(variant, accs: dict[str, list[float]], *, diverged: str | None = None) -> None:
    """Completed records for the rows in ``accs`` (test accuracy per seed, as fractions)."""
    write_variant(variant)
    jobs = {(j.row, j.seed): j for j in plan(variant)}
    for row, values in accs.items():
        for seed, acc in enumerate(values):
            job = jobs[(row, seed)]
            append_record(variant.records_path, {
                "run_id": job.run_id, "experiment": job.experiment, "variant": job.variant, "row": row,
                "family": job.family, "seed": seed, "status": "completed", "reduced": job.reduced,
                "overrides": list(job.overrides), "weights": 27_000 + seed, "final_test_acc": acc,
                "best_test_acc": acc + 0.01, "final_train_acc": acc + 0.05, "wall_time_s": 60.0,
                "hardware": "test CPU", "git_rev": "0123456789abcdef", "git_dirty": False,
                "config": job.config, "config_key": job.config_key, "run_dir": f"runs/{job.run_id}",
                "curve": {"epoch": [1, 2, 3], "test_acc": [acc - 0.2, acc - 0.1, acc],
                          "train_loss": [1.5, 0.9, 0.6], "train_acc": [0.5, 0.7, acc + 0.05],
                          "lr": [0.05, 0.025, 0.0]},
            })
    if diverged:
        job = jobs[(diverged, 0)]
        append_record(variant.records_path, {"run_id": job.run_id, "row": diverged, "seed": 0,
                                             "status": "diverged", "final_test_acc": None})


@pytest.fixture()
def reduced(tmp_path):
    variant = make_variant("table_IV", ["--epochs=3", "--subset_train=1000"], tmp_path / "results")
    fake_records(variant, {"MGiaD c_K=16 g_s=4": [0.80, 0.82, 0.84], "ResNet20": [0.85]},
                 diverged="MGiaD c_K=16 g_s=8")
    return variant


def test_summary_numbers(reduced) -> None:
    results = {r.row.label: r for r in summarize(reduced)}
    m = results["MGiaD c_K=16 g_s=4"]
    assert m.n == 3 and m.planned == 3 and m.seeds == [0, 1, 2]
    assert m.test_mean == pytest.approx(82.0) and m.test_std == pytest.approx(statistics.stdev([80, 82, 84]))
    assert m.delta_test == pytest.approx(82.0 - 92.85) and m.delta_train == pytest.approx(87.0 - 97.07)
    assert m.best_mean == pytest.approx(83.0) and m.weights == 27_000
    r = results["ResNet20"]
    assert r.n == 1 and r.test_std is None and r.test_mean == pytest.approx(85.0)
    assert results["MGiaD c_K=16 g_s=8"].diverged == 1 and results["MGiaD c_K=16 g_s=8"].n == 0
    # rows without runs still get our weight count (model built on the meta device)
    assert results["MgNet (3 levels)"].weights == 100_666 and results["MgNet (3 levels)"].test_mean is None


def test_report_text_markdown_csv(reduced, capsys) -> None:
    text, files = write_report(reduced)
    lines = text.splitlines()
    assert lines[0].startswith("Table IV") and "REDUCED BUDGET: --epochs=3 --subset_train=1000" in text
    header = next(line for line in lines if line.startswith("model"))
    for column in ("weights (k)", "paper (k)", "test % (ours)", "test % (paper)", "Δ test",
                   "train % (ours)", "train % (paper)", "Δ train"):
        assert column in header
    row = next(line for line in lines if line.startswith("MGiaD c_K=16 g_s=4 "))
    assert "82.00 ± 2.00" in row and "92.85 ± 0.06" in row and "-10.85" in row and "3/3" in row
    assert "97.07" in row and "-10.07" in row and "27.0" in row
    assert "0/3 (1 diverged)" in text and "runs: 4/15 completed" in text and "test CPU" in text

    md = files[0].read_text()
    assert files[0].name == "report.md" and "| MGiaD c_K=16 g_s=4 | 3/3 |" in md and "|:---|---:|" in md
    rows = list(csv.DictReader(io.StringIO(files[1].read_text())))
    assert [r["row"] for r in rows][:2] == ["ResNet20", "MgNet (3 levels)"] and len(rows) == 5
    m = next(r for r in rows if r["row"] == "MGiaD c_K=16 g_s=4")
    assert float(m["test_mean"]) == pytest.approx(82.0) and float(m["paper_test"]) == 92.85
    assert float(m["delta_test"]) == pytest.approx(-10.85) and m["reduced"] == "True"
    assert m["overrides"] == "--epochs=3 --subset_train=1000" and m["seeds_done"] == "3"


def test_report_cli_finds_the_reduced_variant(reduced, capsys) -> None:
    results_dir = str(Path(reduced.results_root))
    assert cli.main(["report", "IV", "--results-dir", results_dir]) == 0
    captured = capsys.readouterr()
    assert "showing the reduced variant table_IV-reduced-" in captured.err
    assert "82.00 ± 2.00" in captured.out
    assert cli.main(["report", str(reduced.dir), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("row,family,model,dataset")
    assert cli.main(["report", "table_IV", "--results-dir", results_dir, "--epochs=3",
                     "--subset_train=1000", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("### Table IV")
    assert find_variant("table_IV", (), results_dir).name == reduced.name


def test_report_before_any_run_shows_the_paper(tmp_path, capsys) -> None:
    """No records: the paper's numbers are printed, what is missing is said, nothing is written
    (unless --out asks for the files)."""
    assert cli.main(["report", "table_II", "--results-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "runs: 0/63 completed" in captured.out and "94.62 ± 0.10" in captured.out
    assert "391.6" in captured.out
    assert f"no records yet in {tmp_path / 'table_II' / 'records.jsonl'}" in captured.err
    assert f"`mgiad sweep table_II --results-dir {tmp_path}` makes them" in captured.err
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["report", "table_II", "--results-dir", str(tmp_path), "--out",
                     str(tmp_path / "out")]) == 0
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["report.csv", "report.md"]


def check_image(path: Path, min_size: int = 10_000) -> None:
    data = path.read_bytes()
    assert len(data) > min_size, path
    if path.suffix == ".png":
        assert data.startswith(PNG)
    else:
        assert b"<svg" in data[:2000] and data.rstrip().endswith(b"</svg>")


def test_plot_figure_7_and_curves(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from mgiad.experiments.plot import plot_experiment

    variant = make_variant("figure_7", [], tmp_path / "results")
    fake_records(variant, {"ResNet20": [0.90, 0.91], "MGIC g=8 c_K=32": [0.92, 0.93],
                           "MGiaD c_K=16 g_s=4 λ=1": [0.915, 0.91, 0.92]})
    files = plot_experiment(variant)
    assert sorted(f.name for f in files) == ["curves.png", "curves.svg", "time_to_accuracy.png",
                                              "time_to_accuracy.svg", "weights_vs_accuracy.png",
                                              "weights_vs_accuracy.svg"]
    for f in files:
        check_image(f)
    svg = (variant.dir / "weights_vs_accuracy.svg").read_text()
    for family in ("ResNet", "MgNet grouped", "MGIC", "MGiaD g_s=8", "paper"):
        assert family in svg  # legend entries (matplotlib writes text as <!-- comments --> too)


def test_plot_cli_without_results_draws_the_paper_points(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", "fig7", "--results-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    files = [Path(p) for p in capsys.readouterr().out.split()]
    assert len(files) == 4 and all(f.parent == tmp_path / "out" for f in files)
    for f in files:
        check_image(f, min_size=5_000)


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path, capsys) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert cli.main(["plot", "IV", "--results-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'mgiad[plot]'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# baselines and time to accuracy (issue 23: Table II at a CPU budget)

_VERSUS = """
name = "versus"
dataset = "cifar10"
seeds = [0]
[recipe]
epochs = 3
[[rows]]
ref = "table_II/ResNet20"
[[rows]]
ref = "table_II/MGiaD c_K=32 g_s=8 λ=1"
baseline = "ResNet20"
"""


def test_a_row_against_its_baseline(tmp_path) -> None:
    path = tmp_path / "versus.toml"
    path.write_text(_VERSUS)
    variant = make_variant(str(path), [], tmp_path / "results")
    fake_records(variant, {"ResNet20": [0.80], "MGiaD c_K=32 g_s=8 λ=1": [0.78]})
    text, _ = write_report(variant)
    header = next(line for line in text.splitlines() if line.startswith("model"))
    for column in ("best %", "baseline", "fewer weights", "Δ vs baseline (ours)", "Δ vs baseline (paper)"):
        assert column in header
    row = next(line for line in text.splitlines() if line.startswith("MGiaD c_K=32"))
    # fake weights are 27,000 for both rows: ratio 1.00; ours 78 - 80; the paper's 93.66 - 92.44
    assert "ResNet20" in row and "1.00×" in row and "-2.00" in row and "+1.22" in row
    base = next(line for line in text.splitlines() if line.startswith("ResNet20 "))
    assert base.split()[-4:] == ["-"] * 4  # the baseline itself has none


def test_a_baseline_must_name_another_row(tmp_path) -> None:
    path = tmp_path / "versus.toml"
    path.write_text(_VERSUS.replace('baseline = "ResNet20"', 'baseline = "ResNet 20"'))
    with pytest.raises(ValueError, match="baseline='ResNet 20' is not the label of another row"):
        make_variant(str(path), [], tmp_path / "results")


def test_time_to_accuracy_from_cpu_time_and_estimated_from_wall_time() -> None:
    from mgiad.experiments.timing import time_table, timeline

    measured = timeline({"row": "A", "seed": 0, "status": "completed", "threads": 1, "curve": {
        "test_acc": [0.65, 0.75, 0.86], "epoch_cpu_s": [1800, 1800, 3600], "elapsed_s": [1, 2, 3]}})
    assert measured is not None and not measured.estimated
    assert measured.cpu_hours == (0.5, 1.0, 2.0)
    assert measured.hours_to(70) == 1.0 and measured.hours_to(85) == 2.0 and measured.hours_to(90) is None
    estimated = timeline({"row": "B", "seed": 1, "status": "completed", "threads": 2, "wall_time_s": 3600,
                          "curve": {"test_acc": [0.5, 0.72]}})
    assert estimated is not None and estimated.estimated and estimated.cpu_hours == (1.0, 2.0)
    assert timeline({"row": "C", "curve": {"test_acc": []}}) is None
    header, cells = time_table([measured, estimated])
    assert header[2:5] == ["CPU h to 70%", "CPU h to 80%", "CPU h to 85%"]
    assert cells[0][2:6] == ["1.00", "2.00", "2.00", "2.00"]  # 75% < 80%: reached at epoch 3
    assert cells[1][2:6] == ["~2.00", "never", "never", "~2.00"] and cells[1][-1] == "2"
