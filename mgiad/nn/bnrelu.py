"""σ(BN(x)) (+ residual) for the multigrid networks: the fused operator where it applies.

Every convolution of the multigrid networks is followed by BatchNorm and ReLU (paper §IV).
:func:`bn_relu` runs ``mgiad::bn_relu`` (mgiad/ops/bnrelu.py) — two passes over the feature
map each way, only x kept for backward — for CPU float32 channels_last tensors with the native
kernels available, and ``F.relu(bn(x)) (+ residual)`` everywhere else. :func:`conv_of_bn_relu`
also drops σ(BN(x)) from what the following convolution keeps for backward and recomputes it
there from x (one pass), so a smoothing step keeps three feature maps instead of five.

``MGIAD_FUSED_BN=0`` turns both off (as do ``MGIAD_NATIVE=0``, ONNX export,
:func:`mgiad.ops.export.builtin_kernels`, the ``torch.func`` transforms and fx tracing). They
also step aside for a BatchNorm that is not the standard affine one with running statistics
and a momentum, under autocast, and when any forward hook could observe the BatchNorm module
(its own or a global one), so that hooks see what they always see.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules import module as _module

from mgiad.ops import bnrelu as _op
from mgiad.ops import native
from mgiad.ops.export import fast_paths_off

ENV = "MGIAD_FUSED_BN"
CL = torch.channels_last


def enabled() -> bool:
    """``MGIAD_FUSED_BN`` is not 0/off/false/no (read on every call: tests and users switch it)."""
    return os.environ.get(ENV, "").strip().lower() not in {"0", "off", "false", "no"}


def hooked(bn: nn.Module) -> bool:
    """Whether a forward hook could observe ``bn`` (its own or a global one): fast paths that
    change what a module's call computes step aside then."""
    return bool(bn._forward_hooks or bn._forward_pre_hooks or _module._global_forward_hooks
                or _module._global_forward_pre_hooks)


def applies(bn: nn.Module, x: Tensor, residual: Tensor | None = None) -> bool:
    """Whether :func:`bn_relu` runs the fused operator for these arguments (the ``torch.func``
    transforms and fx tracing asked first: :func:`mgiad.ops.export.fast_paths_off`)."""
    return (not fast_paths_off(x, residual)
            and type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats
            and bn.momentum is not None and bn.weight.dtype == torch.float32 and not hooked(bn)
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=CL) and x.numel() > 0
            and (not bn.training or x.numel() // x.shape[1] > 1)  # else BatchNorm's own error
            and (residual is None or (residual.dtype == torch.float32 and residual.shape == x.shape
                                      and residual.is_contiguous(memory_format=CL)))
            and not torch.is_autocast_enabled("cpu") and enabled()
            and native.active())


def _fused(bn: nn.BatchNorm2d, x: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(σ(bn(x)) [+ residual], mean, invstd), the running statistics updated in training."""
    y, mean, invstd, var = torch.ops.mgiad.bn_relu(x, bn.weight, bn.bias, bn.running_mean,
                                                   bn.running_var, residual, bn.training, bn.eps)
    if bn.training:
        _op.update_running_stats(bn.running_mean, bn.running_var, mean, var,
                                 x.numel() // x.shape[1], bn.momentum)
        bn.num_batches_tracked.add_(1)
    return y, mean, invstd


def bn_relu(bn: nn.Module, x: Tensor, residual: Tensor | None = None) -> Tensor:
    """σ(bn(x)), plus ``residual`` when given: ``residual + σ(bn(x))``."""
    if not applies(bn, x, residual):
        y = F.relu(bn(x), inplace=True)  # in place: BatchNorm keeps its input, not its output
        return y if residual is None else residual + y
    return _fused(bn, x, residual)[0]


def conv_of_bn_relu(conv: nn.Module, bn: nn.Module, x: Tensor, *, keep: bool = False) -> Tensor:
    """``conv(σ(bn(x)))``. Training with the fused operator, the convolution keeps x (which
    BatchNorm keeps anyway) instead of σ(bn(x)) for its backward, which recomputes σ(bn(x)) from
    x with the very kernel forward used (the same numbers). ``keep=True`` keeps it as usual (an
    enclosing activation checkpoint recomputes it already); so does ``torch.compile``, whose
    partitioner decides what to keep itself."""
    if not (applies(bn, x) and bn.training and torch.is_grad_enabled()) or keep or \
            torch.compiler.is_compiling():
        return conv(bn_relu(bn, x))
    t, mean, invstd = _fused(bn, x, None)
    scale, shift = (s.detach() for s in _op.scale_shift(bn.weight, bn.bias, mean, invstd))

    def pack(saved: Tensor) -> object:
        return _Recipe(x, scale, shift) if saved is t else saved

    def unpack(packed: object) -> Tensor:
        return packed.recompute() if isinstance(packed, _Recipe) else packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return conv(t)


class _Recipe:
    """How to recompute σ(BN(x)) = max(x·scale + shift, 0) in backward."""

    __slots__ = ("x", "scale", "shift")

    def __init__(self, x: Tensor, scale: Tensor, shift: Tensor) -> None:
        self.x, self.scale, self.shift = x, scale, shift

    def recompute(self) -> Tensor:
        return _op.apply(self.x, self.scale, self.shift)
