"""The data a library user gives ``mgiad.train`` (mgiad/training/api.py), as the training loop
reads it: ``(x, y)`` tensors or arrays, a ``TensorDataset`` or map-style ``Dataset`` (read into
memory once), or a ``DataLoader`` (used as given, each batch checked); every image and label
checked, with messages that name the fix.

uint8 images become an :class:`~mgiad.data.ImageData`, as ``npz:`` files do (every augmentation
policy applies); floating-point images a :class:`UserData` fed as given, with the crop/flip
policies only (:class:`FloatTransform`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from mgiad.data.augment import crop_flip
from mgiad.data.policies import POLICIES
from mgiad.data.spec import ImageData

from .config import RunConfig

#: policies that apply to floating-point images (crop and flip work on any values)
FLOAT_POLICIES = tuple(name for name, spec in POLICIES.items() if not spec.get("autoaugment"))


@dataclass
class UserData:
    """Data given to :func:`train` in the form :func:`mgiad.training.loop.train` reads
    (what :class:`~mgiad.data.ImageData` has), for floating-point images and DataLoaders.

    ``x_train`` (N, C, H, W) float32 with ``y_train``, or ``loader`` (a checked DataLoader);
    ``x_test``/``y_test`` or ``None``. ``mean``/``std`` are empty: the images are used as given.
    """

    name: str
    x_train: torch.Tensor | None
    y_train: torch.Tensor | None
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    classes: list[str]
    source: str
    in_chans: int
    image_size: int
    loader: Any = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def batch_transforms(self, policy: str, *, pad_to: int | None, channels_last: bool) -> tuple[Any, Any]:
        """(augment with ``.train(x, generator)``, test transform) for float NCHW batches."""
        t = FloatTransform(policy, pad_to=pad_to, channels_last=channels_last)
        return t, t.test


class FloatTransform:
    """Crop and flip (``mgiad.data.augment.crop_flip``, any dtype), ``pad_to`` and the memory
    layout, for floating-point (N, C, H, W) batches; values as given (no /255, no mean/std)."""

    def __init__(self, policy: str, *, pad_to: int | None, channels_last: bool) -> None:
        if policy not in FLOAT_POLICIES:
            raise ValueError(f"augment={policy!r} needs uint8 images (AutoAugment works on pixels "
                             f"0..255); floating-point images take {', '.join(FLOAT_POLICIES)}, or "
                             "pass uint8 images")
        spec = POLICIES[policy]
        self.crop, self.pad_mode, self.flip = spec.get("crop"), spec.get("pad_mode", "constant"), spec.get("flip", False)
        self.pad_to, self.channels_last = pad_to, channels_last

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.pad_to is not None:  # centred zero padding, as BatchAugment's pad_to
            h, w = x.shape[-2:]
            if self.pad_to < max(h, w):
                raise ValueError(f"pad_to={self.pad_to} is smaller than the images ({h}x{w})")
            top, left = (self.pad_to - h) // 2, (self.pad_to - w) // 2
            x = torch.nn.functional.pad(x, (left, self.pad_to - w - left, top, self.pad_to - h - top))
        return x

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = self._prepare(x)
        n, dev = len(x), generator.device
        top = left = flip = None
        if self.crop:
            top, left = (torch.randint(0, 2 * self.crop + 1, (n,), generator=generator, device=dev)
                         for _ in range(2))
        if self.flip:
            flip = torch.rand(n, generator=generator, device=dev) < 0.5
        if top is not None or flip is not None:
            x = crop_flip(x, top, left, flip, self.crop or 0, self.pad_mode)
        return self._layout(x)

    def test(self, x: torch.Tensor) -> torch.Tensor:
        return self._layout(self._prepare(x))


def adapt(train_data: Any, test_data: Any, cfg: RunConfig, *, batch_size_given: bool) -> Any:
    """``train_data``/``test_data`` as the loop's data: an ImageData (uint8) or a UserData."""
    loader = train_data if isinstance(train_data, DataLoader) else None
    if loader is not None:
        x_tr = y_tr = None
        kind, first = "float", _first_batch(loader)
        shape, classes_of = first.shape[1:], loader.dataset
        _check_loader_batch_size(loader, cfg, batch_size_given)
        source = f"a DataLoader (float {_shape_text(shape)}, batches of {cfg.batch_size}, used as given)"
    else:
        x_tr, y_tr, classes_of, what = _read(train_data, "train_data")
        kind, x_tr = _images(x_tr, "train_data")
        y_tr = check_labels(y_tr, len(x_tr), "train_data")
        shape = tuple(x_tr.shape[1:]) if kind == "float" else tuple(x_tr.shape[i] for i in (3, 1, 2))
        source = f"{what} ({kind} {_shape_text(shape)}{', as given' if kind == 'float' else ''})"
    x_te = y_te = None
    if test_data is not None:
        x_te, y_te, _, _ = _read(test_data, "test_data")
        test_kind, x_te = _images(x_te, "test_data")
        y_te = check_labels(y_te, len(x_te), "test_data")
        if test_kind != kind:
            raise ValueError(f"test_data images are {test_kind} but train_data images are {kind}: "
                             "give both as uint8 pixels or both as floating point")
        c_te = x_te.shape[1] if kind == "float" else x_te.shape[-1]
        if c_te != shape[0]:
            raise ValueError(f"test_data images have {c_te} channels, train_data images {shape[0]}")
    name = f"user:{type(train_data).__name__ if not isinstance(train_data, (tuple, list)) else 'tensors'}"
    if kind == "uint8":
        data: Any = ImageData(name=name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                              classes=[], source=source)
    else:
        data = UserData(name=name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, classes=[],
                        source=source, in_chans=int(shape[0]), image_size=int(shape[1]))
        if loader is not None:
            data.loader = CheckedLoader(loader, shape)
        FloatTransform(cfg.augment, pad_to=None, channels_last=False)  # refuse AutoAugment now
    data._classes_of = classes_of  # where num_classes may be read (removed by _classes)
    return data


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _read(obj: Any, what: str) -> tuple[Any, Any, Any, str]:
    """(images, labels, the object that may know the classes, a description) of any data form."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and not isinstance(obj[0], (tuple, list)):
        return obj[0], obj[1], None, "tensors"
    if isinstance(obj, TensorDataset):
        if len(obj.tensors) != 2:
            raise ValueError(f"{what}: a TensorDataset of {len(obj.tensors)} tensors; mgiad.train "
                             "takes TensorDataset(images, labels)")
        return obj.tensors[0], obj.tensors[1], obj, "a TensorDataset"
    if isinstance(obj, DataLoader):  # test data: read once, in the loader's order
        xs, ys = [], []
        for batch in obj:
            x, y = _pair(batch, what)
            xs.append(x)
            ys.append(torch.as_tensor(y))
        if not xs:
            raise ValueError(f"{what}: the DataLoader gives no batches")
        return torch.cat(xs), torch.cat(ys), obj.dataset, "a DataLoader"
    if isinstance(obj, IterableDataset):
        raise ValueError(f"{what}: an IterableDataset has no length or index; wrap it in a "
                         "DataLoader with a batch_size (train_data), or give (x, y) tensors")
    if isinstance(obj, Dataset) or (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
                                    and not isinstance(obj, (str, bytes, dict))):
        n = len(obj)
        if n == 0:
            raise ValueError(f"{what}: the dataset is empty")
        first = _pair(obj[0], what)
        again = _pair(obj[0], what)
        if not torch.equal(_as_tensor(first[0]), _as_tensor(again[0])):
            raise ValueError(
                f"{what}: {type(obj).__name__}[0] differs between two reads (a random transform?). "
                "mgiad.train reads a Dataset into memory once, which would freeze one draw: pass "
                "DataLoader(dataset, batch_size=..., shuffle=True) to draw anew every epoch, or drop "
                f"the random transform and use augment= ({', '.join(POLICIES)})")
        items = [first] + [_pair(obj[i], what) for i in range(1, n)]
        try:
            x = torch.stack([_as_tensor(i[0]) for i in items])
        except RuntimeError as e:
            raise ValueError(f"{what}: the images of {type(obj).__name__} differ in shape ({e}); "
                             "resize them to one size in the dataset's transform") from None
        return x, [i[1] for i in items], obj, f"a {type(obj).__name__}"
    raise ValueError(f"{what}: expected a torch Dataset, a DataLoader or an (x, y) pair of tensors, "
                     f"got {type(obj).__name__}")


def _pair(item: Any, what: str) -> tuple[Any, Any]:
    if not (isinstance(item, (tuple, list)) and len(item) >= 2):
        raise ValueError(f"{what}: each item must be (image, label), got {type(item).__name__}"
                         f"{f' of {len(item)}' if isinstance(item, (tuple, list)) else ''}")
    return item[0], item[1]


def _as_tensor(img: Any) -> torch.Tensor:
    """A tensor of an image: a tensor, an array or a PIL image (as uint8 H x W [x C])."""
    if isinstance(img, torch.Tensor):
        return img
    if hasattr(img, "mode") and hasattr(img, "getbands"):  # PIL, as torchvision data sets give
        from mgiad.data.images import is_grey

        img = np.asarray(img.convert("L" if is_grey(img.mode) else "RGB"))
    return torch.as_tensor(np.asarray(img))


_FIX_DTYPE = ("images must be uint8 pixels (0..255) or floating point; if yours are pixels in "
              "0..255, x.to(torch.uint8), else x.float()")


def _images(x: Any, what: str) -> tuple[str, torch.Tensor]:
    """("uint8", NHWC) or ("float", NCHW float32) of an image batch, checked."""
    x = _as_tensor(x)
    if x.dtype == torch.uint8:
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        if x.dim() != 4:
            raise ValueError(f"{what}: uint8 images of shape {tuple(x.shape)}; expected (N, H, W), "
                             "(N, H, W, C) or (N, C, H, W) with C = 1 or 3")
        last, second = x.shape[-1] in (1, 3), x.shape[1] in (1, 3)
        if last and second:
            raise ValueError(f"{what}: uint8 images of shape {tuple(x.shape)} read as channels-first "
                             "and as channels-last; give them as floats (N, C, H, W), x.float() / 255")
        if not (last or second):
            raise ValueError(f"{what}: uint8 images of shape {tuple(x.shape)} have neither 1 nor 3 "
                             "channels first or last; give (N, H, W, C) or (N, C, H, W), C = 1 or 3")
        x = x if last else x.permute(0, 2, 3, 1)
        if 0 in x.shape:
            raise ValueError(f"{what}: no images (shape {tuple(x.shape)})")
        return "uint8", x.contiguous()
    if not x.is_floating_point():
        raise ValueError(f"{what}: images of dtype {x.dtype}; {_FIX_DTYPE}")
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (N, H, W): one channel
    if x.dim() != 4 or 0 in x.shape:
        raise ValueError(f"{what}: images of shape {tuple(x.shape)}; expected (N, C, H, W) (or "
                         "(N, H, W) for one channel)")
    if x.shape[1] > 4 and x.shape[-1] in (1, 3):
        raise ValueError(f"{what}: images of shape {tuple(x.shape)} look channels-last; torch "
                         "models take (N, C, H, W): x.permute(0, 3, 1, 2)")
    x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what}: the images hold NaN or inf values; fix or drop those images")
    return "float", x.contiguous()


def check_labels(y: Any, n: int, what: str) -> torch.Tensor:
    """int64 class indices (N,), checked."""
    try:
        if isinstance(y, (list, tuple)) and y and isinstance(y[0], torch.Tensor):
            y = torch.stack(list(y))  # 0-d label tensors of a Dataset's items
        y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{what}: labels must be integer class indices ({e})") from None
    if y.dim() == 2 and y.shape[0] == n:
        raise ValueError(f"{what}: labels of shape {tuple(y.shape)} (one-hot or scores?); give class "
                         "indices, y.argmax(1)")
    if y.dim() != 1:
        raise ValueError(f"{what}: labels of shape {tuple(y.shape)}; expected ({n},) class indices")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{what}: labels of dtype {y.dtype}; class indices are integers, "
                         "y.long() if they are whole numbers")
    if len(y) != n:
        raise ValueError(f"{what}: {n} images but {len(y)} labels")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{what}: the negative label {int(y.min())}; labels are class indices "
                         "0..num_classes-1")
    return y.long()


def _first_batch(loader: DataLoader) -> torch.Tensor:
    if isinstance(loader.dataset, IterableDataset):
        raise ValueError("train_data: a DataLoader over an IterableDataset has no length, which the "
                         "schedule and the epochs need; give a map-style Dataset")
    x, y = _pair(next(iter(loader)), "train_data")
    kind, x = _images(x, "train_data (the DataLoader's first batch)")
    if kind != "float":
        raise ValueError("train_data: the DataLoader gives uint8 images; a DataLoader's batches are "
                         "used as given, so they must be floating point (e.g. torchvision's "
                         "ToTensor in the dataset's transform), or pass the uint8 tensors themselves")
    check_labels(y, len(x), "train_data (the DataLoader's first batch)")
    return x


def _check_loader_batch_size(loader: DataLoader, cfg: RunConfig, given: bool) -> None:
    """The loader's batch size is the run's; a different recipe batch_size is refused."""
    size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None)
    if not isinstance(size, int):
        raise ValueError("train_data: a DataLoader without a batch_size (a custom batch_sampler); "
                         "give it batch_size=..., which the run records")
    if given and cfg.batch_size != size:
        raise ValueError(f"batch_size={cfg.batch_size} but the DataLoader's batch_size is {size}: "
                         "the DataLoader is used as given; drop batch_size= or build the "
                         "DataLoader with it")
    cfg.batch_size = size


class CheckedLoader:
    """The DataLoader's batches, each checked (float images of the first batch's channels and
    size, integer labels within the classes) as it arrives."""

    def __init__(self, loader: DataLoader, shape: Sequence[int]) -> None:
        self.loader, self.dataset, self.shape, self.num_classes = loader, loader.dataset, tuple(shape), 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, batch in enumerate(self.loader):
            x, y = _pair(batch, "train_data")
            kind, x = _images(x, f"train_data (batch {i})")
            if kind != "float" or tuple(x.shape[1:]) != self.shape:
                raise ValueError(f"train_data: batch {i} holds {kind} images {_shape_text(x.shape[1:])}, "
                                 f"the first batch float {_shape_text(self.shape)}; the images must "
                                 "agree in type, channels and size")
            y = check_labels(y, len(x), f"train_data (batch {i})")
            if len(y) and int(y.max()) >= self.num_classes:
                raise ValueError(f"train_data: batch {i} has the label {int(y.max())}, but there are "
                                 f"{self.num_classes} classes (0..{self.num_classes - 1}); pass "
                                 "num_classes=")
            yield x, y
