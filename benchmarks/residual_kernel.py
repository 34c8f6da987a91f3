"""The residual f − A u in one pass (``mgiad::group_conv3x3_add``) against the native convolution
followed by a separate sum, per call and in whole training/inference steps, side by side.

    taskset -c 0 python benchmarks/residual_kernel.py --threads 1 --out results/performance/residual-kernel-CPU-1thread

Per call: both on the same channels_last tensors (checked bit-equal first), batch 128. Whole
models: one process, ``DataFeatureMap.residual`` switched per round between the one-pass
operator and ``f + A(u, negate=True)``, rounds interleaved with their order alternating; the
median. Thread CPU time (``time.thread_time``); the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import mgiad
from mgiad.nn import layers
from mgiad.ops import native
from mgiad.training.machine import cpu_string

CL = torch.channels_last
SHAPES = [(16, 32, 4), (32, 32, 4), (64, 32, 4), (64, 16, 4), (128, 16, 4), (256, 8, 4), (64, 32, 8), (128, 16, 8)]
MODELS = {"mgiad c_K=16 g_s=4": ("mgiad", {"c_K": 16, "g_s": 4}), "mgiad c_K=64 g_s=4": ("mgiad", {}),
          "mgiad_3lvl c_K=16 g_s=8": ("mgiad_3lvl", {})}


def timed(fn, calls: int) -> float:
    t0 = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - t0) / calls


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


def model_row(label: str, name: str, kw: dict, batch: int, rounds: int) -> str:
    fused = layers.DataFeatureMap.residual

    def separate(self, f, u):
        return f + self(u, negate=True)

    torch.manual_seed(0)
    m = mgiad.create_model(name, num_classes=10, **kw).to(memory_format=CL).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=CL)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()

    def infer() -> None:
        m.eval()
        with torch.no_grad():
            m(x)
        m.train()

    step()
    step()
    times: dict[str, list[float]] = {}
    try:
        for r in range(rounds):
            for mode in (("one pass", "conv + sum") if r % 2 == 0 else ("conv + sum", "one pass")):
                layers.DataFeatureMap.residual = fused if mode == "one pass" else separate
                times.setdefault(f"train {mode}", []).append(timed(step, 2) * 1e3)
                times.setdefault(f"infer {mode}", []).append(timed(infer, 2) * 1e3)
    finally:
        layers.DataFeatureMap.residual = fused
    t = {k: statistics.median(v) for k, v in times.items()}
    return (f"{label:<26} {t['train one pass']:>9.0f} {t['train conv + sum']:>11.0f} "
            f"{t['train conv + sum'] / t['train one pass']:>6.3f}  {t['infer one pass']:>9.0f} "
            f"{t['infer conv + sum']:>11.0f} {t['infer conv + sum'] / t['infer one pass']:>6.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--call-rounds", type=int, default=7)
    ap.add_argument("--model-rounds", type=int, default=7)
    ap.add_argument("--out", help="write the output to OUT.txt as well")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if native.kernels() is None:
        raise SystemExit(f"native kernels inactive: {native.status()['reason']}")
    out = [f"# {cpu_string()}, {args.threads} torch thread(s), torch {torch.__version__}, native "
           f"{native.status()['isa']} build; thread CPU time; load before: {os.getloadavg()[0]:.2f}",
           f"\n## per call, batch {args.batch}: ms (median of {args.call_rounds} interleaved rounds of 3 "
           "calls); × = conv + sum / one pass",
           f"{'C':>5} {'H=W':>4} {'g':>3}  {'one pass':>9} {'conv + sum':>11} {'×':>6}"]
    out.extend(call_row(c, h, g, args.batch, args.call_rounds) for c, h, g in SHAPES)
    out.append(f"\n## whole steps, batch {args.batch}, fp32, channels_last, SGD: ms per step (median of "
               f"{args.model_rounds} interleaved rounds of 2 steps); × = conv + sum / one pass")
    out.append(f"{'model':<26} {'train one':>9} {'train sep.':>11} {'×':>6}  {'infer one':>9} {'infer sep.':>11} {'×':>6}")
    out.extend(model_row(label, name, kw, args.batch, args.model_rounds) for label, (name, kw) in MODELS.items())
    out.append(f"\n# load after: {os.getloadavg()[0]:.2f}")
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out + ".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
