"""Plots: weights vs test accuracy (the paper's Figure 7), training curves and time to accuracy,
PNG and SVG.

Needs matplotlib (``pip install 'mgiad[plot]'``); it is imported when a plot is drawn, with the
Agg backend, so plotting works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import ensure_variant_file, read_records
from .report import RowResult, summarize
from .timing import THRESHOLDS, Timeline, timelines
from .variant import Variant

#: (marker, colour) per family, in the order of the legend; other families get the rest.
STYLES: dict[str, tuple[str, str]] = {
    "ResNet": ("s", "tab:blue"),
    "MgNet": ("^", "tab:orange"),
    "MgNet grouped": ("v", "tab:green"),
    "MGIC": ("D", "tab:purple"),
    "MGiaD g_s=4": ("o", "tab:red"),
    "MGiaD g_s=8": ("P", "tab:brown"),
    "MGiaD g_s=16": ("X", "tab:pink"),
    "MGiaD g_s=32": ("h", "tab:olive"),
    "MGiaD g_s=64": ("*", "tab:cyan"),
}
_SPARE = [("p", "tab:gray"), ("<", "black"), (">", "gold"), ("d", "navy"), ("8", "teal")]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install 'mgiad[plot]'") from None
    matplotlib.use("Agg")  # files only: no display needed (clusters, CI)
    import matplotlib.pyplot as plt

    return plt


def _style(family: str, taken: dict[str, tuple[str, str]]) -> tuple[str, str]:
    if family not in taken:
        taken[family] = STYLES.get(family) or _SPARE[len([f for f in taken if f not in STYLES]) % len(_SPARE)]
    return taken[family]


def _save(fig: Any, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    files = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(files[0], dpi=150, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight")
    return files


def _weights_label(x: float, _pos: int | None = None) -> str:
    """30000 -> 30k, 2e6 -> 2M; minor ticks other than 2, 3, 5 x 10^n stay unlabelled."""
    if x <= 0:
        return ""
    mantissa = x / 10 ** int(f"{x:e}".split("e")[1])
    if round(mantissa, 6) not in (1, 2, 3, 5):
        return ""
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"


def plot_tradeoff(variant: Variant, results: Sequence[RowResult], stem: Path) -> list[Path]:
    """Weights (log axis) vs test accuracy: ours filled with ±std bars, the paper's hollow."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles: dict[str, tuple[str, str]] = {}
    families = sorted({r.row.family for r in results},
                      key=lambda f: (list(STYLES).index(f) if f in STYLES else len(STYLES), f))
    drawn: list[str] = []
    ours_any = paper_any = False
    for fam in families:
        marker, colour = _style(fam, styles)
        rows = [r for r in results if r.row.family == fam]
        paper = sorted((r.row.paper.weights_k * 1000, r.row.paper.test, r.row.paper.std or 0.0) for r in rows
                       if r.row.paper and r.row.paper.weights_k and r.row.paper.test is not None)
        ours = sorted((r.weights, r.test_mean, r.test_std or 0.0) for r in rows
                      if r.weights and r.test_mean is not None)
        if paper:
            x, y, _ = zip(*paper)
            ax.plot(x, y, linestyle=":", color=colour, linewidth=0.8, alpha=0.6)
            ax.scatter(x, y, marker=marker, s=55, facecolors="none", edgecolors=colour, linewidths=1.4, zorder=3)
            paper_any = True
        if ours:
            x, y, e = zip(*ours)
            ax.errorbar(x, y, yerr=e, fmt="none", ecolor=colour, elinewidth=1, capsize=2, zorder=2)
            ax.plot(x, y, linestyle="-", color=colour, linewidth=0.8, alpha=0.6)
            ax.scatter(x, y, marker=marker, s=55, color=colour, edgecolors="black", linewidths=0.4, zorder=4)
            ours_any = True
        if paper or ours:
            drawn.append(fam)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_weights_label))
    ax.xaxis.set_minor_formatter(FuncFormatter(_weights_label))
    ax.set_xlabel("weights (log scale)")
    ax.set_ylabel("test accuracy (%)")
    title = variant.experiment.title
    if variant.reduced:
        title += "\nREDUCED budget: " + " ".join(f"--{k}={v}" for k, v in variant.changing)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], linestyle="", marker=styles[f][0], color=styles[f][1], markersize=8, label=f)
               for f in drawn]
    if ours_any:
        handles.append(Line2D([], [], linestyle="", marker="o", color="0.3", markersize=8, label="ours (mean ± std)"))
    if paper_any:
        handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="none", markeredgecolor="0.3",
                              markersize=8, label="paper"))
    if not drawn:
        ax.text(0.5, 0.5, "no results yet", transform=ax.transAxes, ha="center", va="center")
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.9)
    files = _save(fig, stem)
    plt.close(fig)
    return files


