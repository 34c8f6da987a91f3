"""Data: the image data sets in their official formats (found, checked, never unpickled
unsafely) as uint8 tensors in memory, and batched on-device augmentation. Imports no other
part of the package."""

from __future__ import annotations

import importlib
from typing import Any

#: Loaded on first use (PEP 562), so that :mod:`mgiad.data.policies`, which the run
#: configuration checks names against, does not load torch.
_LAZY = {"BatchAugment": "augment", "recipe_augment": "augment", "paper_augment": "augment",
         **{name: "datasets" for name in ("DATASET_NAMES", "CorruptDatasetError", "DataError",
                                           "DatasetNotFoundError", "ImageData", "canonical_name",
                                           "load_dataset", "subset")}}

__all__ = ["DATASET_NAMES", "BatchAugment", "CorruptDatasetError", "DataError", "DatasetNotFoundError",
           "ImageData", "canonical_name", "load_dataset", "paper_augment", "recipe_augment", "subset"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
