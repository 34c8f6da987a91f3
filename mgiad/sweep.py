"""Sweeps: run every row × seed of an experiment that has not finished, and record the results.

Layout under the results directory (default ``results/``)::

    results/table_IV/                      the paper's recipe
    results/table_IV-reduced-1a2b3c4d/     the same rows with overrides that change results
        variant.json                       experiment snapshot, overrides, reduced flag
        records.jsonl                      one JSON object per finished run (appended)
        runs/<row-slug>-s<seed>/           the run directories of ``mgiad.train``
        logs/<row-slug>-s<seed>.log        output of runs started by ``--workers N``
        slurm/                             submitit's files (``--slurm``)

A run's identity is (experiment, row configuration, seed, overrides): overrides that change the
training trajectory (``--epochs``, ``--subset_train``, ``--lr`` ...) select a ``-reduced-HASH``
variant whose records carry ``reduced: true``; overrides that do not (``--device``,
``--threads``, ``--data_dir`` ..., :data:`mgiad.train.RESUME_MUTABLE`) do not change it.

State of a run, read from its directory (nothing else is trusted): ``summary.json`` with status
``completed`` = finished (its record is appended if a kill left it out); a ``config.json``
without that = interrupted, continued with ``train(cfg, resume=dir)`` from its last epoch;
no directory = not started. A run that finished elsewhere with the same configuration (another
table shares the row) is reused: its record is copied instead of training again.

Concurrency: a run holds an exclusive ``flock`` on ``runs/.<run>.lock`` while it trains, so two
sweeps (or Slurm array tasks) never train the same run; the lock dies with its process.
Records are appended under a lock on ``records.jsonl.lock`` with one ``write`` of one line
(``O_APPEND``), and never twice for one run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from .config import RunConfig, _canonical_key, _split_overrides
from .experiment import Experiment, experiment_from_dict, load_experiment

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; O_APPEND writes stay whole lines
    fcntl = None  # type: ignore[assignment]

RESULTS_DIR = "results"
RECORDS = "records.jsonl"
VARIANT = "variant.json"

#: Keys that do not change what a run computes (mirrors ``mgiad.train.RESUME_MUTABLE``,
#: which imports torch; kept equal by a test).
NEUTRAL_KEYS = frozenset(
    {"data_dir", "download", "device", "threads", "compile", "eval_every", "time_budget_s",
     "tensorboard", "out_dir", "run_name"}
)
#: Keys the sweep sets itself for every run.
_SWEEP_OWNED = {"seed": "--seeds", "out_dir": "--results-dir", "run_name": "--rows",
                "model": "the experiment's rows"}


# --------------------------------------------------------------------------------------
# plan


@dataclass(frozen=True)
class Variant:
    """An experiment with the overrides of one sweep: where its results live."""

    experiment: Experiment
    overrides: tuple[str, ...] = ()
    results_root: str = RESULTS_DIR

    @property
    def changing(self) -> tuple[tuple[str, str], ...]:
        """The overrides that change results, as sorted ``(key, value)`` pairs."""
        return changing_overrides(self.overrides)

    @property
    def reduced(self) -> bool:
        return bool(self.changing)

    @property
    def name(self) -> str:
        if not self.reduced:
            return self.experiment.name
        digest = hashlib.sha256(json.dumps(self.changing).encode()).hexdigest()[:8]
        return f"{self.experiment.name}-reduced-{digest}"

    @property
    def dir(self) -> Path:
        return Path(self.results_root) / self.name

    @property
    def records_path(self) -> Path:
        return self.dir / RECORDS

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.name, "experiment": self.experiment.name, "reduced": self.reduced,
                "overrides": [f"--{k}={v}" for k, v in self.changing],
                "snapshot": self.experiment.to_dict()}


@dataclass(frozen=True)
class Job:
    """One run: a row of an experiment with one seed, its configuration and its places."""

    run_id: str
    variant: str
    experiment: str
    row: str
    family: str
    seed: int
    config: dict[str, Any]
    config_key: str
    run_dir: str
    records: str
    overrides: tuple[str, ...]
    reduced: bool

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config, source=f"run {self.run_id}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        d = json.loads(text)
        d["overrides"] = tuple(d["overrides"])
        return cls(**d)


def changing_overrides(overrides: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The ``(key, value)`` pairs among ``--key=value`` overrides that change results."""
    pairs = []
    for key, text in _split_overrides(list(overrides)):
        name = _canonical_key(key)
        if name.startswith("model-kwargs.") or name.startswith("model_kwargs."):
            name = "model_kwargs." + name.split(".", 1)[1]
        if name not in NEUTRAL_KEYS:
            pairs.append((name, "true" if text is None else text.strip()))
    return tuple(sorted(set(pairs)))


