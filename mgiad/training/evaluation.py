"""Test accuracy and per-class accuracy of a model on a split (also sharded under torchrun)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from mgiad.data.augment import BatchAugment

from .distributed import shard


def autocast(device: torch.device, amp: str) -> Any:
    """bf16 autocast on CUDA when ``amp == "bf16"``; a no-op context otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=amp == "bf16" and device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 1000,
    split: str = "test",
    num_classes: int | None = None,
    amp: str = "none",
    distributed: bool = False,
) -> tuple[float, list[float | None]]:
    """Accuracy and per-class accuracy (fractions in [0, 1]) of ``model`` on a split.

    Args:
        model: the network; its device is the device of its first parameter. It runs in eval
            mode and gets its previous mode back afterwards.
        data: an :class:`mgiad.data.datasets.ImageData` (``split`` picks ``x_test``/``x_train``) or a
            pair ``(images uint8 NHWC, labels)``.
        transform: uint8 NHWC batch -> normalised float NCHW batch; default: normalisation
            with ``data.mean``/``data.std`` (``BatchAugment.test``).
        num_classes: default ``data.num_classes`` or ``max(label) + 1``.
        amp: ``"bf16"`` evaluates under bf16 autocast on CUDA.
        distributed: every process evaluates a share and the counts are summed (all
            processes must call it).

    Returns:
        ``(accuracy, per_class)``; ``per_class[c]`` is ``None`` for a class without images.
    """
    if isinstance(data, tuple):
        x, y = data
    else:
        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        num_classes = num_classes or data.num_classes
        if transform is None:
            transform = BatchAugment(mean=data.mean, std=data.std).test
    if transform is None:
        raise ValueError("evaluate: pass transform= when data is an (images, labels) pair")
    num_classes = num_classes or int(y.max().item()) + 1
    device = next(model.parameters()).device
    lo, hi = 0, len(y)
    if distributed and dist.is_initialized() and dist.get_world_size() > 1:
        lo, hi = shard(len(y), dist.get_rank(), dist.get_world_size())
    correct = torch.zeros(num_classes, dtype=torch.int64, device=device)
    total = torch.zeros(num_classes, dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    try:
        for start in range(lo, hi, batch_size):
            xb = x[start : min(start + batch_size, hi)].to(device, non_blocking=True)
            yb = y[start : min(start + batch_size, hi)].to(device, non_blocking=True)
            with autocast(device, amp):
                pred = model(transform(xb)).argmax(1)
            total += torch.bincount(yb, minlength=num_classes)
            correct += torch.bincount(yb[pred == yb], minlength=num_classes)
    finally:
        model.train(was_training)
    if distributed and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(correct)
        dist.all_reduce(total)
    correct_l, total_l = correct.tolist(), total.tolist()
    acc = sum(correct_l) / max(sum(total_l), 1)
    per_class = [c / t if t else None for c, t in zip(correct_l, total_l)]
    return acc, per_class
