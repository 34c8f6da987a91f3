"""``mgiad::bn_relu``: σ(BN(x)) (+ a residual) as one operator, keeping only x for backward.

Every convolution of the multigrid networks is followed by BatchNorm and ReLU (paper §IV), and
the smoothing steps add the result to u: ``u + σ(BN(B r))``. Unfused, training runs five
passes over the feature map forward (BatchNorm's statistics and apply, ReLU, the sum) and four
backward, and keeps the ReLU output for backward besides BatchNorm's input. The native kernels
(``native/bn_relu.cpp``) run two passes each way and keep x only: backward recomputes the
ReLU mask from x with the formula forward used (docs/performance.md).

Two operators, each computed with built-in operations where no native kernel applies (another
dtype or device, or the kernels unavailable), so that a program that holds them runs anywhere:

- ``bn_relu(x, weight, bias, running_mean, running_var, residual, training, eps)
  -> (y, mean, invstd, var)``: y = max(γ (x − mean)·invstd + β, 0) [+ residual], with the
  batch's statistics in training and the running ones otherwise. It is functional (an operator
  with an autograd formula may not mutate its inputs): :func:`update_running_stats` updates the
  running statistics with mean and var as ``nn.BatchNorm2d`` does;
- ``bn_relu_backward(grad, x, weight, bias, mean, invstd, training) -> (dx, dγ, dβ)``.

The residual's gradient is the output's. Gradients of second order are refused with an error
that names the switch (``MGIAD_FUSED_BN=0``, :mod:`mgiad.nn.bnrelu`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import native

CL = torch.channels_last


def scale_shift(weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor) -> tuple[Tensor, Tensor]:
    """BN(x) = x·scale + shift per channel: scale = γ·invstd, shift = β − mean·scale."""
    scale = weight * invstd
    return scale, bias - mean * scale


def _stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, invstd, biased variance) per channel of an [N, C, H, W] batch."""
    if native.runs_on(x) and x.is_contiguous(memory_format=CL):
        return native.kernels().bn_stats(x, eps)
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    return mean, torch.rsqrt(var + eps), var


def _view(t: Tensor) -> Tensor:
    return t.view(1, -1, 1, 1)


@torch.library.custom_op("mgiad::bn_relu", mutates_args=())
def bn_relu(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
            residual: Tensor | None, training: bool, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """max(BN(x), 0) [+ residual]: (y, mean, invstd, var); channels_last y.

    Training: the batch's statistics, var its biased variance (the caller updates the running
    statistics with it: :func:`update_running_stats`); otherwise the running statistics.
    """
    if training:
        mean, invstd, var = _stats(x, eps)
    else:
        mean, invstd, var = running_mean.clone(), torch.rsqrt(running_var + eps), running_var.clone()
    scale, shift = scale_shift(weight, bias, mean, invstd)
    if native.runs_on(x, residual, weight, bias) and x.is_contiguous(memory_format=CL) and (
            residual is None or residual.is_contiguous(memory_format=CL)):
        return native.kernels().bn_relu_apply(x, scale, shift, residual), mean, invstd, var
    y = torch.relu(x * _view(scale) + _view(shift))
    y = y if residual is None else y + residual
    return y.contiguous(memory_format=CL), mean, invstd, var


@bn_relu.register_fake
def _(x, weight, bias, running_mean, running_var, residual, training, eps):
    torch._check(x.dim() == 4 and weight.shape == (x.shape[1],))
    c = x.new_empty((x.shape[1],))
    return torch.empty_like(x, memory_format=CL), c, torch.empty_like(c), torch.empty_like(c)


def update_running_stats(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor,
                         n: int, momentum: float) -> None:
    """``nn.BatchNorm2d``'s update: r ← (1 − momentum)·r + momentum·batch statistic, with the
    unbiased variance var·n/(n − 1) of the n values per channel for the estimate."""
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        running_var.mul_(1 - momentum).add_(var * (n / max(n - 1, 1)), alpha=momentum)


@torch.library.custom_op("mgiad::bn_relu_backward", mutates_args=())
def bn_relu_backward(grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor,
                     invstd: Tensor, training: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dγ, dβ) of ``bn_relu``'s y; the ReLU mask is recomputed from x."""
    scale, shift = scale_shift(weight, bias, mean, invstd)
    if native.runs_on(grad, x, weight, bias):
        return native.kernels().bn_relu_backward(grad.contiguous(memory_format=CL),
                                                 x.contiguous(memory_format=CL),
                                                 mean, invstd, scale, shift, training)
    g = torch.where(x * _view(scale) + _view(shift) > 0, grad, 0.0)
    xc = x - _view(mean)
    sum_g, sum_gx = g.sum((0, 2, 3)), (g * xc).sum((0, 2, 3))
    dx = g * _view(scale)
    if training:
        n = x.numel() // x.shape[1]
        dx = dx - _view(scale * sum_g / n) - xc * _view(scale * invstd * invstd * sum_gx / n)
    return dx.contiguous(memory_format=CL), sum_gx * invstd, sum_g


@bn_relu_backward.register_fake
def _(grad, x, weight, bias, mean, invstd, training):
    return torch.empty_like(x, memory_format=CL), torch.empty_like(weight), torch.empty_like(bias)


def _setup(ctx, inputs, output) -> None:
    x, weight, bias, _, _, residual, training, _ = inputs
    _, mean, invstd, var = output
    ctx.mark_non_differentiable(mean, invstd, var)
    ctx.save_for_backward(x, weight, bias, mean, invstd)
    ctx.training, ctx.has_residual = training, residual is not None


def _backward(ctx, grad, _grad_mean, _grad_invstd, _grad_var):
    x, weight, bias, mean, invstd = ctx.saved_tensors
    dx, dw, db = bn_relu_backward(grad, x, weight, bias, mean, invstd, ctx.training)
    return dx, dw, db, None, None, grad if ctx.has_residual else None, None, None


bn_relu.register_autograd(_backward, setup_context=_setup)


def _no_second_order(ctx, *grads):
    raise RuntimeError("second-order gradients through the fused BatchNorm + ReLU (mgiad::bn_relu) are "
                       "not implemented; set MGIAD_FUSED_BN=0 to run the built-in BatchNorm and ReLU")


bn_relu_backward.register_autograd(_no_second_order, setup_context=lambda ctx, inputs, output: None)


def apply(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """max(x·scale + shift, 0) with the native kernel: recomputes a ``bn_relu`` output that was
    not kept (:func:`mgiad.nn.bnrelu.conv_of_bn_relu`)."""
    return native.kernels().bn_relu_apply(x, scale, shift, None)