def plot_curves(variant: Variant, records: list[dict[str, Any]], stem: Path) -> list[Path]:
    """Test accuracy and training loss per epoch, one colour per row, one line per seed."""
    plt = _pyplot()

    from matplotlib.ticker import MaxNLocator

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    order = [r.label for r in variant.experiment.rows]
    rows = sorted({rec.get("row", "") for rec in records},
                  key=lambda r: order.index(r) if r in order else len(order))
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for i, row in enumerate(rows):
        colour = cmap(i % cmap.N)
        for j, rec in enumerate(r for r in records if r.get("row") == row):
            curve = rec.get("curve") or {}
            epochs = curve.get("epoch") or []
            label = row if j == 0 else None
            acc = [(e, 100 * a) for e, a in zip(epochs, curve.get("test_acc") or []) if a is not None]
            if acc:
                ax_acc.plot(*zip(*acc), color=colour, marker=".", linewidth=1, label=label, alpha=0.85)
            loss = [(e, v) for e, v in zip(epochs, curve.get("train_loss") or []) if v is not None]
            if loss:
                ax_loss.plot(*zip(*loss), color=colour, marker=".", linewidth=1, alpha=0.85)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if rows:
        ax_acc.legend(fontsize=7, loc="lower right")
    else:
        ax_acc.text(0.5, 0.5, "no runs yet", transform=ax_acc.transAxes, ha="center", va="center")
    title = variant.experiment.title + (" (REDUCED budget)" if variant.reduced else "")
    fig.suptitle(title, fontsize=9)
    files = _save(fig, stem)
    plt.close(fig)
    return files


def plot_time_to_accuracy(variant: Variant, lines: Sequence[Timeline], stem: Path) -> list[Path]:
    """Test accuracy against cumulative CPU hours, one colour per row, one line per seed, with
    the report's thresholds (mgiad/experiments/timing.py) as dotted lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    rows = list(dict.fromkeys(t.row for t in lines))
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for t in lines:
        i = rows.index(t.row)
        first = next(u for u in lines if u.row == t.row) is t
        ax.plot(t.cpu_hours, t.test_acc, color=cmap(i % cmap.N), marker=".", linewidth=1,
                linestyle="--" if t.estimated else "-", label=t.row if first else None, alpha=0.85)
    for a in THRESHOLDS:
        ax.axhline(a, color="0.5", linestyle=":", linewidth=0.8)
    ax.set_xlabel("CPU hours (process CPU time, all threads)"
                  + ("; dashed: estimated from wall time" if any(t.estimated for t in lines) else ""))
    ax.set_ylabel("test accuracy (%)")
    hardware = sorted({t.hardware for t in lines if t.hardware})
    title = variant.experiment.title + (" (REDUCED budget)" if variant.reduced else "")
    ax.set_title(title + ("\n" + "; ".join(hardware) if hardware else ""), fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    files = _save(fig, stem)
    plt.close(fig)
    return files


def plot_experiment(variant: Variant, out_dir: str | Path | None = None) -> list[Path]:
    """The plots of a variant: ``weights_vs_accuracy``, ``curves`` and, once a run has its
    timing, ``time_to_accuracy`` (.png and .svg)."""
    if out_dir is None:
        ensure_variant_file(variant)
    out = Path(out_dir) if out_dir is not None else variant.dir
    records = read_records(variant.records_path)
    results = summarize(variant, records)
    files = plot_tradeoff(variant, results, out / "weights_vs_accuracy")
    files += plot_curves(variant, records, out / "curves")
    lines = timelines(records, [r.label for r in variant.experiment.rows])
    if lines:
        files += plot_time_to_accuracy(variant, lines, out / "time_to_accuracy")
    return files


__all__ = ["STYLES", "plot_curves", "plot_experiment", "plot_time_to_accuracy", "plot_tradeoff"]
