"""What each data set is: its names, classes, normalisation constants and files on disk, the
errors of data loading, and :class:`ImageData`, a data set in memory (uint8 NHWC images)."""

from __future__ import annotations

import difflib
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASET_NAMES = ("cifar10", "cifar100", "fashionmnist")

# Keys are names lower-cased with spaces, '-' and '_' removed.
_ALIASES = {"cifar10": "cifar10", "cifar100": "cifar100", "fashionmnist": "fashionmnist",
            "fmnist": "fashionmnist"}


class DataError(ValueError):
    """Base class of every data loading error."""


class DatasetNotFoundError(DataError):
    """The dataset is not on disk where we looked; the message says where and how to get it."""


class CorruptDatasetError(DataError):
    """A dataset file exists but is damaged, unsafe or not what it should be."""


#: what reading a damaged .npz raises: a truncated file, a bad CRC, bad deflate data, not a zip
NPZ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, zipfile.BadZipFile,
                                                zlib.error)


def npz_error(path: str | Path, e: BaseException) -> str:
    """Why ``np.load(path, allow_pickle=False)`` failed, in words: numpy reads a file that is
    neither a zip nor an .npy as a pickle and blames pickles, which misleads for a text file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError:
        magic = b""
    if isinstance(e, ValueError) and "pickle" in str(e) and not magic.startswith((b"PK", b"\x93NUMPY")):
        return f"not an .npz archive: it does not start as a zip file does (first bytes {magic!r})"
    return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------- dataset constants

_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck")
# The official meta file's order (alphabetical); used when a prepared .npz has no label_names.
_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar",
    "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile",
    "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster",
    "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman",
    "worm",
)
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class _Spec:
    """What one dataset looks like on disk and in memory."""

    name: str
    title: str
    shape: tuple[int, int, int]  # H, W, C of one image
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    subdirs: tuple[str, ...]  # folders under a parent data dir that may hold the dataset
    url: str  # for the "download it yourself" hint
    tv_class: str  # torchvision.datasets class whose URLs and checksums --download uses
    # Official CIFAR python version (empty for FashionMNIST).
    base_folder: str = ""
    archive: str = ""
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    meta_file: str = ""
    label_key: str = ""
    meta_key: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


_SPECS: dict[str, _Spec] = {
    "cifar10": _Spec(
        name="cifar10", title="CIFAR-10", shape=(32, 32, 3), classes=_CIFAR10_CLASSES,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        subdirs=("cifar10", "cifar-10", "CIFAR10", "CIFAR-10", "cifar-10-batches-py",
                 "cifar10/cifar-10-batches-py"),
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", tv_class="CIFAR10",
        base_folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
        meta_file="batches.meta", label_key="labels", meta_key="label_names",
    ),
    "cifar100": _Spec(
        name="cifar100", title="CIFAR-100", shape=(32, 32, 3), classes=_CIFAR100_CLASSES,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        subdirs=("cifar100", "cifar-100", "CIFAR100", "CIFAR-100", "cifar-100-python",
                 "cifar100/cifar-100-python"),
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", tv_class="CIFAR100",
        base_folder="cifar-100-python", archive="cifar-100-python.tar.gz",
        train_files=("train",), test_files=("test",), meta_file="meta",
        label_key="fine_labels", meta_key="fine_label_names",
    ),
    "fashionmnist": _Spec(
        name="fashionmnist", title="FashionMNIST", shape=(28, 28, 1), classes=_FASHION_CLASSES,
        mean=(0.2860,), std=(0.3530,),
        subdirs=("FashionMNIST/raw", "raw", "fashionmnist", "fashion-mnist", "fashion_mnist",
                 "FashionMNIST", "fashion-mnist/raw", "fashionmnist/FashionMNIST/raw"),
        url="https://github.com/zalandoresearch/fashion-mnist", tv_class="FashionMNIST",
    ),
}


def canonical_name(name: str) -> str:
    """Map a dataset name or alias ("CIFAR-10", "fashion_mnist", "fmnist") to DATASET_NAMES;
    ``imagefolder:PATH`` and ``npz:PATH`` (your own data) get an absolute PATH."""
    if str(name).startswith(("imagefolder:", "npz:")):
        from .custom import canonical_custom

        return canonical_custom(str(name))
    key = re.sub(r"[\s_\-]", "", str(name).lower())
    if key in _ALIASES:
        return _ALIASES[key]
    close = dict.fromkeys(_ALIASES[c] for c in difflib.get_close_matches(key, _ALIASES, n=3,
                                                                         cutoff=0.6))
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise DataError(f"unknown dataset {name!r}{hint} (known: {', '.join(DATASET_NAMES)}, or your "
                    "own data as imagefolder:PATH or npz:PATH)")


# --------------------------------------------------------------------------- the result type

@dataclass
class ImageData:
    """A dataset in memory: uint8 NHWC images, int64 labels, and normalization constants.

    ``mean``/``std`` are per-channel in [0, 1]. Left empty, they are filled with the published
    constants of ``name`` (or computed from ``x_train`` for other data); a subset keeps its
    parent's constants so that normalization does not depend on the subset drawn.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    #: where the data came from: the absolute path of the folder (or archive) read, then its
    #: format in parentheses, then ``[subset: ...]`` for a subset (empty for data built in memory)
    source: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.mean and self.std:
            return
        spec = _SPECS.get(self.name)
        if spec is not None and len(spec.mean) == self.in_chans:
            self.mean, self.std = self.mean or spec.mean, self.std or spec.std
        else:
            mean, std = _channel_stats(self.x_train.cpu().numpy())
            self.mean, self.std = self.mean or mean, self.std or std

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        # The dataclass default would print tensor contents; shapes are what a log needs.
        return (f"ImageData(name={self.name!r}, train={tuple(self.x_train.shape)}, "
                f"test={tuple(self.x_test.shape)}, classes={self.num_classes}, "
                f"source={self.source!r})")


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std in [0, 1] of uint8 NHWC images, via value histograms.

    Histograms avoid materializing a float copy of the whole dataset.
    """
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[-1]):
        counts = np.bincount(x[..., c].ravel(), minlength=256).astype(np.float64)
        n = max(counts.sum(), 1.0)
        m = float(values @ counts / n)
        means.append(m)
        stds.append(float(np.sqrt(max((values**2) @ counts / n - m * m, 0.0))))
    return tuple(means), tuple(stds)


