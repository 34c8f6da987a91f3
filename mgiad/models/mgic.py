"""MGIC (Eliasof et al. 2020): ResNet with multigrid-in-channels blocks — the other
channel-multigrid baseline of the paper's Figure 7.

Our reading of MGIC (docs/paper-notes.md): a channel V-cycle block restricts the n
channels to n/2 with a grouped 1×1 convolution R (g channels per group), recurses down
to the coarsest channel level (at most ``c_K`` channels), where a dense ResNet basic
block acts, and comes back with a grouped 1×1 prolongation P and the FAS correction
``x ← x + BN(P(x_c' − R x))``, followed by a grouped basic block on the n channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from mgiad.nn.checks import check_divides, check_int
from mgiad.nn.layers import conv3

from .resnet import BasicBlock, StagedNet


class GroupedBasicBlock(nn.Module):
    """Basic block with grouped 3×3 convolutions: σ(x + BN(conv σ(BN(conv x))))."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3(channels, channels, groups), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            conv3(channels, channels, groups), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class MGICBlock(nn.Module):
    """One multigrid-in-channels V-cycle on ``channels`` channels, g channels per group."""

    def __init__(self, channels: int, *, g: int, c_K: int) -> None:
        super().__init__()
        self.coarse: MGICBlock | None = None
        if channels <= c_K or channels % 2:
            self.smooth: nn.Module = BasicBlock(channels, channels, 1, "B")  # dense coarsest
            return
        half = channels // 2
        check_divides("g", g, channels, f"an MGIC channel level with {channels} channels")
        groups = channels // g
        if half % groups:
            raise ValueError(f"g={g} must be >= 2 so that R maps {channels} -> {half} channels per group")
        self.R_hat = nn.Conv2d(channels, half, 1, groups=groups, bias=False)
        self.coarse = MGICBlock(half, g=g, c_K=c_K)
        self.P_hat = nn.Conv2d(half, channels, 1, groups=groups, bias=False)
        self.bn_P_hat = nn.BatchNorm2d(channels)
        self.smooth = GroupedBasicBlock(channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coarse is not None:
            x_c = self.R_hat(x)  # restrict channels
            x = x + self.bn_P_hat(self.P_hat(self.coarse(x_c) - x_c))  # FAS coarse correction
        return self.smooth(x)


class MGIC(StagedNet):
    """ResNet skeleton whose blocks are MGIC channel V-cycles.

    Args:
        widths: channels per stage; a dense 1×1 stride-2 conv + BN enters each later stage.
        blocks: MGIC blocks per stage.
        g: channels per group of the grouped operators.
        c_K: channels at and below which a block is a dense basic block.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 256),
        blocks: Sequence[int] | int = 2,
        g: int = 8,
        c_K: int = 32,
    ) -> None:
        check_int("g", g, minimum=2)
        check_int("c_K", c_K)
        super().__init__(in_chans, num_classes, widths, blocks)
        c_in = self.widths[0]
        for s, (c, n) in enumerate(zip(self.widths, self.blocks)):
            layers: list[nn.Module] = []
            if s > 0:
                layers += [nn.Conv2d(c_in, c, 1, stride=2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            layers += [MGICBlock(c, g=g, c_K=c_K) for _ in range(n)]
            self.stages.append(nn.Sequential(*layers))
            c_in = c
