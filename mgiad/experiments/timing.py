"""Time to accuracy: test accuracy against the CPU hours a run spent, from its record.

Each epoch row of ``metrics.jsonl`` (and so the record's curve) carries ``epoch_cpu_s``, the
process's CPU time in that epoch over all its threads (training, augmentation, evaluation), and
``threads`` and ``load_avg_1m``. CPU hours are their running sum. Records written before those
fields existed have only wall time (``elapsed_s``, or the run's ``wall_time_s`` spread evenly
over its epochs); there CPU hours are estimated as wall hours × threads and marked
``estimated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

#: the test accuracies (%) whose CPU-hour cost the report gives
THRESHOLDS = (70.0, 80.0, 85.0)


@dataclass(frozen=True)
class Timeline:
    """One run's test accuracy (%) after each epoch against cumulative CPU hours."""

    row: str
    seed: int
    cpu_hours: tuple[float, ...]
    test_acc: tuple[float, ...]
    estimated: bool  # from wall time × threads, not measured CPU time
    threads: int | None
    hardware: str

    def hours_to(self, accuracy: float) -> float | None:
        """CPU hours until the first epoch at or above ``accuracy`` (%), None if never."""
        return next((h for h, a in zip(self.cpu_hours, self.test_acc) if a >= accuracy), None)


def timeline(record: dict[str, Any]) -> Timeline | None:
    """The run's timeline, or None when its record has no per-epoch test accuracy."""
    curve = record.get("curve") or {}
    acc = curve.get("test_acc") or []
    n = len(acc)
    if n == 0 or any(a is None for a in acc):
        return None
    cpu = curve.get("epoch_cpu_s") or []
    threads = record.get("threads") or next((t for t in curve.get("threads") or [] if t), None)
    if len(cpu) == n and all(c is not None for c in cpu):
        hours, estimated = [c / 3600 for c in accumulate(cpu)], False
    else:
        elapsed = curve.get("elapsed_s") or []
        if len(elapsed) == n and all(e is not None for e in elapsed):
            wall = list(elapsed)
        elif record.get("wall_time_s"):
            wall = [record["wall_time_s"] * (i + 1) / n for i in range(n)]
        else:
            return None
        hours, estimated = [w * (threads or 1) / 3600 for w in wall], True
    return Timeline(row=str(record.get("row", "")), seed=int(record.get("seed", 0)),
                    cpu_hours=tuple(hours), test_acc=tuple(100.0 * a for a in acc),
                    estimated=estimated, threads=threads, hardware=str(record.get("hardware") or ""))


def timelines(records: Sequence[dict[str, Any]], order: Sequence[str] = ()) -> list[Timeline]:
    """Timelines of the completed runs, in the experiment's row order, then by seed."""
    done = [t for r in records if r.get("status") == "completed" for t in [timeline(r)] if t]
    rank = {label: i for i, label in enumerate(order)}
    return sorted(done, key=lambda t: (rank.get(t.row, len(rank)), t.row, t.seed))


def time_table(lines: Sequence[Timeline]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: CPU hours to each threshold, total, final accuracy, threads."""
    header = ["model", "seed", *(f"CPU h to {t:g}%" for t in THRESHOLDS), "CPU h total",
              "final test %", "threads"]
    cells = []
    for t in lines:
        mark = "~" if t.estimated else ""
        to = [t.hours_to(a) for a in THRESHOLDS]
        cells.append([t.row, str(t.seed), *("never" if h is None else f"{mark}{h:.2f}" for h in to),
                      f"{mark}{t.cpu_hours[-1]:.2f}", f"{t.test_acc[-1]:.2f}",
                      "-" if t.threads is None else str(t.threads)])
    return header, cells


TIME_FOOT = ("CPU h = the process's CPU time summed over epochs and threads (training, augmentation, "
             "evaluation), to the first epoch whose test accuracy reaches the threshold; "
             "~ = estimated as wall time × threads (records from before CPU time was recorded)")

__all__ = ["THRESHOLDS", "TIME_FOOT", "Timeline", "time_table", "timeline", "timelines"]
