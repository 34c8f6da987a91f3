"""Per-shape kernel timings behind docs/performance.md (CPU, fp32, channels_last, batch 128).

    python benchmarks/kernels.py > results/performance/kernels.txt

Sections:
1. allocator: ReLU and BatchNorm forward+backward on a 33.5 MB tensor with glibc's default
   malloc and with ``mgiad.perf.allocator.keep_freed_memory`` (each in a fresh subprocess);
2. 3×3 convolutions of MGiaD's shapes: built-in grouped vs the same convolution as a
   block-diagonal dense one, and the dense GFLOP/s for reference;
3. the 1×1 channel transfers Π̂/R̂ and P̂: built-in grouped convolution vs mgiad.ops.pairconv;
4. the stride-2 depthwise Π/R: the built-in input gradient vs conv_transpose2d;
5. a whole MGiaD c_K=16, g_s=4 training step with all fast paths, without mgiad.ops.pairconv,
   and with the smoothers' residuals as f − A u instead of f + (−A) u.
Each figure is the median of interleaved repeats (A B A B ...), so ratios hold on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

CL = torch.channels_last


def timed(fns: dict[str, Callable[[], object]], repeats: int = 7) -> dict[str, float]:
    """Median milliseconds of each function, measured in interleaved rounds."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _rand(*shape: int, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=CL).requires_grad_(grad)


def allocator_child() -> None:
    x = _rand(128, 64, 32, 32, grad=True)
    g = torch.randn_like(x)
    bn = torch.nn.BatchNorm2d(64)
    t = timed({"relu": lambda: F.relu(x).backward(g), "bn": lambda: bn(x).backward(g)})
    print(f"{t['relu']:.2f} {t['bn']:.2f}")


def allocator() -> None:
    print("## 1. allocator: forward+backward on [128, 64, 32, 32] channels_last (ms)")
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import kernels; "
            "from mgiad.perf.allocator import keep_freed_memory; {} kernels.allocator_child()")
    rows = {}
    for label, setup in [("glibc default", ""), ("keep_freed_memory", "keep_freed_memory();")]:
        out = subprocess.run([sys.executable, "-c", code.format(setup)], capture_output=True, text=True, check=True)
        rows[label] = out.stdout.split()
    print(f"{'malloc':<20} {'ReLU':>8} {'BatchNorm':>10}")
    for label, (relu, bn) in rows.items():
        print(f"{label:<20} {relu:>8} {bn:>10}")


