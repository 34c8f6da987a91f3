"""Records and the state of runs: what ``records.jsonl`` holds and how it is written.

State of a run, read from its directory (nothing else is trusted): ``summary.json`` with status
``completed`` = finished (its record is appended if a kill left it out); a ``config.json``
without that = interrupted, continued from its last epoch; no directory = not started. A run that
finished elsewhere with the same configuration (another table shares the row) is reused: its
record is copied instead of training again.

Records are appended under a lock on ``records.jsonl.lock`` with one ``write`` of one line
(``O_APPEND``), and never twice for one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mgiad.training.lock import flock as _flock
from mgiad.training.trajectory import trajectory_changes

from .variant import RECORDS, VARIANT, Job, Variant, _read_json


def run_state(job: Job) -> str:
    """``done``, ``diverged``, ``partial`` (started, resumable) or ``todo``."""
    run_dir = Path(job.run_dir)
    summary = _read_json(run_dir / "summary.json")
    if summary is not None and summary.get("status") in ("completed", "diverged"):
        return "done" if summary["status"] == "completed" else "diverged"
    if (run_dir / "config.json").is_file():
        return "partial"
    return "todo"

def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file (a missing file has none; a torn line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash of a non-POSIX writer; the run re-records it
        if isinstance(rec, dict) and "run_id" in rec:
            out.append(rec)
    return out

def append_record(path: str | Path, record: dict[str, Any]) -> bool:
    """Append ``record`` unless its run already has one; True if it was written."""
    path = Path(path)
    with _flock(path.with_name(path.name + ".lock")):
        if any(r["run_id"] == record["run_id"] for r in read_records(path)):
            return False
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one line: concurrent appends never interleave
        finally:
            os.close(fd)
    return True

def make_record(job: Job) -> dict[str, Any]:
    """The record of a finished run, from its directory (summary, run.json, metrics)."""
    run_dir = Path(job.run_dir)
    summary = _read_json(run_dir / "summary.json") or {}
    info = _read_json(run_dir / "run.json") or {}
    curve: dict[str, list[Any]] = {k: [] for k in ("epoch", "train_loss", "train_acc", "test_acc", "lr",
                                                   "elapsed_s", "epoch_cpu_s", "threads", "load_avg_1m")}
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                for k in curve:
                    curve[k].append(row.get(k))
    return {
        "run_id": job.run_id, "experiment": job.experiment, "variant": job.variant,
        "row": job.row, "family": job.family, "seed": job.seed,
        "status": summary.get("status", "unknown"), "reduced": job.reduced,
        "overrides": list(job.overrides), "model": job.config["model"],
        "model_kwargs": job.config["model_kwargs"], "dataset": job.config["dataset"],
        "weights": summary.get("weights", info.get("weights")),
        "final_test_acc": summary.get("final_test_acc"), "best_test_acc": summary.get("best_test_acc"),
        "best_epoch": summary.get("best_epoch"), "final_train_acc": summary.get("final_train_acc"),
        "final_train_loss": summary.get("final_train_loss"),
        "epochs_done": summary.get("epochs_done"), "epochs": job.config["epochs"],
        "wall_time_s": summary.get("wall_time_s"), "hardware": summary.get("hardware", info.get("hardware")),
        "threads": info.get("threads"), "device": summary.get("device"), "world_size": summary.get("world_size"),
        "git_rev": info.get("git_rev"), "git_dirty": info.get("git_dirty"),
        "torch": info.get("torch"), "mgiad": info.get("mgiad"),
        "train_images": info.get("train_images"), "test_images": info.get("test_images"),
        "config": job.config, "config_key": job.config_key,
        "run_dir": os.path.relpath(run_dir, Path(job.records).parent),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "error": summary.get("error"), "curve": curve,
    }

def record_key(rec: dict[str, Any]) -> str | None:
    """The trajectory hash of a record's configuration as this version computes it
    (:meth:`RunConfig.trajectory_hash`), so that records written before a change of the hash
    (2026-12-07: augmentation recipes resolved) still match; else the key it was written with."""
    from mgiad.training.config import RunConfig

    try:
        return RunConfig.from_dict(rec["config"], source="record").trajectory_hash()
    except (KeyError, TypeError, ValueError):  # no config, or one this version cannot read
        return rec.get("config_key")


def reuse_index(results_root: str | Path) -> dict[str, dict[str, Any]]:
    """Completed records of every variant under ``results_root`` by configuration key."""
    index: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(results_root).glob(f"*/{RECORDS}")):
        for rec in read_records(path):
            key = record_key(rec)
            if rec.get("status") == "completed" and key and not rec.get("reused_from"):
                index.setdefault(key, {**rec, "_variant_dir": str(path.parent)})
    return index

def _reusable(job: Job, index: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A completed run of ``job``'s configuration in another experiment, if there is one."""
    other = index.get(job.config_key)
    if other is None or Path(other["_variant_dir"]) == Path(job.records).parent:
        return None
    return other

