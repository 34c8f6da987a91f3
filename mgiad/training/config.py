"""Run configuration: one dataclass holding the paper's training recipe as defaults.

A run is described completely by a :class:`RunConfig`. It comes from the defaults (the
recipe of the paper, DESIGN.md §2), optionally a JSON or TOML file, and ``--key=value``
overrides, in that order::

    cfg = RunConfig.from_file("experiments/fmnist.toml").with_overrides(
        ["--lr=0.1", "--epochs=3", "--model_kwargs.c_K=16"]
    )

Every value is type-checked against the field's annotation and validated; unknown keys
and bad values raise ``ValueError`` naming the key, the value and what is allowed, so a
typo never silently trains the wrong model for a day.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import numbers
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgiad.data.policies import AUGMENT_MODES, LEGACY_RECIPES, recipe_policy

from .values import (
    _base_type,
    _coerce,
    _parse_text,
    _split_overrides,
    check_writable_dir,
    parse_literal,
    valid_device,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, a dependency there, is the same parser
    import tomli as tomllib  # type: ignore[no-redef]

#: Datasets the loaders know (mirrors ``mgiad.data.datasets.DATASET_NAMES``; kept here so that a
#: config can be validated without importing the data module).
KNOWN_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "fashionmnist")

SCHEDULES = ("cosine", "cosine-steps", "step")
AMP_MODES = ("none", "bf16")

#: Per-dataset defaults of the recipe, applied by :meth:`RunConfig.resolved` to the keys
#: the user left at ``None``. FashionMNIST: no cosine annealing but lr x 0.1 every 25
#: epochs; CIFAR: per-epoch cosine annealing to 0 (both paper §IV; the authors' trainer uses
#: lr 0.1 and cosine for every data set instead: docs/paper-notes.md §5).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar10": {"schedule": "cosine"},
    "cifar100": {"schedule": "cosine"},
    "fashionmnist": {"schedule": "step", "step_size": 25, "gamma": 0.1},
}
_FALLBACK_DEFAULTS: dict[str, Any] = {"schedule": "cosine"}
_STEP_DEFAULTS: dict[str, Any] = {"step_size": 25, "gamma": 0.1}

#: (classes, channels) of each dataset: enough to build a model to check its hyper-parameters.
_DATA_SHAPES: dict[str, tuple[int, int]] = {"cifar10": (10, 3), "cifar100": (100, 3),
                                            "fashionmnist": (10, 1)}
#: Configurations already built once by ``_check_model`` (validation runs many times per sweep).
_BUILDS_OK: set[tuple[str, str, int, int]] = set()

#: Model arguments that the dataset determines; setting them by hand would only let the
#: model and the data disagree.
_DATA_DERIVED_KWARGS = ("num_classes", "in_chans")


#: Keys that do not change what a run computes: a resumed run may change them
#: (``mgiad train --resume``), and they are left out of a run's identity
#: (:meth:`RunConfig.trajectory_hash`: checkpoints' ``config_hash``, sweeps' ``config_key``).
NEUTRAL_KEYS = frozenset(
    {"data_dir", "download", "device", "threads", "compile", "eval_every", "time_budget_s",
     "tensorboard", "out_dir", "run_name", "track", "track_project"}
)


@dataclass
class RunConfig:
    """Everything that defines a training run; defaults are the paper's recipe (§IV) and,
    where the paper is silent (augmentation), the authors' code.

    Attributes:
        model: registered model name (``mgiad.list_models()``).
        model_kwargs: hyper-parameters passed to ``create_model`` (``c_K``, ``g_s``, ``lam``, ...);
            ``num_classes`` and ``in_chans`` come from the dataset.
        dataset: ``cifar10``, ``cifar100`` or ``fashionmnist`` (aliases such as ``fmnist`` work).
        data_dir: where the dataset lives (``None``: the loader's search path).
        download: let the loader download a missing dataset.
        epochs: training epochs (paper: 400).
        batch_size: global batch size, split over the processes under DDP (paper: 128).
        lr: initial learning rate (paper: 0.05).
        momentum, weight_decay: SGD settings (paper: 0.9, 1e-4; no Nesterov).
        schedule: ``cosine`` (per-epoch cosine annealing to 0 over ``epochs``: the paper names a
            cosine-annealing scheduler),
            ``cosine-steps`` (the same curve set at every step, so that the last steps of a
            short run take small steps: the demo's) or ``step`` (lr x ``gamma`` every
            ``step_size`` epochs); ``None`` = the dataset's default.
        step_size, gamma: the step schedule; ``None`` = the dataset's default (25, 0.1).
        augment: a per-dataset recipe, ``authors`` (the authors' code, which produced the
            paper's numbers; the paper names no augmentation) or ``torchvision`` (the same with
            torchvision's AutoAugment on CIFAR-10), or a named policy: ``none`` (normalise
            only), ``crop-flip``, ``crop-flip-reflect``, ``autoaugment-cifar10`` (torchvision's
            policy, zero fill) or ``autoaugment-cifar10-authors`` (the authors' PIL policy, grey
            fill 128); :mod:`mgiad.data.policies`. ``paper`` is read as ``torchvision``, its
            old name.
        seed: seeds model initialisation, shuffling and augmentation.
        subset_train, subset_test: use a random subset of this many images (quick runs).
        device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:N``.
        threads: CPU threads of torch (``torch.set_num_threads``); ``None``: the cores free
            when the run starts (a resumed run keeps its count; mgiad/training/threads.py).
            The count changes the last bits of the results: fix it to repeat a run exactly.
        channels_last: NHWC memory format (1.4-3.4x faster on CPU, DESIGN.md §4).
        amp: ``none`` or ``bf16`` autocast; bf16 only acts on CUDA, elsewhere it warns and
            trains in fp32.
        compile: wrap the model in ``torch.compile``.
        sync_bn: under DDP convert BatchNorm to SyncBatchNorm (CUDA only); by default every
            process normalises with the statistics of its own share of the batch.
        deterministic: ``torch.use_deterministic_algorithms`` (CPU training is deterministic
            anyway; on CUDA this trades speed for reproducibility).
        eval_every: evaluate the test set every this many epochs (and after the last).
        pad_to: zero-pad images to this size (FashionMNIST 28 -> 32 as the paper states;
            ``None`` feeds the native size as the authors' code did).
        out_dir: parent directory of run directories.
        run_name: run directory name (``None``: model-dataset-seed-timestamp).
        max_steps_per_epoch: cut epochs short (smoke tests).
        time_budget_s: stop after the epoch that would make the next one exceed this budget;
            the run can be continued with ``--resume``.
        tensorboard: also log to TensorBoard if it is installed.
        track: also log to ``wandb``, ``mlflow`` or both (``"wandb,mlflow"``); needs the extra of
            the same name (docs/training.md, "Tracking").
        track_project: the W&B project / MLflow experiment (default ``mgiad``).
    """

    model: str = "mgiad"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    epochs: int = 400
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str | None = None
    step_size: int | None = None
    gamma: float | None = None
    augment: str = "authors"
    seed: int = 0
    subset_train: int | None = None
    subset_test: int | None = None
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    amp: str = "none"
    compile: bool = False
    sync_bn: bool = False
    deterministic: bool = False
    eval_every: int = 1
    pad_to: int | None = None
    out_dir: str = "runs"
    run_name: str | None = None
    max_steps_per_epoch: int | None = None
    time_budget_s: float | None = None
    tensorboard: bool = True
    track: str | None = None
    track_project: str = "mgiad"

    # ----------------------------------------------------------------------------------
    # construction

    @classmethod
    def keys(cls) -> list[str]:
        """All configuration keys, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build a config from a mapping (parsed JSON/TOML); unknown keys are errors.

        Values are checked against the field types (an int is accepted for a float, a list
        for ``model_kwargs`` values); ``source`` names the origin in error messages.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
        kwargs: dict[str, Any] = {}
        hints = _field_types()
        for key, value in values.items():
            name = _canonical_key(str(key))
            if name not in hints:
                model = values.get("model", RunConfig.model)
                raise ValueError(f"{source}: {_unknown_key_message(str(key), model=model)}")
            kwargs[name] = _coerce(name, value, hints[name], source)
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """Read a ``.json`` or ``.toml`` file (model hyper-parameters in a ``model_kwargs`` table)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read config file {path}: {e.strerror or e}") from None
        suffix = path.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise ValueError(f"config file {path} must end in .json or .toml, got {suffix or 'no suffix'!r}")
        try:
            text = raw.decode("utf-8")
            values = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
        except ValueError as e:  # TOMLDecodeError, JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"config file {path} is not valid {suffix[1:].upper()}: {e}") from None
        return cls.from_dict(values, source=str(path))

    def with_overrides(self, overrides: Iterable[str]) -> RunConfig:
        """Apply command-line overrides and return a new, validated config.

        Accepted forms: ``--key=value``, ``--key value``, ``--flag`` (a bool set to true),
        ``--model_kwargs.NAME=VALUE`` (one model hyper-parameter; the value is parsed as a
        JSON/Python literal, so ``--model_kwargs.widths=(8,16,32)`` gives a tuple) and
        ``--model_kwargs={"c_K": 16}``. Dashes in keys read as underscores.
        """
        values = dataclasses.asdict(self)
        values["model_kwargs"] = dict(self.model_kwargs)
        hints = _field_types()
        pending: list[tuple[str, str | None]] = []
        for key, text in _split_overrides(list(overrides)):
            where = f"--{key}" if text is None else f"--{key}={text}"
            if key.startswith("model_kwargs.") or key.startswith("model-kwargs."):
                sub = key.split(".", 1)[1].replace("-", "_")
                if not sub.isidentifier():
                    raise ValueError(f"{where}: {sub!r} is not a valid model hyper-parameter name")
                if text is None:
                    raise ValueError(f"{where}: a model hyper-parameter needs a value (--{key}=VALUE)")
                values["model_kwargs"][sub] = parse_literal(text)
                continue
            name = _canonical_key(key)
            if name not in hints:
                pending.append((key, text))  # perhaps a model hyper-parameter: checked below
                continue
            typ = hints[name]
            if text is None:
                if _base_type(typ) is not bool:
                    raise ValueError(f"{where}: config key {name!r} needs a value (--{name}=VALUE)")
                values[name] = True
                continue
            values[name] = _parse_text(name, text, typ, where)
        if pending:  # whether they are hyper-parameters depends on the model: is it one?
            _check_model_name(values["model"])
        for key, text in pending:  # --c_K=16 as shorthand for --model_kwargs.c_K=16
            sub = key.replace("-", "_")
            if sub not in _model_hyperparameters(values["model"]):
                raise ValueError(_unknown_key_message(key, text, model=values["model"]))
            if text is None:
                raise ValueError(f"--{key}: a model hyper-parameter needs a value (--{key}=VALUE)")
            values["model_kwargs"][sub] = parse_literal(text)
        cfg = RunConfig(**values)
        cfg.validate()
        return cfg

    # ----------------------------------------------------------------------------------
    # checks and derived values

    def validate(self, *, check_names: bool = True) -> None:
        """Raise ``ValueError`` (key, value, what is allowed) for the first bad value.

        ``check_names`` also checks that ``model`` is registered and ``dataset`` is known
        (off when training on data passed in directly).
        """
        hints = _field_types()
        for name in self.keys():
            _coerce(name, getattr(self, name), hints[name], "config")  # type check
        _require(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(_finite(self.lr) and self.lr > 0, "lr", self.lr, "a finite number > 0")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _require(
            _finite(self.weight_decay) and self.weight_decay >= 0,
            "weight_decay", self.weight_decay, "a finite number >= 0",
        )
        _require(self.schedule in (None, *SCHEDULES), "schedule", self.schedule, f"one of {SCHEDULES}")
        _require(self.step_size is None or self.step_size >= 1, "step_size", self.step_size,
                 "an integer >= 1 (epochs between lr decays)")
        _require(self.gamma is None or (_finite(self.gamma) and 0 < self.gamma <= 1), "gamma",
                 self.gamma, "a number in (0, 1]")
        _require(self.augment in AUGMENT_MODES, "augment", self.augment, f"one of {AUGMENT_MODES}")
        _require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        for name in ("subset_train", "subset_test", "pad_to", "max_steps_per_epoch", "threads"):
            value = getattr(self, name)
            _require(value is None or value >= 1, name, value, "an integer >= 1 or none")
        _require(_valid_device(self.device), "device", self.device,
                 "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        _require(self.amp in AMP_MODES, "amp", self.amp, f"one of {AMP_MODES}")
        _require(self.eval_every >= 1, "eval_every", self.eval_every, "an integer >= 1")
        _require(bool(self.out_dir), "out_dir", self.out_dir, "a non-empty path")
        _require(
            self.run_name is None or (bool(self.run_name) and "/" not in self.run_name
                                      and "\\" not in self.run_name and self.run_name not in (".", "..")),
            "run_name", self.run_name, "a directory name without '/' (or none)",
        )
        _require(self.time_budget_s is None or (_finite(self.time_budget_s) and self.time_budget_s > 0),
                 "time_budget_s", self.time_budget_s, "a number of seconds > 0 or none")
        from .tracking import parse_trackers

        parse_trackers(self.track)
        _require(isinstance(self.track_project, str) and self.track_project.strip() != "",
                 "track_project", self.track_project, "a non-empty name")
        for key in self.model_kwargs:
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"model_kwargs key {key!r} is not a valid hyper-parameter name")
            if key in _DATA_DERIVED_KWARGS:
                raise ValueError(
                    f"model_kwargs.{key}={self.model_kwargs[key]!r}: {key} is set from the dataset; "
                    "remove it from model_kwargs"
                )
        if check_names:
            _check_model_name(self.model)
            dataset = _canonical_dataset(self.dataset)
            self._check_model(dataset)

    def _check_model(self, dataset: str) -> None:
        """Every model_kwargs key is a hyper-parameter of the model and the model builds with
        them (on the meta device: no memory, a few ms), so that a bad value fails here rather
        than after the data are loaded."""
        names = _model_hyperparameters(self.model)
        for key, value in self.model_kwargs.items():
            if key not in names:
                close = _close_matches(key, names)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                raise ValueError(f"model_kwargs.{key}={value!r}: {_has_no(self.model, key)}{hint} "
                                 f"({_hyperparameters_text(self.model)})")
        num_classes, in_chans = _DATA_SHAPES.get(dataset, (10, 3))
        key = (self.model, repr(sorted(self.model_kwargs.items())), num_classes, in_chans)
        if key in _BUILDS_OK:
            return
        import torch

        from mgiad.models.registry import create_model

        try:
            with torch.device("meta"):
                create_model(self.model, num_classes=num_classes, in_chans=in_chans,
                             **self.model_kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model {self.model}: {e}") from None
        _BUILDS_OK.add(key)

    def check_out_dir(self) -> None:
        """Fail (``ValueError``, one line) if run directories cannot be created in ``out_dir``
        (read-only, no permission, a file in the way); cheap, so call it before loading data
        and model. Creates nothing."""
        check_writable_dir("out_dir", self.out_dir)

    def resolved(self) -> RunConfig:
        """A copy with the dataset defaults filled into the keys left at ``None``.

        ``schedule``, ``step_size`` and ``gamma`` follow the dataset (FashionMNIST: lr x 0.1
        every 25 epochs; CIFAR: cosine), unless the user set them. A step schedule always
        ends up with a ``step_size`` and ``gamma``; a cosine one keeps them ``None``. An
        augmentation recipe (``authors``, ``torchvision``, the old ``paper``) becomes the policy
        it picks for a known dataset, so that equal runs are equal configurations.
        """
        dataset = self.dataset
        if dataset not in DATASET_DEFAULTS:
            try:  # aliases such as "fmnist" or "CIFAR-10" get their dataset's defaults
                dataset = _canonical_dataset(dataset)
            except ValueError:  # custom data passed to train(): generic defaults
                pass
        defaults = DATASET_DEFAULTS.get(dataset, _FALLBACK_DEFAULTS)
        schedule = self.schedule or defaults["schedule"]
        step_size, gamma = self.step_size, self.gamma
        if schedule == "step":
            step_size = step_size if step_size is not None else defaults.get(
                "step_size", _STEP_DEFAULTS["step_size"])
            gamma = gamma if gamma is not None else defaults.get("gamma", _STEP_DEFAULTS["gamma"])
        augment = recipe_policy(self.augment, dataset) or self.augment
        return dataclasses.replace(
            self, dataset=dataset, schedule=schedule, step_size=step_size, gamma=gamma,
            augment=augment, model_kwargs=dict(self.model_kwargs),
        )

    def lr_at(self, epoch: int, step: int = 0, steps: int = 1) -> float:
        """Learning rate at 0-based ``step`` of ``steps`` in 0-based ``epoch``: a pure function of
        the position, so the schedule needs no state of its own in checkpoints.

        ``cosine``: ``lr/2 (1 + cos(pi e / epochs))``, the closed form of
        ``CosineAnnealingLR(T_max=epochs, eta_min=0)`` stepped once per epoch (``step`` unused).
        ``cosine-steps``: the same with ``e`` = ``epoch + step / steps``, so the rate falls at
        every step and the last step's is ``lr/2 (1 + cos(pi (1 - 1/(epochs steps))))``, near 0.
        """
        cfg = self.resolved()
        if cfg.schedule == "cosine":
            return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
        if cfg.schedule == "cosine-steps":
            return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * (epoch + step / steps) / cfg.epochs))
        assert cfg.step_size is not None and cfg.gamma is not None
        return cfg.lr * cfg.gamma ** (epoch // cfg.step_size)

    @property
    def lr_per_step(self) -> bool:
        """Whether :meth:`lr_at` changes within an epoch."""
        return self.resolved().schedule == "cosine-steps"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable mapping (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def trajectory_hash(self) -> str:
        """16 hex digits of SHA-256 over the resolved keys that change what the run computes
        (all but :data:`NEUTRAL_KEYS`): equal hashes, equal training trajectories."""
        return _digest(self.resolved())

    def matches_trajectory(self, recorded_hash: str | None) -> bool:
        """Whether ``recorded_hash`` (a checkpoint's ``config_hash``, a record's ``config_key``)
        names this configuration's trajectory: :meth:`trajectory_hash`, or the hash that a run of
        it was given before 2026-12-07, when ``augment=paper`` was hashed by that name instead of
        the policy it picks."""
        cfg = self.resolved()
        names = [cfg.augment] + [old for old in LEGACY_RECIPES
                                 if recipe_policy(old, cfg.dataset) == cfg.augment]
        return any(recorded_hash == _digest(dataclasses.replace(cfg, augment=name))
                   for name in names)


def _digest(cfg: RunConfig) -> str:
    d = {k: v for k, v in cfg.to_dict().items() if k not in NEUTRAL_KEYS}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# helpers


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


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


def _unknown_key_message(key: str, text: str | None = None, *, model: str | None = None) -> str:
    """An argument that is neither a config key nor a hyper-parameter of ``model``: the close
    config keys and hyper-parameters (ignoring case), and what the model has."""
    name = _canonical_key(key)
    keys = RunConfig.keys()
    model = RunConfig.model if model is None else model
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
