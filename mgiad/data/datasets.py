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

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .custom import is_custom, load_custom
from .download import _download
from .formats import (
    _has_cifar_dir,
    _has_cifar_tar,
    _has_idx,
    _has_npz,
    _read_cifar_dir,
    _read_cifar_tar,
    _read_idx_dir,
    _read_npz_dir,
)
from .spec import (
    _SPECS,
    DATASET_NAMES,
    CorruptDatasetError,
    DataError,
    DatasetNotFoundError,
    ImageData,
    _Spec,
    canonical_name,
)

__all__ = [
    "DATASET_NAMES",
    "ENV_DATA_DIR",
    "CorruptDatasetError",
    "DataError",
    "DatasetNotFoundError",
    "ImageData",
    "canonical_name",
    "check_data_dir",
    "load_dataset",
    "subset",
]

ENV_DATA_DIR = "MGIAD_DATA_DIR"


# --------------------------------------------------------------------------- public entry points

def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> ImageData:
    """Load ``name`` (one of DATASET_NAMES or an alias, or ``imagefolder:PATH`` / ``npz:PATH``:
    :mod:`mgiad.data.custom`) from disk.

    With ``data_dir`` given, looks there only: a folder that holds no such dataset is an error
    naming it (data found elsewhere would silently be other data than the one asked for).
    Without, looks in ``$MGIAD_DATA_DIR`` (``os.pathsep``-separated), then the standard places
    (``./data``, ``~/.cache/mgiad``, ``~/data``, ``../shared/data``, ``../../shared/data``, the
    repository's neighbour ``shared/data``, ``/usr/share/datasets/fashion-mnist``). Each may be
    the dataset folder itself or a parent holding e.g. ``cifar10/``, ``cifar-10-batches-py/``
    or ``FashionMNIST/raw/``. With ``download=True`` a dataset found nowhere is fetched
    (torchvision's URLs and checksums) into ``data_dir`` or ``~/.cache/mgiad`` and then read
    with the same checked readers.

    ``ImageData.source`` of the result starts with the absolute path of the folder (or archive)
    the data was read from, followed by its format in parentheses.

    Raises DatasetNotFoundError (where it looked and how to get the data) or
    CorruptDatasetError.
    """
    if is_custom(name):  # your own data: the path is in the name
        if data_dir is not None:
            raise DataError(f"data_dir does not apply to dataset={name!r}: its path is in the name")
        return load_custom(name)
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
    if data_dir is not None:
        raise DatasetNotFoundError(_not_in_data_dir_message(spec, Path(data_dir).expanduser()))
    raise DatasetNotFoundError(_not_found_message(spec, roots))


def check_data_dir(name: str, data_dir: str | os.PathLike[str]) -> Path:
    """The folder in ``data_dir`` that holds ``name``, found as :func:`load_dataset` finds it but
    without reading it (a few file checks), or the DatasetNotFoundError ``load_dataset`` would
    raise: to fail before work that would only later need the data (a sweep)."""
    spec = _SPECS[canonical_name(name)]
    root = Path(data_dir).expanduser()
    if root.is_dir():
        for detect, _ in _formats(spec):
            for d in [root] + [root / s for s in spec.subdirs]:
                if d.is_dir() and detect(spec, d):
                    return Path(os.path.abspath(d))
    raise DatasetNotFoundError(_not_in_data_dir_message(spec, root))


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
    note = f"{data.source} [subset: train={train}, test={test}, seed={seed}]"
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
    if data_dir is not None:  # an explicit folder is the only place: never data from elsewhere
        return [(Path(data_dir).expanduser(), "data_dir")]
    roots: list[tuple[Path, str]] = []
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
    root = Path(os.path.abspath(root))  # the source of the data is recorded as a full path
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


def _looked_for(spec: _Spec) -> str:
    if spec.archive:
        return (f"train.npz + test.npz, {spec.base_folder}/ (the official python version: "
                f"{', '.join(spec.train_files + spec.test_files)}, {spec.meta_file}) or "
                f"{spec.archive}")
    return "train.npz + test.npz or {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (IDX files)"


def _not_in_data_dir_message(spec: _Spec, data_dir: Path) -> str:
    """One line: the explicit data_dir, what is wrong with it, what was looked for, the fixes."""
    if not data_dir.exists():
        problem = "does not exist"
    elif not data_dir.is_dir():
        problem = "is not a directory"
    else:
        problem = f"holds no {spec.title}"
    subdirs = ", ".join(f"{s}/" for s in spec.subdirs)
    fetch = "" if problem == "is not a directory" else f"add --download to fetch it into {data_dir}, "
    where = ("the Debian package dataset-fashion-mnist installs it in "
             "/usr/share/datasets/fashion-mnist" if not spec.archive else f"it is {spec.url}")
    return (f"data_dir={str(data_dir)!r} {problem} (mgiad looks in it and in its subfolders "
            f"{subdirs} for {_looked_for(spec)}); give the folder that holds {spec.title} "
            f"({where}), {fetch}or leave data_dir unset "
            f"to search ${ENV_DATA_DIR} and the standard places")


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


