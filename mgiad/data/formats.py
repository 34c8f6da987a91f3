"""Readers of the formats users have, each checking what it reads: prepared ``.npz`` files,
the official CIFAR python batches (extracted or in their ``.tar.gz``; read with an unpickler that
only rebuilds numpy arrays) and FashionMNIST IDX files (plain or gzipped). A damaged or wrong file
fails with its name instead of training on garbage."""

from __future__ import annotations

import gzip
import pickle
import re
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch

from .spec import NPZ_ERRORS, CorruptDatasetError, DatasetNotFoundError, ImageData, _Spec, npz_error


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
    return _assemble(spec, train, test, classes, f"{d} (train.npz, test.npz)")


def _read_npz(spec: _Spec, path: Path) -> tuple[tuple[np.ndarray, np.ndarray], list[str] | None]:
    try:
        # allow_pickle=False: a prepared archive holds plain arrays only, and a pickled object
        # array inside one could run code when loaded.
        archive = np.load(path, allow_pickle=False)
    except NPZ_ERRORS as e:
        raise _corrupt(spec, path, f"not a readable .npz archive ({npz_error(path, e)})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _corrupt(spec, path, "is a single .npy array, expected an .npz archive with x and y")
    with archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise _corrupt(spec, path, f"lacks array(s) {missing}; it has {archive.files}")
        try:
            x, y = archive["x"], archive["y"]
            names = archive["label_names"] if "label_names" in archive.files else None
        except NPZ_ERRORS as e:
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
    gz = sum(p.suffix == ".gz" for p in paths.values() if p is not None)
    source = f"{d} (IDX files{', gzipped' if gz == len(paths) else ''})"
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


