"""How many CPU threads torch uses for a run: :func:`configure_threads`.

torch's default is one thread per core, and its OpenMP threads *spin* while they wait for each
other (libgomp's default). When another process keeps a core busy, the spinning thread takes
the core from the thread that has the work and training collapses: on this project's 2-core
CPU, 2 such threads trained MGiaD at 17-40 img/s with one core taken, where 1 thread trained at
390-450 img/s (``python benchmarks/threads.py``, results/threads/). The rule, from those
measurements (docs/training.md, "Threads and progress"):

- threads = the cores that are free when the run starts (idle over a quarter second in
  /proc/stat, at least 1) — never more threads than free cores;
- waiting threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), so that load that
  arrives later slows a run by its share of the CPU, not several-fold. libgomp reads this when
  torch loads, so the ``mgiad`` command sets it first (:func:`mgiad.cli.openmp_wait_policy`)
  unless the user set a policy; the header says when a run has spinning threads.

``--threads`` always wins. The thread count changes the last bits of the results (sums split
differently), so a run repeats bit for bit with the same count: it is in the run header and
``run.json``; give ``--threads N`` to fix it.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass

#: Seconds of /proc/stat the rule looks at when a run starts.
WINDOW = 0.25
#: A core counts as free when at least this much of it was idle (so 2 cores at 1.8 idle: 2).
FREE = 0.75


@dataclass(frozen=True)
class ThreadChoice:
    """The torch thread count of a run and why, e.g. ``2 (2 cores, both idle)``."""

    threads: int
    reason: str


def usable_cores() -> list[int]:
    """The CPUs this process may run on (``sched_getaffinity``; all of them where unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_times(cpus: list[int]) -> tuple[float, float] | None:
    """(idle, total) jiffies summed over ``cpus`` from /proc/stat; None where it is not readable."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    wanted = {f"cpu{i}" for i in cpus}
    idle = total = 0.0
    found = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [float(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            idle += values[3] + values[4]
            total += sum(values)
            found += 1
    return (idle, total) if found == len(wanted) else None


def idle_cores(window: float = WINDOW, cpus: list[int] | None = None) -> float | None:
    """How many of ``cpus`` (default: :func:`usable_cores`) were idle over the next ``window``
    seconds, from /proc/stat (e.g. 1.02 with one of two cores busy); None where it is unknown."""
    cpus = usable_cores() if cpus is None else cpus
    before = _cpu_times(cpus)
    if before is None:
        return None
    time.sleep(window)
    after = _cpu_times(cpus)
    if after is None or after[1] <= before[1]:
        return None
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


def passive_wait() -> bool:
    """Whether waiting OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE`` in the environment)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def choose_threads(cores: int, idle: float | None, passive: bool) -> ThreadChoice:
    """The rule without side effects: ``cores`` usable, ``idle`` of them idle just now (None:
    unknown), ``passive``: waiting threads sleep (else they spin)."""
    if cores <= 1:
        return ThreadChoice(1, "1 (1 core)")
    if idle is None:
        threads, load = cores, f"{cores} cores, load unknown"
    else:
        threads = max(1, min(cores, math.floor(idle + 1 - FREE)))
        busy = min(max(cores - idle, 0.0), float(cores))
        load = (f"{cores} cores, {'both' if cores == 2 else 'all'} idle at start" if threads == cores
                else f"{busy:.1f} of {cores} cores busy at start")
    waits = "" if passive else "; waiting threads spin: OMP_WAIT_POLICY is not PASSIVE"
    hint = "; --threads overrides" if threads < cores else ""
    return ThreadChoice(threads, f"{threads} ({load}{waits}{hint})")


def recorded_threads(run_dir: str | os.PathLike[str] | None) -> int | None:
    """The thread count a run started with (``threads`` in its run.json), for its resume; None
    without a run directory or record (runs of mgiad 0.1 have none)."""
    if run_dir is None:
        return None
    try:
        with open(os.path.join(run_dir, "run.json")) as f:
            threads = json.load(f).get("threads")
    except (OSError, ValueError, AttributeError):
        return None
    return threads if isinstance(threads, int) and threads >= 1 else None


class ThreadsWarning(UserWarning):
    """More threads were asked for than this process has cores; fewer are used."""


def cap_threads(threads: int, why: str) -> ThreadChoice:
    """``threads`` (from ``why``: ``--threads``, a resumed run's count), at most the cores this
    process may run on, with a warning when capped: threads beyond the cores only wait for each
    other (``--threads 999`` on 2 cores trained at 1 img/s instead of 76 and drove the load to 380)."""
    cores = len(usable_cores())
    if threads <= cores:
        hint = "; --threads overrides" if why != "--threads" else ""
        return ThreadChoice(threads, f"{threads} ({why}{hint})")
    import warnings

    asked = f"--threads {threads} is" if why == "--threads" else f"the run started with {threads} threads,"
    warnings.warn(f"{asked} more than the {cores} core(s) this process may use; "
                  f"using {cores} (more threads than cores only wait for each other"
                  + ("; the resumed run is no longer bit-identical to an uninterrupted one"
                     if why != "--threads" else "") + ")", ThreadsWarning, stacklevel=3)
    return ThreadChoice(cores, f"{cores} ({threads} asked, {why}; capped at the {cores} usable cores)")


def configure_threads(requested: int | None, *, previous: int | None = None) -> ThreadChoice:
    """Set torch's CPU thread count for a run and say why (module docstring).

    ``requested`` (``--threads``) always wins; then ``previous``, the count of the run being
    resumed (:func:`recorded_threads`: the same count keeps a resumed run bit-identical to an
    uninterrupted one); otherwise this looks at the load for :data:`WINDOW` seconds and applies
    :func:`choose_threads`.
    """
    import torch

    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads={requested}: give at least 1 (or none to let mgiad choose)")
        choice = cap_threads(requested, "--threads")
    elif previous is not None:
        choice = cap_threads(previous, "as the run started: it resumes bit for bit")
    else:
        cpus = usable_cores()
        idle = idle_cores(WINDOW, cpus) if len(cpus) > 1 else None
        choice = choose_threads(len(cpus), idle, passive_wait())
    torch.set_num_threads(choice.threads)
    return choice
