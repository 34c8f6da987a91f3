"""Building blocks shared by the multigrid networks.

Notation (DESIGN.md §1): ``conv3(c_in, c_out, groups)`` is a bias-free 3×3 convolution;
the paper's "learnable depthwise pooling" Π, R is a stride-2 3×3 convolution with one
group per input channel.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgiad.ops.export import NotScriptable, fast_paths_off
from mgiad.ops.groupconv import applies as _native_applies
from mgiad.ops.groupconv import group_conv3x3, group_conv3x3_add
from mgiad.ops.pairconv import PairInterpolation, PairRestriction
from mgiad.ops.poolconv import applies as _pool_applies
from mgiad.ops.poolconv import depthwise_pool as _depthwise_pool

from .bnrelu import bn_relu, conv_of_bn_relu, hooked
from .recompute import recompute_in_backward


def conv3(c_in: int, c_out: int, groups: int = 1, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias (every conv is followed by BN, paper §IV)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups, bias=False)


class DepthwisePool(NotScriptable, nn.Conv2d):
    """Learnable depthwise pooling (paper §IV "Baselines"): 3×3, stride 2, groups=c_in.

    Used for both Π and R; it holds 9·c_out weights. On the CPU a float32 channels_last input
    with c_out = 2·c_in (the widths double between levels) runs the native kernel
    ``mgiad::depthwise_pool`` (mgiad/ops/poolconv.py; ``MGIAD_NATIVE=0`` turns it off), everything
    else the built-in convolution. Same weights, state dict and hooks as ``nn.Conv2d``.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, stride=2, padding=1, groups=c_in, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _pool_applies(x, self):
            return _depthwise_pool(x, self.weight)
        return self._conv_forward(x, self.weight, None)


def depthwise_pool(c_in: int, c_out: int) -> DepthwisePool:
    """Π or R between levels of c_in and c_out channels (:class:`DepthwisePool`)."""
    return DepthwisePool(c_in, c_out)


class GroupConv3x3(NotScriptable, nn.Conv2d):
    """A bias-free 3×3 convolution c → c, stride 1, padding 1, grouped or dense: B of a smoother.

    On the CPU a float32 channels_last input with 4 or 8 channels per group, outside autocast, runs
    the native kernel ``mgiad::group_conv3x3`` (mgiad/ops/groupconv.py; ``MGIAD_NATIVE=0`` turns
    it off), everything else the built-in convolution. Same weights, state dict and hooks as
    ``nn.Conv2d``; the two differ by float rounding only (tests/test_native.py).
    """

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__(channels, channels, 3, padding=1, groups=groups, bias=False)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if _native_applies(x, self, weight):
            return group_conv3x3(x, weight)
        return self._conv_forward(x, weight, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight)


