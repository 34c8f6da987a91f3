"""The classifier interface every network of the package shares (timm's, so that the models
drop into timm-based pipelines): features, head, classifier reset, dropout before the head.

A network with a ``head`` of ``(pool, flatten, linear)`` and a ``forward_features(x)`` that
returns the last feature map gets ``num_features``, ``forward_head(x, pre_logits=False)``,
``get_classifier()``, ``reset_classifier(num_classes)``, ``drop_rate`` and a ``pretrained_cfg``
(input size, mean/std, classes: what timm's data pipeline reads). Each family adds timm's
feature interface: ``feature_info`` (one entry per resolution level), ``forward_intermediates``,
``prune_intermediate_layers``, ``set_grad_checkpointing``, ``group_matcher`` and
``no_weight_decay`` (mgiad/models/multigrid.py, mgiad/models/resnet.py; docs/timm.md). Every
network records the config that rebuilds it and saves, loads and uploads itself as Hugging Face
models do (mgiad/models/hub.py; docs/hub.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgiad.nn.checks import check_input
from mgiad.ops.export import NotScriptable

from .hub import HubMixin

#: normalisation constants and input sizes of the data sets the models are trained on
DATA_CFG: dict[str, dict[str, Any]] = {
    "cifar10": {"input_size": (3, 32, 32), "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)},
    "fashionmnist": {"input_size": (1, 28, 28), "mean": (0.2860,), "std": (0.3530,)},
}


class ClassifierMixin(HubMixin, NotScriptable):
    """timm's classifier interface for a network with ``stem → ... → head`` (see module doc),
    and Hugging Face's ``save_pretrained``/``from_pretrained``/``push_to_hub`` (:class:`HubMixin`).

    ``torch.jit.script(model)`` is refused with the reason and the alternatives
    (:class:`mgiad.ops.export.NotScriptable`)."""

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The outputs of the resolution levels ``indices`` (timm's rule: None = all, n = the last
        n, a list = those), with the last level's output unless ``intermediates_only``; the
        computation of ``forward_features`` (``stop_early``: stop after the last level asked for;
        ``norm`` is accepted for timm and changes nothing: there is no final norm)."""
        check_output_fmt(output_fmt)
        total = self._keep_levels(None)
        take, last = feature_take_indices(total, indices)
        check_input(x, self.in_chans)
        intermediates = []
        for level, out in enumerate(self._level_outputs(x, last if stop_early else total - 1)):
            if level in take:
                intermediates.append(out)
        return intermediates if intermediates_only else (out, intermediates)

    def _level_outputs(self, x: torch.Tensor, stop: int) -> Iterator[torch.Tensor]:  # pragma: no cover
        """Each level's output for levels 0..``stop`` (after the stem), one at a time."""
        raise NotImplementedError

    def prune_intermediate_layers(self, indices: int | list[int] | tuple[int, ...] = 1,
                                  prune_norm: bool = False, prune_head: bool = True) -> list[int]:
        """Drop the resolution levels after the last of ``indices`` (and the classifier, as timm
        does); returns the absolute indices (timm's feature extractors call it)."""
        total = self._keep_levels(None)
        take, last = feature_take_indices(total, indices)
        if last < total - 1:
            self._keep_levels(last + 1)
            prune_head = True  # the classifier reads the last level, now gone
        if prune_head:
            self.reset_classifier(0)
            self._features = self.feature_info[last]["num_chs"]
        return take

    def _keep_levels(self, n: int | None) -> int:  # pragma: no cover - abstract
        """Keep the first ``n`` resolution levels (all: ``None``); returns how many there were."""
        raise NotImplementedError

    @property
    def grad_checkpointing(self) -> bool:
        """timm's name of ``memory_efficient`` (activation checkpointing)."""
        return self.memory_efficient

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch for activation checkpointing, ``memory_efficient``: the multigrid
        networks recompute each smoothing step, channel restriction and resolution transfer in
        backward, the staged networks each block; same outputs, gradients and BatchNorm
        statistics (in training with gradients)."""
        self.memory_efficient = bool(enable)

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
        """What timm's data pipeline reads: input size, normalisation, classes, layer names.

        Set by :func:`mgiad.create_model` (for published weights: the cfg of the weights, as in
        timm); a model built directly describes itself."""
        cfg = getattr(self, "_pretrained_cfg", None)
        return data_cfg(self.in_chans, self.num_classes, type(self).__name__) if cfg is None else cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: dict[str, Any]) -> None:
        self._pretrained_cfg = dict(cfg)

    @property
    def default_cfg(self) -> dict[str, Any]:  # timm's older name
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: dict[str, Any]) -> None:  # timm's builders assign both names
        self.pretrained_cfg = cfg

    # timm's training interface ---------------------------------------------------------------

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Parameters timm's optimizer factory should exempt from weight decay beyond its own rule
        (biases and norms, ``filter_bias_and_bn``): none, the networks have no embeddings or
        tokens (the paper's recipe decays every weight: SGD, 1e-4)."""
        return set()


def data_cfg(in_chans: int, num_classes: int, architecture: str) -> dict[str, Any]:
    """The cfg of a model without published weights: the data set its input channels suggest
    (1: FashionMNIST, 3: CIFAR-10; others: mean/std 0.5)."""
    data = DATA_CFG["fashionmnist" if in_chans == 1 else "cifar10"]
    return {"input_size": (in_chans, *data["input_size"][1:]),
            "mean": data["mean"] if len(data["mean"]) == in_chans else (0.5,) * in_chans,
            "std": data["std"] if len(data["std"]) == in_chans else (0.5,) * in_chans,
            "num_classes": num_classes, "interpolation": "bilinear", "crop_pct": 1.0,
            "crop_mode": "center", "pool_size": None, "first_conv": "stem.0",
            "classifier": "head.2", "license": "mit", "architecture": architecture}


def feature_take_indices(num_features: int, indices: int | list[int] | tuple[int, ...] | None = None
                         ) -> tuple[list[int], int]:
    """timm's rule for ``forward_intermediates(indices=...)``: None = all, an int n = the last n,
    a sequence = those (negative from the end). Returns the absolute indices and the largest."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"last-n ({indices}) is out of range (1 to {num_features})")
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            idx = num_features + i if i < 0 else i
            if not 0 <= idx < num_features:
                raise ValueError(f"feature index {i} is out of range (0 to {num_features - 1})")
            take.append(idx)
    if not take:
        raise ValueError("indices selects no feature map")
    return take, max(take)


def check_output_fmt(output_fmt: str) -> None:
    if output_fmt != "NCHW":
        raise ValueError(f"output_fmt={output_fmt!r}: the feature maps are NCHW only")


def check_global_pool(global_pool: str | None) -> None:
    """Only average pooling: the paper's networks end in global average pooling."""
    if global_pool not in (None, "", "avg"):
        raise ValueError(f"global_pool={global_pool!r} is not supported: the networks of the paper "
                         "pool by averaging ('avg')")
