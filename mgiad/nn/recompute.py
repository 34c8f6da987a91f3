"""Activation checkpointing that leaves BatchNorm statistics exactly as without it.

``torch.utils.checkpoint`` runs a function's forward a second time during backward. In
training mode every BatchNorm of that function would then update its running mean and variance
(and ``num_batches_tracked``) twice, so a checkpointed model would drift from the plain one
(the known caveat of torchvision's ``memory_efficient`` DenseNet). Here the recomputation
runs between a snapshot and a restore of the module's buffers, so the running statistics,
outputs and gradients equal those of the plain forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from mgiad.ops.export import transforming


@contextmanager
def _buffers_restored(module: nn.Module) -> Iterator[None]:
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def recompute_in_backward(module: nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; with ``module.memory_efficient`` set, in training with gradients, keeping
    only its inputs for backward and recomputing the rest there.

    ``module`` owns every buffer ``fn`` may update (its BatchNorms); they are restored after
    the recomputation.

    Under a ``torch.func`` transform and while ``torch.fx`` traces, ``fn`` runs plainly (same
    numbers): ``torch.func`` does not run saved-tensor hooks, which the checkpoint is made of,
    and an fx graph has no backward to recompute in.
    """
    if not (module.memory_efficient and module.training and torch.is_grad_enabled()) \
            or transforming(*args):
        return fn(*args)
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (nullcontext(), _buffers_restored(module)))
