"""Weight and FLOP counts, per resolution level and per kind of operator.

Weights are counted over ``model.parameters()``, which yields every shared tensor once
(torchinfo and ptflops count a module shared between parents once per parent). FLOPs
are counted with forward hooks on every convolution and linear call, so a shared module
applied k times is counted k times, and a grouped convolution costs
``out_elements · (c_in / groups) · k_h · k_w`` MACs; FLOPs = 2·MAC. Only convolutions and
the linear head are counted, the usual convention (BN, ReLU and additions are cheap in
FLOPs, not in memory traffic: see docs/performance.md).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn as nn

#: Operator kinds by the attribute name that owns a parameter (paper symbols).
_KIND_BY_NAME = {
    "A": "A", "B": "B", "Pi": "Π", "R": "R", "Pi_hat": "Π̂", "R_hat": "R̂", "P_hat": "P̂", "P": "P̂",
    "stem": "stem", "head": "head", "shortcut": "shortcut",
}
_LEVEL_RE = re.compile(r"^(levels|stages|transfers)\.(\d+)\.")


@dataclass
class WeightCount:
    """Weights of a model: total, by resolution level (1-based; 0 = stem/head) and by kind."""

    total: int
    by_level: dict[int, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)


def _kind(name: str, module: nn.Module) -> str:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "BN"
    if name.startswith("stem"):
        return "stem"
    if name.startswith("head"):
        return "head"
    parts = [p for p in name.split(".") if not p.isdigit()]
    for p in reversed(parts):
        if p in _KIND_BY_NAME:
            return _KIND_BY_NAME[p]
    return "conv"


def _level(name: str) -> int:
    m = _LEVEL_RE.match(name)
    if not m:
        return 0
    index = int(m.group(2))
    # transfers.i feeds level i+2 (1-based): it belongs to the coarser level it creates.
    return index + 2 if m.group(1) == "transfers" else index + 1


def count_weights(model: nn.Module) -> WeightCount:
    """Count each parameter tensor once, attributing it to the first module that owns it."""
    seen: set[int] = set()
    count = WeightCount(total=0)
    by_level: dict[int, int] = defaultdict(int)
    by_kind: dict[str, int] = defaultdict(int)
    for mod_name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            n = p.numel()
            count.total += n
            by_level[_level(mod_name + ".")] += n
            by_kind[_kind(mod_name, module)] += n
    count.by_level = dict(sorted(by_level.items()))
    count.by_kind = dict(by_kind)
    return count


def count_flops(model: nn.Module, image_size: int = 32, in_chans: int | None = None) -> int:
    """Forward FLOPs (2·MAC of convolutions and linear layers) for one image."""
    in_chans = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    macs = 0

    def conv_hook(mod: nn.Conv2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = mod.kernel_size
        macs += out[0].numel() * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Linear, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal macs
        macs += out[0].numel() * mod.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_chans, image_size, image_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2 * macs
