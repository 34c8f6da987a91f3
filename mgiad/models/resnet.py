"""ResNet baselines of the paper: ResNet18 (CIFAR variant) and ResNet20 (He et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgiad.nn.checks import check_blocks, check_input, check_int, check_widths
from mgiad.nn.layers import Head, StockStem, conv3
from mgiad.nn.recompute import recompute_in_backward

from .classifier import ClassifierMixin


class BasicBlock(nn.Module):
    """ResNet basic block: σ(BN(conv(σ(BN(conv x)))) + shortcut(x)).

    ``shortcut="B"``: 1×1 conv + BN projection when the shape changes (ResNet18);
    ``shortcut="A"``: parameter-free strided subsampling with zero channel padding (ResNet20).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3(c_in, c_out, stride=stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = conv3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.stride, self.pad, self.option_a = stride, 0, False
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            if shortcut == "B":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
                )
            elif c_out < c_in:
                raise ValueError(f"shortcut='A' pads channels with zeros, so widths must not shrink "
                                 f"({c_in} -> {c_out}); use shortcut='B' (a projection)")
            else:  # the subsampling also applies where the width stays (pad 0)
                self.option_a, self.pad = True, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option_a:  # option A: subsample, then zero-pad the new channels (half each side)
            x = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            x = self.shortcut(x)
        return F.relu(out + x)


class StagedNet(ClassifierMixin, nn.Module):
    """stem → stages → head, the skeleton of ResNet and MGIC; subclasses fill ``stages``.

    The baselines run PyTorch's own modules only (stock stem and BasicBlock, no fast path), so
    that every comparison is against the network torchvision or the paper would give.
    ``num_classes=0`` builds no classifier: the forward pass returns the pooled features."""

    def __init__(self, in_chans: int, num_classes: int, widths: Sequence[int], blocks: Sequence[int] | int) -> None:
        super().__init__()
        self.in_chans = check_int("in_chans", in_chans)
        self.num_classes = check_int("num_classes", num_classes, minimum=0)
        self.widths = check_widths(widths)
        self.blocks = check_blocks(blocks, self.widths)
        self.stem = StockStem(in_chans, self.widths[0])
        self.stages = nn.Sequential()
        self.head = Head(self.widths[-1], max(num_classes, 1))
        if num_classes == 0:
            self.reset_classifier(0)
        self._set_feature_info(stem_reduction=1)

    #: activation checkpointing of every block (``set_grad_checkpointing``), in training with
    #: gradients: a block keeps only its input for backward and runs again there
    memory_efficient: bool = False

    def _set_feature_info(self, stem_reduction: int) -> None:
        """timm's feature metadata: the output of every stage (each later one halves the resolution)."""
        self.feature_info = [dict(num_chs=c, reduction=stem_reduction * 2 ** s, module=f"stages.{s}")
                             for s, c in enumerate(self.widths)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans)
        if self.memory_efficient:
            x = self.stem(x)
            for stage in self.stages:
                x = self._run_stage(stage, x)
            return x
        return self.stages(self.stem(x))

    # timm's feature and training interface ---------------------------------------------------

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A stage; with ``memory_efficient`` each of its blocks is checkpointed by
        :func:`mgiad.nn.recompute.recompute_in_backward` (BatchNorm statistics restored after the
        second run, so they equal those of the plain forward). Single layers (a transition's
        conv, BN, ReLU) run plainly."""
        if not self.memory_efficient:
            return stage(x)
        for block in stage:
            x = block(x) if next(block.children(), None) is None else recompute_in_backward(self, block, x)
        return x

    def _level_outputs(self, x: torch.Tensor, stop: int):
        """The outputs of stages 0..``stop``, one at a time: :meth:`forward_features`'s computation
        (for :meth:`ClassifierMixin.forward_intermediates`)."""
        x = self.stem(x)
        for stage in self.stages[: stop + 1]:
            x = self._run_stage(stage, x)
            yield x

    def _keep_levels(self, n: int | None) -> int:
        """Keep the first ``n`` stages (all: ``None``); returns how many there were
        (:meth:`ClassifierMixin.prune_intermediate_layers`)."""
        total = len(self.stages)
        if n is not None:
            self.stages = self.stages[:n]
        return total

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise lr decay): the stem, then each stage (``coarse``)
        or each block of each stage; the classifier last."""
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)")


class ResNet(StagedNet):
    """CIFAR ResNet: 3×3 stem, stages of basic blocks, average pooling, linear head.

    Args:
        widths: channels per stage; the first stage keeps the resolution, each later one halves it.
        blocks: basic blocks per stage.
        shortcut: "B" (projection, ResNet18) or "A" (parameter-free, ResNet20).
        maxpool: add a 3×3/2 max-pool after the stem — the authors' code builds ResNet18 from
            torchvision's with a 3×3 stem but keeps this max-pool (same weights, 4× fewer FLOPs).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] | int = 2,
        shortcut: str = "B",
        maxpool: bool = False,
    ) -> None:
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (parameter-free) or 'B' (projection), got {shortcut!r}")
        super().__init__(in_chans, num_classes, widths, blocks)
        if maxpool:
            self.stem.append(nn.MaxPool2d(3, stride=2, padding=1))
            self._set_feature_info(stem_reduction=2)
        c_in = self.widths[0]
        for s, (c, n) in enumerate(zip(self.widths, self.blocks)):
            stride = 1 if s == 0 else 2
            self.stages.append(nn.Sequential(
                *(BasicBlock(c_in if i == 0 else c, c, stride if i == 0 else 1, shortcut) for i in range(n))
            ))
            c_in = c


#: ResNet18, CIFAR variant: widths [64,128,256,512], 2 blocks each, projection shortcuts.
RESNET18 = {"widths": (64, 128, 256, 512), "blocks": 2, "shortcut": "B"}
#: ResNet20 (He et al. 2016, CIFAR): widths [16,32,64], 3 blocks each, option-A shortcuts.
RESNET20 = {"widths": (16, 32, 64), "blocks": 3, "shortcut": "A"}
