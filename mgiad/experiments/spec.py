"""Experiments: the paper's tables (and Figure 7) as files of runnable rows with published numbers.

An experiment file (TOML or JSON) holds a name, a title, a default dataset, the seeds, a
``[recipe]`` table of :class:`~mgiad.training.config.RunConfig` keys and ``[[rows]]``::

    name = "table_IV"
    title = "Table IV: ..."
    dataset = "fashionmnist"
    seeds = [0, 1, 2]

    [recipe]
    epochs = 400

    [[rows]]
    label = "MGiaD c_K=16 g_s=8"
    model = "mgiad"
    kwargs = { levels = 3, c_K = 16, g_s = 8 }
    paper = { weights_k = 37, test = 93.35, std = 0.09, train = 97.63 }

A row may also set ``dataset``, ``recipe`` (RunConfig keys for this row only), ``family`` (the
marker group in plots), ``note``/``fits`` (why the printed weight count differs, used by
``mgiad params --paper``) or ``ref = "table_I/ResNet20"`` to take a row of another built-in
experiment (so Figure 7 repeats no number of the tables), and ``baseline = "LABEL"`` (another
row of the same experiment: the report gives the weight ratio and the accuracy difference to it,
ours and the paper's). ``paper`` may be left out (rows the paper only plots, or a user's own rows).

The built-in files ship as package data in ``mgiad/experiments/``: ``table_I`` ... ``table_IX``
and ``figure_7``; they are the one source of the paper's numbers (``mgiad.experiments.paper.TABLES`` is
read from them).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: (classes, input channels) of the datasets the paper uses.
DATASETS: dict[str, tuple[int, int]] = {"cifar10": (10, 3), "cifar100": (100, 3), "fashionmnist": (10, 1)}

TABLE_NAMES = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")
BUILTIN = tuple(f"table_{t}" for t in TABLE_NAMES) + ("figure_7",)

_TOP_KEYS = {"name", "title", "table", "dataset", "seeds", "recipe", "rows", "description"}
_ROW_KEYS = {"label", "model", "kwargs", "dataset", "paper", "note", "fits", "family", "recipe", "ref",
             "baseline"}
_PAPER_KEYS = {"weights_k", "test", "std", "train"}
#: RunConfig keys an experiment may not set: the sweep decides them per run.
_SWEEP_KEYS = {"seed", "out_dir", "run_name", "model", "model_kwargs", "dataset"}
_DATA_DERIVED = ("num_classes", "in_chans")


@dataclass(frozen=True)
class Published:
    """The paper's numbers for a row: weights (thousands) and accuracies (%)."""

    weights_k: float | None = None
    test: float | None = None
    std: float | None = None
    train: float | None = None


