"""Does torch.compile (Inductor, CPU) speed up MGiaD's training step? Measured, not assumed.

    python benchmarks/compile_check.py                 # BN+ReLU segments, ~1 min
    python benchmarks/compile_check.py --whole-model   # + MGiaD c_K=16 g_s=4 (compiles ~3 min)

Prints eager vs compiled milliseconds, interleaved, fp32, channels_last, batch 128.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from kernels import _rand, timed  # noqa: E402


def segments() -> None:
    bn_r, bn_e = nn.BatchNorm2d(64), nn.BatchNorm2d(64)

    def residual_bn_relu(f: torch.Tensor, Au: torch.Tensor) -> torch.Tensor:
        return F.relu(bn_r(f - Au))  # r = σ(BN(f − A u)), eq. (3)

    def update(u: torch.Tensor, Br: torch.Tensor) -> torch.Tensor:
        return u + F.relu(bn_e(Br))  # u + σ(BN(B r)), eq. (3)

    a, b = _rand(128, 64, 32, 32, grad=True), _rand(128, 64, 32, 32, grad=True)
    gy = _rand(128, 64, 32, 32)
    print("segment (forward+backward, [128, 64, 32, 32])   eager ms   compiled ms   compile s")
    for name, fn in [("σ(BN(f − A u))", residual_bn_relu), ("u + σ(BN(B r))", update)]:
        compiled = torch.compile(fn)
        t0 = time.perf_counter()
        compiled(a, b).backward(gy)
        build = time.perf_counter() - t0
        t = timed({"eager": lambda fn=fn: fn(a, b).backward(gy),
                   "compiled": lambda c=compiled: c(a, b).backward(gy)})
        print(f"{name:<46} {t['eager']:>9.1f} {t['compiled']:>13.1f} {build:>11.1f}")


def whole_model() -> None:
    from mgiad.perf.bench import _batch, _setup, train_step

    dev = torch.device("cpu")
    model, opt = _setup("mgiad:c_K=16,g_s=4", dev, True)
    x, y = _batch(model, 128, 32, dev, True)
    compiled = torch.compile(model, fullgraph=True)  # one graph, no break (tests/test_compile_fresh.py)
    t0 = time.perf_counter()
    train_step(compiled, opt, x, y, dev, "fp32")
    build = time.perf_counter() - t0
    t = timed({"eager": lambda: train_step(model, opt, x, y, dev, "fp32"),
               "compiled": lambda: train_step(compiled, opt, x, y, dev, "fp32")}, repeats=3)
    print(f"MGiaD c_K=16 g_s=4 training step: eager {t['eager']:.0f} ms, compiled {t['compiled']:.0f} ms "
          f"(first compiled step {build:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole-model", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mgiad.perf.allocator import keep_freed_memory
    from mgiad.perf.bench import machine

    keep_freed_memory()
    print(f"# {machine('cpu')}; torch.compile default mode, fp32, channels_last")
    segments()
    if args.whole_model:
        whole_model()


if __name__ == "__main__":
    main()
