"""Variants and jobs: an experiment with the overrides of one sweep, and its runs.

A run's identity is (experiment, row configuration, seed, overrides): overrides that change the
training trajectory (``--epochs``, ``--subset_train``, ``--lr`` ...) select a ``-reduced-HASH``
variant; overrides that do not (``--device``, ``--threads``, ``--data_dir`` ...,
:data:`mgiad.training.trajectory.NEUTRAL_KEYS`) do not change it. :func:`plan` lists a variant's
jobs; :func:`find_variant` finds a variant's results again for reports and plots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from mgiad.training.config import NEUTRAL_KEYS, RunConfig, _canonical_key
from mgiad.training.trajectory import trajectory_changes
from mgiad.training.values import _split_overrides

from .spec import Experiment, experiment_from_dict, load_experiment

RESULTS_DIR = "results"
RECORDS = "records.jsonl"
VARIANT = "variant.json"

#: Keys the sweep sets itself for every run.
_SWEEP_OWNED = {"seed": "--seeds", "out_dir": "--results-dir", "run_name": "--rows",
                "model": "the experiment's rows"}


@dataclass(frozen=True)
class Variant:
    """An experiment with the overrides of one sweep: where its results live."""

    experiment: Experiment
    overrides: tuple[str, ...] = ()
    results_root: str = RESULTS_DIR

    @property
    def changing(self) -> tuple[tuple[str, str], ...]:
        """The overrides that change results, as sorted ``(key, value)`` pairs."""
        return changing_overrides(self.overrides)

    @property
    def reduced(self) -> bool:
        return bool(self.changing)

    @property
    def name(self) -> str:
        if not self.reduced:
            return self.experiment.name
        digest = hashlib.sha256(json.dumps(self.changing).encode()).hexdigest()[:8]
        return f"{self.experiment.name}-reduced-{digest}"

    @property
    def dir(self) -> Path:
        return Path(self.results_root) / self.name

    @property
    def records_path(self) -> Path:
        return self.dir / RECORDS

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.name, "experiment": self.experiment.name, "reduced": self.reduced,
                "overrides": [f"--{k}={v}" for k, v in self.changing],
                "snapshot": self.experiment.to_dict()}

@dataclass(frozen=True)
class Job:
    """One run: a row of an experiment with one seed, its configuration and its places."""

    run_id: str
    variant: str
    experiment: str
    row: str
    family: str
    seed: int
    config: dict[str, Any]
    config_key: str
    run_dir: str
    records: str
    overrides: tuple[str, ...]
    reduced: bool

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config, source=f"run {self.run_id}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        d = json.loads(text)
        d["overrides"] = tuple(d["overrides"])
        return cls(**d)

def changing_overrides(overrides: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The ``(key, value)`` pairs among ``--key=value`` overrides that change results."""
    pairs = []
    for key, text in _split_overrides(list(overrides)):
        name = _canonical_key(key)
        if name.startswith("model-kwargs.") or name.startswith("model_kwargs."):
            name = "model_kwargs." + name.split(".", 1)[1]
        if name not in NEUTRAL_KEYS:
            pairs.append((name, "true" if text is None else text.strip()))
    return tuple(sorted(set(pairs)))

def make_variant(experiment: str | Path | Experiment, overrides: Sequence[str] = (),
                 results_dir: str | Path = RESULTS_DIR) -> Variant:
    """The variant of an experiment (name, path or object) for these overrides."""
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    for key, _ in _split_overrides(list(overrides)):
        name = _canonical_key(key)
        if name in _SWEEP_OWNED:
            raise ValueError(f"--{key}: {name} is set by the sweep (use {_SWEEP_OWNED[name]})")
    return Variant(exp, tuple(overrides), str(results_dir))

def plan(variant: Variant, *, seeds: Sequence[int] | None = None,
         rows: Sequence[str] | None = None) -> list[Job]:
    """Every run of the variant (filtered by ``seeds`` and ``rows``): seed 0 of every row, then
    seed 1, ... so that a sweep stopped half-way has a first number for every row.

    Raises ``ValueError`` for a bad override or filter, and for a run directory that holds a
    run of another configuration (the experiment file changed since it ran).
    """
    exp = variant.experiment
    selected = select_rows(exp, rows)
    seeds = list(exp.seeds if seeds is None else seeds)
    jobs = []
    for seed in seeds:
        for row in selected:
            run_id = f"{row.slug}-s{seed}"
            values = {**exp.recipe, **row.recipe, "model": row.model, "model_kwargs": row.run_kwargs(),
                      "dataset": row.dataset, "seed": seed,
                      "out_dir": str(variant.dir / "runs"), "run_name": run_id}
            try:
                cfg = RunConfig.from_dict(values, source=f"{exp.name} row {row.label!r}")
                cfg = cfg.with_overrides(list(variant.overrides)).resolved()
            except ValueError as e:
                raise ValueError(f"{exp.name} row {row.label!r}: {e}") from None
            if seed == seeds[0]:  # a bad hyper-parameter fails here, not hours into a sweep
                try:
                    model_weights(cfg.to_dict())
                except ValueError as e:
                    raise ValueError(f"{exp.name} row {row.label!r}: {e}") from None
            jobs.append(Job(
                run_id=run_id, variant=variant.name, experiment=exp.name, row=row.label,
                family=row.family, seed=seed, config=cfg.to_dict(), config_key=cfg.trajectory_hash(),
                run_dir=str(variant.dir / "runs" / run_id), records=str(variant.records_path),
                overrides=tuple(f"--{k}={v}" for k, v in variant.changing), reduced=variant.reduced,
            ))
    for job in jobs:
        _check_same_config(job)
    return jobs