@dataclass(frozen=True)
class ExperimentRow:
    """One model configuration of an experiment, with the paper's numbers if it has any."""

    label: str
    model: str
    dataset: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    paper: Published | None = None
    family: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    fits: dict[str, Any] | None = None
    ref: str = ""
    baseline: str = ""  # label of the row this one is compared with (report: weight ratio, Δ)

    @property
    def slug(self) -> str:
        """File-system-safe id of the row (run directories are named after it)."""
        return slugify(self.label)

    def model_kwargs(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments for ``create_model``, dataset shape included."""
        return model_kwargs(self.model, self.dataset, self.kwargs, overrides)

    def run_kwargs(self) -> dict[str, Any]:
        """``RunConfig.model_kwargs`` of the row: the model kwargs less what the dataset sets."""
        return {k: v for k, v in self.model_kwargs().items() if k not in _DATA_DERIVED}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "model": self.model, "dataset": self.dataset,
                             "kwargs": dict(self.kwargs), "family": self.family}
        if self.paper is not None:
            d["paper"] = {k: getattr(self.paper, k) for k in sorted(_PAPER_KEYS)}
        for key in ("recipe", "note", "fits", "ref", "baseline"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return json.loads(json.dumps(d))


@dataclass(frozen=True)
class Experiment:
    """A named set of rows × seeds trained with one recipe."""

    name: str
    title: str
    dataset: str
    seeds: tuple[int, ...]
    recipe: dict[str, Any]
    rows: tuple[ExperimentRow, ...]
    table: str = ""
    description: str = ""
    path: str = ""  # the file it came from

    def row(self, label: str) -> ExperimentRow:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(label)

    def to_dict(self) -> dict[str, Any]:
        """A JSON snapshot that :func:`experiment_from_dict` reads back (kept with results)."""
        return {"name": self.name, "title": self.title, "table": self.table, "dataset": self.dataset,
                "seeds": list(self.seeds), "recipe": json.loads(json.dumps(self.recipe)),
                "description": self.description, "path": self.path,
                "rows": [r.to_dict() for r in self.rows]}


def model_kwargs(model: str, dataset: str, kwargs: dict[str, Any],
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``create_model`` keyword arguments of a paper row: dataset shape, dataset variant, row."""
    num_classes, in_chans = DATASETS[dataset]
    kw: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if model.startswith("mgiad") and dataset == "fashionmnist":
        kw["transfer_norm"] = False  # FashionMNIST variant (docs/paper-notes.md §1, row 10)
    return {**kw, **kwargs, **(overrides or {})}


def slugify(label: str) -> str:
    """``"MGiaD c_K=16 g_s=4 λ=1"`` -> ``"mgiad-c_k-16-g_s-4-lam-1"``."""
    text = label.replace("λ", "lam").replace("η", "eta").replace("±", "pm")
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.").lower() or "row"


def default_family(model: str, kwargs: dict[str, Any]) -> str:
    """The plot group of a model: ResNet, MgNet, MgNet grouped, MGIC or MGiaD g_s=N."""
    if model.startswith("resnet"):
        return "ResNet"
    if model.startswith("mgic"):
        return "MGIC"
    if model.startswith("mgnet"):
        return "MgNet grouped" if "g_s" in kwargs or "grouped" in model else "MgNet"
    if model.startswith("mgiad"):
        g_s = kwargs.get("g_s")
        if g_s is None:
            from mgiad.models.registry import model_defaults

            try:
                g_s = model_defaults(model).get("g_s")
            except ValueError:
                g_s = None
        return f"MGiaD g_s={g_s}" if g_s is not None else "MGiaD"
    return model


# --------------------------------------------------------------------------------------
# loading


def builtin_path(name: str) -> Path:
    """The packaged file of a built-in experiment."""
    return Path(str(resources.files("mgiad.experiments.tables").joinpath(f"{name}.toml")))


def canonical_name(name: str) -> str | None:
    """``IV``, ``table4``, ``Table_IV``, ``fig7`` ... -> the built-in name, or ``None``."""
    key = re.sub(r"[\s_\-.]", "", name.strip().lower())
    if key in ("fig7", "figure7", "f7", "fig", "figure"):
        return "figure_7"
    m = re.fullmatch(r"(?:table|tab|t)?([ivx]+|\d+)", key)
    if m is None:
        return None
    num = m.group(1)
    if num.isdigit():
        return f"table_{TABLE_NAMES[int(num) - 1]}" if 1 <= int(num) <= len(TABLE_NAMES) else None
    return f"table_{num.upper()}" if num.upper() in TABLE_NAMES else None


def load_experiment(name_or_path: str | Path) -> Experiment:
    """A built-in experiment by name (``table_IV``, ``IV``, ``fig7``) or a user's file by path.

    Raises ``ValueError`` for an unknown name (with close matches) or a malformed file.
    """
    text = str(name_or_path)
    path = Path(text)
    if path.is_file():
        return _load_file(path, builtin=False)
    name = canonical_name(text)
    if name is not None:
        return _load_builtin(name)
    if path.suffix.lower() in (".toml", ".json") or "/" in text:
        raise ValueError(f"experiment file {text} does not exist")
    close = difflib.get_close_matches(text, BUILTIN, n=3, cutoff=0.5)
    close += [n for n in difflib.get_close_matches(text.lower(), [b.lower() for b in BUILTIN], n=3,
                                                   cutoff=0.5) if n not in [c.lower() for c in close]]
    hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    raise ValueError(f"unknown experiment {text!r}{hint} (built-in: {', '.join(BUILTIN)}; "
                     "or the path of a .toml/.json experiment file)")


_CACHE: dict[str, Experiment] = {}


def _load_builtin(name: str) -> Experiment:
    if name not in _CACHE:  # the files are package data: read each once per process
        _CACHE[name] = _load_file(builtin_path(name), builtin=True)
    return _CACHE[name]


def _load_file(path: Path, *, builtin: bool) -> Experiment:
    try:
        raw = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read experiment file {path}: {e}") from None
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"experiment file {path} must end in .toml or .json")
    try:
        data = tomllib.loads(raw) if suffix == ".toml" else json.loads(raw)
    except ValueError as e:
        raise ValueError(f"experiment file {path} is not valid {suffix[1:].upper()}: {e}") from None
    return experiment_from_dict(data, source=str(path), default_name=path.stem,
                                path="" if builtin else str(path.resolve()))