def block_diagonal(w: torch.Tensor, groups: int) -> torch.Tensor:
    """The grouped weight [c_out, c_in/groups, k, k] as a dense block-diagonal one."""
    c_out, g_in, kh, kw = w.shape
    dense = w.new_zeros(groups, c_out // groups, groups, g_in, kh, kw)
    idx = torch.arange(groups)
    dense[idx, :, idx] = w.view(groups, c_out // groups, g_in, kh, kw)
    return dense.view(c_out, groups * g_in, kh, kw)


def grouped_convs() -> None:
    print("\n## 2. 3x3 convolutions, forward+backward (ms); GFLOP/s of the built-in forward")
    print(f"{'channels':>8} {'size':>5} {'g_s':>4} {'built-in':>9} {'block-diag dense':>17} {'fwd GFLOP/s':>12}")
    for c, h, g_s in [(64, 32, 4), (32, 32, 4), (128, 16, 4), (64, 16, 4), (256, 8, 4), (128, 8, 4),
                      (32, 32, 8), (64, 16, 8), (64, 32, 64), (16, 32, 16)]:
        _grouped_row(c, h, g_s)


def _grouped_row(c: int, h: int, g_s: int) -> None:
    groups = c // g_s
    x = _rand(128, c, h, h, grad=True)
    w = torch.randn(c, g_s, 3, 3, requires_grad=True)
    gy = _rand(128, c, h, h)

    def fwd() -> None:
        with torch.no_grad():
            F.conv2d(x, w, padding=1, groups=groups)

    t = timed({
        "builtin": lambda: F.conv2d(x, w, padding=1, groups=groups).backward(gy),
        "dense": lambda: F.conv2d(x, block_diagonal(w, groups), padding=1).backward(gy),
        "fwd": fwd,
    }, repeats=5)
    gflop = 2 * 128 * h * h * c * g_s * 9 / 1e9
    dense = f"{t['dense']:.2f}" if groups > 1 else "-"
    print(f"{c:>8} {h:>5} {g_s:>4} {t['builtin']:>9.2f} {dense:>17} {gflop / t['fwd'] * 1e3:>12.1f}")


def pair_transfers() -> None:
    from mgiad.ops.pairconv import PairInterpolation, PairRestriction

    print("\n## 3. 1x1 channel transfers, forward+backward (ms)")
    print(f"{'transfer':<22} {'size':>5} {'built-in':>9} {'mgiad.ops.pairconv':>15}")
    for c, h in [(64, 32), (32, 32), (128, 16), (256, 8)]:
        for cls, name in [(PairRestriction, f"R̂/Π̂ {c}->{c // 2}"), (PairInterpolation, f"P̂ {c // 2}->{c}")]:
            m = cls(c)
            x = _rand(128, m.in_channels, h, h, grad=True)
            gy = _rand(128, m.out_channels, h, h)
            t = timed({
                "builtin": lambda m=m, x=x, gy=gy: F.conv2d(x, m.weight, groups=m.groups).backward(gy),
                "pair": lambda m=m, x=x, gy=gy: m(x).backward(gy),
            })
            print(f"{name:<22} {h:>5} {t['builtin']:>9.2f} {t['pair']:>15.2f}")


def depthwise() -> None:
    print("\n## 4. stride-2 depthwise Π/R: input gradient (ms)")
    print(f"{'transfer':<12} {'size':>5} {'convolution_backward':>21} {'conv_transpose2d':>17}")
    backward = torch.ops.aten.convolution_backward
    for c, h, mult in [(64, 32, 2), (128, 16, 2), (256, 8, 1)]:
        x = _rand(128, c, h, h)
        w = torch.randn(mult * c, 1, 3, 3)
        gy = torch.randn_like(F.conv2d(x, w, stride=2, padding=1, groups=c))
        t = timed({
            "bw": lambda x=x, w=w, gy=gy, c=c: backward(gy, x, w, None, [2, 2], [1, 1], [1, 1], False, [0, 0], c,
                                                        [True, False, False]),
            "ct": lambda w=w, gy=gy, c=c: F.conv_transpose2d(gy, w, stride=2, padding=1, output_padding=1, groups=c),
        })
        print(f"{f'{c}->{mult * c}':<12} {h:>5} {t['bw']:>21.2f} {t['ct']:>17.2f}")


def whole_step() -> None:
    import mgiad.nn.layers as layers
    import mgiad.ops.pairconv as pairconv
    from mgiad.perf.bench import _batch, _setup, train_step

    dev = torch.device("cpu")
    model, opt = _setup("mgiad:c_K=16,g_s=4", dev, True)
    x, y = _batch(model, 128, 32, dev, True)
    fast, residual = pairconv._fast, layers.Smoother.residual

    def subtracting(self, f, u, Au=None):  # f − A u as written: autograd negates the gradient
        return f if u is None else f - (self.A(u) if Au is None else Au)

    def step(pairs: bool, negated: bool) -> None:
        pairconv._fast = fast if pairs else (lambda x, w: False)
        layers.Smoother.residual = residual if negated else subtracting
        try:
            train_step(model, opt, x, y, dev, "fp32")
        finally:
            pairconv._fast, layers.Smoother.residual = fast, residual

    t = timed({"all": lambda: step(True, True), "no pairs": lambda: step(False, True),
               "no negated": lambda: step(True, False)}, repeats=9)
    print("\n## 5. MGiaD c_K=16, g_s=4 training step (ms), each fast path switched off in turn")
    print(f"all fast paths {t['all']:.0f}")
    print(f"built-in Π̂, R̂, P̂ instead of mgiad.ops.pairconv {t['no pairs']:.0f}  ({t['no pairs'] / t['all']:.3f}x)")
    print(f"f − A u instead of f + (−A) u in the smoothers {t['no negated']:.0f}  ({t['no negated'] / t['all']:.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mgiad.perf.allocator import keep_freed_memory
    from mgiad.perf.bench import machine

    print(f"# {machine('cpu')}; fp32, channels_last, batch 128")
    allocator()
    keep_freed_memory()  # sections 2-4 as the mgiad command runs them
    grouped_convs()
    pair_transfers()
    depthwise()
    whole_step()


if __name__ == "__main__":
    main()
