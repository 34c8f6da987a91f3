"""``mgiad.train(model_or_name, train_data, test_data=None, **recipe)``: the training loop of
:mod:`mgiad.training.loop` for data a library user has — a torch ``Dataset``, a ``DataLoader`` or
``(x, y)`` tensors — and a model name or an ``nn.Module``. docs/library.md is the user's page.

No second loop: the data become what :func:`mgiad.training.loop.train` takes, so run directory,
atomic checkpoints, resume, the NaN/inf guard and ``metrics.jsonl`` are the command's.

- ``(x, y)`` tensors, a ``TensorDataset`` and any map-style ``Dataset`` of ``(image, label)`` are
  read once into memory (the loop keeps a data set in memory and batches it itself, with
  ``batch_size`` and its own seeded shuffling). uint8 images, ``(N, H, W[, C])`` or ``(N, C, H,
  W)``, become an :class:`~mgiad.data.ImageData` as ``npz:`` files do: scaled by 1/255 and
  normalised with the training split's per-channel mean and std, every ``augment`` policy
  available. Floating-point images ``(N, C, H, W)`` are fed as given (your values, no
  normalisation): only the policies that crop and flip (``crop-flip``, ``crop-flip-reflect``;
  constant padding is 0 in your values) apply to them, AutoAugment needs uint8 pixels.
- A ``DataLoader`` is used as given, every epoch: its sampler, its batch size (a different
  ``batch_size`` in the recipe is refused), its dataset's transforms. Its batches must be
  floating-point ``(B, C, H, W)`` images with integer labels; each batch is checked.
- ``augment`` defaults to ``none`` here (the command's ``authors`` recipe is chosen per data set
  and has nothing for yours); a per-data-set recipe (``authors``, ``torchvision``) is refused.
- ``test_data=None``: no evaluation (``test_acc`` stays ``None``); test data of any of the forms
  are read into memory.
"""

from __future__ import annotations

import json
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from mgiad.data.augment import crop_flip
from mgiad.data.policies import LEGACY_RECIPES, POLICIES, RECIPES
from mgiad.data.spec import ImageData

from .config import RunConfig
from .config_checks import _check_model, _check_model_name, _model_hyperparameters
from .values import _coerce

