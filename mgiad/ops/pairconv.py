"""Π̂, R̂ and P̂: the 1×1 channel transfers of SiC, computed as elementwise products.

Each output channel of R̂, Π̂ (c → c/2, ``groups=c/2``) is a weighted sum of one pair of
adjacent input channels, and each input channel of P̂ (c/2 → c) feeds one pair of outputs.
oneDNN runs these 1×1 grouped convolutions as convolutions, slowly, and its input-gradient
kernel is slower still; on the CPU the same products as two multiply(-add) passes over
strided channel views are exact and faster (forward+backward on a 2-core Xeon, batch 128,
channels_last: 64→32 channels at 32×32 31.2 → 28.5 ms, 256→128 at 8×8 12.0 → 7.2 ms;
``python benchmarks/kernels.py`` §3, docs/performance.md). The weight gradient keeps the
built-in kernel, which is fast for it. The modules stay ``nn.Conv2d`` (same weights, state
dict, hooks); off the CPU they run the built-in convolution.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

_conv_backward = torch.ops.aten.convolution_backward


def _weight_grad(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    return _conv_backward(g, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], groups,
                          [False, True, False])[1]


_EVEN, _ODD = slice(0, None, 2), slice(1, None, 2)


def _channel(w: torch.Tensor, k: slice) -> torch.Tensor:
    """Weights of one member of every channel pair, shaped to scale [N, C, H, W]."""
    return w.flatten()[k].view(1, -1, 1, 1)


def _sum_pairs(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y_j = w_{2j} x_{2j} + w_{2j+1} x_{2j+1} (w flattened): R̂, Π̂, and P̂'s input gradient."""
    return (x[:, _EVEN] * _channel(w, _EVEN)).addcmul_(x[:, _ODD], _channel(w, _ODD))


def _spread(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y_{2j} = w_{2j} x_j, y_{2j+1} = w_{2j+1} x_j: P̂, and R̂'s, Π̂'s input gradient."""
    n, c, h, wd = x.shape
    fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    y = torch.empty((n, 2 * c, h, wd), dtype=x.dtype, device=x.device, memory_format=fmt)
    torch.mul(x, _channel(w, _EVEN), out=y[:, _EVEN])
    torch.mul(x, _channel(w, _ODD), out=y[:, _ODD])
    return y


class _PairProduct(torch.autograd.Function):
    """``_sum_pairs`` (c → c/2) or ``_spread`` (c/2 → c); each is the other's adjoint."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, spread: bool) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.spread = spread
        return _spread(x, w) if spread else _sum_pairs(x, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, w = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = _sum_pairs(g, w) if ctx.spread else _spread(g, w)
        if ctx.needs_input_grad[1]:  # groups = c/2 either way
            gw = _weight_grad(g, x, w, min(x.shape[1], g.shape[1]))
        return gx, gw, None


def _fast(x: torch.Tensor, w: torch.Tensor) -> bool:
    """CPU, one dtype, no autocast: where the elementwise form was measured and is exact."""
    return x.device.type == "cpu" and x.dtype == w.dtype and not torch.is_autocast_enabled("cpu")


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class PairRestriction(nn.Conv2d):
    """R̂ or Π̂: 1×1, c → c/2, output j from input channels 2j and 2j+1."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels // 2, 1, groups=channels // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PairProduct.apply(x, self.weight, False) if _fast(x, self.weight) else super().forward(x)


class PairInterpolation(nn.Conv2d):
    """P̂: 1×1, c/2 → 2·(c/2), input channel j to outputs 2j and 2j+1."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels // 2, channels, 1, groups=channels // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PairProduct.apply(x, self.weight, True) if _fast(x, self.weight) else super().forward(x)
