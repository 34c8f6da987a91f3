"""What a run configuration may hold, and the messages that say so.

:func:`check_config` is the body of :meth:`RunConfig.validate
<mgiad.training.config.RunConfig.validate>`: every value against what is allowed, the model's
hyper-parameters by building the model on the meta device; :func:`_unknown_key_message` answers
an argument that is neither a config key nor a hyper-parameter of the model with the close config
keys and hyper-parameters (ignoring case). Each ``ValueError`` names the key, the value and what
is allowed, so a typo never silently trains the wrong model for a day. Torch-free until a model
is built.
"""

from __future__ import annotations

import difflib
import math
import numbers
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mgiad.data.policies import AUGMENT_MODES

from .values import _coerce, valid_device

if TYPE_CHECKING:
    from .config import RunConfig

#: Datasets the loaders know (mirrors ``mgiad.data.datasets.DATASET_NAMES``; kept here so that a
#: config can be validated without importing the data module).
KNOWN_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "fashionmnist")

SCHEDULES = ("cosine", "cosine-steps", "step")
AMP_MODES = ("none", "bf16")

#: (classes, channels) of each dataset: enough to build a model to check its hyper-parameters.
_DATA_SHAPES: dict[str, tuple[int, int]] = {"cifar10": (10, 3), "cifar100": (100, 3),
                                            "fashionmnist": (10, 1)}
#: Configurations already built once by ``_check_model`` (validation runs many times per sweep).
_BUILDS_OK: set[tuple[str, str, int, int]] = set()

#: Model arguments that the dataset determines; setting them by hand would only let the
#: model and the data disagree.
_DATA_DERIVED_KWARGS = ("num_classes", "in_chans")


