"""Sweeps on a Slurm cluster: the unfinished runs as one job array through submitit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .records import _reuse, plan_states, write_variant
from .sweep import run_job
from .variant import Job, Variant


class SweepTask:
    """The callable a Slurm array task runs: one job; on time-out or pre-emption submitit calls
    :meth:`checkpoint` and requeues the task, which then resumes from the last finished epoch."""

    def __call__(self, job: Job) -> dict[str, Any]:
        return run_job(job)

    def checkpoint(self, job: Job) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SweepTask(), job)

def submit_slurm(variant: Variant, jobs: list[Job], *, folder: str | Path | None = None,
                 cluster: str | None = None, partition: str | None = None, time_min: int = 24 * 60,
                 gpus_per_task: int = 1, cpus_per_task: int = 8, mem_gb: int | None = None,
                 array_parallelism: int = 64, extra: dict[str, Any] | None = None,
                 reuse: bool = True, log: Any = print) -> list[Any]:
    """Submit the unfinished jobs as one Slurm job array through submitit; returns its jobs.

    ``cluster`` is passed to ``submitit.AutoExecutor`` (``"local"`` runs the array as local
    processes, which is how the tests exercise this path).
    """
    try:
        import submitit
    except ImportError:
        raise ValueError("--slurm needs submitit: pip install 'mgiad[slurm]'") from None
    write_variant(variant)
    states, index = plan_states(variant, jobs, reuse=reuse)
    todo = [j for j in jobs if not (states[j.run_id] in ("done", "diverged")
                                    or (states[j.run_id] == "reusable" and _reuse(j, index)))]
    if not todo:
        log(f"{variant.name}: every run is finished; nothing to submit")
        return []
    # Tasks may start in another working directory: give them absolute paths; and as many
    # torch threads as the task has cores (torch would count the whole node's).
    todo = [_absolute(j, threads=cpus_per_task) for j in todo]
    executor = submitit.AutoExecutor(folder=str(folder or variant.dir.resolve() / "slurm"), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": time_min, "name": f"mgiad-{variant.name}",
                              "slurm_array_parallelism": array_parallelism,
                              "cpus_per_task": cpus_per_task, "tasks_per_node": 1, "nodes": 1}
    if gpus_per_task:
        params["gpus_per_node"] = gpus_per_task
    if partition:
        params["slurm_partition"] = partition
    if mem_gb:
        params["mem_gb"] = mem_gb
    params.update(extra or {})
    executor.update_parameters(**params)
    submitted = executor.map_array(SweepTask(), todo)
    log(f"{variant.name}: submitted {len(submitted)} runs as job array "
        f"{submitted[0].job_id.split('_')[0] if submitted else '-'} ({executor.cluster})")
    return submitted

def _absolute(job: Job, *, threads: int | None = None) -> Job:
    config = dict(job.config)
    if config.get("threads") is None and threads:
        config["threads"] = threads
    config["out_dir"] = str(Path(config["out_dir"]).resolve())
    if config.get("data_dir"):
        config["data_dir"] = str(Path(config["data_dir"]).expanduser().resolve())
    return dataclasses.replace(job, config=config, run_dir=str(Path(job.run_dir).resolve()),
                               records=str(Path(job.records).resolve()))