def _reuse(job: Job, index: dict[str, dict[str, Any]]) -> bool:
    """Record ``job`` from a completed run of the same configuration elsewhere, if one exists."""
    other = _reusable(job, index)
    if other is None:
        return False
    record = {k: v for k, v in other.items() if not k.startswith("_")}
    record.update(run_id=job.run_id, experiment=job.experiment, variant=job.variant, row=job.row,
                  family=job.family, reduced=job.reduced, overrides=list(job.overrides),
                  run_dir=os.path.relpath(Path(other["_variant_dir"]) / other["run_dir"],
                                          Path(job.records).parent),
                  reused_from=f"{other['variant']}/{other['run_id']}")
    append_record(job.records, record)
    return True

def plan_state(job: Job, recorded: set[str], index: dict[str, dict[str, Any]]) -> str:
    """What a sweep does with ``job``, without doing it.

    ``done`` / ``diverged``: recorded (in ``recorded``), skipped, even where the run directory is
    gone (run directories are not committed, records are); ``reusable``: a completed run of the
    same configuration in another experiment is recorded instead; ``unrecorded``: finished but
    its record was lost (written now, without training); else ``partial`` (resumed) or ``todo``.
    """
    state = run_state(job)
    if job.run_id in recorded and state != "partial":
        return "diverged" if state == "diverged" else "done"
    if state in ("done", "diverged"):
        return "unrecorded"
    if state == "todo" and _reusable(job, index) is not None:
        return "reusable"
    return state

def plan_states(variant: Variant, jobs: list[Job], *, reuse: bool = True
                ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """:func:`plan_state` of every job (by run id), and the reuse index it was planned with.

    Raises ``ValueError`` if a job's record holds another configuration: the experiment file
    changed after that run, and counting the old run as done would report it under the new
    configuration.
    """
    records = {r["run_id"]: r for r in read_records(variant.records_path)}
    stale = [(j, records[j.run_id]) for j in jobs
             if j.run_id in records and record_key(records[j.run_id]) != j.config_key]
    if stale:
        job, rec = stale[0]
        new, old = job.config, rec.get("config") or {}
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}"
                          for k in trajectory_changes(old, new)) or "the configuration"
        raise ValueError(
            f"{variant.records_path}: {len(stale)} recorded run(s) of {variant.name} were trained "
            f"with another configuration than the experiment now gives them (e.g. {job.run_id}: "
            f"{diffs}); the experiment file changed after they ran. Restore it, or move "
            f"{variant.dir} away to run the new configuration")
    recorded = set(records)
    index = reuse_index(variant.results_root) if reuse else {}
    return {j.run_id: plan_state(j, recorded, index) for j in jobs}, index

def write_variant(variant: Variant) -> None:
    """Write ``variant.json`` (the snapshot reports read when the experiment file is gone)."""
    from mgiad.training.checkpoint import atomic_write_text

    variant.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(variant.dir / VARIANT, json.dumps(variant.to_dict(), indent=2, ensure_ascii=False) + "\n")

def ensure_variant_file(variant: Variant) -> None:
    """Write ``variant.json`` if the results directory has none (a report before any sweep)."""
    if not (variant.dir / VARIANT).is_file():
        write_variant(variant)