def config_key(cfg: RunConfig) -> str:
    """A hash of everything in a configuration that changes what the run computes."""
    d = {k: v for k, v in cfg.resolved().to_dict().items() if k not in NEUTRAL_KEYS}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def make_variant(experiment: str | Path | Experiment, overrides: Sequence[str] = (),
                 results_dir: str | Path = RESULTS_DIR) -> Variant:
    """The variant of an experiment (name, path or object) for these overrides."""
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    for key, _ in _split_overrides(list(overrides)):
        name = _canonical_key(key)
        if name in _SWEEP_OWNED:
            raise ValueError(f"--{key}: {name} is set by the sweep (use {_SWEEP_OWNED[name]})")
    return Variant(exp, tuple(overrides), str(results_dir))


def plan(variant: Variant, *, seeds: Sequence[int] | None = None,
         rows: Sequence[str] | None = None) -> list[Job]:
    """Every run of the variant (filtered by ``seeds`` and ``rows``): seed 0 of every row, then
    seed 1, ... so that a sweep stopped half-way has a first number for every row.

    Raises ``ValueError`` for a bad override or filter, and for a run directory that holds a
    run of another configuration (the experiment file changed since it ran).
    """
    exp = variant.experiment
    selected = select_rows(exp, rows)
    seeds = list(exp.seeds if seeds is None else seeds)
    jobs = []
    for seed in seeds:
        for row in selected:
            run_id = f"{row.slug}-s{seed}"
            values = {**exp.recipe, **row.recipe, "model": row.model, "model_kwargs": row.run_kwargs(),
                      "dataset": row.dataset, "seed": seed,
                      "out_dir": str(variant.dir / "runs"), "run_name": run_id}
            try:
                cfg = RunConfig.from_dict(values, source=f"{exp.name} row {row.label!r}")
                cfg = cfg.with_overrides(list(variant.overrides)).resolved()
            except ValueError as e:
                raise ValueError(f"{exp.name} row {row.label!r}: {e}") from None
            if seed == seeds[0]:  # a bad hyper-parameter fails here, not hours into a sweep
                try:
                    model_weights(cfg.to_dict())
                except ValueError as e:
                    raise ValueError(f"{exp.name} row {row.label!r}: {e}") from None
            jobs.append(Job(
                run_id=run_id, variant=variant.name, experiment=exp.name, row=row.label,
                family=row.family, seed=seed, config=cfg.to_dict(), config_key=config_key(cfg),
                run_dir=str(variant.dir / "runs" / run_id), records=str(variant.records_path),
                overrides=tuple(f"--{k}={v}" for k, v in variant.changing), reduced=variant.reduced,
            ))
    for job in jobs:
        _check_same_config(job)
    return jobs


def model_weights(config: dict[str, Any]) -> int:
    """Weights of a run's model, built on the meta device (no memory, no time).

    Raises ``ValueError`` for hyper-parameters the model rejects.
    """
    import torch

    from .experiment import DATASETS
    from .registry import create_model

    num_classes, in_chans = DATASETS.get(config["dataset"], (10, 3))
    try:
        with torch.device("meta"):
            model = create_model(config["model"], num_classes=num_classes, in_chans=in_chans,
                                 **config["model_kwargs"])
    except TypeError as e:  # an unknown hyper-parameter name
        raise ValueError(f"model {config['model']!r}: {e} (check the row's kwargs)") from None
    return sum(p.numel() for p in model.parameters())


def select_rows(exp: Experiment, patterns: Sequence[str] | None) -> list[Any]:
    """Rows matching any pattern: an exact label, or comma-separated slugs/globs/1-based indices."""
    if not patterns:
        return list(exp.rows)
    chosen: set[str] = set()
    for value in patterns:
        exact = [r for r in exp.rows if r.label == value]
        if exact:
            chosen.update(r.label for r in exact)
            continue
        for piece in filter(None, (p.strip() for p in value.split(","))):
            hit = [r for i, r in enumerate(exp.rows, 1)
                   if piece == str(i) or fnmatch(r.slug, piece.lower()) or r.label == piece]
            if not hit:
                slugs = ", ".join(r.slug for r in exp.rows)
                raise ValueError(f"--rows {piece!r} matches no row of {exp.name} (rows: {slugs}; "
                                 "or their 1-based numbers, or shell patterns like 'mgiad-*')")
            chosen.update(r.label for r in hit)
    return [r for r in exp.rows if r.label in chosen]


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> seeds."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise ValueError(f"--seeds={text!r}: expected seeds like 0,1,2 or 0-4") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds={text!r}: expected distinct seeds >= 0")
    return seeds