def model_weights(config: dict[str, Any]) -> int:
    """Weights of a run's model, built on the meta device (no memory, no time).

    Raises ``ValueError`` for hyper-parameters the model rejects.
    """
    import torch

    from mgiad.models.registry import create_model

    from .spec import DATASETS

    num_classes, in_chans = DATASETS.get(config["dataset"], (10, 3))
    try:
        with torch.device("meta"):
            model = create_model(config["model"], num_classes=num_classes, in_chans=in_chans,
                                 **config["model_kwargs"])
    except TypeError as e:  # an unknown hyper-parameter name
        raise ValueError(f"model {config['model']!r}: {e} (check the row's kwargs)") from None
    return sum(p.numel() for p in model.parameters())

def select_rows(exp: Experiment, patterns: Sequence[str] | None) -> list[Any]:
    """Rows matching any pattern: an exact label, or comma-separated slugs/globs/1-based indices."""
    if not patterns:
        return list(exp.rows)
    chosen: set[str] = set()
    for value in patterns:
        exact = [r for r in exp.rows if r.label == value]
        if exact:
            chosen.update(r.label for r in exact)
            continue
        for piece in filter(None, (p.strip() for p in value.split(","))):
            hit = [r for i, r in enumerate(exp.rows, 1)
                   if piece == str(i) or fnmatch(r.slug, piece.lower()) or r.label == piece]
            if not hit:
                slugs = ", ".join(r.slug for r in exp.rows)
                raise ValueError(f"--rows {piece!r} matches no row of {exp.name} (rows: {slugs}; "
                                 "or their 1-based numbers, or shell patterns like 'mgiad-*')")
            chosen.update(r.label for r in hit)
    return [r for r in exp.rows if r.label in chosen]

def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> seeds."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise ValueError(f"--seeds={text!r}: expected seeds like 0,1,2 or 0-4") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds={text!r}: expected distinct seeds >= 0")
    return seeds

def _check_same_config(job: Job) -> None:
    """A run directory must hold a run of the job's configuration, else refuse to mix them."""
    path = Path(job.run_dir) / "config.json"
    if not path.is_file():
        return
    try:
        old = RunConfig.from_file(path).resolved().to_dict()
    except ValueError:
        return  # unreadable: the resume will say what is wrong
    new = job.config
    changed = trajectory_changes(old, new)
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
        raise ValueError(
            f"{job.run_dir} holds a run of another configuration ({diffs}); the experiment file "
            "changed since it ran. Move that directory away (and its record from "
            f"{job.records}) to run the new configuration"
        )

def find_variant(experiment: str | Path, overrides: Sequence[str] = (),
                 results_dir: str | Path = RESULTS_DIR, *, log: Any = None) -> Variant:
    """The variant whose results to show.

    ``experiment`` may be a results directory (with ``variant.json``). Otherwise: with overrides
    the variant they select; without, the paper-recipe variant if it has records, else the
    most recently updated reduced variant (``log`` says which, and which others exist).
    """
    path = Path(experiment)
    if path.is_dir() and (path / VARIANT).is_file():
        return load_variant(path)
    variant = make_variant(experiment, overrides, results_dir)
    if overrides or variant.records_path.is_file():
        return variant
    candidates = sorted(Path(results_dir).glob(f"{variant.experiment.name}-reduced-*/{VARIANT}"),
                        key=lambda p: (p.parent / RECORDS).stat().st_mtime
                        if (p.parent / RECORDS).is_file() else p.stat().st_mtime)
    if not candidates:
        return variant
    chosen = load_variant(candidates[-1].parent)
    if log is not None:
        others = [c.parent.name for c in candidates[:-1]]
        log(f"no paper-recipe results for {variant.experiment.name}; showing the reduced variant "
            f"{chosen.name} ({' '.join(chosen.overrides)})"
            + (f"; others: {', '.join(others)}" if others else ""))
    return chosen

def load_variant(path: str | Path) -> Variant:
    """A variant from its results directory (``variant.json``)."""
    path = Path(path)
    data = _read_json(path / VARIANT)
    if data is None:
        raise ValueError(f"{path} is not a results directory of `mgiad sweep` (no readable {VARIANT})")
    snapshot = dict(data["snapshot"])
    origin = str(snapshot.pop("path", ""))  # where the experiment file was, not a file key
    exp = experiment_from_dict(snapshot, source=str(path / VARIANT), path=origin)
    variant = Variant(exp, tuple(data.get("overrides", ())), str(path.parent))
    if variant.name != path.name:  # renamed directory: keep its name, the records are there
        return _RenamedVariant(exp, variant.overrides, str(path.parent), path.name)
    return variant

@dataclass(frozen=True)
class _RenamedVariant(Variant):
    dirname: str = ""

    @property
    def name(self) -> str:
        return self.dirname

def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
