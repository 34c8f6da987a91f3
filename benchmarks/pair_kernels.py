"""Native Π̂, R̂, P̂ products (``mgiad::pair_sum``/``pair_spread``, native/pair_dot.cpp) against the
built-in strided multiplies, per operator and in whole training/inference steps, side by side.

    taskset -c 0 python benchmarks/pair_kernels.py --threads 1 --out results/performance/pair-kernels-CPU-1thread

Per operator: both paths on the same channels_last tensors (checked bit-equal first), batch 128,
at the shapes MGiaD has. Whole models: one process, the pair path switched per round
(``mgiad.ops.pairconv._native``), rounds interleaved with their order alternating; the
median step time. Thread CPU time (``time.thread_time``), so that a busy second core does not
count; the load average is printed before and after.
"""

from __future__ import annotations

import statistics

import torch
from switched import CL, arguments, finish, header, steps_row, timed

from mgiad.ops import native, pairconv

SHAPES = [(16, 32), (32, 32), (64, 32), (32, 16), (64, 16), (128, 16), (128, 8), (256, 8), (256, 4)]
MODELS = {"mgiad c_K=16 g_s=4": ("mgiad", {"c_K": 16, "g_s": 4}), "mgiad c_K=64 g_s=4": ("mgiad", {}),
          "mgiad_3lvl c_K=16 g_s=8": ("mgiad_3lvl", {})}


def strided(x: torch.Tensor, w: torch.Tensor, spread: bool) -> torch.Tensor:
    """The built-in path of pair_sum / pair_spread (mgiad/ops/pairconv.py without the kernels)."""
    if spread:
        y = pairconv._empty(x, 2 * x.shape[1])
        torch.mul(x, pairconv._channel(w, pairconv._EVEN), out=y[:, pairconv._EVEN])
        torch.mul(x, pairconv._channel(w, pairconv._ODD), out=y[:, pairconv._ODD])
        return y
    y = pairconv._empty(x, x.shape[1] // 2)
    torch.mul(x[:, pairconv._EVEN], pairconv._channel(w, pairconv._EVEN), out=y)
    return y.addcmul_(x[:, pairconv._ODD], pairconv._channel(w, pairconv._ODD))


def operator_row(c: int, h: int, batch: int, rounds: int) -> str:
    """One shape: both paths checked bit-equal, then timed in interleaved rounds."""
    ops = native.kernels()
    g = torch.Generator().manual_seed(c * h)
    x = torch.randn(batch, c, h, h, generator=g).contiguous(memory_format=CL)
    xs = torch.randn(batch, c // 2, h, h, generator=g).contiguous(memory_format=CL)
    w, ws = torch.randn(c // 2, 2, 1, 1, generator=g), torch.randn(c, 1, 1, 1, generator=g)
    assert torch.equal(ops.pair_sum(x, w.reshape(-1)), strided(x, w, False))
    assert torch.equal(ops.pair_spread(xs, ws.reshape(-1)), strided(xs, ws, True))
    fns = {"sum native": lambda: ops.pair_sum(x, w.reshape(-1)), "sum built-in": lambda: strided(x, w, False),
           "spread native": lambda: ops.pair_spread(xs, ws.reshape(-1)),
           "spread built-in": lambda: strided(xs, ws, True)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            times[k].append(timed(fns[k], 5) * 1e3)
    m = {k: statistics.median(v) for k, v in times.items()}
    return (f"{c:>8} {h:>4}  {m['sum native']:>10.3f} {m['sum built-in']:>12.3f} "
            f"{m['sum built-in'] / m['sum native']:>5.2f}  {m['spread native']:>13.3f} "
            f"{m['spread built-in']:>15.3f} {m['spread built-in'] / m['spread native']:>5.2f}")


def pair_switch(on: bool, _kernels=pairconv._native) -> None:
    """The native pair products on, or the strided built-in ones."""
    pairconv._native = _kernels if on else (lambda x, w: False)


def main() -> None:
    args = arguments(__doc__, "op-rounds")
    out = [header(args.threads)]
    out.append(f"\n## operators, batch {args.batch}: ms per call (median of {args.op_rounds} "
               "interleaved rounds of 5 calls); × = built-in / native")
    out.append(f"{'C (wide)':>8} {'H=W':>4}  {'sum native':>10} {'sum built-in':>12} {'×':>5}  "
               f"{'spread native':>13} {'spread built-in':>15} {'×':>5}")
    out.extend(operator_row(c, h, args.batch, args.op_rounds) for c, h in SHAPES)
    out.append(f"\n## whole steps, batch {args.batch}, fp32, channels_last, SGD: ms per step (median "
               f"of {args.model_rounds} interleaved rounds of 2 steps); × = built-in / native")
    out.append(f"{'model':<26} {'train native':>12} {'train built-in':>14} {'×':>6}  "
               f"{'infer native':>12} {'infer built-in':>14} {'×':>6}")
    out.extend(steps_row(label, name, kw, args.batch, args.model_rounds, pair_switch, "native", "built-in")
               for label, (name, kw) in MODELS.items())
    finish(out, args.out)


if __name__ == "__main__":
    main()