def _check_same_config(job: Job) -> None:
    """A run directory must hold a run of the job's configuration, else refuse to mix them."""
    path = Path(job.run_dir) / "config.json"
    if not path.is_file():
        return
    try:
        old = RunConfig.from_file(path).resolved().to_dict()
    except ValueError:
        return  # unreadable: the resume will say what is wrong
    new = job.config
    changed = [k for k in new if k not in NEUTRAL_KEYS and old.get(k) != new[k]]
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
        raise ValueError(
            f"{job.run_dir} holds a run of another configuration ({diffs}); the experiment file "
            "changed since it ran. Move that directory away (and its record from "
            f"{job.records}) to run the new configuration"
        )


# --------------------------------------------------------------------------------------
# state of runs and records


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


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock on ``path``; yields False if non-blocking and taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
    curve: dict[str, list[Any]] = {k: [] for k in ("epoch", "train_loss", "train_acc", "test_acc", "lr")}
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
        "device": summary.get("device"), "world_size": summary.get("world_size"),
        "git_rev": info.get("git_rev"), "git_dirty": info.get("git_dirty"),
        "torch": info.get("torch"), "mgiad": info.get("mgiad"),
        "train_images": info.get("train_images"), "test_images": info.get("test_images"),
        "config": job.config, "config_key": job.config_key,
        "run_dir": os.path.relpath(run_dir, Path(job.records).parent),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "error": summary.get("error"), "curve": curve,
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------------------
# running one job


def run_job(job: Job) -> dict[str, Any]:
    """Train (or resume, or only record) one run; returns ``{"run_id", "status", ...}``.

    Status: ``done`` (already recorded), ``recorded`` (finished now, or earlier but its record
    was missing), ``diverged``, ``paused`` (stopped by ``time_budget_s``; resume by sweeping
    again) or ``busy`` (another process is training it).
    """
    from .train import TrainingDiverged, train

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


class SweepTask:
    """The callable a Slurm array task runs: one job; on time-out or pre-emption submitit calls
    :meth:`checkpoint` and requeues the task, which then resumes from the last finished epoch."""

    def __call__(self, job: Job) -> dict[str, Any]:
        return run_job(job)

    def checkpoint(self, job: Job) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SweepTask(), job)


# --------------------------------------------------------------------------------------
# running a sweep


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


def reuse_index(results_root: str | Path) -> dict[str, dict[str, Any]]:
    """Completed records of every variant under ``results_root`` by configuration key."""
    index: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(results_root).glob(f"*/{RECORDS}")):
        for rec in read_records(path):
            if rec.get("status") == "completed" and rec.get("config_key") and not rec.get("reused_from"):
                index.setdefault(rec["config_key"], {**rec, "_variant_dir": str(path.parent)})
    return index


def _reuse(job: Job, index: dict[str, dict[str, Any]]) -> bool:
    """Record ``job`` from a completed run of the same configuration elsewhere, if one exists."""
    other = index.get(job.config_key)
    if other is None or Path(other["_variant_dir"]) == Path(job.records).parent:
        return False
    record = {k: v for k, v in other.items() if not k.startswith("_")}
    record.update(run_id=job.run_id, experiment=job.experiment, variant=job.variant, row=job.row,
                  family=job.family, reduced=job.reduced, overrides=list(job.overrides),
                  run_dir=os.path.relpath(Path(other["_variant_dir"]) / other["run_dir"],
                                          Path(job.records).parent),
                  reused_from=f"{other['variant']}/{other['run_id']}")
    append_record(job.records, record)
    return True


def write_variant(variant: Variant) -> None:
    """Write ``variant.json`` (the snapshot reports read when the experiment file is gone)."""
    from .checkpoint import atomic_write_text

    variant.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(variant.dir / VARIANT, json.dumps(variant.to_dict(), indent=2, ensure_ascii=False) + "\n")


def ensure_variant_file(variant: Variant) -> None:
    """Write ``variant.json`` if the results directory has none (a report before any sweep)."""
    if not (variant.dir / VARIANT).is_file():
        write_variant(variant)


