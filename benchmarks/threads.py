"""Training speed per CPU thread setting, on idle cores and with one core kept busy.

    python benchmarks/threads.py --rounds 5 --steps 4 --out results/threads

The workload is one MGiaD training step (``mgiad_3lvl``, 10 classes, batch 128, 3×32×32,
channels_last, SGD), the same in every setting:

- ``default``: torch's default thread count (one per core);
- ``free``: as many threads as cores were idle over 0.3 s just before (/proc/stat,
  :func:`mgiad.training.threads.idle_cores`), at least 1;
- ``passive``: torch's default thread count with ``OMP_WAIT_POLICY=PASSIVE`` (threads that wait
  for work sleep instead of spinning; it must be in the environment before libgomp loads);
- ``passive+free``: both;
- ``one``: 1 thread;
- ``spin1k``, ``spin10k`` (only with ``--settings``): torch's default thread count, waiting
  threads spin 1,000 or 10,000 rounds before they sleep (``GOMP_SPINCOUNT``; libgomp's default
  is 300,000, PASSIVE is 0).

Each setting is one long-lived worker process (its own environment, torch loaded once); the
workers take turns, one at a time, in interleaved rounds (the order rotates each round), and
within a round every setting runs on the machine as found ("as found": idle cores when nobody
else uses them), then every setting again while a ``while 1: pass`` process keeps one core busy
("+1 core busy"; started for that half of the round, killed after). With ``--wait-quiet S``
each measurement first waits (up to S seconds) for the other users to leave the cores idle.
A measurement is one untimed step after the thread setting, then ``--steps`` timed
steps. Next to each, the script records the CPU time the rest of the machine used meanwhile
(/proc/stat minus the worker's and the spinner's own CPU time), because "idle" on a shared
machine is only as idle as the other users leave it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS: dict[str, tuple[dict[str, str], str]] = {
    # name: (environment added before torch loads, thread rule)
    "default": ({}, "default"),
    "free": ({}, "free"),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "default"),
    "passive+free": ({"OMP_WAIT_POLICY": "PASSIVE"}, "free"),
    "one": ({}, "one"),
    "spin1k": ({"GOMP_SPINCOUNT": "1000"}, "default"),
    "spin10k": ({"GOMP_SPINCOUNT": "10000"}, "default"),
}
#: what runs without --settings
DEFAULT_SETTINGS = ["default", "free", "passive", "passive+free", "one"]
CONDITIONS = ("as found", "+1 core busy")
QUIET = 0.25  # "quiet": the rest of the machine used less than this many cores


# -- worker ---------------------------------------------------------------------------------

def worker(rule: str) -> None:
    """Load torch and the model once, then answer ``steps`` lines on stdin with a JSON line."""
    import resource

    import torch

    import mgiad
    from mgiad.training.threads import idle_cores

    default = torch.get_num_threads()
    torch.manual_seed(0)
    model = mgiad.create_model("mgiad_3lvl", num_classes=10).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    print(json.dumps({"ready": True, "default_threads": default}), flush=True)
    for line in sys.stdin:
        steps = int(line)
        idle = None
        if rule == "free":
            idle = idle_cores(0.3)
            threads = max(1, int(idle + 0.5)) if idle is not None else default
        elif rule == "one":
            threads = 1
        else:
            threads = default
        torch.set_num_threads(threads)
        step()  # untimed: the first step after a thread change
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        print(json.dumps({"threads": threads, "idle_cores_seen": idle, "wall_s": wall,
                          "img_s": 128 * steps / wall, "step_s": times, "cpu_s": cpu}), flush=True)


# -- driver ---------------------------------------------------------------------------------

def _busy_jiffies() -> float:
    """Non-idle jiffies of all CPUs (/proc/stat first line)."""
    with open("/proc/stat") as f:
        v = [float(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4]


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_quiet(limit: float, busy: int) -> None:
    """Wait up to ``limit`` seconds until all cores but ``busy`` were idle for half a second."""
    from mgiad.training.threads import idle_cores, usable_cores

    want = len(usable_cores()) - busy - 0.1
    end = time.monotonic() + limit
    while time.monotonic() < end:
        idle = idle_cores(0.5)
        if idle is None or idle >= want:
            return


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    ap.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    ap.add_argument("--out", help="write threads.txt and threads.json into this directory")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each measurement wait up to S seconds for the other users to leave "
                    "the cores idle (for the quiet column on a shared machine)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # kill: still stop the spinner, workers
    hz = os.sysconf("SC_CLK_TCK")
    workers = {}
    for name in args.settings:
        env_add, rule = SETTINGS[name]
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
        env.update(env_add)
        workers[name] = subprocess.Popen([sys.executable, __file__, "--worker", rule], env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for w in workers.values():
        json.loads(w.stdout.readline())  # loaded and warmed up
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    records = []
    try:
        for r in range(args.rounds):
            order = args.settings[r % len(args.settings):] + args.settings[: r % len(args.settings)]
            for cond in CONDITIONS:
                spinner = None
                if cond != CONDITIONS[0]:
                    spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
                    time.sleep(1.0)
                try:
                    for name in order:
                        w = workers[name]
                        if args.wait_quiet:
                            _wait_quiet(args.wait_quiet, busy=0 if spinner is None else 1)
                        # the rest of the machine over the whole exchange (untimed step included)
                        ours = [w.pid] + ([spinner.pid] if spinner else [])
                        cpu0 = sum(_proc_cpu_s(p) for p in ours)
                        busy0, t0 = _busy_jiffies(), time.perf_counter()
                        w.stdin.write(f"{args.steps}\n")
                        w.stdin.flush()
                        rec = json.loads(w.stdout.readline())
                        wall = time.perf_counter() - t0
                        busy = (_busy_jiffies() - busy0) / hz
                        cpu = sum(_proc_cpu_s(p) for p in ours) - cpu0
                        rec["background_cores"] = max(0.0, busy - cpu) / wall
                        rec.update(round=r, condition=cond, setting=name)
                        records.append(rec)
                        print(f"round {r + 1}/{args.rounds} {cond:<12} {name:<12} {rec['threads']} thr "
                              f"{rec['img_s']:7.1f} img/s  others used {rec['background_cores']:.2f} cores",
                              file=sys.stderr, flush=True)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
    finally:
        for w in workers.values():
            w.stdin.close()
            w.wait()
    load_end = Path("/proc/loadavg").read_text().split()[:3]

    import torch

    head = [f"# {machine()}, torch {torch.__version__}; mgiad_3lvl training step, batch 128, 3x32x32, "
            f"channels_last, SGD; {args.rounds} interleaved rounds x {args.steps} steps",
            f"# started {started}; load average at start {' '.join(load_start)}, at end {' '.join(load_end)}",
            "# img/s: median over rounds [min-max]; others: cores the rest of the machine used meanwhile "
            "(median [max]); +1 core busy: a `while 1: pass` process besides; quiet: median img/s of the "
            f"measurements during which the others used < {QUIET} cores (how many)"]
    lines = [f"{'condition':<13} {'setting':<13} {'threads':>7} {'img/s':>7} {'[min-max]':>15} "
             f"{'× default':>9} {'others':>14} {'quiet (n)':>12}"]
    for cond in CONDITIONS:
        base = statistics.median(r["img_s"] for r in records
                                 if r["condition"] == cond and r["setting"] == args.settings[0])
        for name in args.settings:
            rs = [r for r in records if r["condition"] == cond and r["setting"] == name]
            speeds = [r["img_s"] for r in rs]
            threads = sorted({r["threads"] for r in rs})
            bg = [r["background_cores"] for r in rs]
            med = statistics.median(speeds)
            quiet = [r["img_s"] for r in rs if r["background_cores"] < QUIET]
            quiet_s = f"{statistics.median(quiet):.1f} ({len(quiet)})" if quiet else "- (0)"
            lines.append(f"{cond:<13} {name:<13} {'/'.join(map(str, threads)):>7} {med:7.1f} "
                         f"{f'[{min(speeds):.0f}-{max(speeds):.0f}]':>15} {med / base:9.2f} "
                         f"{f'{statistics.median(bg):.2f} [{max(bg):.2f}]':>14} {quiet_s:>12}")
    text = "\n".join(head + lines) + "\n"
    print(text, end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "threads.txt").write_text(text)
        (out / "threads.json").write_text(json.dumps({
            "machine": machine(), "torch": torch.__version__, "started": started,
            "loadavg_start": load_start, "loadavg_end": load_end, "rounds": args.rounds,
            "steps": args.steps, "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
