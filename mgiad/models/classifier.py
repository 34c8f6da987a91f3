"""The classifier interface every network of the package shares (timm's, so that the models
drop into timm-based pipelines): features, head, classifier reset, dropout before the head.

A network with a ``head`` of ``(pool, flatten, linear)`` and a ``forward_features(x)`` that
returns the last feature map gets ``num_features``, ``forward_head(x, pre_logits=False)``,
``get_classifier()``, ``reset_classifier(num_classes)``, ``drop_rate`` and a ``pretrained_cfg``
(input size, mean/std, classes: what timm's data pipeline reads).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

#: normalisation constants and input sizes of the data sets the models are trained on
DATA_CFG: dict[str, dict[str, Any]] = {
    "cifar10": {"input_size": (3, 32, 32), "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)},
    "fashionmnist": {"input_size": (1, 28, 28), "mean": (0.2860,), "std": (0.3530,)},
}


class ClassifierMixin:
    """timm's classifier interface for a network with ``stem → ... → head`` (see module doc)."""

    head: nn.Sequential
    num_classes: int
    in_chans: int
    drop_rate: float = 0.0  # dropout on the pooled features before the linear classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        """Channels of the pooled features the classifier reads."""
        return self.head[2].in_features if isinstance(self.head[2], nn.Linear) else self._features

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, dropout (``drop_rate``), then the linear classifier."""
        x = self.head[1](self.head[0](x))
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.head[2](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head[2]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, freshly initialised classifier for ``num_classes`` (0: none, the forward pass
        returns the pooled features)."""
        check_global_pool(global_pool)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        self._features = self.num_features
        linear = self.head[2]
        device, dtype = (linear.weight.device, linear.weight.dtype) if isinstance(linear, nn.Linear) \
            else (None, None)
        self.head[2] = (nn.Linear(self._features, num_classes, device=device, dtype=dtype)
                        if num_classes else nn.Identity())
        self.num_classes = num_classes

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """What timm's data pipeline reads: input size, normalisation, classes, layer names."""
        cfg = getattr(self, "_pretrained_cfg", None)
        if cfg is None:
            data = DATA_CFG["fashionmnist" if self.in_chans == 1 else "cifar10"]
            cfg = {"input_size": (self.in_chans, *data["input_size"][1:]),
                   "mean": data["mean"] if len(data["mean"]) == self.in_chans else (0.5,) * self.in_chans,
                   "std": data["std"] if len(data["std"]) == self.in_chans else (0.5,) * self.in_chans,
                   "num_classes": self.num_classes, "interpolation": "bilinear", "crop_pct": 1.0,
                   "crop_mode": "center", "pool_size": None, "first_conv": "stem.0",
                   "classifier": "head.2", "license": "mit", "architecture": type(self).__name__}
        return cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: dict[str, Any]) -> None:
        self._pretrained_cfg = dict(cfg)

    @property
    def default_cfg(self) -> dict[str, Any]:  # timm's older name
        return self.pretrained_cfg


def check_global_pool(global_pool: str | None) -> None:
    """Only average pooling: the paper's networks end in global average pooling."""
    if global_pool not in (None, "", "avg"):
        raise ValueError(f"global_pool={global_pool!r} is not supported: the networks of the paper "
                         "pool by averaging ('avg')")
