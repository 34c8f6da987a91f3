"""SiC — multigrid smoothing in channels (paper Algorithm 2) as a recursive module."""

from __future__ import annotations

import torch
import torch.nn as nn

from mgiad.ops.export import NotScriptable
from mgiad.ops.pairconv import PairInterpolation, PairRestriction

from .bnrelu import bn_relu
from .checks import check_choice, check_divides, check_int
from .layers import Smoother
from .recompute import recompute_in_backward


def channel_hierarchy(channels: int, c_K: int) -> list[int]:
    """In-channel levels ``[c, c/2, c/4, …]`` of a grid with ``channels`` channels.

    Halve while the half is still >= c_K, so the coarsest level holds between c_K and
    2·c_K − 1 channels: exactly c_K when c = 2^k·c_K (λ = 1), 96 for c = 192, c_K = 64 (λ = 3).
    Each halving must be exact, so that R̂, Π̂ (c → c/2) and P̂ pair channels one to two.
    """
    c_K = check_int("c_K", c_K)
    if c_K > channels:
        raise ValueError(
            f"c_K={c_K} is larger than a resolution level's {channels} channels; "
            f"c_K must be <= the smallest width ({channels})"
        )
    levels = [channels]
    while levels[-1] // 2 >= c_K:
        if levels[-1] % 2:
            raise ValueError(
                f"c_K={c_K} is not reachable by halving {channels} channels: "
                f"{' -> '.join(map(str, levels))} cannot be halved exactly; choose c_K so that "
                f"{channels} / c_K is a power of two (or widths divisible by 2^k)"
            )
        levels.append(levels[-1] // 2)
    return levels


class SiC(NotScriptable, nn.Module):
    """Algorithm 2 on in-channel level κ with c_κ channels, recursing to level K.

    Symbols: Â_κ, B̂_κ (``smoother.A``, ``smoother.B``) are grouped 3×3 convolutions with
    g_s channels per group (dense at the coarsest level K), shared by all η_pre + η_post
    smoothing steps of the level. Between κ and κ+1: the FAS restriction Π̂ and the residual
    restriction R̂ (1×1, c_κ → c_κ/2, two channels per group) and the interpolation P̂
    (1×1, c_κ/2 → c_κ, one-to-two). ``coarse`` is the SiC of level κ+1.

    Args:
        channels: c_κ.
        c_K: minimum channels of the coarsest (fully coupled) level.
        g_s: channels per group of Â, B̂ below the coarsest level.
        eta_pre, eta_post: pre- and post-smoothing steps on every level.
        coarse_correction: ``"literal"``: u + P̂ û_c, Algorithm 2 l.7 as printed (default);
            ``"fas"``: u + P̂(û_c − u_c⁰), the FAS difference with the coarse initial iterate
            u_c⁰, as MGIC corrects (docs/paper-notes.md §5).
        channel_norm: where the channel transfers normalise (the weight counts cannot tell,
            both hold 2·c_κ BN weights): ``"restriction"``: u_c = σ(BN(Π̂ u)),
            f_c = σ(BN(R̂ r)) + Â u_c (default); ``"prolongation"``: u_c = Π̂ u,
            f_c = R̂ r + Â u_c and the correction is BN(P̂ ·), as MGIC normalises.
    """

    COARSE_CORRECTIONS = ("literal", "fas")
    CHANNEL_NORMS = ("restriction", "prolongation")

    #: recompute the restriction in backward (set for a whole model by ``memory_efficient``)
    memory_efficient: bool = False

    def __init__(self, channels: int, *, c_K: int, g_s: int, eta_pre: int = 1, eta_post: int = 1,
                 coarse_correction: str = "literal", channel_norm: str = "restriction") -> None:
        super().__init__()
        hierarchy = channel_hierarchy(channels, c_K)
        self.eta_pre, self.eta_post = eta_pre, eta_post
        self.coarse_correction = check_choice("coarse_correction", coarse_correction, self.COARSE_CORRECTIONS)
        self.channel_norm = check_choice("channel_norm", channel_norm, self.CHANNEL_NORMS)
        coarsest = len(hierarchy) == 1
        if not coarsest:
            check_divides("g_s", g_s, channels, f"in-channel level with {channels} channels")
        groups = 1 if coarsest else channels // g_s
        self.smoother = Smoother(channels, eta_pre + eta_post, groups)
        self.coarse: SiC | None = None
        if not coarsest:
            half = channels // 2
            self.Pi_hat = PairRestriction(channels)
            self.R_hat = PairRestriction(channels)
            if self.channel_norm == "restriction":
                self.bn_Pi = nn.BatchNorm2d(half)
                self.bn_R = nn.BatchNorm2d(half)
            self.coarse = SiC(half, c_K=c_K, g_s=g_s, eta_pre=eta_pre, eta_post=eta_post,
                              coarse_correction=coarse_correction, channel_norm=channel_norm)
            self.P_hat = PairInterpolation(channels)
            if self.channel_norm == "prolongation":
                self.bn_P = nn.BatchNorm2d(channels)

    @property
    def A(self) -> nn.Module:
        """Â_κ, the data-to-feature map of this in-channel level."""
        return self.smoother.A

    def hierarchy(self) -> list[int]:
        """Channels of this level and every coarser one."""
        return [self.smoother.A.in_channels] + (self.coarse.hierarchy() if self.coarse else [])

    def restrict(self, f: torch.Tensor, u: torch.Tensor, Au: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """FAS restriction to level κ+1: (u_c, f_c, Â_{κ+1} u_c); the coarse SiC reuses the last."""
        return recompute_in_backward(self, self._restrict, f, u, Au)

    def _restrict(self, f: torch.Tensor, u: torch.Tensor, Au: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        r = self.smoother.residual(f, u, Au)  # f − Â_κ u
        if self.channel_norm == "prolongation":  # normalised in the correction instead
            u_c = self.Pi_hat(u)
            Au_c = self.coarse.A(u_c)
            return u_c, self.R_hat(r) + Au_c, Au_c
        u_c = bn_relu(self.bn_Pi, self.Pi_hat(u))  # Alg. 2 l.4: u_{κ+1} = Π̂ u
        Au_c = self.coarse.A(u_c)
        f_c = bn_relu(self.bn_R, self.R_hat(r), residual=Au_c)  # Alg. 2 l.5
        return u_c, f_c, Au_c

    def correction(self, u_c: torch.Tensor, u_c0: torch.Tensor) -> torch.Tensor:
        """P̂ û_c (Alg. 2 l.7), or P̂(û_c − u_c⁰) with ``coarse_correction="fas"``; BN(·) of it
        with ``channel_norm="prolongation"``."""
        e = self.P_hat(u_c - u_c0 if self.coarse_correction == "fas" else u_c)
        return self.bn_P(e) if self.channel_norm == "prolongation" else e

    def forward(self, f: torch.Tensor, u: torch.Tensor | None, Au: torch.Tensor | None = None) -> torch.Tensor:
        """Algorithm 2. ``u=None`` is u = 0; ``Au`` is Â u when the caller computed it already
        (the FAS restriction did), so that no step computes the same Â u twice."""
        for i in range(self.eta_pre):  # Alg. 2 l.1
            u, Au = self.smoother.step(f, u, i, Au), None  # Alg. 2 l.2: pre-smoothing
        if self.coarse is not None:  # Alg. 2 l.3: κ ≠ K
            if u is None:  # η_pre = 0 on the first grid: Π̂ needs the zeros themselves
                u = torch.zeros_like(f)
            u_c0, f_c, Au_c = self.restrict(f, u, Au)  # Alg. 2 l.4–5
            u_c = self.coarse(f_c, u_c0, Au_c)  # Alg. 2 l.6
            u, Au = u + self.correction(u_c, u_c0), None  # Alg. 2 l.7
        for i in range(self.eta_pre, self.eta_pre + self.eta_post):  # Alg. 2 l.8
            u, Au = self.smoother.step(f, u, i, Au), None  # Alg. 2 l.9: post-smoothing
        return u
