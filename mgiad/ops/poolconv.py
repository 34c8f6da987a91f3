"""``mgiad::depthwise_pool``: the learnable depthwise pooling Π, R of the resolution transfers
(3×3, stride 2, padding 1, one group per input channel) with the native kernels behind it.

Between resolution levels the widths double, so each input channel feeds two output channels.
oneDNN runs that case several times slower than the same work as two one-output depthwise
convolutions; ``native/depthwise_pool.cpp`` computes it directly (docs/performance.md). As for
``mgiad::group_conv3x3`` (:mod:`mgiad.ops.groupconv`), three operators with fake tensors and
autograd of any order, each the built-in convolution where no native kernel applies:

- ``depthwise_pool(x, weight)``: y = conv2d(x, weight, stride=2, padding=1, groups=C), weight
  [m·C, 1, 3, 3];
- ``depthwise_pool_input_grad(grad, weight, C, H, W)``: its adjoint in x (of C channels, H×W);
- ``depthwise_pool_weight_grad(grad, x)``: its adjoint in the weight.

Outputs of the first two are channels_last. :func:`applies` is the layer's test.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import native
from .export import fast_paths_off

CL = torch.channels_last
#: output channels per input channel the native kernels compute (1 is as fast in oneDNN)
NATIVE_MULTIPLIERS = (2,)
_conv_backward = torch.ops.aten.convolution_backward


def _builtin_backward(grad: Tensor, x: Tensor, weight: Tensor, mask: list[bool]) -> tuple:
    return _conv_backward(grad, x, weight, None, [2, 2], [1, 1], [1, 1], False, [0, 0],
                          x.shape[1], [mask[0], mask[1], False])


def _out_size(n: int) -> int:
    return (n - 1) // 2 + 1


@torch.library.custom_op("mgiad::depthwise_pool", mutates_args=())
def depthwise_pool(x: Tensor, weight: Tensor) -> Tensor:
    """3×3, stride 2, padding 1, ``x.shape[1]`` groups, no bias; channels_last output."""
    if native.runs_on(x, weight) and weight.shape[0] // x.shape[1] in NATIVE_MULTIPLIERS:
        return native.kernels().pool_forward(x.contiguous(memory_format=CL), weight)
    y = F.conv2d(x, weight, stride=2, padding=1, groups=x.shape[1])
    return y.contiguous(memory_format=CL)


@depthwise_pool.register_fake
def _(x: Tensor, weight: Tensor) -> Tensor:
    torch._check(x.dim() == 4 and weight.dim() == 4 and weight.shape[0] % x.shape[1] == 0)
    n, _, h, w = x.shape
    return x.new_empty((n, weight.shape[0], _out_size(h), _out_size(w))).contiguous(memory_format=CL)


@torch.library.custom_op("mgiad::depthwise_pool_input_grad", mutates_args=())
def depthwise_pool_input_grad(grad: Tensor, weight: Tensor, C: int, H: int, W: int) -> Tensor:
    """The gradient of ``depthwise_pool`` in x ([N, C, H, W]); channels_last."""
    if native.runs_on(grad, weight) and weight.shape[0] // C in NATIVE_MULTIPLIERS:
        return native.kernels().pool_input_grad(grad.contiguous(memory_format=CL), weight, C, H, W)
    x = grad.new_zeros((grad.shape[0], C, H, W))  # only its shape matters
    return _builtin_backward(grad, x, weight, [True, False])[0].contiguous(memory_format=CL)


@depthwise_pool_input_grad.register_fake
def _(grad: Tensor, weight: Tensor, C: int, H: int, W: int) -> Tensor:
    return grad.new_empty((grad.shape[0], C, H, W)).contiguous(memory_format=CL)


@torch.library.custom_op("mgiad::depthwise_pool_weight_grad", mutates_args=())
def depthwise_pool_weight_grad(grad: Tensor, x: Tensor) -> Tensor:
    """The gradient of ``depthwise_pool`` in its weight [m·C, 1, 3, 3], m = grad's channels / C."""
    m = grad.shape[1] // x.shape[1]
    if native.runs_on(grad, x) and m in NATIVE_MULTIPLIERS:
        return native.kernels().pool_weight_grad(grad.contiguous(memory_format=CL),
                                                 x.contiguous(memory_format=CL), m)
    weight = x.new_zeros(grad.shape[1], 1, 3, 3)  # only its shape matters
    return _builtin_backward(grad, x, weight, [False, True])[1].contiguous()


@depthwise_pool_weight_grad.register_fake
def _(grad: Tensor, x: Tensor) -> Tensor:
    return x.new_empty((grad.shape[1], 1, 3, 3))


# Autograd: the three are bilinear and adjoint to each other, as in mgiad.ops.groupconv:
#   F(x, w):  dx = D(gy, w),   dw = G(gy, x)
#   D(y, w):  dy = F(gx, w),   dw = G(y, gx)
#   G(y, x):  dy = F(x, gw),   dx = D(y, gw)


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:2])
    ctx.x_shape = tuple(inputs[0].shape[1:])  # (C, H, W) of the forward's x; only F's backward reads it


def _forward_backward(ctx, gy: Tensor):
    x, w = ctx.saved_tensors
    gx = depthwise_pool_input_grad(gy, w, *ctx.x_shape) if ctx.needs_input_grad[0] else None
    gw = depthwise_pool_weight_grad(gy, x) if ctx.needs_input_grad[1] else None
    return gx, gw


def _input_grad_backward(ctx, gx: Tensor):
    y, w = ctx.saved_tensors
    dy = depthwise_pool(gx, w) if ctx.needs_input_grad[0] else None
    dw = depthwise_pool_weight_grad(y, gx) if ctx.needs_input_grad[1] else None
    return dy, dw, None, None, None


def _weight_grad_backward(ctx, gw: Tensor):
    y, x = ctx.saved_tensors
    dy = depthwise_pool(x, gw) if ctx.needs_input_grad[0] else None
    dx = depthwise_pool_input_grad(y, gw, *x.shape[1:]) if ctx.needs_input_grad[1] else None
    return dy, dx


depthwise_pool.register_autograd(_forward_backward, setup_context=_setup)
depthwise_pool_input_grad.register_autograd(_input_grad_backward, setup_context=_setup)
depthwise_pool_weight_grad.register_autograd(_weight_grad_backward, setup_context=_setup)


def applies(x: Tensor, conv: torch.nn.Conv2d) -> bool:
    """Whether ``conv(x)`` runs the native kernel: a CPU float32 channels_last input, no autocast,
    3×3 depthwise stride 2 padding 1 with two outputs per input channel, no ONNX export,
    ``torch.func`` transform or fx trace running (asked first), and the kernels available."""
    return (not fast_paths_off(x)
            and x.device.type == "cpu" and x.dtype == torch.float32 and conv.weight.dtype == torch.float32
            and x.dim() == 4 and x.is_contiguous(memory_format=CL)
            and conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.bias is None and conv.padding_mode == "zeros"
            and conv.groups == conv.in_channels
            and conv.out_channels // conv.in_channels in NATIVE_MULTIPLIERS
            and not torch.is_autocast_enabled("cpu") and native.active())