def experiment_from_dict(data: Any, *, source: str = "experiment", default_name: str = "",
                         path: str = "") -> Experiment:
    """Build and check an :class:`Experiment` from parsed TOML/JSON (or a snapshot)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a table of experiment keys")
    _check_keys(data, _TOP_KEYS, source, "experiment")
    name = str(data.get("name") or default_name)
    if not name or slugify(name) != name.lower():
        raise ValueError(f"{source}: name={name!r} must be a plain identifier (letters, digits, _ - .)")
    dataset = _dataset(data.get("dataset", "cifar10"), source)
    seeds = data.get("seeds", [0, 1, 2])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ValueError(f"{source}: seeds={seeds!r} must be a non-empty list of distinct integers >= 0")
    recipe = _recipe(data.get("recipe", {}), source)
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise ValueError(f"{source}: an experiment needs at least one [[rows]] entry")
    rows = tuple(_row(r, i, dataset, source) for i, r in enumerate(raw_rows))
    for kind, key in (("label", lambda r: r.label), ("run directory name", lambda r: r.slug)):
        seen: dict[str, str] = {}
        for r in rows:
            if key(r) in seen:
                raise ValueError(f"{source}: rows {seen[key(r)]!r} and {r.label!r} have the same "
                                 f"{kind} {key(r)!r}; every row needs its own")
            seen[key(r)] = r.label
    labels = [r.label for r in rows]
    for r in rows:
        if r.baseline and (r.baseline not in labels or r.baseline == r.label):
            raise ValueError(f"{source} row {r.label!r}: baseline={r.baseline!r} is not the label of "
                             f"another row (one of {[x for x in labels if x != r.label]})")
    return Experiment(name=name, title=str(data.get("title") or name), dataset=dataset,
                      seeds=tuple(seeds), recipe=recipe, rows=rows, table=str(data.get("table", "")),
                      description=str(data.get("description", "")), path=path or str(data.get("path", "")))


def _check_keys(d: dict[str, Any], allowed: set[str], source: str, what: str) -> None:
    for key in d:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown {what} key {key!r}{hint} "
                             f"(allowed: {', '.join(sorted(allowed))})")


def _dataset(name: Any, source: str) -> str:
    from mgiad.data.datasets import canonical_name as canonical_dataset

    if not isinstance(name, str):
        raise ValueError(f"{source}: dataset={name!r} must be a string")
    try:
        return canonical_dataset(name)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def _recipe(recipe: Any, source: str) -> dict[str, Any]:
    from mgiad.training.config import RunConfig

    if not isinstance(recipe, dict):
        raise ValueError(f"{source}: recipe must be a table of RunConfig keys")
    for key in recipe:
        if key in _SWEEP_KEYS:
            raise ValueError(f"{source}: recipe key {key!r} is set per row and seed by the "
                             "experiment (rows, seeds), not in the recipe")
    RunConfig.from_dict(dict(recipe), source=f"{source} [recipe]")  # type and value checks
    return dict(recipe)


def _row(raw: Any, index: int, dataset: str, source: str) -> ExperimentRow:
    where = f"{source} row {index + 1}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a table with label and model")
    _check_keys(raw, _ROW_KEYS, where, "row")
    base: dict[str, Any] = {}
    if "ref" in raw:  # a baseline names a row of its own experiment: never taken from the ref
        base = {k: v for k, v in _referenced(raw["ref"], where).items() if k != "baseline"}
    values = {**base, **{k: v for k, v in raw.items() if k != "ref"}}
    label = values.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"{where}: a row needs a label (a non-empty string)")
    where = f"{source} row {label!r}"
    model = values.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError(f"{where}: a row needs a model (a registered model name, see `mgiad list`)")
    kwargs = values.get("kwargs", {})
    if not isinstance(kwargs, dict) or any(k in _DATA_DERIVED for k in kwargs):
        raise ValueError(f"{where}: kwargs must be a table of model hyper-parameters "
                         f"({', '.join(_DATA_DERIVED)} come from the dataset)")
    row_dataset = _dataset(values["dataset"], where) if "dataset" in values else dataset
    if row_dataset not in DATASETS:
        raise ValueError(f"{where}: dataset {row_dataset!r} is not one the paper uses")
    paper = values.get("paper")
    published = None
    if paper is not None:
        if not isinstance(paper, dict):
            raise ValueError(f"{where}: paper must be a table of {', '.join(sorted(_PAPER_KEYS))}")
        _check_keys(paper, _PAPER_KEYS, where, "paper")
        for k, v in paper.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"{where}: paper.{k}={v!r} must be a number")
        published = Published(**paper)
    fits = values.get("fits")
    if fits is not None and not isinstance(fits, dict):
        raise ValueError(f"{where}: fits must be a table of model hyper-parameters")
    recipe = _recipe(values.get("recipe", {}), where)
    family = values.get("family") or default_family(model, kwargs)
    baseline = values.get("baseline", "")
    if not isinstance(baseline, str):
        raise ValueError(f"{where}: baseline={baseline!r} must be the label of another row")
    return ExperimentRow(label=label, model=model, dataset=row_dataset, kwargs=dict(kwargs),
                         paper=published, family=str(family), recipe=recipe,
                         note=str(values.get("note", "")), fits=fits, ref=str(raw.get("ref", "")),
                         baseline=baseline)


def _referenced(ref: Any, where: str) -> dict[str, Any]:
    """The fields of row ``EXPERIMENT/LABEL`` of a built-in experiment."""
    if not isinstance(ref, str) or "/" not in ref:
        raise ValueError(f"{where}: ref={ref!r} must read 'EXPERIMENT/ROW LABEL', e.g. 'table_I/ResNet20'")
    name, label = ref.split("/", 1)
    canonical = canonical_name(name)
    if canonical is None or canonical == "figure_7":
        raise ValueError(f"{where}: ref={ref!r} must name a table (table_I ... table_IX)")
    exp = _load_builtin(canonical)
    try:
        row = exp.row(label)
    except KeyError:
        labels = [r.label for r in exp.rows]
        close = difflib.get_close_matches(label, labels, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"{where}: {canonical} has no row {label!r}{hint}") from None
    d = row.to_dict()
    d.pop("family", None)  # the referencing file groups its points itself
    d.pop("ref", None)
    return d


def list_experiments() -> list[Experiment]:
    """Every built-in experiment, in paper order."""
    return [_load_builtin(n) for n in BUILTIN]


__all__ = ["BUILTIN", "DATASETS", "Experiment", "ExperimentRow", "Published", "canonical_name",
           "default_family", "experiment_from_dict", "list_experiments", "load_experiment",
           "model_kwargs", "slugify"]
