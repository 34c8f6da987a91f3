"""The ResNet baselines are the networks a user gets from stock PyTorch: bit for bit.

The reference here is built from torchvision's own ``BasicBlock`` (``torchvision.models.resnet``)
with PyTorch's modules for the stem, the projection shortcut (ResNet18) and the head, and for
ResNet20's option-A shortcut the parameter-free subsample-and-zero-pad of the usual CIFAR
implementation (He et al. 2016, §4.2). Our models load the same weights; outputs, every
parameter gradient and the running statistics must be *equal* — not close — in training and
evaluation, NCHW and channels_last, so no fast path (such as the fused BatchNorm of the
multigrid networks) can run inside a baseline unnoticed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock

import mgiad


class _OptionA(nn.Module):
    """ResNet20's shortcut: take every other pixel, zero-pad the channels equally on both sides."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.planes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.planes // 4, self.planes // 4), "constant", 0)


class _Stock(nn.Module):
    """CIFAR ResNet from torchvision's BasicBlock; attribute names follow ours so weights load."""

    def __init__(self, widths, blocks, shortcut: str, num_classes: int, maxpool: bool = False) -> None:
        super().__init__()
        stem = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        if maxpool:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        stages, c_in = [], widths[0]
        for s, c in enumerate(widths):
            layers = []
            for i in range(blocks):
                stride = 2 if s > 0 and i == 0 else 1
                down = None
                if stride != 1 or c_in != c:
                    down = (nn.Sequential(nn.Conv2d(c_in, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c))
                            if shortcut == "B" else _OptionA(c))
                layers.append(TorchvisionBasicBlock(c_in, c, stride, down))
                c_in = c
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


CASES = {
    "resnet20": dict(widths=(16, 32, 64), blocks=3, shortcut="A"),
    "resnet18": dict(widths=(64, 128, 256, 512), blocks=2, shortcut="B"),
    "resnet18_maxpool": dict(widths=(64, 128, 256, 512), blocks=2, shortcut="B", maxpool=True),
}


def _pair(name: str, channels_last: bool) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ours = mgiad.create_model(name, num_classes=10)
    stock = _Stock(num_classes=10, **CASES[name])
    state = {k.replace(".shortcut.", ".downsample."): v for k, v in ours.state_dict().items()}
    stock.load_state_dict(state, strict=True)  # same structure: every weight has its place
    if channels_last:
        ours, stock = ours.to(memory_format=torch.channels_last), stock.to(memory_format=torch.channels_last)
    return ours, stock


def _same(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert torch.equal(got, want), f"{what}: largest difference {(got - want).abs().max().item():.3g}"


def _input(channels_last: bool, batch: int = 8) -> torch.Tensor:
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_baseline_is_bitwise_the_stock_network(name: str, channels_last: bool) -> None:
    ours, stock = _pair(name, channels_last)
    x = _input(channels_last)
    target = torch.randn(8, 10, generator=torch.Generator().manual_seed(2))
    for _ in range(2):  # two training steps' forward/backward: running statistics move
        y_ours, y_stock = ours(x), stock(x)
        _same(y_ours, y_stock, "training output")
        (y_ours * target).sum().backward()
        (y_stock * target).sum().backward()
    stock_grads = {k.replace(".downsample.", ".shortcut."): p.grad for k, p in stock.named_parameters()}
    for k, p in ours.named_parameters():
        _same(p.grad, stock_grads[k], f"gradient of {k}")
    stock_buffers = {k.replace(".downsample.", ".shortcut."): b for k, b in stock.named_buffers()}
    for k, b in ours.named_buffers():
        _same(b, stock_buffers[k], f"buffer {k}")
    ours.eval(), stock.eval()
    with torch.no_grad():
        _same(ours(x), stock(x), "evaluation output")


def test_the_max_pool_variant_pools() -> None:
    """``resnet18_maxpool`` (the authors' code keeps torchvision's max-pool): half the resolution
    after the stem, so the last stage is 2×2 at 32×32 input instead of 4×4."""
    x = _input(True, batch=2)
    plain = mgiad.create_model("resnet18").to(memory_format=torch.channels_last).eval()
    pooled = mgiad.create_model("resnet18_maxpool").to(memory_format=torch.channels_last).eval()
    assert plain.forward_features(x).shape[-2:] == (4, 4)
    assert pooled.forward_features(x).shape[-2:] == (2, 2)
