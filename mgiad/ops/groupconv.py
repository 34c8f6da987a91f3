"""``mgiad::group_conv3x3``: the grouped 3×3 convolution of Â, B̂ (and MgNet's grouped A, B)
as one operator with the native kernels of :mod:`mgiad.ops.native` behind it.

oneDNN runs grouped 3×3 convolutions with 4 or 8 channels per group several times less efficiently
per FLOP than dense ones (docs/performance.md); ``native/group_conv.cpp`` computes them with
explicit SIMD. The operator is registered with ``torch.library.custom_op`` (fake tensor and
autograd formulas included; its gradients are operators of the same family, so gradients of
any order exist), so ``torch.compile`` and ``torch.export`` see one operator.

Four operators, each the built-in convolution where no native kernel applies (another dtype or
device, or the kernels unavailable), so a program that holds them runs anywhere:

- ``group_conv3x3(x, weight)``: y = conv2d(x, weight, padding=1, groups=C/g), g = weight.shape[1];
- ``group_conv3x3_input_grad(grad, weight)``: its adjoint in x;
- ``group_conv3x3_weight_grad(grad, x, g)``: its adjoint in weight;
- ``group_conv3x3_add(x, weight, addend)``: addend + the first, in one pass (the residual
  f − A u of a smoothing step, weight −A).

Outputs of the first two are channels_last, as the native kernels write them.
:func:`applies` is the test the model's modules make before calling it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import native
from .export import fast_paths_off

CL = torch.channels_last
#: channels per group the native kernels compute
NATIVE_GROUP_SIZES = (4, 8)
_conv_backward = torch.ops.aten.convolution_backward


def _native_ok(*tensors: Tensor, g: int) -> bool:
    return g in NATIVE_GROUP_SIZES and native.runs_on(*tensors)


def _builtin_backward(grad: Tensor, x: Tensor, weight: Tensor, mask: list[bool]) -> tuple:
    return _conv_backward(grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
                          x.shape[1] // weight.shape[1], [mask[0], mask[1], False])


@torch.library.custom_op("mgiad::group_conv3x3", mutates_args=())
def group_conv3x3(x: Tensor, weight: Tensor) -> Tensor:
    """3×3, stride 1, padding 1, ``C / weight.shape[1]`` groups, no bias; channels_last output."""
    g = weight.shape[1]
    if _native_ok(x, weight, g=g):
        return native.kernels().forward(x, weight)
    y = F.conv2d(x, weight, padding=1, groups=x.shape[1] // g)
    return y.contiguous(memory_format=CL)


@group_conv3x3.register_fake
def _(x: Tensor, weight: Tensor) -> Tensor:
    torch._check(x.dim() == 4 and weight.dim() == 4 and x.shape[1] == weight.shape[0])
    return torch.empty_like(x, memory_format=CL)


@torch.library.custom_op("mgiad::group_conv3x3_input_grad", mutates_args=())
def group_conv3x3_input_grad(grad: Tensor, weight: Tensor) -> Tensor:
    """The gradient of ``group_conv3x3`` in x; channels_last."""
    g = weight.shape[1]
    if _native_ok(grad, weight, g=g):
        return native.kernels().input_grad(grad, weight)
    gx = _builtin_backward(grad, grad, weight, [True, False])[0]
    return gx.contiguous(memory_format=CL)


@group_conv3x3_input_grad.register_fake
def _(grad: Tensor, weight: Tensor) -> Tensor:
    return torch.empty_like(grad, memory_format=CL)


@torch.library.custom_op("mgiad::group_conv3x3_weight_grad", mutates_args=())
def group_conv3x3_weight_grad(grad: Tensor, x: Tensor, g: int) -> Tensor:
    """The gradient of ``group_conv3x3`` in its weight [C, g, 3, 3]."""
    if _native_ok(grad, x, g=g):
        return native.kernels().weight_grad(grad, x, g)
    weight = x.new_zeros(x.shape[1], g, 3, 3)  # only its shape matters
    return _builtin_backward(grad, x, weight, [False, True])[1].contiguous()


@group_conv3x3_weight_grad.register_fake
def _(grad: Tensor, x: Tensor, g: int) -> Tensor:
    return x.new_empty((x.shape[1], g, 3, 3))


# Autograd. With D the input gradient (adjoint of the forward F in x) and G the weight gradient
# (adjoint of F in the weight), <gy, F(x, w)> = <D(gy, w), x> = <G(gy, x), w>, so each of the
# three bilinear operators differentiates into the others:
#   F(x, w):  dx = D(gy, w),         dw = G(gy, x)
#   D(y, w):  dy = F(gx, w),         dw = G(y, gx)
#   G(y, x):  dy = F(x, gw),         dx = D(y, gw)


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:2])
    ctx.g = inputs[2] if len(inputs) > 2 else inputs[1].shape[1]


def _forward_backward(ctx, gy: Tensor):
    x, w = ctx.saved_tensors
    gx = group_conv3x3_input_grad(gy, w) if ctx.needs_input_grad[0] else None
    gw = group_conv3x3_weight_grad(gy, x, ctx.g) if ctx.needs_input_grad[1] else None
    return gx, gw


def _input_grad_backward(ctx, gx: Tensor):
    y, w = ctx.saved_tensors
    dy = group_conv3x3(gx, w) if ctx.needs_input_grad[0] else None
    dw = group_conv3x3_weight_grad(y, gx, ctx.g) if ctx.needs_input_grad[1] else None
    return dy, dw


def _weight_grad_backward(ctx, gw: Tensor):
    y, x = ctx.saved_tensors
    dy = group_conv3x3(x, gw) if ctx.needs_input_grad[0] else None
    dx = group_conv3x3_input_grad(y, gw) if ctx.needs_input_grad[1] else None
    return dy, dx, None


@torch.library.custom_op("mgiad::group_conv3x3_add", mutates_args=())
def group_conv3x3_add(x: Tensor, weight: Tensor, addend: Tensor) -> Tensor:
    """addend + group_conv3x3(x, weight) in one pass (the native kernel adds as it stores; the
    same bits as the separate sum): a smoothing step's residual f − A u with weight −A."""
    g = weight.shape[1]
    if _native_ok(x, weight, addend, g=g) and addend.is_contiguous(memory_format=CL) \
            and addend.shape == x.shape:
        return native.kernels().forward_add(x, weight, addend)
    y = addend + F.conv2d(x, weight, padding=1, groups=x.shape[1] // g)
    return y.contiguous(memory_format=CL)


@group_conv3x3_add.register_fake
def _(x: Tensor, weight: Tensor, addend: Tensor) -> Tensor:
    torch._check(x.dim() == 4 and weight.dim() == 4 and x.shape[1] == weight.shape[0])
    torch._check(addend.shape == x.shape)
    return torch.empty_like(x, memory_format=CL)


def _add_backward(ctx, gy: Tensor):
    """The sum passes gy to the addend as it is; the convolution's part as group_conv3x3's."""
    gx, gw = _forward_backward(ctx, gy)
    return gx, gw, gy if ctx.needs_input_grad[2] else None


group_conv3x3.register_autograd(_forward_backward, setup_context=_setup)
group_conv3x3_add.register_autograd(  # saves x and the weight, as group_conv3x3 does
    _add_backward, setup_context=lambda ctx, inputs, output: _setup(ctx, inputs[:2], output))
group_conv3x3_input_grad.register_autograd(_input_grad_backward, setup_context=_setup)
group_conv3x3_weight_grad.register_autograd(_weight_grad_backward, setup_context=_setup)


def applies(x: Tensor, conv: torch.nn.Conv2d, weight: Tensor) -> bool:
    """Whether ``conv(x)`` (with ``weight``) runs the native kernel: a CPU float32 channels_last
    input, no autocast, 3×3, stride 1, padding 1, no dilation or bias, groups of a size the
    kernels compute, no ONNX export, ``torch.func`` transform or fx trace running
    (:func:`mgiad.ops.export.fast_paths_off`, asked first), and the kernels available (decided,
    and built, on the first such call)."""
    return (not fast_paths_off(x, weight)
            and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.dim() == 4 and x.is_contiguous(memory_format=CL)
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.bias is None and conv.padding_mode == "zeros"
            and conv.in_channels == conv.out_channels and conv.groups > 1
            and conv.in_channels // conv.groups in NATIVE_GROUP_SIZES
            and not torch.is_autocast_enabled("cpu")
            and native.active())
