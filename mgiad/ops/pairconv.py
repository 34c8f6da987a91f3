"""Π̂, R̂ and P̂: the 1×1 channel transfers of SiC, computed as elementwise products.

Each output channel of R̂, Π̂ (c → c/2, ``groups=c/2``) is a weighted sum of one pair of
adjacent input channels, and each input channel of P̂ (c/2 → c) feeds one pair of outputs.
oneDNN runs these 1×1 grouped convolutions as convolutions, slowly, and its input-gradient
kernel is slower still; on the CPU the same products as two multiply(-add) passes over
strided channel views are exact and faster (forward+backward on a 2-core Xeon, batch 128,
channels_last: 64→32 channels at 32×32 31.2 → 28.5 ms, 256→128 at 8×8 12.0 → 7.2 ms;
``python benchmarks/kernels.py`` §3, docs/performance.md). With the native kernels, each
product is one pass over contiguous channels_last rows instead (native/pair_dot.cpp; the same
bits, 2–3× faster than the strided multiplies: ``python benchmarks/pair_kernels.py``), and
the weight gradient one pass over both tensors (``mgiad::pair_weight_grad``), else the
built-in kernel's. ``MGIAD_NATIVE=0`` turns the native ones off. The modules stay
``nn.Conv2d`` (same weights, state dict, hooks); off the CPU they run the built-in convolution. The two products are operators
(``mgiad::pair_sum``, ``mgiad::pair_spread``), so compiled, exported and traced models hold
them as one node each.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from . import native
from .export import NotScriptable, fast_paths_off

_conv_backward = torch.ops.aten.convolution_backward


@torch.library.custom_op("mgiad::pair_weight_grad", mutates_args=())
def pair_weight_grad(g: Tensor, x: Tensor, w: Tensor) -> Tensor:
    """dw_{2j+k} = Σ wide_{2j+k} · narrow_j over batch and pixels, wide the one of x, g with twice
    the channels (w gives the shape): the weight gradient of ``pair_sum`` (x wide) and
    ``pair_spread`` (g wide). One pass over both (``native/pair_dot.cpp``) for CPU float32
    channels_last tensors with the native kernels; otherwise the built-in kernel's weight gradient
    of the 1×1 convolution with c/2 groups."""
    wide, narrow = (x, g) if x.shape[1] > g.shape[1] else (g, x)
    if native.runs_on(wide, narrow) and all(t.is_contiguous(memory_format=torch.channels_last)
                                             for t in (wide, narrow)):
        return native.kernels().pair_dot(wide, narrow).reshape(w.shape)
    half = narrow.shape[1]
    shape = [half, 2, 1, 1] if x.shape[1] > g.shape[1] else [2 * half, 1, 1, 1]
    gw = _conv_backward(g, x, w.reshape(shape), None, [1, 1], [0, 0], [1, 1], False, [0, 0], half,
                        [False, True, False])[1]
    return gw.reshape(w.shape)


@pair_weight_grad.register_fake
def _(g: Tensor, x: Tensor, w: Tensor) -> Tensor:
    return torch.empty_like(w, memory_format=torch.contiguous_format)


def _weight_grad_backward(ctx, gw: Tensor):
    """dw is bilinear in (wide, narrow): d wide = pair_spread(narrow, gw), d narrow = pair_sum(wide, gw)."""
    g, x = ctx.saved_tensors
    x_wide = x.shape[1] > g.shape[1]
    wide, narrow = (x, g) if x_wide else (g, x)
    d_wide = pair_spread(narrow, gw) if ctx.needs_input_grad[0 if not x_wide else 1] else None
    d_narrow = pair_sum(wide, gw) if ctx.needs_input_grad[1 if not x_wide else 0] else None
    return (d_narrow, d_wide, None) if x_wide else (d_wide, d_narrow, None)


pair_weight_grad.register_autograd(
    _weight_grad_backward, setup_context=lambda ctx, inputs, output: ctx.save_for_backward(*inputs[:2]))


_EVEN, _ODD = slice(0, None, 2), slice(1, None, 2)


def _channel(w: Tensor, k: slice) -> Tensor:
    """Weights of one member of every channel pair, shaped to scale [N, C, H, W]."""
    return w.flatten()[k].view(1, -1, 1, 1)


def _native(x: Tensor, w: Tensor) -> bool:
    """The native kernels compute it: float32 CPU tensors, x channels_last (and not also
    contiguous, so that the output's strides are those of :func:`_empty`), a native build active."""
    return native.runs_on(x, w) and _is_channels_last(x)


def _format(x: Tensor) -> torch.memory_format:
    return torch.channels_last if _is_channels_last(x) else torch.contiguous_format


def _empty(x: Tensor, channels: int) -> Tensor:
    n, _, h, wd = x.shape
    return torch.empty((n, channels, h, wd), dtype=x.dtype, device=x.device, memory_format=_format(x))


# Registered as operators (``torch.library.custom_op``, with fake tensors and autograd) so that
# torch.compile, torch.export, tracing and ONNX export see one operator each; the outputs are
# channels_last exactly when the input is.


@torch.library.custom_op("mgiad::pair_sum", mutates_args=())
def pair_sum(x: Tensor, w: Tensor) -> Tensor:
    """y_j = w_{2j} x_{2j} + w_{2j+1} x_{2j+1} (w flattened): R̂, Π̂, and P̂'s input gradient."""
    if _native(x, w):  # one pass over contiguous rows, the same bits (native/pair_dot.cpp)
        return native.kernels().pair_sum(x, w.reshape(-1).contiguous())
    y = _empty(x, x.shape[1] // 2)
    torch.mul(x[:, _EVEN], _channel(w, _EVEN), out=y)
    return y.addcmul_(x[:, _ODD], _channel(w, _ODD))


@pair_sum.register_fake
def _(x: Tensor, w: Tensor) -> Tensor:
    return _empty(x, x.shape[1] // 2)


@torch.library.custom_op("mgiad::pair_spread", mutates_args=())
def pair_spread(x: Tensor, w: Tensor) -> Tensor:
    """y_{2j} = w_{2j} x_j, y_{2j+1} = w_{2j+1} x_j: P̂, and R̂'s, Π̂'s input gradient."""
    if _native(x, w):
        return native.kernels().pair_spread(x, w.reshape(-1).contiguous())
    y = _empty(x, 2 * x.shape[1])
    torch.mul(x, _channel(w, _EVEN), out=y[:, _EVEN])
    torch.mul(x, _channel(w, _ODD), out=y[:, _ODD])
    return y


@pair_spread.register_fake
def _(x: Tensor, w: Tensor) -> Tensor:
    return _empty(x, 2 * x.shape[1])


def _save(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _pair_backward(spread: bool):
    """Each product is the other's adjoint in x; the weight gradient is ``pair_weight_grad``."""

    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = pair_sum(g, w) if spread else pair_spread(g, w)
        if ctx.needs_input_grad[1]:
            gw = pair_weight_grad(g, x, w)
        return gx, gw

    return backward


pair_sum.register_autograd(_pair_backward(False), setup_context=_save)
pair_spread.register_autograd(_pair_backward(True), setup_context=_save)


def _fast(x: torch.Tensor, w: torch.Tensor) -> bool:
    """CPU, one dtype, no autocast: where the elementwise form was measured and is exact (and
    no ONNX export, which writes the built-in convolution as ONNX's own Conv, and no
    ``torch.func`` transform or fx trace: :func:`mgiad.ops.export.fast_paths_off`, asked first)."""
    return (not fast_paths_off(x) and x.device.type == "cpu" and x.dtype == w.dtype
            and not torch.is_autocast_enabled("cpu"))


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class PairRestriction(NotScriptable, nn.Conv2d):
    """R̂ or Π̂: 1×1, c → c/2, output j from input channels 2j and 2j+1."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels // 2, 1, groups=channels // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pair_sum(x, self.weight) if _fast(x, self.weight) else super().forward(x)


class PairInterpolation(NotScriptable, nn.Conv2d):
    """P̂: 1×1, c/2 → 2·(c/2), input channel j to outputs 2j and 2j+1."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels // 2, channels, 1, groups=channels // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pair_spread(x, self.weight) if _fast(x, self.weight) else super().forward(x)
