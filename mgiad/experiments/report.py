"""Reports: an experiment's records as the paper's table, our numbers beside the paper's.

For every row: weights (k), test accuracy mean ± std over seeds, train accuracy, each next to
the paper's value and the difference Δ = ours − paper in percentage points. Test accuracy is
the accuracy after the last epoch (``final_test_acc``; the best epoch's is in the CSV); std is
the sample standard deviation over seeds (n − 1), blank for a single seed. Rows without runs
still show the paper's numbers and our weight count, so a report works before any training.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import ensure_variant_file, read_records
from .spec import ExperimentRow
from .timing import TIME_FOOT, time_table, timelines
from .variant import Variant, model_weights, plan


@dataclass
class RowResult:
    """Our aggregated numbers for one row (accuracies in %), with the row and its paper values."""

    row: ExperimentRow
    planned: int  # seeds the experiment asks for
    seeds: list[int]  # seeds with a completed run
    weights: int | None  # ours: from the runs, else counted from the model
    test: list[float]
    best: list[float]
    train: list[float]
    wall_time_s: float
    diverged: int

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def test_mean(self) -> float | None:
        return _mean(self.test)

    @property
    def test_std(self) -> float | None:
        return _std(self.test)

    @property
    def best_mean(self) -> float | None:
        return _mean(self.best)

    @property
    def train_mean(self) -> float | None:
        return _mean(self.train)

    @property
    def train_std(self) -> float | None:
        return _std(self.train)

    @property
    def delta_test(self) -> float | None:
        return _delta(self.test_mean, self.row.paper.test if self.row.paper else None)

    @property
    def delta_train(self) -> float | None:
        return _delta(self.train_mean, self.row.paper.train if self.row.paper else None)


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _std(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) >= 2 else None


def _delta(ours: float | None, paper: float | None) -> float | None:
    return None if ours is None or paper is None else ours - paper


def _pct(x: Any) -> float | None:
    return None if x is None else 100.0 * float(x)


def summarize(variant: Variant, records: list[dict[str, Any]] | None = None) -> list[RowResult]:
    """Aggregate the variant's records row by row, in the experiment's order."""
    records = read_records(variant.records_path) if records is None else records
    jobs = plan(variant)
    first_job = {}
    for job in jobs:
        first_job.setdefault(job.row, job)
    by_row: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for rec in records:
        if rec["run_id"] in seen:  # never twice, even if a file was concatenated by hand
            continue
        seen.add(rec["run_id"])
        by_row.setdefault(rec.get("row", ""), []).append(rec)
    out = []
    for row in variant.experiment.rows:
        recs = sorted(by_row.get(row.label, []), key=lambda r: r.get("seed", 0))
        done = [r for r in recs if r.get("status") == "completed" and r.get("final_test_acc") is not None]
        weights = next((r["weights"] for r in done if r.get("weights")), None)
        if weights is None and row.label in first_job:
            weights = model_weights(first_job[row.label].config)
        out.append(RowResult(
            row=row, planned=len(variant.experiment.seeds), seeds=[r["seed"] for r in done],
            weights=weights,
            test=[_pct(r["final_test_acc"]) for r in done],  # type: ignore[misc]
            best=[_pct(r["best_test_acc"]) for r in done if r.get("best_test_acc") is not None],  # type: ignore[misc]
            train=[_pct(r["final_train_acc"]) for r in done if r.get("final_train_acc") is not None],  # type: ignore[misc]
            wall_time_s=sum(float(r.get("wall_time_s") or 0.0) for r in done),
            diverged=sum(1 for r in recs if r.get("status") == "diverged"),
        ))
    return out


# --------------------------------------------------------------------------------------
# formatting


def _f(x: float | None, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _wk(weights: int | None) -> str:
    return "-" if weights is None else f"{weights / 1000:,.1f}"


def _paper(row: ExperimentRow, key: str) -> float | None:
    return getattr(row.paper, key) if row.paper is not None else None


def _versus(r: RowResult, by_label: dict[str, RowResult]) -> list[str]:
    """The row against its baseline row: baseline, weight ratio, Δ test (ours, the paper's)."""
    b = by_label.get(r.row.baseline)
    if b is None:
        return ["-", "-", "-", "-"]
    ratio = "-" if not (r.weights and b.weights) else f"{b.weights / r.weights:.2f}×"
    ours = _delta(r.test_mean, b.test_mean)
    paper = _delta(_paper(r.row, "test"), _paper(b.row, "test"))
    return [b.row.label, ratio, _f(ours, sign=True), _f(paper, sign=True)]


def table_rows(results: Sequence[RowResult]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the paper-layout table (strings); with the baseline columns when a
    row names a baseline."""
    header = ["model", "seeds", "weights (k)", "paper (k)", "test % (ours)", "best %", "test % (paper)",
              "Δ test", "train % (ours)", "train % (paper)", "Δ train"]
    by_label = {r.row.label: r for r in results}
    versus = any(r.row.baseline for r in results)
    if versus:
        header += ["baseline", "fewer weights", "Δ vs baseline (ours)", "Δ vs baseline (paper)"]
    cells = []
    for r in results:
        p_w = _paper(r.row, "weights_k")
        cells.append([
            r.row.label,
            f"{r.n}/{r.planned}" + (f" ({r.diverged} diverged)" if r.diverged else ""),
            _wk(r.weights),
            "-" if p_w is None else f"{p_w:,.0f}",
            _pm(r.test_mean, r.test_std),
            _f(r.best_mean),
            _pm(_paper(r.row, "test"), _paper(r.row, "std")),
            _f(r.delta_test, sign=True),
            _pm(r.train_mean, r.train_std),
            _f(_paper(r.row, "train")),
            _f(r.delta_train, sign=True),
        ] + (_versus(r, by_label) if versus else []))
    return header, cells


def _heading(variant: Variant, results: Sequence[RowResult], records: list[dict[str, Any]]) -> list[str]:
    exp = variant.experiment
    lines = [f"{exp.title}", f"results: {variant.dir}"]
    if variant.reduced:
        lines.append("REDUCED BUDGET: " + " ".join(f"--{k}={v}" for k, v in variant.changing)
                     + " — not the paper's recipe; compare trends, not absolute numbers")
    done = sum(r.n for r in results)
    planned = sum(r.planned for r in results)
    hardware = sorted({str(r.get("hardware")) for r in records if r.get("hardware")})
    revs = sorted({f"{str(r.get('git_rev'))[:10]}{'+dirty' if r.get('git_dirty') else ''}"
                   for r in records if r.get("git_rev")})
    wall = sum(r.wall_time_s for r in results)
    lines.append(f"runs: {done}/{planned} completed, training time {wall / 3600:.2f} h"
                 + (f"; hardware: {'; '.join(hardware)}" if hardware else "")
                 + (f"; code: {', '.join(revs)}" if revs else ""))
    return lines


_FOOT = ("test = accuracy after the last epoch, mean ± std over seeds (sample std); best = the best "
         "epoch's, mean over seeds; Δ = ours − paper in percentage points; fewer weights = the "
         "baseline's weights ÷ the row's; Δ vs baseline = row − baseline; weights (k) = our model's weights "
         "(the paper's counts also include weights the authors' code builds but never uses; "
         "see `mgiad params --paper`)")


def format_text(variant: Variant, results: Sequence[RowResult], records: list[dict[str, Any]]) -> str:
    """The report as aligned plain text (for the terminal)."""
    header, cells = table_rows(results)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    def line(vals: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    out = _heading(variant, results, records) + ["", line(header), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    out += ["", _FOOT]
    header, cells = time_table(timelines(records, [r.row.label for r in results]))
    if cells:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        out += ["", "Time to accuracy", line(header), "  ".join("-" * w for w in widths)]
        out += [line(c) for c in cells] + ["", TIME_FOOT]
    return "\n".join(out) + "\n"


def format_markdown(variant: Variant, results: Sequence[RowResult], records: list[dict[str, Any]]) -> str:
    """The report as a Markdown table with its heading."""
    header, cells = table_rows(results)
    head = _heading(variant, results, records)
    out = [f"### {head[0]}", ""] + [f"{h}  " for h in head[1:]] + [""]
    out += _markdown_table(header, cells) + ["", _FOOT + "."]
    header, cells = time_table(timelines(records, [r.row.label for r in results]))
    if cells:
        out += ["", "#### Time to accuracy", ""] + _markdown_table(header, cells) + ["", TIME_FOOT + "."]
    return "\n".join(out) + "\n"


def _markdown_table(header: list[str], cells: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return out + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]


CSV_COLUMNS = ["row", "family", "model", "dataset", "seeds_done", "seeds_planned", "diverged", "weights",
               "paper_weights_k", "test_mean", "test_std", "paper_test", "paper_std", "delta_test",
               "best_test_mean", "train_mean", "train_std", "paper_train", "delta_train",
               "wall_time_s", "reduced", "overrides"]


def format_csv(variant: Variant, results: Sequence[RowResult]) -> str:
    """One line per row, full precision (accuracies in %)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in results:
        w.writerow([r.row.label, r.row.family, r.row.model, r.row.dataset, r.n, r.planned, r.diverged,
                     r.weights, _paper(r.row, "weights_k"), r.test_mean, r.test_std,
                     _paper(r.row, "test"), _paper(r.row, "std"), r.delta_test, r.best_mean,
                     r.train_mean, r.train_std, _paper(r.row, "train"), r.delta_train,
                     round(r.wall_time_s, 1), variant.reduced,
                     " ".join(f"--{k}={v}" for k, v in variant.changing)])
    return buf.getvalue()


def build_report(variant: Variant, records: list[dict[str, Any]] | None = None) -> tuple[str, str, str]:
    """The report as (text, Markdown, CSV), written nowhere."""
    records = read_records(variant.records_path) if records is None else records
    results = summarize(variant, records)
    return (format_text(variant, results, records), format_markdown(variant, results, records),
            format_csv(variant, results))


def write_report(variant: Variant, out_dir: str | Path | None = None) -> tuple[str, list[Path]]:
    """Build the report; write ``report.md`` and ``report.csv``; return (text, files)."""
    text, markdown, csv_text = build_report(variant)
    if out_dir is None:  # the directory then also says which experiment it belongs to
        ensure_variant_file(variant)
    out = Path(out_dir) if out_dir is not None else variant.dir
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.md", out / "report.csv"]
    files[0].write_text(markdown, encoding="utf-8")
    files[1].write_text(csv_text, encoding="utf-8")
    return text, files


__all__ = ["RowResult", "build_report", "format_csv", "format_markdown", "format_text", "summarize",
           "write_report"]
