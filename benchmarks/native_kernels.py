"""The native grouped 3×3 kernels (mgiad/ops/native) against oneDNN on every MGiaD shape.

    python benchmarks/native_kernels.py > results/performance/native-kernels-CPU.txt
    python benchmarks/native_kernels.py --isa avx2 --isa avx512      # each build this CPU runs
    python benchmarks/native_kernels.py --threads 1 --cpu-time       # one core, thread CPU time
    python benchmarks/native_kernels.py --tune avx512:4:4 avx512:6:4 # register tiles (FWD_P:WGRAD_RB)

For each shape (4 channels per group, 3×3, stride 1, padding 1, fp32, channels_last, batch 128
by default): forward, input gradient and weight gradient, the built-in (oneDNN) kernel and each
native build, measured in interleaved rounds (A B C A B C ...) so that a busy machine slows all
alike; each figure is the median over rounds, and the ratio is oneDNN's time over the native
one. ``--cpu-time`` measures the thread's CPU time instead of wall time (with ``--threads 1``:
insensitive to other processes taking the core away, not to what they do to the caches).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from mgiad.ops import native
from mgiad.perf.allocator import keep_freed_memory

CL = torch.channels_last
#: (channels per group, channels, image side) of MGiaD's grouped 3×3 convolutions: g_s = 4
#: (c_K=16: all of these; c_K=64: those with 128 and 256 channels) and g_s = 8 (the 3-level
#: MGiaD, c_K=16)
SHAPES = [(4, 32, 32), (4, 32, 16), (4, 32, 8), (4, 32, 4), (4, 64, 32), (4, 64, 16), (4, 64, 8),
          (4, 64, 4), (4, 128, 16), (4, 128, 8), (4, 128, 4), (4, 256, 8), (4, 256, 4),
          (8, 32, 16), (8, 32, 8), (8, 64, 8)]
_cbw = torch.ops.aten.convolution_backward


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def tuned_build(spec: str):
    """A build with other register tiles: ``isa:FWD_P:WGRAD_RB[:FWD_P8:WGRAD_RB8]`` (the second
    pair for 8 channels per group; its own extension name)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # its CUDA_HOME note
    from torch.utils import cpp_extension

    isa, *tiles = spec.split(":")
    p, rb, p8, rb8 = (tiles + ["", "", "", ""])[:4]
    name = f"mgiad_tune_{isa}_{'_'.join(tiles)}"
    macros = [f"-D{k}={v}" for k, v in [("MGIAD_FWD_P", p), ("MGIAD_WGRAD_RB", rb),
                                          ("MGIAD_FWD_P8", p8), ("MGIAD_WGRAD_RB8", rb8)] if v]
    cpp_extension.load(name=name, sources=[str(s) for s in native.SOURCES], is_python_module=False,
                       extra_cflags=["-O3", "-fopenmp", "-fvisibility=hidden", *native.ISA_FLAGS[isa],
                                     f"-DMGIAD_NS={name}", *macros],
                       extra_ldflags=["-fopenmp"])
    return getattr(torch.ops, name)


def kernels(x: torch.Tensor, g: torch.Tensor, w: torch.Tensor, builds: dict) -> dict:
    """(build, 0 forward | 1 input gradient | 2 weight gradient) -> a call of it."""
    group = w.shape[1]
    groups = x.shape[1] // group
    fns = {
        ("oneDNN", 0): lambda: F.conv2d(x, w, padding=1, groups=groups),
        ("oneDNN", 1): lambda: _cbw(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], groups,
                                    [True, False, False]),
        ("oneDNN", 2): lambda: _cbw(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], groups,
                                    [False, True, False]),
    }
    for n, ops in builds.items():
        fns[(n, 0)] = lambda ops=ops: ops.forward(x, w)
        fns[(n, 1)] = lambda ops=ops: ops.input_grad(g, w)
        fns[(n, 2)] = lambda ops=ops: ops.weight_grad(g, x, group)
    return fns


def measure(builds: dict, shapes: list[tuple[int, int, int]], batch: int, rounds: int, clock) -> None:
    names = ["oneDNN", *builds]
    print(f"{'g':>2} {'C':>4} {'HxW':>6} | " + " | ".join(
        f"{'fwd':>7} {'dgrad':>7} {'wgrad':>7}" for _ in names) + "   (ms)" + "".join(
        f" | {n} ×fwd ×dgrad ×wgrad" for n in builds))
    print(f"{'':>14} | " + " | ".join(f"{n:^23}" for n in names))
    totals = {n: [0.0, 0.0, 0.0] for n in names}
    for group, c, s in shapes:
        torch.manual_seed(0)
        x = torch.randn(batch, c, s, s).contiguous(memory_format=CL)
        g = torch.randn_like(x)
        w = torch.randn(c, group, 3, 3)
        fns = kernels(x, g, w, builds)
        for fn in fns.values():
            fn()
        times: dict = {k: [] for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():
                t = clock()
                fn()
                times[k].append((clock() - t) * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        for (n, i), v in med.items():
            totals[n][i] += v
        row = f"{group:>2} {c:>4} {f'{s}x{s}':>6} | " + " | ".join(
            " ".join(f"{med[(n, i)]:>7.2f}" for i in range(3)) for n in names)
        row += "".join(" | " + n + " " + " ".join(f"{med[('oneDNN', i)] / med[(n, i)]:.2f}" for i in range(3))
                       for n in builds)
        print(row, flush=True)
    print(f"{'sum':>14} | " + " | ".join(" ".join(f"{v:>7.2f}" for v in totals[n]) for n in names)
          + "".join(" | " + n + " " + " ".join(f"{totals['oneDNN'][i] / totals[n][i]:.2f}" for i in range(3))
                    for n in builds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--isa", action="append", choices=sorted(native.ISA_FLAGS),
                    help="native build(s) to measure (default: the active one)")
    ap.add_argument("--tune", nargs="+", metavar="ISA:P:RB[:P8:RB8]",
                    help="builds with other register tiles (forward pixels, weight-gradient rotations)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--cpu-time", action="store_true", help="thread CPU time instead of wall time")
    ap.add_argument("--shapes", nargs="+", metavar="G:C:SIDE",
                    help="channels per group, channels, image side (default: every MGiaD shape)")
    args = ap.parse_args()
    keep_freed_memory()  # as the mgiad command does: no page faults on the outputs
    if args.threads:
        torch.set_num_threads(args.threads)
    builds = {}
    if args.tune:
        builds = {spec: tuned_build(spec) for spec in args.tune}
    else:
        for isa in args.isa or [native.status()["isa"]]:
            if isa is None:
                sys.exit(f"no native kernels: {native.status()['reason']}")
            builds[isa] = native.load(isa)
    shapes = [tuple(map(int, s.split(":"))) for s in args.shapes] if args.shapes else SHAPES
    clock = time.thread_time if args.cpu_time else time.perf_counter
    print(f"# {cpu_model()}; torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads; "
          f"batch {args.batch}, fp32, channels_last; median of {args.rounds} interleaved rounds, "
          f"{'thread CPU' if args.cpu_time else 'wall'} time")
    print(f"# command: python benchmarks/native_kernels.py {' '.join(sys.argv[1:])}")
    print(f"# load average before: {load_average()}; MGIAD_NATIVE={os.environ.get('MGIAD_NATIVE', '')!r}")
    measure(builds, shapes, args.batch, args.rounds, clock)
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
