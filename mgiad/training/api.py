"""``mgiad.train(model_or_name, train_data, test_data=None, **recipe)``: the training loop of
:mod:`mgiad.training.loop` for data a library user has — a torch ``Dataset``, a ``DataLoader`` or
``(x, y)`` tensors — and a model name or an ``nn.Module``. docs/library.md is the user's page.

No second loop: the data become what :func:`mgiad.training.loop.train` takes
(:mod:`mgiad.training.user_data` reads and checks them), so run directory, atomic checkpoints,
resume, the NaN/inf guard and ``metrics.jsonl`` are the command's. Here: the recipe, the number
of classes, and the check of a user's module.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from mgiad.data.policies import LEGACY_RECIPES, POLICIES, RECIPES

from .config import RunConfig
from .config_checks import _check_model, _check_model_name, _model_hyperparameters
from .user_data import CheckedLoader, UserData, adapt, check_labels
from .values import _coerce

#: RunConfig keys that ``mgiad.train`` does not take: the model and the data are its arguments.
NOT_RECIPE = ("model", "dataset", "data_dir", "download", "subset_train", "subset_test")
#: the recipe keywords: every other RunConfig key
RECIPE_KEYS = tuple(k for k in RunConfig.keys() if k not in NOT_RECIPE)


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
    data = adapt(train_data, test_data, cfg, batch_size_given="batch_size" in recipe)
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
            labels.append(check_labels(targets, len(targets), "train_data (the dataset's labels)"))
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


def _loader(data: Any) -> CheckedLoader | None:
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
