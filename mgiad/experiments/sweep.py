"""Sweeps: run every row × seed of an experiment that has not finished, and record the results.

Layout under the results directory (default ``results/``)::

    results/table_IV/                      the paper's recipe
    results/table_IV-reduced-1a2b3c4d/     the same rows with overrides that change results
        variant.json                       experiment snapshot, overrides, reduced flag
        records.jsonl                      one JSON object per finished run (appended)
        runs/<row-slug>-s<seed>/           the run directories of ``mgiad.training.loop``
        logs/<row-slug>-s<seed>.log        output of runs started by ``--workers N``
        slurm/                             submitit's files (``--slurm``)

A run's identity and the plan of a sweep: :mod:`mgiad.experiments.variant`; the state of runs
and their records: :mod:`mgiad.experiments.records`; Slurm: :mod:`mgiad.experiments.slurm`.

Concurrency: a run holds an exclusive ``flock`` on ``runs/.<run>.lock`` while it trains, so two
sweeps (or Slurm array tasks) never train the same run; the lock dies with its process.
Records are appended under a lock on ``records.jsonl.lock`` with one ``write`` of one line
(``O_APPEND``), and never twice for one run.
"""


from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import (
    _flock,
    _reuse,
    append_record,
    make_record,
    plan_states,
    run_state,
    write_variant,
)
from .variant import Job, Variant


def run_job(job: Job) -> dict[str, Any]:
    """Train (or resume, or only record) one run; returns ``{"run_id", "status", ...}``.

    Status: ``done`` (already recorded), ``recorded`` (finished now, or earlier but its record
    was missing), ``diverged``, ``paused`` (stopped by ``time_budget_s``; resume by sweeping
    again) or ``busy`` (another process is training it).
    """
    from mgiad.training.loop import TrainingDiverged, train

    run_dir = Path(job.run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with _flock(run_dir.parent / f".{job.run_id}.lock", blocking=False) as got:
        if not got:
            return {"run_id": job.run_id, "status": "busy"}
        state = run_state(job)
        if state in ("done", "diverged"):
            wrote = append_record(job.records, make_record(job))
            return {"run_id": job.run_id, "status": "recorded" if wrote else "done"}
        cfg = job.run_config()
        try:
            if state == "partial":
                summary = train(cfg, resume=run_dir)
            else:
                if run_dir.exists():  # killed before it wrote its config: nothing to keep
                    shutil.rmtree(run_dir)
                summary = train(cfg)
        except TrainingDiverged:
            append_record(job.records, make_record(job))
            return {"run_id": job.run_id, "status": "diverged"}
        if summary.get("status") != "completed":
            return {"run_id": job.run_id, "status": "paused"}
        append_record(job.records, make_record(job))
        return {"run_id": job.run_id, "status": "recorded", "final_test_acc": summary.get("final_test_acc")}

@dataclass
class SweepResult:
    """What a sweep did, run by run."""

    variant: Variant
    jobs: list[Job]
    status: dict[str, str]  # run_id -> done, recorded, reused, diverged, paused, busy, failed

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)

    @property
    def ok(self) -> bool:
        return all(s in ("done", "recorded", "reused") for s in self.status.values())

def sweep(variant: Variant, jobs: list[Job], *, workers: int = 1, gpus: Sequence[str] | None = None,
          reuse: bool = True, log: Any = print) -> SweepResult:
    """Run the jobs that are not finished, on this machine, ``workers`` at a time."""
    write_variant(variant)
    status: dict[str, str] = {}
    todo: list[Job] = []
    states, index = plan_states(variant, jobs, reuse=reuse)
    for job in jobs:
        state = states[job.run_id]
        if state in ("done", "diverged"):
            status[job.run_id] = state
        elif state == "reusable" and _reuse(job, index):
            status[job.run_id] = "reused"
        else:
            todo.append(job)
    skipped = len(jobs) - len(todo)
    log(f"{variant.name}: {len(jobs)} runs, {skipped} already finished"
        + (f" ({sum(1 for s in status.values() if s == 'reused')} reused from other experiments)"
           if any(s == "reused" for s in status.values()) else "")
        + f", {len(todo)} to run" + (f" with {workers} workers" if workers > 1 and todo else ""))
    if variant.reduced:
        log(f"REDUCED budget ({' '.join(f'--{k}={v}' for k, v in variant.changing)}): not the "
            "paper's recipe; the records say so")
    if workers <= 1:
        for i, job in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] {job.run_id} ({run_state(job)})")
            status[job.run_id] = run_job(job)["status"]
            if status[job.run_id] == "busy":
                log(f"  skipped: another process is training {job.run_id} (it holds the run's "
                    "lock); sweep again once it has stopped")
    else:
        status.update(_run_parallel(variant, todo, workers, gpus, log))
    return SweepResult(variant, jobs, status)

