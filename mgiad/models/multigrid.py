"""MgNet (Algorithm 1 with FAS, eqs. (6)–(7)) and MGiaD (Algorithm 3) on one skeleton.

Both networks run the same resolution V-cycle leg: lift the image to the data f₁, start
from u₁ = 0, smooth on each resolution level and restrict (u, f) to the next one. They
differ only in the smoother of a level: eq. (3) iterations with dense (or grouped) A, B in
MgNet, a SiC channel V-cycle (Algorithm 2) in MGiaD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from mgiad.nn.checks import (
    check_choice,
    check_divides,
    check_input,
    check_int,
    check_widths,
    scaled_widths,
)
from mgiad.nn.layers import Head, ResolutionTransfer, Smoother, Stem
from mgiad.nn.sic import SiC

from .classifier import ClassifierMixin

#: The parts that can recompute their activations in backward (``memory_efficient``).
_RECOMPUTABLE = (Smoother, SiC, ResolutionTransfer)

#: timm's ordinal for "same group as the one before" (timm.models._manipulate.MATCH_PREV_GROUP)
_MATCH_PREV_GROUP = 99999

#: Widths of the paper's resolution levels: ResNet18-size (4) and ResNet20-size (3).
LEVEL_WIDTHS = {4: (64, 128, 256, 256), 3: (16, 32, 64)}


def _widths(levels: int, widths: Sequence[int] | None) -> tuple[int, ...]:
    if widths is not None:
        return check_widths(widths)
    if levels not in LEVEL_WIDTHS:
        raise ValueError(
            f"levels must be 3 or 4 (the paper's networks), got {levels!r}; "
            f"pass widths=(...) for another hierarchy"
        )
    return LEVEL_WIDTHS[levels]


class MultigridNet(ClassifierMixin, nn.Module):
    """The resolution V-cycle shared by MgNet and MGiaD.

    Subclasses fill ``levels`` (one smoother per resolution level ℓ, each exposing the
    data-to-feature map ``A`` of its finest grid) and ``transfers`` (ℓ → ℓ+1). The classifier
    (pooling, ``drop_rate``, linear; ``num_classes=0``: none) is :class:`ClassifierMixin`'s.
    """

    levels: nn.ModuleList
    transfers: nn.ModuleList

    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.in_chans = check_int("in_chans", in_chans)
        self.num_classes = check_int("num_classes", num_classes, minimum=0)
        self.widths = widths
        self.stem = Stem(in_chans, widths[0])
        self.head = Head(widths[-1], max(num_classes, 1))
        if num_classes == 0:
            self.reset_classifier(0)
        #: timm's feature metadata: u_ℓ of every resolution level ℓ (the depthwise pooling Π
        #: halves the resolution between levels; the stem keeps it)
        self.feature_info = [dict(num_chs=c, reduction=2 ** l, module=f"levels.{l}")
                             for l, c in enumerate(widths)]

    @property
    def memory_efficient(self) -> bool:
        """Recompute smoothing steps in backward instead of keeping their activations.

        Same outputs, gradients and BN statistics (tests/test_fast_paths.py); MGiaD c_K=16
        trains in 0.4× the memory for 1.5× the time (README, Performance).
        """
        return all(m.memory_efficient for m in self.modules() if isinstance(m, _RECOMPUTABLE))

    @memory_efficient.setter
    def memory_efficient(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"memory_efficient must be True or False, got {value!r}")
        for m in self.modules():
            if isinstance(m, _RECOMPUTABLE):
                m.memory_efficient = value

    INITS = ("torch", "kaiming_fan_out")

    def init_weights(self, init: str) -> None:
        """``"torch"``: PyTorch's default initialisation (as the authors' MgNet code);
        ``"kaiming_fan_out"``: Kaiming normal, fan_out, for every convolution, as MGIC."""
        self.init = check_choice("init", init, self.INITS)
        if init == "kaiming_fan_out":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The features u_L of the last level; ``forward`` = ``forward_head(forward_features(x))``."""
        check_input(x, self.in_chans)
        f = self.stem(x)  # data f₁
        u, Au = None, None  # Alg. 1/3 l.1: u₁ = 0 (None: A u₁ = 0 needs no convolution)
        for l, smoother in enumerate(self.levels):
            if l > 0:  # Alg. 3 l.4–5: u_{ℓ+1} = Π u_ℓ, f_{ℓ+1} = R(f_ℓ − A_ℓ u_ℓ) + A_{ℓ+1} u_{ℓ+1}
                f, u, Au = self.transfers[l - 1](f, u, self.levels[l - 1].A, smoother.A)
            u = smoother(f, u, Au)  # Alg. 1 l.3–4 / Alg. 3 l.3: smoothing (SiC in MGiaD)
        return u

    # timm's feature and training interface ---------------------------------------------------

    def _level_outputs(self, x: torch.Tensor, stop: int):
        """The features u_ℓ of levels 0..``stop``, one at a time: :meth:`forward_features`'s
        computation (for :meth:`ClassifierMixin.forward_intermediates`)."""
        f = self.stem(x)
        u, Au = None, None
        for l, smoother in enumerate(self.levels[: stop + 1]):
            if l > 0:
                f, u, Au = self.transfers[l - 1](f, u, self.levels[l - 1].A, smoother.A)
            u = smoother(f, u, Au)
            yield u

    def _keep_levels(self, n: int | None) -> int:
        """Keep the first ``n`` resolution levels and their transfers (all: ``None``); returns
        how many there were (:meth:`ClassifierMixin.prune_intermediate_layers`)."""
        total = len(self.levels)
        if n is not None:
            self.levels, self.transfers = self.levels[:n], self.transfers[: n - 1]
        return total

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise lr decay): the stem, then per resolution level ℓ its
        smoother and the transfer ℓ → ℓ+1 (``coarse``: one group; else two). Finer groups would
        split weights the smoothing steps share (A, B)."""
        return dict(stem=r"^stem", blocks=[
            (r"^levels\.(\d+)", None if coarse else (0,)),
            (r"^transfers\.(\d+)", (_MATCH_PREV_GROUP,) if coarse else (1,)),
        ])


class MgNet(MultigridNet):
    """MgNet (He & Xu 2019): Algorithm 1 with the FAS transfer of eqs. (6)–(7).

    Symbols: A_ℓ, B_ℓ^i are 3×3 convolutions of level ℓ (``levels[ℓ].A``, ``.B``), shared
    over the ν smoothing steps of the level (A always; B with ``share_B``: MgNet_{A,B});
    Π, R learnable depthwise pooling (``transfers``).

    Args:
        levels: 3 ([16, 32, 64], ResNet20-size) or 4 ([64, 128, 256, 256], ResNet18-size).
        nu: smoothing steps ν per level (paper: 2 for 4 levels, 3 for 3 levels).
        share_B: share B over the steps (MgNet_{A,B}) or not (MgNet_A).
        g_s: channels per group of A and B (Table VI); None = fully coupled.
        widths: explicit channels per level (overrides ``levels``).
        memory_efficient: recompute smoothing steps in backward (less memory, more time).
        init: ``"torch"`` (PyTorch's defaults) or ``"kaiming_fan_out"``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        levels: int = 4,
        nu: int | None = None,
        share_B: bool = True,
        g_s: int | None = None,
        widths: Sequence[int] | None = None,
        memory_efficient: bool = False,
        init: str = "torch",
    ) -> None:
        widths = _widths(levels, widths)
        super().__init__(in_chans, num_classes, widths)
        nu = (2 if len(widths) >= 4 else 3) if nu is None else nu
        self.nu = check_int("nu", nu)
        groups = []
        for l, c in enumerate(widths):
            if g_s is None:
                groups.append(1)
            else:
                check_divides("g_s", check_int("g_s", g_s), c, f"resolution level {l + 1}")
                groups.append(c // g_s)
        self.levels = nn.ModuleList(
            Smoother(c, self.nu, groups=g, share_B=share_B) for c, g in zip(widths, groups)
        )
        self.transfers = nn.ModuleList(
            ResolutionTransfer(c, c_next, norm=False) for c, c_next in zip(widths, widths[1:])
        )
        self.memory_efficient = memory_efficient
        self.init_weights(init)


class MGiaD(MultigridNet):
    """MGiaD: multigrid in all dimensions (Algorithm 3).

    Each resolution level ℓ runs one SiC channel V-cycle (Algorithm 2) — also on the last
    level L, which Algorithm 3 leaves implicit; between levels the FAS transfer of eqs.
    (6)–(7) uses Â_{ℓ,1}, the finest in-channel A of each level.

    Args:
        c_K: channels of the fully coupled coarsest in-channel level (minimum).
        g_s: channels per group of the grouped Â, B̂ (g_s = c: fully coupled).
        lam: channel scaling λ of every resolution width.
        eta_pre, eta_post: pre- and post-smoothing steps η on every in-channel level.
        levels: 3 ([16, 32, 64]·λ) or 4 ([64, 128, 256, 256]·λ) resolution levels.
        transfer_norm: BN + ReLU after Π and R (the CIFAR variant); False is the
            FashionMNIST variant whose weight counts the paper's Tables III–IV match.
        widths: explicit channels per level before scaling (overrides ``levels``).
        memory_efficient: recompute smoothing steps in backward (less memory, more time).
        coarse_correction: ``"literal"`` (u + P̂ û_c, Alg. 2) or ``"fas"`` (u + P̂(û_c − u_c⁰)).
        channel_norm: BN after Π̂ and R̂ (``"restriction"``) or after P̂ (``"prolongation"``).
        init: ``"torch"`` (PyTorch's defaults) or ``"kaiming_fan_out"`` (as MGIC).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        c_K: int = 64,
        g_s: int = 4,
        lam: float = 1,
        eta_pre: int = 1,
        eta_post: int = 1,
        levels: int = 4,
        transfer_norm: bool = True,
        widths: Sequence[int] | None = None,
        memory_efficient: bool = False,
        coarse_correction: str = "literal",
        channel_norm: str = "restriction",
        init: str = "torch",
    ) -> None:
        widths = scaled_widths(_widths(levels, widths), lam)
        super().__init__(in_chans, num_classes, widths)
        self.c_K, self.g_s, self.lam = check_int("c_K", c_K), check_int("g_s", g_s), lam
        self.eta_pre = check_int("eta_pre", eta_pre, minimum=0)
        self.eta_post = check_int("eta_post", eta_post, minimum=0)
        if eta_pre + eta_post < 1:
            raise ValueError(
                f"eta_pre + eta_post must be >= 1 (got eta_pre={eta_pre}, eta_post={eta_post}): "
                "without a smoothing step the features never change"
            )
        self.levels = nn.ModuleList(
            SiC(c, c_K=c_K, g_s=g_s, eta_pre=eta_pre, eta_post=eta_post,
                coarse_correction=coarse_correction, channel_norm=channel_norm) for c in widths
        )
        self.transfers = nn.ModuleList(
            ResolutionTransfer(c, c_next, norm=transfer_norm) for c, c_next in zip(widths, widths[1:])
        )
        self.memory_efficient = memory_efficient
        self.init_weights(init)

    def channel_hierarchies(self) -> list[list[int]]:
        """The in-channel levels [c_{ℓ,1}, …, c_{ℓ,K}] of every resolution level ℓ."""
        return [sic.hierarchy() for sic in self.levels]