class DataFeatureMap(GroupConv3x3):
    """A of the data–feature relation A u = f: a bias-free 3×3 convolution (grouped or dense).

    ``A(u, negate=True)`` is −A u, computed with the negated weights (exactly −(A u): negation
    commutes with every product and sum). Residuals f − A u are formed as f + (−A) u, so that
    backward passes the gradient to the convolution as it is instead of negating the whole
    feature map first (one memory pass per residual saved; tests/test_fast_paths.py).
    """

    def forward(self, u: torch.Tensor, negate: bool = False) -> torch.Tensor:
        return self._conv(u, -self.weight if negate else self.weight)

    def residual(self, f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """f − A u = f + (−A) u. Where the native kernel runs, the convolution adds f as it
        stores its output (``mgiad::group_conv3x3_add``: one pass instead of a convolution and a
        sum; the same bits); not when hooks watch this module, so that they see −A u as always."""
        w = -self.weight
        if not hooked(self) and _native_applies(u, self, w) and f.shape == u.shape \
                and f.dtype == torch.float32 and f.is_contiguous(memory_format=torch.channels_last) \
                and not fast_paths_off(f):
            return group_conv3x3_add(u, w, f)
        return f + self(u, negate=True)


class StockStem(nn.Sequential):
    """3×3 conv in_chans→c₁ + BN + ReLU run as PyTorch's own modules, as torchvision's ResNet
    does (and any module appended, e.g. ResNet's max-pool): the baselines' stem, no fast path."""

    def __init__(self, in_chans: int, channels: int) -> None:
        super().__init__(conv3(in_chans, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class Stem(NotScriptable, StockStem):
    """Data lifting: 3×3 conv in_chans→c₁ + BN + ReLU gives the first right-hand side f₁
    (the multigrid networks' stem: σ(BN(·)) fused where it applies)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = bn_relu(self[1], self[0](x))  # σ(BN(conv(x))), fused where it applies
        for module in list(self)[3:]:  # anything appended after the ReLU
            y = module(y)
        return y


class Head(nn.Sequential):
    """Global average pooling of the features u followed by a linear classifier."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, num_classes))


class Smoother(NotScriptable, nn.Module):
    """Smoothing iterations of eq. (3) on one grid with c channels.

    Step i computes ``u ← u + σ(BN(B^i σ(BN(f − A u))))`` with σ = ReLU (BN + ReLU after
    every convolution, paper §IV). ``A`` is shared by all steps (MgNet's defining choice);
    ``B`` is shared too (``share_B=True``, the stationary iteration of Fig. 3(c)) or one
    ``B^i`` per step. The two BatchNorms of each step are never shared.

    Args:
        channels: c, the number of channels of f and u.
        steps: number of smoothing steps that run on this grid (ν, or η_pre + η_post).
        groups: convolution groups of A and B (c // g_s; 1 = fully coupled).
        share_B: one B for all steps, or one per step.
    """

    #: recompute each step's activations in backward (set for a whole model by its
    #: ``memory_efficient`` argument)
    memory_efficient: bool = False

    def __init__(self, channels: int, steps: int, groups: int = 1, share_B: bool = True) -> None:
        super().__init__()
        self.steps = steps
        self.A = DataFeatureMap(channels, groups)
        self.B = nn.ModuleList(GroupConv3x3(channels, groups) for _ in range(1 if share_B else steps))
        self.norms = nn.ModuleList(
            nn.ModuleList([nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)]) for _ in range(steps)
        )

    def residual(self, f: torch.Tensor, u: torch.Tensor | None, Au: torch.Tensor | None = None) -> torch.Tensor:
        """f − A u; ``Au`` is A u already computed for this very u (FAS, see ``step``)."""
        if u is None:  # u = 0 (Alg. 1/3 l.1): A·0 = 0, a convolution saved
            return f
        return f - Au if Au is not None else self.A.residual(f, u)

    def step(self, f: torch.Tensor, u: torch.Tensor | None, i: int, Au: torch.Tensor | None = None) -> torch.Tensor:
        """Step i of eq. (3): u + σ(BN(B^i σ(BN(f − A u)))).

        ``u=None`` is the zero initial guess. ``Au``: A u when the caller has it already —
        after a FAS restriction f = R r + A u, the first step's residual needs the same
        A u again, and reusing the tensor gives the same numbers for one convolution less.
        With ``memory_efficient`` set, training keeps only the step's inputs for backward
        and recomputes the rest there (same numbers, less memory, more time).
        """
        return recompute_in_backward(self, self._step, f, u, i, Au)

    def _step(self, f: torch.Tensor, u: torch.Tensor | None, i: int, Au: torch.Tensor | None) -> torch.Tensor:
        B = self.B[i if len(self.B) > 1 else 0]
        bn_r, bn_e = self.norms[i]
        r = self.residual(f, u, Au)  # f − A u
        # B^i σ(BN(r)); backward recomputes σ(BN(r)) from r instead of keeping it (nn/bnrelu.py)
        Br = conv_of_bn_relu(B, bn_r, r, keep=self.memory_efficient)
        return bn_relu(bn_e, Br, residual=u)  # u + σ(BN(B^i σ(BN(r))))

    def forward(self, f: torch.Tensor, u: torch.Tensor | None, Au: torch.Tensor | None = None) -> torch.Tensor:
        for i in range(self.steps):
            u = self.step(f, u, i, Au)
            Au = None  # u changed
        return u


class ResolutionTransfer(NotScriptable, nn.Module):
    """FAS restriction between resolution levels ℓ → ℓ+1, eqs. (6)–(7).

    ``u_{ℓ+1} = Π u_ℓ`` and ``f_{ℓ+1} = R(f_ℓ − A_ℓ u_ℓ) + A_{ℓ+1} u_{ℓ+1}``, with Π and R
    learnable depthwise pooling. Two variants (docs/paper-notes.md):

    - ``norm=False`` (MgNet, MGiaD on FashionMNIST): ``u ← Π u``, ``f ← R σ(r) + A u``,
      as in Poly-MgNet, the paper authors' MgNet code (σ on the residual, no BN on Π, R;
      He & Xu's own MgNet code uses σ(BN(·)) after dense Π, R: docs/paper-notes.md §5).
    - ``norm=True`` (MGiaD on CIFAR): ``u ← σ(BN(Π u))``, ``f ← σ(BN(R r)) + A u``;
      the two BNs are what the paper's CIFAR weight counts contain (4·c_{ℓ+1} weights).
    """

    #: recompute the transfer in backward (set for a whole model by ``memory_efficient``)
    memory_efficient: bool = False

    def __init__(self, c_in: int, c_out: int, norm: bool) -> None:
        super().__init__()
        self.norm = norm
        self.Pi = depthwise_pool(c_in, c_out)
        self.R = depthwise_pool(c_in, c_out)
        if norm:
            self.bn_Pi = nn.BatchNorm2d(c_out)
            self.bn_R = nn.BatchNorm2d(c_out)

    def forward(
        self, f: torch.Tensor, u: torch.Tensor, A_fine: nn.Module, A_coarse: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (f, u, A u) on level ℓ+1; the coarse smoother's first step reuses A u."""
        return recompute_in_backward(self, self._transfer, f, u, A_fine, A_coarse)

    def _transfer(
        self, f: torch.Tensor, u: torch.Tensor, A_fine: nn.Module, A_coarse: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = A_fine.residual(f, u)  # residual f − A u on level ℓ
        if self.norm:
            u = bn_relu(self.bn_Pi, self.Pi(u))  # eq. (6)
            Au = A_coarse(u)
            f = bn_relu(self.bn_R, self.R(r), residual=Au)  # eq. (7)
        else:
            u = self.Pi(u)  # eq. (6)
            Au = A_coarse(u)
            f = self.R(F.relu(r)) + Au  # eq. (7)
        return f, u, Au


#: the modules that run native kernels where they apply (mgiad/ops/native.py); the ResNet and
#: MGIC baselines hold none of them and never need the kernels
NATIVE_MODULES = (Stem, Smoother, ResolutionTransfer, GroupConv3x3, DepthwisePool, PairRestriction,
                  PairInterpolation)


def uses_native_kernels(model: nn.Module) -> bool:
    """Whether ``model`` holds a module that may run the native kernels."""
    return any(isinstance(m, NATIVE_MODULES) for m in model.modules())