def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA: CPU workers
        return []

def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the sweep dies, so no orphan keeps training."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

def _run_parallel(variant: Variant, todo: list[Job], workers: int, gpus: Sequence[str] | None,
                  log: Any) -> dict[str, str]:
    """Each job in a ``python -m mgiad.experiments.sweep`` subprocess; worker slot k gets GPU k mod #GPUs."""
    gpu_list = list(gpus) if gpus is not None else _visible_gpus()
    cpu = os.cpu_count() or 1
    logs = variant.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    queue = list(todo)
    running: dict[int, tuple[subprocess.Popen[bytes], Job, Any]] = {}
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    try:
        while queue or running:
            for slot in range(workers):
                if slot in running or not queue:
                    continue
                job = queue.pop(0)
                cfg = dict(job.config)
                env = dict(os.environ)
                where = "cpu"
                if gpu_list and cfg["device"] != "cpu":
                    env["CUDA_VISIBLE_DEVICES"] = gpu_list[slot % len(gpu_list)]
                    where = f"GPU {env['CUDA_VISIBLE_DEVICES']}"
                if cfg["threads"] is None:  # share the cores instead of oversubscribing them
                    cfg["threads"] = max(1, cpu // workers)
                child = dataclasses.replace(job, config=cfg)
                out = open(logs / f"{job.run_id}.log", "ab")  # noqa: SIM115  (closed when it ends)
                proc = subprocess.Popen([sys.executable, "-m", "mgiad.experiments.sweep", "--job", "-"],
                                        stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                        env=env, preexec_fn=preexec)
                assert proc.stdin is not None
                proc.stdin.write(child.to_json().encode())
                proc.stdin.close()
                running[slot] = (proc, job, out)
                log(f"start {job.run_id} on {where} (worker {slot + 1}; log {logs / (job.run_id + '.log')})")
            time.sleep(0.2)
            for slot, (proc, job, out) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                out.close()
                del running[slot]
                status[job.run_id] = _EXIT_STATUS.get(code, "failed")
                log(f"{job.run_id}: {status[job.run_id]}"
                    + (f" (exit code {code}, see {logs / (job.run_id + '.log')})" if status[job.run_id] == "failed" else ""))
    except KeyboardInterrupt:
        for proc, _job, out in running.values():  # they got the SIGINT too; let them checkpoint
            with contextlib.suppress(Exception):
                proc.wait(timeout=30)
            out.close()
        raise
    return status


#: Exit codes of ``python -m mgiad.experiments.sweep --job``.
_EXIT_STATUS = {0: "recorded", 3: "diverged", 4: "busy", 5: "paused", 6: "done"}
_STATUS_EXIT = {"recorded": 0, "diverged": 3, "busy": 4, "paused": 5, "done": 6}


# worker entry point: python -m mgiad.experiments.sweep --job -   (a Job as JSON on stdin)


def _worker_main(argv: Sequence[str]) -> int:
    if list(argv) != ["--job", "-"]:
        print("usage: python -m mgiad.experiments.sweep --job -   (a job as JSON on stdin; used by mgiad sweep)",
              file=sys.stderr)
        return 2
    job = Job.from_json(sys.stdin.read())
    try:
        result = run_job(job)
    except KeyboardInterrupt:
        return 130
    return _STATUS_EXIT.get(result["status"], 1)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
