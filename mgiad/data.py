"""Datasets from disk: CIFAR-10, CIFAR-100 and FashionMNIST as uint8 NHWC tensors.

``load_dataset(name, data_dir)`` finds the data in the formats users actually have (the official
CIFAR python batches, extracted or still in their ``.tar.gz``; prepared ``train.npz``/``test.npz``;
FashionMNIST IDX files, plain or gzipped) and checks it, so a damaged or wrong file fails loudly
with the file's name instead of training on garbage. The CIFAR batches are pickles: they are read
with an unpickler that only rebuilds numpy arrays, never with plain ``pickle.load``, because
unpickling a file can run arbitrary code.

``subset`` draws a class-stratified, seeded subset for quick runs and tests.
"""

from __future__ import annotations

import difflib
import gzip
import os
import pickle
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch

__all__ = [
    "DATASET_NAMES",
    "ENV_DATA_DIR",
    "CorruptDatasetError",
    "DataError",
    "DatasetNotFoundError",
    "ImageData",
    "canonical_name",
    "load_dataset",
    "subset",
]

DATASET_NAMES = ("cifar10", "cifar100", "fashionmnist")
ENV_DATA_DIR = "MGIAD_DATA_DIR"

# Keys are names lower-cased with spaces, '-' and '_' removed.
_ALIASES = {"cifar10": "cifar10", "cifar100": "cifar100", "fashionmnist": "fashionmnist",
            "fmnist": "fashionmnist"}


class DataError(ValueError):
    """Base class of every data loading error."""


class DatasetNotFoundError(DataError):
    """The dataset is not on disk where we looked; the message says where and how to get it."""


class CorruptDatasetError(DataError):
    """A dataset file exists but is damaged, unsafe or not what it should be."""


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
    """Map a dataset name or alias ("CIFAR-10", "fashion_mnist", "fmnist") to DATASET_NAMES."""
    key = re.sub(r"[\s_\-]", "", str(name).lower())
    if key in _ALIASES:
        return _ALIASES[key]
    close = dict.fromkeys(_ALIASES[c] for c in difflib.get_close_matches(key, _ALIASES, n=3,
                                                                         cutoff=0.6))
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise DataError(f"unknown dataset {name!r}{hint} (known: {', '.join(DATASET_NAMES)})")


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


# --------------------------------------------------------------------------- public entry points

def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> ImageData:
    """Load ``name`` (one of DATASET_NAMES or an alias) from disk.

    Looks in ``data_dir``, then ``$MGIAD_DATA_DIR`` (``os.pathsep``-separated), then standard
    places (``./data``, ``~/.cache/mgiad``, ``~/data``, ``../shared/data``,
    ``../../shared/data``, the repository's neighbour ``shared/data``,
    ``/usr/share/datasets/fashion-mnist``). Each may be the dataset folder itself or a parent
    holding e.g. ``cifar10/``, ``cifar-10-batches-py/`` or ``FashionMNIST/raw/``.
    With ``download=True`` a dataset found nowhere is fetched (torchvision's URLs and checksums)
    into ``data_dir`` or ``~/.cache/mgiad`` and then read with the same checked readers.

    Raises DatasetNotFoundError (lists the places looked) or CorruptDatasetError.
    """
    spec = _SPECS[canonical_name(name)]
    roots = _search_roots(spec, data_dir)
    for root, _ in roots:
        found = _load_from_root(spec, root)
        if found is not None:
            return found
    if download:
        target = Path(data_dir).expanduser() if data_dir is not None else _default_cache()
        _download(spec, target)
        found = _load_from_root(spec, target)
        if found is not None:
            return found
        raise DataError(f"{spec.title} was downloaded into {target} but its files are not "
                        "where expected; please report this")
    raise DatasetNotFoundError(_not_found_message(spec, roots))


