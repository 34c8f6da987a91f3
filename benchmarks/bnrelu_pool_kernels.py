"""The fused BatchNorm + ReLU, the native depthwise pooling Π, R and the pair transfers' weight
gradient against PyTorch, per shape.

    python benchmarks/bnrelu_pool_kernels.py --threads 1 > results/performance/bnrelu-pool-kernels-CPU.txt

Batch 128, fp32, channels_last, MGiaD's shapes; each pair measured in interleaved rounds
(built-in, native, built-in, ...) in one process, median of the rounds.

- BatchNorm + ReLU + residual, training: forward ``F.relu_(F.batch_norm(x, ...)) + r`` against
  ``bn_stats`` + ``bn_relu_apply``; backward (given the batch statistics) ``threshold_backward``
  + ``native_batch_norm_backward`` against ``bn_relu_backward``.
- Π, R (3×3, stride 2, one group per input channel, two outputs each): oneDNN's forward and
  ``convolution_backward`` (input, weight gradient) against ``pool_forward``,
  ``pool_input_grad``, ``pool_weight_grad``.
- The weight gradient of Π̂, R̂ (c → c/2, two channels per group): oneDNN's ``convolution_backward``
  of the 1×1 grouped convolution against ``pair_dot``.
"""

# The closures below are timed within their own loop iteration, before the variables change.
# ruff: noqa: B023

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mgiad.ops import native
from mgiad.perf.allocator import keep_freed_memory

sys.path.insert(0, os.path.dirname(__file__))
from native_kernels import cpu_model, load_average  # noqa: E402

CL = torch.channels_last
BN_SHAPES = [(16, 32), (32, 32), (64, 32), (32, 16), (128, 16), (64, 8), (256, 8), (512, 4)]
POOL_SHAPES = [(16, 32), (64, 32), (32, 16), (128, 16), (64, 8), (256, 8)]


def _ms(fn, rounds: int, other) -> tuple[float, float]:
    """Median ms of ``fn`` and ``other`` over interleaved rounds (after one warm-up each)."""
    fn(), other()
    a, b = [], []
    for _ in range(rounds):
        for f, out in ((other, b), (fn, a)):
            t = time.perf_counter()
            f()
            out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(b), statistics.median(a)


def bn_relu_rows(ops, rounds: int, batch: int):
    for c, h in BN_SHAPES:
        x = torch.randn(batch, c, h, h).contiguous(memory_format=CL)
        r, gy = torch.randn_like(x), torch.randn_like(x)
        w, b = torch.rand(c) + 0.5, torch.randn(c)
        rm, rv = torch.zeros(c), torch.ones(c)

        def fwd_builtin():
            return F.relu_(F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)) + r

        def fwd_native():
            mean, invstd, _ = ops.bn_stats(x, 1e-5)
            scale = w * invstd
            return ops.bn_relu_apply(x, scale, b - mean * scale, r)

        mean, invstd, _ = ops.bn_stats(x, 1e-5)
        scale = w * invstd
        shift = b - mean * scale
        y = F.relu(F.batch_norm(x, rm.clone(), rv.clone(), w, b, True, 0.1, 1e-5))

        def bwd_builtin():
            g = torch.ops.aten.threshold_backward(gy, y, 0)
            return torch.ops.aten.native_batch_norm_backward(g, x, w, rm, rv, mean, invstd, True, 1e-5,
                                                             [True, True, True])

        def bwd_native():
            return ops.bn_relu_backward(gy, x, mean, invstd, scale, shift, True)

        yield (f"bn_relu C={c:<3} {h}x{h}", *_ms(fwd_native, rounds, fwd_builtin),
               *_ms(bwd_native, rounds, bwd_builtin))


def pool_rows(ops, rounds: int, batch: int):
    cb = torch.ops.aten.convolution_backward
    for c, h in POOL_SHAPES:
        x = torch.randn(batch, c, h, h).contiguous(memory_format=CL)
        w = torch.randn(2 * c, 1, 3, 3)
        gy = torch.randn(batch, 2 * c, h // 2, h // 2).contiguous(memory_format=CL)

        def bwd(mask):
            return lambda: cb(gy, x, w, None, [2, 2], [1, 1], [1, 1], False, [0, 0], c, mask)

        fwd = _ms(lambda: ops.pool_forward(x, w), rounds,
                  lambda: F.conv2d(x, w, stride=2, padding=1, groups=c))
        dgrad = _ms(lambda: ops.pool_input_grad(gy, w, c, h, h), rounds, bwd([True, False, False]))
        wgrad = _ms(lambda: ops.pool_weight_grad(gy, x, 2), rounds, bwd([False, True, False]))
        yield f"pool C={c:<3}->{2 * c:<3} {h}x{h}", *fwd, *dgrad, *wgrad


def pair_rows(ops, rounds: int, batch: int):
    cb = torch.ops.aten.convolution_backward
    for c, h in POOL_SHAPES:
        x = torch.randn(batch, c, h, h).contiguous(memory_format=CL)
        g = torch.randn(batch, c // 2, h, h).contiguous(memory_format=CL)
        w = torch.randn(c // 2, 2, 1, 1)
        yield f"pair weight grad C={c:<3}->{c // 2:<3} {h}x{h}", *_ms(
            lambda: ops.pair_dot(x, g), rounds,
            lambda: cb(g, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], c // 2, [False, True, False]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    ops = native.kernels()
    if ops is None:
        sys.exit(f"native kernels not active: {native.status()['reason']}")
    print(f"# {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; native build "
          f"{native.status()['isa']}; batch {args.batch}, fp32, channels_last; median of {args.rounds} "
          f"interleaved rounds; load average before: {load_average()}")
    print(f"# command: python benchmarks/bnrelu_pool_kernels.py {' '.join(sys.argv[1:])}")
    print("# ms built-in / native (×: built-in over native)")
    print(f"{'shape':<28} {'forward':>22} {'backward':>22}")
    for name, fb, fn, bb, bn in bn_relu_rows(ops, args.rounds, args.batch):
        print(f"{name:<28} {fb:7.2f}/{fn:6.2f} {fb / fn:5.2f}× {bb:7.2f}/{bn:6.2f} {bb / bn:5.2f}×", flush=True)
    print(f"{'shape':<28} {'forward':>22} {'input gradient':>22} {'weight gradient':>22}")
    for name, fb, fn, db, dn, wb, wn in pool_rows(ops, args.rounds, args.batch):
        print(f"{name:<28} {fb:7.2f}/{fn:6.2f} {fb / fn:5.2f}× {db:7.2f}/{dn:6.2f} {db / dn:5.2f}× "
              f"{wb:7.2f}/{wn:6.2f} {wb / wn:5.2f}×", flush=True)
    print(f"{'shape':<28} {'weight gradient':>22}")
    for name, b, n in pair_rows(ops, args.rounds, args.batch):
        print(f"{name:<28} {b:7.2f}/{n:6.2f} {b / n:5.2f}×", flush=True)
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
