"""SGD's step (momentum 0.9, weight decay 1e-4) over each model's parameters: torch's for-loop,
``foreach`` and ``fused`` implementations, timed side by side, and whether each gives the
for-loop's bits (issue 19, item 2: is the optimizer worth a pass of our own?).

    taskset -c 0 python benchmarks/optimizer.py --out results/performance/optimizer-CPU-1thread

Thread CPU time, one thread, interleaved rounds of 30 steps after 3 warm-up steps; the bits
compared after 20 training steps of a small MGiaD on random data.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
from switched import finish

import mgiad
from mgiad.training.machine import cpu_string

MODES = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


def step_times(name: str, kw: dict, rounds: int) -> tuple[int, dict[str, float]]:
    m = mgiad.create_model(name, num_classes=10, **kw)
    params = list(m.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opts = {k: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4, **v) for k, v in MODES.items()}
    times: dict[str, list[float]] = {k: [] for k in MODES}
    for r in range(rounds):
        for k in (list(MODES) if r % 2 == 0 else list(reversed(MODES))):
            for _ in range(3):
                opts[k].step()
            t0 = time.thread_time()
            for _ in range(30):
                opts[k].step()
            times[k].append((time.thread_time() - t0) / 30 * 1e3)
    return len(params), {k: statistics.median(v) for k, v in times.items()}


def same_bits() -> dict[str, float]:
    """Largest parameter difference to the for-loop after 20 training steps."""
    torch.manual_seed(0)
    base = mgiad.create_model("mgiad_3lvl", c_K=8, g_s=4, widths=(8, 16, 32))
    models = {k: copy.deepcopy(base) for k in MODES}
    opts = {k: torch.optim.SGD(models[k].parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4, **v)
            for k, v in MODES.items()}
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
        for k in MODES:
            opts[k].zero_grad()
            torch.nn.functional.cross_entropy(models[k](x), y).backward()
            opts[k].step()
    ref = list(models["loop"].parameters())
    return {k: max((a - b).abs().max().item() for a, b in zip(ref, models[k].parameters())) for k in MODES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", help="also write OUT.txt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = [f"# {cpu_string()}, 1 torch thread, torch {torch.__version__}; thread CPU time, median of "
             f"{args.rounds} interleaved rounds of 30 steps; load {os.getloadavg()[0]:.2f}",
             f"{'model':<22} {'tensors':>7} {'weights':>11}  " + "  ".join(f"{k + ' ms':>10}" for k in MODES)]
    for label, (name, kw) in {"mgiad c_K=16 g_s=4": ("mgiad", {"c_K": 16}), "mgiad c_K=64 g_s=4": ("mgiad", {}),
                              "resnet18": ("resnet18", {})}.items():
        n, t = step_times(name, kw, args.rounds)
        weights = sum(p.numel() for p in mgiad.create_model(name, num_classes=10, **kw).parameters())
        lines.append(f"{label:<22} {n:>7} {weights:>11,}  " + "  ".join(f"{t[k]:>10.2f}" for k in MODES))
    diff = same_bits()
    lines.append("largest parameter difference to the for-loop after 20 steps: "
                 + ", ".join(f"{k} {v:.3g}" for k, v in diff.items()))
    finish(lines, args.out)


if __name__ == "__main__":
    main()
