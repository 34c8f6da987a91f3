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

Here: the keys and their defaults, construction (file, overrides), the per-dataset recipe
(:meth:`RunConfig.resolved`) and the learning-rate schedule (:meth:`RunConfig.lr_at`). What a
value may be and the messages that say so: :mod:`.config_checks`; which keys make a run's
identity (the trajectory hash of resume and sweeps): :mod:`.trajectory`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgiad.data.policies import AUGMENT_MODES as AUGMENT_MODES
from mgiad.data.policies import recipe_policy

from . import trajectory
from .config_checks import AMP_MODES as AMP_MODES
from .config_checks import KNOWN_DATASETS as KNOWN_DATASETS
from .config_checks import SCHEDULES as SCHEDULES
from .config_checks import (
    _canonical_dataset,
    _canonical_key,
    _check_model_name,
    _model_hyperparameters,
    _unknown_key_message,
    check_config,
)
from .trajectory import NEUTRAL_KEYS as NEUTRAL_KEYS
from .values import (
    _base_type,
    _coerce,
    _parse_text,
    _split_overrides,
    check_writable_dir,
    parse_literal,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, a dependency there, is the same parser
    import tomli as tomllib  # type: ignore[no-redef]

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
    def from_dict(cls, values: dict[str, Any], *, source: str = "config",
                  check_names: bool = True) -> RunConfig:
        """Build a config from a mapping (parsed JSON/TOML); unknown keys are errors.

        Values are checked against the field types (an int is accepted for a float, a list
        for ``model_kwargs`` values); ``source`` names the origin in error messages;
        ``check_names``: as in :meth:`validate`.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
        kwargs: dict[str, Any] = {}
        hints = _field_types()
        for key, value in values.items():
            name = _canonical_key(str(key))
            if name not in hints:
                model = values.get("model", RunConfig.model)
                raise ValueError(f"{source}: {_unknown_key_message(str(key), model=model, keys=cls.keys())}")
            kwargs[name] = _coerce(name, value, hints[name], source)
        cfg = cls(**kwargs)
        cfg.validate(check_names=check_names)
        return cfg

    @classmethod
    def from_file(cls, path: str | Path, *, check_names: bool = True) -> RunConfig:
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
        return cls.from_dict(values, source=str(path), check_names=check_names)

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
                raise ValueError(_unknown_key_message(key, text, model=values["model"],
                                                       keys=RunConfig.keys()))
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
        check_config(self, check_names=check_names)

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
        (all but :data:`NEUTRAL_KEYS`): equal hashes, equal training trajectories
        (:func:`mgiad.training.trajectory.trajectory_hash`)."""
        return trajectory.trajectory_hash(self)

    def matches_trajectory(self, recorded_hash: str | None) -> bool:
        """Whether ``recorded_hash`` (a checkpoint's ``config_hash``, a record's ``config_key``)
        names this configuration's trajectory: :meth:`trajectory_hash`, or the hash that a run of
        it was given before 2026-12-07, when ``augment=paper`` was hashed by that name instead of
        the policy it picks (:func:`mgiad.training.trajectory.matches_trajectory`)."""
        return trajectory.matches_trajectory(self, recorded_hash)


# --------------------------------------------------------------------------------------
# helpers


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)