def check_config(cfg: RunConfig, *, check_names: bool = True) -> None:
    """:meth:`RunConfig.validate <mgiad.training.config.RunConfig.validate>`: raise
    ``ValueError`` (key, value, what is allowed) for the first bad value of ``cfg``."""
    hints = typing.get_type_hints(type(cfg))
    for name in cfg.keys():
        _coerce(name, getattr(cfg, name), hints[name], "config")  # type check
    _require(cfg.epochs >= 1, "epochs", cfg.epochs, "an integer >= 1")
    _require(cfg.batch_size >= 1, "batch_size", cfg.batch_size, "an integer >= 1")
    _require(_finite(cfg.lr) and cfg.lr > 0, "lr", cfg.lr, "a finite number > 0")
    _require(0 <= cfg.momentum < 1, "momentum", cfg.momentum, "a number in [0, 1)")
    _require(
        _finite(cfg.weight_decay) and cfg.weight_decay >= 0,
        "weight_decay", cfg.weight_decay, "a finite number >= 0",
    )
    _require(cfg.schedule in (None, *SCHEDULES), "schedule", cfg.schedule, f"one of {SCHEDULES}")
    _require(cfg.step_size is None or cfg.step_size >= 1, "step_size", cfg.step_size,
             "an integer >= 1 (epochs between lr decays)")
    _require(cfg.gamma is None or (_finite(cfg.gamma) and 0 < cfg.gamma <= 1), "gamma",
             cfg.gamma, "a number in (0, 1]")
    _require(cfg.augment in AUGMENT_MODES, "augment", cfg.augment, f"one of {AUGMENT_MODES}")
    _require(cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
    for name in ("subset_train", "subset_test", "pad_to", "max_steps_per_epoch", "threads"):
        value = getattr(cfg, name)
        _require(value is None or value >= 1, name, value, "an integer >= 1 or none")
    _require(_valid_device(cfg.device), "device", cfg.device,
             "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    _require(cfg.amp in AMP_MODES, "amp", cfg.amp, f"one of {AMP_MODES}")
    _require(cfg.eval_every >= 1, "eval_every", cfg.eval_every, "an integer >= 1")
    _require(bool(cfg.out_dir), "out_dir", cfg.out_dir, "a non-empty path")
    _require(
        cfg.run_name is None or (bool(cfg.run_name) and "/" not in cfg.run_name
                                 and "\\" not in cfg.run_name and cfg.run_name not in (".", "..")),
        "run_name", cfg.run_name, "a directory name without '/' (or none)",
    )
    _require(cfg.time_budget_s is None or (_finite(cfg.time_budget_s) and cfg.time_budget_s > 0),
             "time_budget_s", cfg.time_budget_s, "a number of seconds > 0 or none")
    from .tracking import parse_trackers

    parse_trackers(cfg.track)
    _require(isinstance(cfg.track_project, str) and cfg.track_project.strip() != "",
             "track_project", cfg.track_project, "a non-empty name")
    for key in cfg.model_kwargs:
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"model_kwargs key {key!r} is not a valid hyper-parameter name")
        if key in _DATA_DERIVED_KWARGS:
            raise ValueError(
                f"model_kwargs.{key}={cfg.model_kwargs[key]!r}: {key} is set from the dataset; "
                "remove it from model_kwargs"
            )
    if check_names:
        _check_model_name(cfg.model)
        dataset = _canonical_dataset(cfg.dataset)
        _check_model(cfg, dataset)


def _check_model(cfg: RunConfig, dataset: str) -> None:
    """Every model_kwargs key is a hyper-parameter of the model and the model builds with
    them (on the meta device: no memory, a few ms), so that a bad value fails here rather
    than after the data are loaded."""
    names = _model_hyperparameters(cfg.model)
    for key, value in cfg.model_kwargs.items():
        if key not in names:
            close = _close_matches(key, names)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(f"model_kwargs.{key}={value!r}: {_has_no(cfg.model, key)}{hint} "
                             f"({_hyperparameters_text(cfg.model)})")
    num_classes, in_chans = _DATA_SHAPES.get(dataset, (10, 3))
    key = (cfg.model, repr(sorted(cfg.model_kwargs.items())), num_classes, in_chans)
    if key in _BUILDS_OK:
        return
    import torch

    from mgiad.models.registry import create_model

    try:
        with torch.device("meta"):
            create_model(cfg.model, num_classes=num_classes, in_chans=in_chans,
                         **cfg.model_kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model {cfg.model}: {e}") from None
    _BUILDS_OK.add(key)


# --------------------------------------------------------------------------------------
# helpers


def _canonical_key(key: str) -> str:
    return key.strip().replace("-", "_")


def _close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``name`` ignoring case (``c_k`` finds ``c_K``), exact ones first."""
    lower = {c.lower(): c for c in candidates}
    return [lower[m] for m in difflib.get_close_matches(name.lower(), lower, n=n, cutoff=0.6)]


def _has_no(model: str, key: str) -> str:
    if not _model_hyperparameters(model) and not _is_registered(model):
        return f"model {model!r} is not registered, so {key!r} cannot be checked"
    return f"{model} has no hyper-parameter {key!r}"


def _hyperparameters_text(model: str) -> str:
    names = _model_hyperparameters(model)
    if not names:
        return f"model {model!r} has no hyper-parameters" if _is_registered(model) else \
            "see mgiad.list_models()"
    return f"{model}'s hyper-parameters: {', '.join(names)}"


def _unknown_key_message(key: str, text: str | None = None, *, model: str,
                         keys: list[str]) -> str:
    """An argument that is neither a config key (one of ``keys``) nor a hyper-parameter of
    ``model``: the close config keys and hyper-parameters (ignoring case), and what the model
    has."""
    name = _canonical_key(key)
    names = _model_hyperparameters(model)
    close = _close_matches(name, keys) + [f"{h} (a hyper-parameter of {model})"
                                          for h in _close_matches(name, names)]
    if name in names:  # in a config file, at the top level instead of in model_kwargs
        return (f"unknown config key {key!r}: {name} is a hyper-parameter of {model}; set it in "
                f"model_kwargs (a [model_kwargs] table in TOML, \"model_kwargs\": {{...}} in JSON)")
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    where = "" if text is None else f"--{key}={text}: "
    return (
        f"unknown config key {key!r}{hint} ({where}{_has_no(model, name)} either; "
        f"{_hyperparameters_text(model)}, set as --NAME=VALUE or --model_kwargs.NAME=VALUE; "
        f"config keys: {', '.join(keys)})"
    )


def _check_model_name(model: str) -> None:
    from mgiad.models.registry import list_models

    if model not in list_models():
        close = difflib.get_close_matches(model, list_models(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"model={model!r} is not a registered model{hint} "
                         "(see `mgiad list` or mgiad.list_models())")


def _is_registered(model: str) -> bool:
    from mgiad.models.registry import list_models

    return model in list_models()


def _canonical_dataset(name: str) -> str:
    """The canonical dataset name of ``name`` or an alias (``ValueError`` if unknown)."""
    try:
        from mgiad.data.datasets import canonical_name
    except ImportError:  # data module unavailable: accept exactly the canonical names
        if name in KNOWN_DATASETS:
            return name
        close = difflib.get_close_matches(name, KNOWN_DATASETS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"dataset={name!r} is not known{hint} (allowed: {', '.join(KNOWN_DATASETS)})") from None
    return canonical_name(name)


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is not allowed: {key} must be {allowed}")


def _finite(x: Any) -> bool:
    return isinstance(x, numbers.Real) and math.isfinite(x)


def _valid_device(device: str) -> bool:
    return valid_device(device)


def _model_hyperparameters(model: str) -> list[str]:
    """Hyper-parameters of a registered model (none for an unknown name)."""
    from mgiad.models.registry import model_hyperparameters

    try:
        return [k for k in model_hyperparameters(model) if k not in _DATA_DERIVED_KWARGS]
    except ValueError:
        return []
