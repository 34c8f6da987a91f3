"""Data: the image data sets in their official formats (found, checked, never unpickled
unsafely) as uint8 tensors in memory, and batched on-device augmentation. Imports no other
part of the package."""

from .augment import BatchAugment, paper_augment
from .datasets import (
    DATASET_NAMES,
    CorruptDatasetError,
    DataError,
    DatasetNotFoundError,
    ImageData,
    canonical_name,
    load_dataset,
    subset,
)

__all__ = ["DATASET_NAMES", "BatchAugment", "CorruptDatasetError", "DataError", "DatasetNotFoundError",
           "ImageData", "canonical_name", "load_dataset", "paper_augment", "subset"]