def subset(
    data: ImageData, train: int | None = None, test: int | None = None, seed: int = 0
) -> ImageData:
    """A class-stratified random subset with ``train``/``test`` images (None keeps a split).

    Each class gets its share of the split (largest-remainder rounding, so per-class counts
    differ from proportional by less than one); the draw depends only on ``seed``. Images keep
    their original order. Asking for more images than the split has is a DataError.
    """
    rng_train = np.random.default_rng([seed, 0])  # independent streams for the two splits
    rng_test = np.random.default_rng([seed, 1])
    x_tr, y_tr = _take(data.x_train, data.y_train, train, data.num_classes, rng_train, "train")
    x_te, y_te = _take(data.x_test, data.y_test, test, data.num_classes, rng_test, "test")
    note = f"subset(train={train}, test={test}, seed={seed}) of {data.source}"
    return replace(data, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, source=note)


def _take(
    x: torch.Tensor, y: torch.Tensor, n: int | None, num_classes: int,
    rng: np.random.Generator, split: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return x, y
    total = len(y)
    if not 0 <= n <= total:
        raise DataError(f"subset: asked for {n} {split} images but the {split} split has {total}")
    labels = y.cpu().numpy()
    counts = np.bincount(labels, minlength=num_classes)
    share, rem = divmod(n * counts, max(total, 1))
    # Largest remainder first, ties to the lower class index, so the result is deterministic.
    order = np.lexsort((np.arange(len(counts)), -rem))
    share[order[: n - int(share.sum())]] += 1
    picks = [rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
             for c, k in enumerate(share) if k]
    idx = np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
    index = torch.from_numpy(idx).to(x.device)
    return x[index], y[index]


# --------------------------------------------------------------------------- discovery

def _default_cache() -> Path:
    return Path.home() / ".cache" / "mgiad"


def _standard_places(name: str) -> list[Path]:
    """Fallback folders searched after data_dir and $MGIAD_DATA_DIR, in order."""
    cwd = Path.cwd()
    places = [cwd / "data", _default_cache(), Path.home() / "data",
              cwd.parent / "shared" / "data", cwd.parent.parent / "shared" / "data",
              # The checkout's neighbour, so tests and scripts work from any current directory.
              Path(__file__).resolve().parents[2] / "shared" / "data"]
    if name == "fashionmnist":
        places.append(Path("/usr/share/datasets/fashion-mnist"))  # Debian dataset-fashion-mnist
    return places


def _search_roots(spec: _Spec, data_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    roots: list[tuple[Path, str]] = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "data_dir"))
    for part in os.environ.get(ENV_DATA_DIR, "").split(os.pathsep):
        if part:
            roots.append((Path(part).expanduser(), f"${ENV_DATA_DIR}"))
    roots += [(p, "standard place") for p in _standard_places(spec.name)]
    unique: dict[str, tuple[Path, str]] = {}
    for path, why in roots:
        unique.setdefault(os.path.abspath(path), (path, why))
    return list(unique.values())


def _load_from_root(spec: _Spec, root: Path) -> ImageData | None:
    """Read ``spec`` from ``root`` or one of its known subfolders; None if no format matches."""
    if not root.is_dir():
        return None
    dirs = [root] + [root / s for s in spec.subdirs if (root / s).is_dir()]
    # Format priority beats folder order: an extracted copy wins over the archive next to it.
    for detect, read in _formats(spec):
        for d in dirs:
            if detect(spec, d):
                return read(spec, d)
    return None


def _formats(spec: _Spec) -> list[tuple[Callable[[_Spec, Path], bool],
                                        Callable[[_Spec, Path], ImageData]]]:
    if spec.archive:
        return [(_has_npz, _read_npz_dir), (_has_cifar_dir, _read_cifar_dir),
                (_has_cifar_tar, _read_cifar_tar)]
    return [(_has_npz, _read_npz_dir), (_has_idx, _read_idx_dir)]