def sweep(variant: Variant, jobs: list[Job], *, workers: int = 1, gpus: Sequence[str] | None = None,
          reuse: bool = True, log: Any = print) -> SweepResult:
    """Run the jobs that are not finished, on this machine, ``workers`` at a time."""
    write_variant(variant)
    status: dict[str, str] = {}
    todo: list[Job] = []
    recorded = {r["run_id"] for r in read_records(variant.records_path)}
    index = reuse_index(variant.results_root) if reuse else {}
    for job in jobs:
        state = run_state(job)
        if state in ("done", "diverged") and job.run_id in recorded:
            status[job.run_id] = "done" if state == "done" else "diverged"
        elif job.run_id in recorded and state == "todo":
            status[job.run_id] = "done"  # reused from another experiment earlier
        elif state == "todo" and _reuse(job, index):
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
    """Each job in a ``python -m mgiad.sweep`` subprocess; worker slot k gets GPU k mod #GPUs."""
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
                proc = subprocess.Popen([sys.executable, "-m", "mgiad.sweep", "--job", "-"],
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


#: Exit codes of ``python -m mgiad.sweep --job``.
_EXIT_STATUS = {0: "recorded", 3: "diverged", 4: "busy", 5: "paused", 6: "done"}
_STATUS_EXIT = {"recorded": 0, "diverged": 3, "busy": 4, "paused": 5, "done": 6}


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
    recorded = {r["run_id"] for r in read_records(variant.records_path)}
    index = reuse_index(variant.results_root) if reuse else {}
    todo = [j for j in jobs
            if not (j.run_id in recorded or (run_state(j) == "todo" and _reuse(j, index)))]
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


# --------------------------------------------------------------------------------------
# finding a variant's results again (report, plot)


def find_variant(experiment: str | Path, overrides: Sequence[str] = (),
                 results_dir: str | Path = RESULTS_DIR, *, log: Any = None) -> Variant:
    """The variant whose results to show.

    ``experiment`` may be a results directory (with ``variant.json``). Otherwise: with overrides
    the variant they select; without, the paper-recipe variant if it has records, else the
    most recently updated reduced variant (``log`` says which, and which others exist).
    """
    path = Path(experiment)
    if path.is_dir() and (path / VARIANT).is_file():
        return load_variant(path)
    variant = make_variant(experiment, overrides, results_dir)
    if overrides or variant.records_path.is_file():
        return variant
    candidates = sorted(Path(results_dir).glob(f"{variant.experiment.name}-reduced-*/{VARIANT}"),
                        key=lambda p: (p.parent / RECORDS).stat().st_mtime
                        if (p.parent / RECORDS).is_file() else p.stat().st_mtime)
    if not candidates:
        return variant
    chosen = load_variant(candidates[-1].parent)
    if log is not None:
        others = [c.parent.name for c in candidates[:-1]]
        log(f"no paper-recipe results for {variant.experiment.name}; showing the reduced variant "
            f"{chosen.name} ({' '.join(chosen.overrides)})"
            + (f"; others: {', '.join(others)}" if others else ""))
    return chosen


def load_variant(path: str | Path) -> Variant:
    """A variant from its results directory (``variant.json``)."""
    path = Path(path)
    data = _read_json(path / VARIANT)
    if data is None:
        raise ValueError(f"{path} is not a results directory of `mgiad sweep` (no readable {VARIANT})")
    snapshot = dict(data["snapshot"])
    origin = str(snapshot.pop("path", ""))  # where the experiment file was, not a file key
    exp = experiment_from_dict(snapshot, source=str(path / VARIANT), path=origin)
    variant = Variant(exp, tuple(data.get("overrides", ())), str(path.parent))
    if variant.name != path.name:  # renamed directory: keep its name, the records are there
        return _RenamedVariant(exp, variant.overrides, str(path.parent), path.name)
    return variant


@dataclass(frozen=True)
class _RenamedVariant(Variant):
    dirname: str = ""

    @property
    def name(self) -> str:
        return self.dirname


# --------------------------------------------------------------------------------------
# worker entry point: python -m mgiad.sweep --job -   (a Job as JSON on stdin)


def _worker_main(argv: Sequence[str]) -> int:
    if list(argv) != ["--job", "-"]:
        print("usage: python -m mgiad.sweep --job -   (a job as JSON on stdin; used by mgiad sweep)",
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