#: RunConfig keys that ``mgiad.train`` does not take: the model and the data are its arguments.
NOT_RECIPE = ("model", "dataset", "data_dir", "download", "subset_train", "subset_test")
#: the recipe keywords: every other RunConfig key
RECIPE_KEYS = tuple(k for k in RunConfig.keys() if k not in NOT_RECIPE)
#: policies that apply to floating-point images (crop and flip work on any values)
FLOAT_POLICIES = tuple(name for name, spec in POLICIES.items() if not spec.get("autoaugment"))


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained network, in eval mode, on the training device (your module itself
            when you passed one).
        history: the ``metrics.jsonl`` rows, one per epoch (``train_loss``, ``train_acc``,
            ``test_acc``, ``lr``, ``img_per_s``, ...).
        summary: ``summary.json``: status, final and best test accuracy, weights, wall time, ...
        run_dir: the run directory (config, checkpoint ``last.safetensors``, metrics, summary).
    """

    model: nn.Module
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    run_dir: Path

    def __repr__(self) -> str:
        acc = self.summary.get("final_test_acc")
        test = f"{100 * acc:.2f}%" if acc is not None else "none"
        return (f"TrainResult({type(self.model).__name__}, {len(self.history)} epochs, "
                f"status {self.summary.get('status')!r}, test accuracy {test}, run_dir={str(self.run_dir)!r})")


def train(
    model_or_name: str | nn.Module,
    train_data: Any,
    test_data: Any = None,
    *,
    num_classes: int | None = None,
    resume: str | Path | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    **recipe: Any,
) -> TrainResult:
    """Train ``model_or_name`` on ``train_data`` with the paper's recipe, changed by ``recipe``.

    Args:
        model_or_name: a registered model name (``mgiad.list_models()``), built with the data's
            ``num_classes`` and ``in_chans``, or your ``nn.Module``, trained in place.
        train_data: ``(x, y)`` tensors (or arrays), a ``TensorDataset``, a map-style
            ``Dataset`` of ``(image, label)`` (tensor, array or PIL image; int label) or a
            ``DataLoader``; module docstring for what each means.
        test_data: the same forms (read into memory), or ``None`` for no evaluation.
        num_classes: the number of classes; by default the dataset's ``classes``, your
            module's output width, or the largest label + 1 (it says which).
        resume: a run directory of an earlier call to continue from its last checkpoint (the
            same model and data; only the keys the command may change on resume may differ).
        on_epoch_end: called with each epoch's metrics row.
        recipe: :class:`~mgiad.training.config.RunConfig` keys (``epochs``, ``lr``,
            ``batch_size``, ``schedule``, ``weight_decay``, ``augment``, ``seed``, ``out_dir``,
            ``run_name``, ``device``, ...; :data:`RECIPE_KEYS`), checked as the command checks
            them; with a model name also ``model_kwargs`` or its hyper-parameters
            (``c_K=16``). Defaults: the paper's recipe (400 epochs, batch 128, lr 0.05, SGD),
            except ``augment="none"``.

    Returns:
        :class:`TrainResult` (``.model``, ``.history``, ``.summary``, ``.run_dir``).

    Raises:
        ValueError: an unknown keyword, a bad value, data of the wrong type, shape, dtype or
            labels (each message names the problem and the fix).
        mgiad.training.TrainingDiverged: the loss became NaN/inf (the last checkpoint stays).
    """
    from .loop import train as run_loop

    cfg, module, name = _config(model_or_name, recipe)
    if name is not None:
        _check_model(cfg, "user")  # hyper-parameter names and values, on the meta device
    data = _adapt(train_data, test_data, cfg, batch_size_given="batch_size" in recipe)
    cfg.dataset = data.name  # the run directory's name and the records say whose data it was
    data.classes = _classes(data, num_classes, module)
    if module is not None:
        _check_module(module, data, len(data.classes))
    _say(data, cfg, name or cfg.model, data.num_classes)

    built: list[nn.Module] = []

    def build() -> nn.Module:  # called by the loop right after torch.manual_seed(cfg.seed)
        if module is not None:
            built.append(module)
        else:
            from mgiad.models.registry import create_model

            built.append(create_model(name, num_classes=data.num_classes, in_chans=data.in_chans,
                                      **cfg.model_kwargs))
        return built[0]

    summary = run_loop(cfg, resume=resume, data=data, on_epoch_end=on_epoch_end, build_model=build)
    run_dir = Path(summary["run_dir"])
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return TrainResult(model=built[0].eval(), history=history, summary=summary, run_dir=run_dir)


# ---------------------------------------------------------------------------------- the recipe


def _config(model_or_name: Any, recipe: dict[str, Any]) -> tuple[RunConfig, nn.Module | None, str | None]:
    """The RunConfig of the call; the module (or None) and the registered name (or None)."""
    module = model_or_name if isinstance(model_or_name, nn.Module) else None
    if module is None and not isinstance(model_or_name, str):
        raise ValueError(f"model_or_name must be a registered model name (mgiad.list_models()) or "
                         f"an nn.Module, got {type(model_or_name).__name__}")
    name = None if module is not None else model_or_name
    if name is not None:
        _check_model_name(name)
    hyper = _model_hyperparameters(name) if name is not None else []
    values: dict[str, Any] = {"augment": "none"}  # your data: no recipe has a choice for it
    model_kwargs = dict(recipe.get("model_kwargs") or {})
    for key, value in recipe.items():
        if key == "model_kwargs":
            continue
        if key in RECIPE_KEYS:
            values[key] = value
        elif key in hyper:  # c_K=16 as shorthand for model_kwargs={"c_K": 16}, as the command
            model_kwargs[key] = value
        elif key in NOT_RECIPE:
            raise ValueError(f"{key}=: not a keyword of mgiad.train (the model and the data are its "
                             f"arguments{'; subsets: slice your data' if key.startswith('subset') else ''}); "
                             f"the recipe keywords are {', '.join(RECIPE_KEYS)}")
        elif key in ("num_classes", "in_chans"):
            raise ValueError(f"{key}=: set by the data (num_classes= may be given to mgiad.train)")
        else:
            extra = (f"; or a hyper-parameter of {name}: {', '.join(hyper)}" if hyper else
                     " (hyper-parameters go to the module you build)" if module is not None else "")
            raise ValueError(f"unknown keyword {key}={value!r} of mgiad.train; the recipe keywords "
                             f"are {', '.join(RECIPE_KEYS)}{extra}")
    if model_kwargs and module is not None:
        raise ValueError(f"model_kwargs={model_kwargs!r} with an nn.Module: hyper-parameters are the "
                         "module's own; build it with them, or pass a registered name")
    augment = values["augment"]
    if augment in RECIPES or augment in LEGACY_RECIPES:
        raise ValueError(f"augment={augment!r} is a per-data-set recipe (CIFAR-10, CIFAR-100, "
                         f"FashionMNIST) with no choice for your data; name a policy: "
                         f"{', '.join(POLICIES)}")
    values["model"] = f"module-{type(module).__name__}" if module is not None else name
    values["model_kwargs"] = model_kwargs
    hints = typing.get_type_hints(RunConfig)  # types as RunConfig.from_dict checks them
    cfg = RunConfig(**{k: _coerce(k, v, hints[k], "mgiad.train") for k, v in values.items()})
    cfg.validate(check_names=False)  # values: the command's checks and messages, before any data
    return cfg, module, name


def _say(data: Any, cfg: RunConfig, model: str, num_classes: int) -> None:
    """One line of what was inferred and chosen (stderr, as the loop's own lines)."""
    test = "" if data.y_test is not None else "; no test data: no evaluation"
    print(f"mgiad.train: {model} on {data.source}; {num_classes} classes ({data.classes_from}), "
          f"in_chans {data.in_chans}, augment {cfg.augment}{test}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- the data


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
        t = _FloatTransform(policy, pad_to=pad_to, channels_last=channels_last)
        return t, t.test


class _FloatTransform:
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


def _adapt(train_data: Any, test_data: Any, cfg: RunConfig, *, batch_size_given: bool) -> Any:
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
        y_tr = _labels(y_tr, len(x_tr), "train_data")
        shape = tuple(x_tr.shape[1:]) if kind == "float" else tuple(x_tr.shape[i] for i in (3, 1, 2))
        source = f"{what} ({kind} {_shape_text(shape)}{', as given' if kind == 'float' else ''})"
    x_te = y_te = None
    if test_data is not None:
        x_te, y_te, _, _ = _read(test_data, "test_data")
        test_kind, x_te = _images(x_te, "test_data")
        y_te = _labels(y_te, len(x_te), "test_data")
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
            data.loader = _CheckedLoader(loader, shape)
        _FloatTransform(cfg.augment, pad_to=None, channels_last=False)  # refuse AutoAugment now
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


def _labels(y: Any, n: int, what: str) -> torch.Tensor:
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
    _labels(y, len(x), "train_data (the DataLoader's first batch)")
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


class _CheckedLoader:
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
            y = _labels(y, len(x), f"train_data (batch {i})")
            if len(y) and int(y.max()) >= self.num_classes:
                raise ValueError(f"train_data: batch {i} has the label {int(y.max())}, but there are "
                                 f"{self.num_classes} classes (0..{self.num_classes - 1}); pass "
                                 "num_classes=")
            yield x, y


def _classes(data: Any, num_classes: int | None, module: nn.Module | None) -> list[str]:
    """The class names; ``data.classes_from`` says where their number came from."""
    known = data.__dict__.pop("_classes_of")
    names = getattr(known, "classes", None)  # torchvision's data sets, ImageFolder
    names = [str(c) for c in names] if isinstance(names, (list, tuple)) and names else None
    labels = [y for y in (data.y_train, data.y_test) if y is not None and len(y)]
    if _loader(data) is not None:
        targets = (known.tensors[1] if isinstance(known, TensorDataset) and len(known.tensors) == 2
                   else getattr(known, "targets", None))
        if targets is not None:
            labels.append(_labels(targets, len(targets), "train_data (the dataset's labels)"))
    top = max((int(y.max()) for y in labels), default=-1) + 1
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes={num_classes!r}: an integer >= 2")
        k, data.classes_from = num_classes, "num_classes="
    elif names is not None:
        k, data.classes_from = len(names), f"the dataset's classes: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}"
    elif module is not None:
        k, data.classes_from = None, "the module's output"
    elif _loader(data) is not None and not labels:
        raise ValueError("train_data: cannot tell the number of classes of this DataLoader without "
                         "reading all of it (its dataset has no classes, targets or label tensor); "
                         "pass num_classes=")
    else:
        k, data.classes_from = top, f"inferred from the labels 0..{top - 1}; pass num_classes= if there are more"
    if k is not None and top > k:
        raise ValueError(f"the label {top - 1} but {k} classes ({data.classes_from}); labels are "
                         f"0..num_classes-1: pass num_classes={top} or fix the labels")
    if k is not None and k < 2:
        raise ValueError(f"only {k} class in the labels; a classifier needs at least 2 (pass "
                         "num_classes= if the others exist)")
    if _loader(data) is not None:
        data.loader.num_classes = k or 0  # the module's: set by _check_module
    data._top_label = top
    if k is None:
        return []  # the module's output width decides (_check_module)
    return names if names is not None and len(names) == k else [str(i) for i in range(k)]


def _loader(data: Any) -> _CheckedLoader | None:
    return getattr(data, "loader", None)


def _check_module(module: nn.Module, data: Any, k: int) -> None:
    """Run the module on two training images (eval mode, no gradient): the input it takes and
    its output width, with a clear message instead of an error in the first step."""
    if isinstance(data, UserData):
        x = data.x_train[:2] if data.loader is None else next(iter(data.loader.loader))[0][:2]
        x = x.float()
    else:  # uint8 NHWC -> what the loop feeds: normalised NCHW
        from mgiad.data.augment import BatchAugment

        x = BatchAugment(mean=data.mean, std=data.std).test(data.x_train[:2])
    device = next(module.parameters(), torch.empty(0)).device
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(x.to(device))
    except Exception as e:  # the module's own error: shape, channels, dtype
        raise ValueError(f"the module fails on two training images of shape {tuple(x.shape)}: "
                         f"{type(e).__name__}: {e}; check its in_chans ({x.shape[1]} channels here) "
                         "and the image size") from None
    finally:
        module.train(was_training)
    if not (isinstance(out, torch.Tensor) and out.dim() == 2 and len(out) == len(x)):
        raise ValueError(f"the module returns {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__} "
                         f"for {len(x)} images; a classifier returns logits (N, num_classes)")
    width = out.shape[1]
    if not data.classes:  # no num_classes given, no class names: the module's output
        if width < 2 or width < data._top_label:
            raise ValueError(f"the module has {width} outputs but the labels go to "
                             f"{data._top_label - 1}; build it with num_classes={max(data._top_label, 2)}")
        data.classes = [str(i) for i in range(width)]
        if _loader(data) is not None:
            data.loader.num_classes = width
    elif width != k:
        raise ValueError(f"the module has {width} outputs but there are {k} classes "
                         f"({data.classes_from}); build it with num_classes={k}")