def _not_found_message(spec: _Spec, roots: list[tuple[Path, str]]) -> str:
    looked = "\n".join(f"  - {p} ({why}{'' if p.is_dir() else '; does not exist'})"
                       for p, why in roots)
    subdirs = ", ".join(f"{s}/" for s in spec.subdirs)
    if spec.archive:
        files = (f"train.npz + test.npz; {spec.base_folder}/ (official python version: "
                 f"{', '.join(spec.train_files + spec.test_files)}, {spec.meta_file}); "
                 f"{spec.archive}")
        manual = f"download {spec.url} and put it (or its extracted folder) in one of these"
    else:
        files = ("train.npz + test.npz; {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] "
                 "(IDX files)")
        manual = ("install the Debian package dataset-fashion-mnist "
                  "(/usr/share/datasets/fashion-mnist), or download the IDX .gz files from "
                  f"{spec.url} into one of these")
    return (
        f"{spec.title} not found. Looked in:\n{looked}\n"
        f"In each folder (and its subfolders {subdirs}) mgiad looks for: {files}.\n"
        f"To get it: rerun with --download (Python: load_dataset({spec.name!r}, download=True)) "
        f"to fetch it into the data dir or ~/.cache/mgiad; or {manual} folders; "
        f"or pass data_dir (--data_dir=PATH on the command line) or set ${ENV_DATA_DIR} to where "
        "it is."
    )


def _corrupt(spec: _Spec, where: object, problem: str) -> CorruptDatasetError:
    return CorruptDatasetError(
        f"{where}: {problem}. This {spec.title} file is damaged or not in the expected format; "
        f"delete it and download it again (rerun with --download, or "
        f"load_dataset({spec.name!r}, download=True))."
    )


def _missing(spec: _Spec, d: Path, files: list[str]) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{d} looks like a {spec.title} folder but lacks {', '.join(files)} (an interrupted "
        f"download or extraction?). Delete the folder and rerun with --download, or copy the "
        f"missing file(s) there."
    )


# --------------------------------------------------------------------------- checks and assembly

def _check_images(spec: _Spec, x: Any, where: object) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        raise _corrupt(spec, where, f"images have dtype {getattr(x, 'dtype', type(x).__name__)}, "
                                    "expected uint8")
    h, w, c = spec.shape
    if x.ndim != 4 or x.shape[1:] != spec.shape:
        raise _corrupt(spec, where, f"images have shape {x.shape}, expected (N, {h}, {w}, {c}) "
                                    "(NHWC)")


def _check_labels(spec: _Spec, y: Any, n: int, where: object) -> np.ndarray:
    """Validate labels for ``n`` images; returns them as int64."""
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu":
        raise _corrupt(spec, where, f"labels must be a 1-D integer array, got "
                                    f"{getattr(y, 'dtype', type(y).__name__)} "
                                    f"{getattr(y, 'shape', '')}")
    if n != len(y):
        raise _corrupt(spec, where, f"{n} images but {len(y)} labels")
    if n == 0:
        raise _corrupt(spec, where, "holds no images")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= spec.num_classes:
        raise _corrupt(spec, where, f"labels span [{lo}, {hi}], outside [0, {spec.num_classes}) "
                                    f"for {spec.title}")
    return y.astype(np.int64, copy=False)


