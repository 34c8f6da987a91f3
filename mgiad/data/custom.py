"""Your own data: ``imagefolder:PATH`` and ``npz:PATH`` as :class:`ImageData`.

- ``imagefolder:PATH``: class sub-folders as torchvision's ``ImageFolder`` (classes sorted by
  folder name; files with an image extension). ``PATH/train/`` + ``PATH/test/`` (or ``val/``),
  each with the same class folders, is a given split; otherwise the split is made. Images are
  decoded once with Pillow into uint8 (1 channel if every image is greyscale, else RGB; alpha is
  dropped) and cached as an ``.npz`` under ``~/.cache/mgiad/imagefolder`` (``$MGIAD_CACHE_DIR``),
  keyed by the files' names, sizes and modification times, so a second run does not decode again.
  All images must have one size (the model sees them as they are), unless the name asks for a
  resize: ``imagefolder:PATH?size=N[,crop_pct=F][,interpolation=bilinear|bicubic]`` resizes
  each image's shorter side to ``floor(N / crop_pct)`` and crops the centre ``N x N`` (timm's
  evaluation transform, :class:`mgiad.data.images.CentreCrop`; crop_pct 1.0 and bilinear by
  default), the same for the train and test splits; the cache is keyed by these options too.
  The options are part of the data set's name, so a run, its checkpoint, ``mgiad eval`` and
  ``mgiad predict`` read the data the same way (quote the name in a shell: ``?`` is a glob).
- ``npz:PATH``: one ``.npz`` with ``x`` (N, H, W[, C]) uint8 and ``y`` (N,) integer labels (a
  made split), or ``x_train``, ``y_train``, ``x_test``, ``y_test`` (a given split); optional
  ``classes`` (or ``class_names``/``label_names``). Read with ``allow_pickle=False``.

A made split is stratified: ``round(20%)`` of each class (at least one image) goes to the test
split, drawn with a fixed seed (0), so the same files give the same split in ``mgiad train``,
``mgiad eval`` and on another machine. The source string records which split it is. Mean and std
are measured on the training split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from .images import DEFAULT_CROP_PCT, INTERPOLATIONS, CentreCrop
from .spec import (
    NPZ_ERRORS,
    CorruptDatasetError,
    DataError,
    DatasetNotFoundError,
    ImageData,
    npz_error,
)

__all__ = ["CUSTOM_PREFIXES", "ENV_CACHE_DIR", "IMAGEFOLDER_OPTIONS", "TEST_FRACTION", "is_custom",
           "canonical_custom", "load_custom", "predict_resize", "split_options"]

CUSTOM_PREFIXES = ("imagefolder:", "npz:")
ENV_CACHE_DIR = "MGIAD_CACHE_DIR"
TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: torchvision's IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_CACHE_VERSION = 2  # 2: EXIF orientation, 16-bit grey scaled (mgiad/data/images.py)


def is_custom(name: str) -> bool:
    return isinstance(name, str) and name.startswith(CUSTOM_PREFIXES)


#: the options of ``imagefolder:PATH?size=N,crop_pct=F,interpolation=NAME`` (the doc of each)
IMAGEFOLDER_OPTIONS = {
    "size": "N: resize and centre-crop every image to N x N",
    "crop_pct": f"F in (0, 1]: resize the shorter side to floor(N / F) first (default {DEFAULT_CROP_PCT:g})",
    "interpolation": f"{' or '.join(INTERPOLATIONS)} (default bilinear)",
}
_OPTIONS_HINT = ("imagefolder:PATH?size=N[,crop_pct=F][,interpolation=bilinear|bicubic], e.g. "
                 "--dataset 'imagefolder:/data/pets?size=32'")


def split_options(name: str) -> tuple[str, CentreCrop | None]:
    """(``kind:PATH``, the resize its options ask for, or None) of a custom data set's name.

    Options follow the last ``?`` as ``key=value`` pairs separated by ``,`` (or ``&``); a ``?``
    followed by no ``=`` is part of the path. Unknown keys, bad values and options on ``npz:``
    are :class:`DataError` naming the form.
    """
    kind, _, path = name.partition(":")
    head, sep, query = path.rpartition("?")
    if not sep or "=" not in query:
        return name, None
    values: dict[str, str] = {}
    for item in filter(None, re.split(r"[,&]", query)):
        key, eq, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not eq or key not in IMAGEFOLDER_OPTIONS:
            raise DataError(f"dataset={name!r}: unknown option {item!r}; the options are "
                            f"{', '.join(IMAGEFOLDER_OPTIONS)}: {_OPTIONS_HINT}")
        values[key] = value.strip()
    base = f"{kind}:{head}"
    if kind != "imagefolder":
        raise DataError(f"dataset={name!r}: options ({query}) apply to imagefolder: only; an "
                        f"npz file holds images of one size already (give {base})")
    if "size" not in values:
        raise DataError(f"dataset={name!r}: crop_pct and interpolation go with size=N (the crop's "
                        f"side): {_OPTIONS_HINT}")
    numbers = {}
    for key, kind_of in (("size", int), ("crop_pct", float)):
        if key in values:
            try:
                numbers[key] = kind_of(values[key])
            except ValueError:
                raise DataError(f"dataset={name!r}: {key}={values[key]!r} is not "
                                f"{'an integer' if kind_of is int else 'a number'}; "
                                f"{_OPTIONS_HINT}") from None
    try:
        return base, CentreCrop(numbers["size"], numbers.get("crop_pct", DEFAULT_CROP_PCT),
                                values.get("interpolation", "bilinear").lower())
    except ValueError as e:
        raise DataError(f"dataset={name!r}: {e}; {_OPTIONS_HINT}") from None


def _option_text(resize: CentreCrop | None) -> str:
    """The canonical ``?size=N[,crop_pct=F][,interpolation=bicubic]`` (defaults left out)."""
    if resize is None:
        return ""
    text = f"?size={resize.size}"
    if resize.crop_pct != DEFAULT_CROP_PCT:
        text += f",crop_pct={float(resize.crop_pct)!r}"
    if resize.interpolation != "bilinear":
        text += f",interpolation={resize.interpolation}"
    return text


def canonical_custom(name: str) -> str:
    """``imagefolder:PATH`` / ``npz:PATH`` with PATH absolute (runs record where the data are),
    and the resize options, if any, in their canonical form (``?size=N``, defaults left out)."""
    kind, _, path = name.partition(":")
    if not path:
        raise DataError(f"dataset={name!r}: give the path after '{kind}:', e.g. {kind}:/data/pets")
    base, resize = split_options(name)
    path = base.partition(":")[2]
    if not path:
        raise DataError(f"dataset={name!r}: give the path before the options: {_OPTIONS_HINT}")
    return f"{kind}:{os.path.abspath(os.path.expanduser(path))}{_option_text(resize)}"


def load_custom(name: str) -> ImageData:
    """Load ``imagefolder:PATH[?size=N,...]`` or ``npz:PATH`` (see the module docstring)."""
    name = canonical_custom(name)
    base, resize = split_options(name)
    kind, _, path = base.partition(":")
    root = Path(path)
    if not root.exists():
        raise DatasetNotFoundError(f"dataset={name!r}: {root} does not exist")
    if kind == "npz":
        return _load_npz(name, root)
    return _load_image_folder(name, root, resize)


def predict_resize(dataset: str, image_size: int) -> CentreCrop:
    """The resize and crop that prepares a file as the test split of ``dataset`` was prepared,
    for a model of input ``image_size`` (a checkpoint's ``dataset`` and ``image_size``): the
    options of ``imagefolder:PATH?size=N,...``, else ``CentreCrop(image_size)`` (crop_pct 1.0,
    bilinear), which leaves an image of the training size as it is."""
    resize = split_options(dataset)[1] if is_custom(dataset) else None
    if resize is not None and resize.size == image_size:
        return resize
    return CentreCrop(int(image_size))


# -- npz --------------------------------------------------------------------------------------


def _load_npz(name: str, file: Path) -> ImageData:
    if not file.is_file():
        raise DataError(f"dataset={name!r}: {file} is not a file (npz: takes one .npz file)")
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except NPZ_ERRORS as e:
        raise CorruptDatasetError(f"{file}: not a readable .npz without pickles ({npz_error(file, e)}); "
                                  "write it again, e.g. with numpy.savez") from None
    names = next((arrays[k] for k in ("classes", "class_names", "label_names") if k in arrays), None)
    if {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
        x_tr, y_tr = _images(file, arrays["x_train"], "x_train"), _labels(file, arrays["y_train"], "y_train")
        x_te, y_te = _images(file, arrays["x_test"], "x_test"), _labels(file, arrays["y_test"], "y_test")
        split = "split given (x_train/x_test)"
    elif {"x", "y"} <= set(arrays):
        x, y = _images(file, arrays["x"], "x"), _labels(file, arrays["y"], "y")
        if len(x) != len(y):
            raise CorruptDatasetError(f"{file}: x has {len(x)} images but y has {len(y)} labels")
        (x_tr, y_tr), (x_te, y_te), split = _made_split(file, x, y)
    else:
        raise CorruptDatasetError(f"{file}: expected arrays x and y (or x_train, y_train, x_test, "
                                  f"y_test); found {', '.join(sorted(arrays)) or 'none'}")
    for x_, y_, what in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if len(x_) != len(y_):
            raise CorruptDatasetError(f"{file}: {what} split has {len(x_)} images but {len(y_)} labels")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise CorruptDatasetError(f"{file}: train images are {x_tr.shape[1:]} but test images "
                                  f"{x_te.shape[1:]}")
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    classes = _class_names(file, names, num_classes)
    _check_classes(file, y_tr, classes)
    return _image_data(name, x_tr, y_tr, x_te, y_te, classes, f"{file} (npz, {split})")


def _images(file: Path, x: np.ndarray, key: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise CorruptDatasetError(f"{file}: {key} is {x.dtype}; images must be uint8 in [0, 255] "
                                  "(e.g. x = (x * 255).round().astype(np.uint8))")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape:
        raise CorruptDatasetError(f"{file}: {key} has shape {x.shape}; expected (N, H, W) or "
                                  "(N, H, W, C) with C = 1 or 3 (channels last)")
    return x


def _labels(file: Path, y: np.ndarray, key: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise CorruptDatasetError(f"{file}: {key} must be a 1-d array of integer class indices, "
                                  f"got {y.dtype} {y.shape}")
    if len(y) and y.min() < 0:
        raise CorruptDatasetError(f"{file}: {key} has the negative label {int(y.min())}")
    return y.astype(np.int64)


def _class_names(file: Path, names: np.ndarray | None, num_classes: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in np.asarray(names).reshape(-1)]
    if len(names) < num_classes:
        raise CorruptDatasetError(f"{file}: {len(names)} class names for labels up to "
                                  f"{num_classes - 1}")
    return names


# -- image folders ----------------------------------------------------------------------------


def _class_folders(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.name)


def _files(root: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for label, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(label)
    return files, labels


def _load_image_folder(name: str, root: Path, resize: CentreCrop | None = None) -> ImageData:
    if not root.is_dir():
        raise DataError(f"dataset={name!r}: {root} is not a directory (imagefolder: takes a folder "
                        "with one sub-folder of images per class)")
    split_dirs = [root / "train", next((root / s for s in ("test", "val") if (root / s).is_dir()), None)]
    given = split_dirs[0].is_dir() and split_dirs[1] is not None
    top = split_dirs[0] if given else root
    classes = [d.name for d in _class_folders(top)]
    if given:
        test_classes = [d.name for d in _class_folders(split_dirs[1])]
        if test_classes != classes:
            raise DataError(f"{root}: the class folders of {split_dirs[0].name}/ ({', '.join(classes)}) "
                            f"and {split_dirs[1].name}/ ({', '.join(test_classes)}) differ")
    if len(classes) < 2:
        raise DataError(f"{top}: found {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
                        "an image folder needs one sub-folder per class and at least 2 classes")
    parts = [_files(top, classes)] + ([_files(split_dirs[1], classes)] if given else [])
    for (files, labels), where in zip(parts, (top, split_dirs[1])):
        if not files:
            raise DataError(f"{where}: no images (files ending in {', '.join(IMAGE_EXTENSIONS)}) "
                            f"in its class folders {', '.join(classes)}")
        empty = sorted(set(range(len(classes))) - set(labels))
        if empty and not given:
            raise DataError(f"{where}: the class folder(s) {', '.join(classes[i] for i in empty)} "
                            "hold no images")
    arrays = _decode_cached(root, parts, classes, resize)
    if given:
        x_tr, y_tr, x_te, y_te = arrays
        split = f"split given ({split_dirs[0].name}/ and {split_dirs[1].name}/)"
    else:
        x, y = arrays[0], arrays[1]
        (x_tr, y_tr), (x_te, y_te), split = _made_split(root, x, y)
    _check_classes(root, y_tr, classes)
    resized = f", {resize.describe()}" if resize is not None else ""
    return _image_data(name, x_tr, y_tr, x_te, y_te, classes,
                       f"{root} (image folder, {len(classes)} classes, {split}{resized})")


def _cache_file(root: Path, parts: list[tuple[list[Path], list[int]]],
                resize: CentreCrop | None = None) -> Path:
    """The cache of these files decoded (and resized as ``resize`` says: a key of the hash)."""
    key: list = [_CACHE_VERSION, str(root)]
    if resize is not None:  # without a resize the key is as before (caches stay valid)
        key.append([resize.size, float(resize.crop_pct), resize.interpolation])
    h = hashlib.sha256(json.dumps(key).encode())
    for files, labels in parts:
        for f, label in zip(files, labels):
            st = f.stat()
            h.update(f"{f.relative_to(root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    base = Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "mgiad")
    return base / "imagefolder" / f"{root.name}-{h.hexdigest()[:20]}.npz"


def _decode_cached(root: Path, parts: list[tuple[list[Path], list[int]]],
                   classes: list[str], resize: CentreCrop | None = None) -> list[np.ndarray]:
    """[x, y] (or [x_train, y_train, x_test, y_test]) decoded once, then read from the cache."""
    cache = _cache_file(root, parts, resize)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return [z[f"a{i}"] for i in range(2 * len(parts))]
        except (*NPZ_ERRORS, KeyError):
            pass  # a damaged cache is decoded again and rewritten
    decoded = _decode(parts, resize, root)
    first = decoded[0]
    how = f"; {resize.describe()}" if resize is not None else ""
    print(f"mgiad: decoded {sum(len(p[0]) for p in parts):,} images of {root} "
          f"({first.shape[2]}x{first.shape[1]}, {first.shape[3]} channel(s){how}); cached in {cache}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".tmp-{os.getpid()}-{cache.name}")
        with open(tmp, "wb") as f:
            np.savez(f, **{f"a{i}": a for i, a in enumerate(decoded)})
        os.replace(tmp, cache)
    except OSError as e:  # an unwritable cache costs time, not correctness
        print(f"mgiad: could not write the decode cache {cache} ({e.strerror or e}); decoding "
              "again next time")
    return decoded


def _decode(parts: list[tuple[list[Path], list[int]]], resize: CentreCrop | None = None,
            root: Path | None = None) -> list[np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    from .images import ImageDecodeError, decode

    images: list[tuple[Path, np.ndarray]] = []
    for files, _ in parts:
        for f in files:
            try:  # EXIF orientation applied, 16-bit grey scaled, multi-frame refused (images.py)
                images.append((f, decode(f, resize=resize)))
            except ImageDecodeError as e:
                raise CorruptDatasetError(f"{e}; remove or replace it") from None
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
                raise CorruptDatasetError(f"{f}: cannot read this image ({e}); remove or replace "
                                          "it") from None
    size = images[0][1].shape[:2]
    for f, a in images:
        if a.shape[:2] != size:
            n = min(min(b.shape[:2]) for _, b in images)  # no image enlarged
            raise DataError(
                f"{f} is {a.shape[1]}x{a.shape[0]} but {images[0][0]} is {size[1]}x{size[0]}: an "
                "image folder must hold images of one size, or name a resize and centre crop in "
                f"the data set, e.g. --dataset 'imagefolder:{root or 'PATH'}?size={n}' (shorter "
                f"side to {n}, then the centre {n}x{n}; options crop_pct=F, "
                "interpolation=bicubic)")
    rgb = any(a.ndim == 3 for _, a in images)
    out: list[np.ndarray] = []
    start = 0
    for files, labels in parts:
        chunk = [a for _, a in images[start:start + len(files)]]
        start += len(files)
        if rgb:
            chunk = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in chunk]
        x = np.stack(chunk)
        out += [x if x.ndim == 4 else x[..., None], np.asarray(labels, dtype=np.int64)]
    return out


# -- shared -----------------------------------------------------------------------------------


def _made_split(where: Path, x: np.ndarray, y: np.ndarray):
    """A stratified split: round(20%) of each class (at least 1) to test, seed 0."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            raise DataError(f"{where}: class {int(c)} has {len(idx)} image; a made train/test "
                            "split needs at least 2 per class (or give the split)")
        k = max(1, int(round(TEST_FRACTION * len(idx))))
        test[rng.choice(idx, size=k, replace=False)] = True
    split = f"split made: {int(test.sum())} test images, {TEST_FRACTION:.0%} of each class, seed {SPLIT_SEED}"
    return (x[~test], y[~test]), (x[test], y[test]), split


def _check_classes(where: Path, y_train: np.ndarray, classes: list[str]) -> None:
    present = np.unique(y_train)
    if len(present) < 2:
        raise DataError(f"{where}: the training split has {len(present)} class; training a "
                        "classifier needs at least 2")
    if present.max() >= len(classes):
        raise CorruptDatasetError(f"{where}: label {int(present.max())} but {len(classes)} classes")


def _image_data(name: str, x_tr, y_tr, x_te, y_te, classes: list[str], source: str) -> ImageData:
    return ImageData(name=name, x_train=torch.from_numpy(np.ascontiguousarray(x_tr)),
                     y_train=torch.from_numpy(np.asarray(y_tr, dtype=np.int64)),
                     x_test=torch.from_numpy(np.ascontiguousarray(x_te)),
                     y_test=torch.from_numpy(np.asarray(y_te, dtype=np.int64)),
                     classes=list(classes), source=source)
