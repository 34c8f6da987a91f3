"""The residual f − A u in one pass (``mgiad::group_conv3x3_add``) against the native convolution
followed by a separate sum, per call and in whole training/inference steps, side by side.

    taskset -c 0 python benchmarks/residual_kernel.py --threads 1 --out results/performance/residual-kernel-CPU-1thread

Per call: both on the same channels_last tensors (checked bit-equal first), batch 128. Whole
models: one process, ``DataFeatureMap.residual`` switched per round between the one-pass
operator and ``f + A(u, negate=True)``, rounds interleaved with their order alternating; the
median. Thread CPU time (``time.thread_time``); the load average before and after.
"""

from __future__ import annotations

import statistics

import torch
from switched import CL, arguments, finish, header, steps_row, timed

from mgiad.nn import layers
from mgiad.ops import native

SHAPES = [(16, 32, 4), (32, 32, 4), (64, 32, 4), (64, 16, 4), (128, 16, 4), (256, 8, 4), (64, 32, 8), (128, 16, 8)]
MODELS = {"mgiad c_K=16 g_s=4": ("mgiad", {"c_K": 16, "g_s": 4}), "mgiad c_K=64 g_s=4": ("mgiad", {}),
          "mgiad_3lvl c_K=16 g_s=8": ("mgiad_3lvl", {})}


def call_row(c: int, h: int, group: int, batch: int, rounds: int) -> str:
    ops = native.kernels()
    g = torch.Generator().manual_seed(c * h)
    u = torch.randn(batch, c, h, h, generator=g).contiguous(memory_format=CL)
    f = torch.randn(batch, c, h, h, generator=g).contiguous(memory_format=CL)
    w = torch.randn(c, group, 3, 3, generator=g)
    assert torch.equal(ops.forward_add(u, w, f), f + ops.forward(u, w))
    fns = {"one pass": lambda: ops.forward_add(u, w, f), "conv + sum": lambda: f + ops.forward(u, w)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            times[k].append(timed(fns[k], 3) * 1e3)
    m = {k: statistics.median(v) for k, v in times.items()}
    return f"{c:>5} {h:>4} {group:>3}  {m['one pass']:>9.2f} {m['conv + sum']:>11.2f} {m['conv + sum'] / m['one pass']:>6.2f}"


def residual_switch(on: bool, _fused=layers.DataFeatureMap.residual) -> None:
    """The one-pass residual on, or the convolution followed by a sum."""
    layers.DataFeatureMap.residual = _fused if on else (lambda self, f, u: f + self(u, negate=True))


def main() -> None:
    args = arguments(__doc__, "call-rounds")
    out = [header(args.threads),
           f"\n## per call, batch {args.batch}: ms (median of {args.call_rounds} interleaved rounds of 3 "
           "calls); × = conv + sum / one pass",
           f"{'C':>5} {'H=W':>4} {'g':>3}  {'one pass':>9} {'conv + sum':>11} {'×':>6}"]
    out.extend(call_row(c, h, g, args.batch, args.call_rounds) for c, h, g in SHAPES)
    out.append(f"\n## whole steps, batch {args.batch}, fp32, channels_last, SGD: ms per step (median of "
               f"{args.model_rounds} interleaved rounds of 2 steps); × = conv + sum / one pass")
    out.append(f"{'model':<26} {'train one pass':>12} {'train conv+sum':>14} {'×':>6}  "
               f"{'infer one pass':>12} {'infer conv+sum':>14} {'×':>6}")
    out.extend(steps_row(label, name, kw, args.batch, args.model_rounds, residual_switch, "one pass", "conv + sum")
               for label, (name, kw) in MODELS.items())
    finish(out, args.out)


if __name__ == "__main__":
    main()