def _check_split(spec: _Spec, x: Any, y: Any, where: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate one split; returns contiguous uint8 NHWC images and int64 labels."""
    _check_images(spec, x, where)
    labels = _check_labels(spec, y, len(x), where)
    return np.ascontiguousarray(x), labels


def _check_classes(spec: _Spec, names: list[str] | None, where: object) -> list[str]:
    if names is None:
        return list(spec.classes)
    if len(names) != spec.num_classes:
        raise _corrupt(spec, where, f"lists {len(names)} class names but {spec.title} has "
                                    f"{spec.num_classes} (is this another dataset?)")
    return names


def _assemble(spec: _Spec, train: tuple[np.ndarray, np.ndarray],
              test: tuple[np.ndarray, np.ndarray], classes: list[str], source: str) -> ImageData:
    return ImageData(
        name=spec.name,
        x_train=torch.from_numpy(train[0]), y_train=torch.from_numpy(train[1]),
        x_test=torch.from_numpy(test[0]), y_test=torch.from_numpy(test[1]),
        classes=classes, source=source, mean=spec.mean, std=spec.std,
    )


# --------------------------------------------------------------------------- prepared .npz

def _has_npz(spec: _Spec, d: Path) -> bool:
    return (d / "train.npz").is_file() or (d / "test.npz").is_file()


def _read_npz_dir(spec: _Spec, d: Path) -> ImageData:
    missing = [f for f in ("train.npz", "test.npz") if not (d / f).is_file()]
    if missing:
        raise _missing(spec, d, missing)
    # Inflating the deflated arrays dominates and releases the GIL: read both files at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_read_npz, spec, d / f) for f in ("train.npz", "test.npz")]
        (train, names), (test, _) = (f.result() for f in futures)
    classes = _check_classes(spec, names, d / "train.npz")
    return _assemble(spec, train, test, classes, f"{d / 'train.npz'}, {d / 'test.npz'}")


def _read_npz(spec: _Spec, path: Path) -> tuple[tuple[np.ndarray, np.ndarray], list[str] | None]:
    try:
        # allow_pickle=False: a prepared archive holds plain arrays only, and a pickled object
        # array inside one could run code when loaded.
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _corrupt(spec, path, f"not a readable .npz archive ({type(e).__name__}: {e})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _corrupt(spec, path, "is a single .npy array, expected an .npz archive with x and y")
    with archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise _corrupt(spec, path, f"lacks array(s) {missing}; it has {archive.files}")
        try:
            x, y = archive["x"], archive["y"]
            names = archive["label_names"] if "label_names" in archive.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise _corrupt(spec, path, f"cannot read its arrays ({type(e).__name__}: {e})") from e
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise _corrupt(spec, path, "label_names must be a 1-D string array")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    return _check_split(spec, x, y, path), names


# --------------------------------------------------------------------------- official CIFAR

_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {}


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR pickle may name: what rebuilds numpy arrays and bytes."""
    if not _NUMPY_GLOBALS:
        import _codecs

        try:  # numpy >= 2 moved numpy.core to numpy._core; old pickles name either.
            from numpy._core import multiarray, numeric
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core import multiarray, numeric  # type: ignore[no-redef]
        for mod in ("numpy.core", "numpy._core"):
            _NUMPY_GLOBALS[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
            _NUMPY_GLOBALS[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
        _NUMPY_GLOBALS[("numpy", "ndarray")] = np.ndarray
        _NUMPY_GLOBALS[("numpy", "dtype")] = np.dtype
        _NUMPY_GLOBALS[("_codecs", "encode")] = _codecs.encode  # bytes in protocol-2 pickles
    return _NUMPY_GLOBALS


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy array constructors, so loading runs no code."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return allowed[(module, name)]


def _unpickle(spec: _Spec, f: IO[bytes], where: str) -> dict[str, Any]:
    """Read one CIFAR pickle safely; returns the dict with its bytes keys decoded."""
    try:
        # encoding="bytes": the files were written by Python 2, their str keys arrive as bytes.
        obj = _SafeUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refusing"):
            raise _corrupt(spec, where, f"{e}; genuine CIFAR files hold only numpy arrays, lists "
                                        "and strings, so this file is not one (possibly "
                                        "malicious; it was not executed)") from e
        raise _corrupt(spec, where, f"not a readable pickle ({e})") from e
    except Exception as e:  # noqa: BLE001 - truncation surfaces as many types; all mean corrupt
        raise _corrupt(spec, where, f"not a readable pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise _corrupt(spec, where, f"holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _get(spec: _Spec, d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise _corrupt(spec, where, f"lacks key {key!r} (has {sorted(d)})")
    return d[key]


def _cifar_batch(spec: _Spec, d: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    data = _get(spec, d, "data", where)
    labels = _get(spec, d, spec.label_key, where)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        raise _corrupt(spec, where, f"'data' must be uint8 (N, 3072), got "
                                    f"{getattr(data, 'dtype', type(data).__name__)} "
                                    f"{getattr(data, 'shape', '')}")
    # Each row is the R plane, then G, then B, each 32x32 row-major: CHW -> HWC is a transpose.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError) as e:
        raise _corrupt(spec, where, f"{spec.label_key!r} is not a list of integers") from e
    return x, _check_labels(spec, y, len(x), where)


def _cifar_split(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    # One concatenate into a C-ordered buffer does the HWC copy of all (already checked) batches;
    # without out= numpy would keep the transposed views' memory layout.
    x = np.empty((sum(len(b[0]) for b in batches), *batches[0][0].shape[1:]), np.uint8)
    np.concatenate([b[0] for b in batches], out=x)
    return x, np.concatenate([b[1] for b in batches])


def _meta_names(spec: _Spec, d: dict[str, Any], where: str) -> list[str]:
    names = _get(spec, d, spec.meta_key, where)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise _corrupt(spec, where, f"{spec.meta_key!r} is not a list of strings")
    return _check_classes(spec, [n.decode() if isinstance(n, bytes) else n for n in names], where)


def _has_cifar_dir(spec: _Spec, d: Path) -> bool:
    if spec.name == "cifar100":  # "train"/"test" are too generic to mark a CIFAR-100 folder
        return d.name == spec.base_folder or (d / spec.meta_file).is_file()
    return any((d / f).is_file() for f in (*spec.train_files, *spec.test_files, spec.meta_file))


def _read_cifar_dir(spec: _Spec, d: Path) -> ImageData:
    files = [*spec.train_files, *spec.test_files, spec.meta_file]
    missing = [f for f in files if not (d / f).is_file()]
    if missing:
        raise _missing(spec, d, missing)
    dicts = {}
    for f in files:
        with open(d / f, "rb") as fh:
            dicts[f] = _unpickle(spec, fh, str(d / f))
    return _cifar_from_dicts(spec, dicts, str(d), f"{d} ({spec.title} python version)")


def _cifar_from_dicts(spec: _Spec, dicts: dict[str, dict[str, Any]], where: str,
                      source: str) -> ImageData:
    def batches(names: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [_cifar_batch(spec, dicts[n], f"{where}/{n}") for n in names]

    train = _cifar_split(batches(spec.train_files))
    test = _cifar_split(batches(spec.test_files))
    classes = _meta_names(spec, dicts[spec.meta_file], f"{where}/{spec.meta_file}")
    return _assemble(spec, train, test, classes, source)


def _has_cifar_tar(spec: _Spec, d: Path) -> bool:
    return (d / spec.archive).is_file()


def _check_member(spec: _Spec, archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse archives with members that could escape a folder when extracted."""
    parts = PurePosixPath(member.name).parts
    if member.name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", member.name):
        raise _corrupt(spec, archive, f"has an unsafe member path {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise _corrupt(spec, archive, f"has a link or special file {member.name!r}; the "
                                      "official archive holds only plain files")


def _read_cifar_tar(spec: _Spec, d: Path) -> ImageData:
    archive = d / spec.archive
    files = [*spec.train_files, *spec.test_files, spec.meta_file]
    wanted = {f"{spec.base_folder}/{f}": f for f in files}
    dicts: dict[str, dict[str, Any]] = {}
    try:
        # Read members straight from the stream in one pass: nothing is written to disk, so no
        # path in the archive can escape, and the gzip stream is decompressed only once.
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                _check_member(spec, archive, member)
                key = wanted.get(member.name.removeprefix("./"))
                if key is not None and member.isfile():
                    fh = tar.extractfile(member)
                    assert fh is not None  # a regular file always has a stream
                    dicts[key] = _unpickle(spec, fh, f"{archive}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise _corrupt(spec, archive, f"cannot read the archive ({type(e).__name__}: {e})") from e
    missing = [n for n, f in wanted.items() if f not in dicts]
    if missing:
        raise _corrupt(spec, archive, f"lacks member(s) {', '.join(missing)}")
    return _cifar_from_dicts(spec, dicts, f"{archive}:{spec.base_folder}", str(archive))


# --------------------------------------------------------------------------- FashionMNIST IDX

_IDX_FILES = {  # file stem -> IDX magic number (0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim)
    "train-images-idx3-ubyte": 2051, "train-labels-idx1-ubyte": 2049,
    "t10k-images-idx3-ubyte": 2051, "t10k-labels-idx1-ubyte": 2049,
}


def _idx_path(d: Path, stem: str) -> Path | None:
    # Prefer the plain file: torchvision's raw/ holds both, and it is faster to read.
    for path in (d / stem, d / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _has_idx(spec: _Spec, d: Path) -> bool:
    return any(_idx_path(d, stem) is not None for stem in _IDX_FILES)


def _read_idx_dir(spec: _Spec, d: Path) -> ImageData:
    paths = {stem: _idx_path(d, stem) for stem in _IDX_FILES}
    missing = [f"{stem}[.gz]" for stem, p in paths.items() if p is None]
    if missing:
        raise _missing(spec, d, missing)
    splits = []
    for prefix in ("train", "t10k"):
        images_path = paths[f"{prefix}-images-idx3-ubyte"]
        labels_path = paths[f"{prefix}-labels-idx1-ubyte"]
        assert images_path is not None and labels_path is not None
        images = _read_idx(spec, images_path, 2051)
        labels = _read_idx(spec, labels_path, 2049)
        if len(images) != len(labels):
            raise _corrupt(spec, images_path, f"{len(images)} images but {labels_path.name} has "
                                              f"{len(labels)} labels")
        splits.append(_check_split(spec, images.reshape(*images.shape, 1), labels, images_path))
    source = ", ".join(str(p) for p in paths.values())
    return _assemble(spec, splits[0], splits[1], list(spec.classes), source)


def _read_idx(spec: _Spec, path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, then one uint32 per dimension)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(spec, path, f"cannot be read or decompressed ({type(e).__name__}: {e})") \
            from e
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else "none (file too short)"
        raise _corrupt(spec, path, f"IDX magic number is {found}, expected {magic}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(spec, path, "truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        what = "truncated" if len(raw) - header < size else "has trailing bytes"
        raise _corrupt(spec, path, f"{what}: header says {dims} = {size} bytes of data, file has "
                                   f"{len(raw) - header}")
    # copy(): frombuffer over bytes is read-only, and tensors made from it must be writable.
    return np.frombuffer(raw, np.uint8, count=size, offset=header).reshape(dims).copy()


# --------------------------------------------------------------------------- download

def _download(spec: _Spec, root: Path) -> None:
    """Fetch ``spec`` into ``root`` with torchvision's URLs and MD5 checks, then unpack safely.

    torchvision's own dataset classes are not used to read the files: they call plain
    ``pickle.load`` on CIFAR, and their tar extraction has no path filter.
    """
    from torchvision import datasets as tv_datasets  # lazy: slow import, needed only here
    from torchvision.datasets import utils as tv_utils

    tv_class = getattr(tv_datasets, spec.tv_class)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if spec.archive:
            tv_utils.download_url(tv_class.url, root, filename=tv_class.filename,
                                  md5=tv_class.tgz_md5)
            _safe_extract(spec, root / tv_class.filename, root)
        else:
            raw = root / "FashionMNIST" / "raw"  # torchvision's layout
            for filename, md5 in tv_class.resources:
                errors = []
                for mirror in tv_class.mirrors:
                    try:
                        tv_utils.download_url(f"{mirror}{filename}", raw, filename=filename,
                                              md5=md5)
                        break
                    except Exception as e:  # noqa: BLE001 - try the next mirror
                        errors.append(f"{mirror}: {e}")
                else:
                    raise RuntimeError("; ".join(errors))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - network and disk errors alike need the same advice
        raise DataError(
            f"downloading {spec.title} into {root} failed ({type(e).__name__}: {e}). Without "
            f"internet access, fetch {spec.url} on another machine and copy it into {root}."
        ) from e


def _safe_extract(spec: _Spec, archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            _check_member(spec, archive, member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python < 3.11.4; every member was checked above
            tar.extractall(dest)
