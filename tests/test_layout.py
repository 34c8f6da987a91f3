"""The package layout (README, "Layout"): imports point down only, old paths still work.

Every import statement of every module is read with ``ast`` — including imports inside
functions, which run later but are dependencies all the same — and checked against the
directions of the README: models know nothing of data or training, training knows no command
line, reports and plots read records (and the plan of a sweep) only.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import mgiad
from mgiad._moved import MOVED

PACKAGE = Path(mgiad.__file__).resolve().parent

#: subpackage -> the subpackages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "ops": set(),
    "nn": {"ops"},
    "models": {"nn", "ops"},
    "data": set(),
    "training": {"models", "nn", "ops", "data"},
    "experiments": {"training", "models", "nn", "ops", "data"},
    "perf": {"training", "models", "nn", "ops", "data"},
    "cli": {"experiments", "perf", "training", "models", "nn", "ops", "data"},
}
#: reports and plots: the experiment spec, the plan (variant) and the records, nothing else
READERS = {"mgiad.experiments.report", "mgiad.experiments.plot", "mgiad.experiments.timing"}
READER_IMPORTS = {"mgiad.experiments.spec", "mgiad.experiments.variant", "mgiad.experiments.records",
                  "mgiad.experiments.report", "mgiad.experiments.timing"}


def _module_name(path: Path, root: Path) -> str:
    parts = ["mgiad", *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).is_dir() or (root / rel).with_suffix(".py").is_file()


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """Absolute names of the mgiad modules ``path`` imports, anywhere in it."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mgiad")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mgiad":
                continue
            for alias in node.names:  # "from mgiad.cli import run": run is a module
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub, root) else target)
    return found


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(root: Path = PACKAGE) -> list[str]:
    """Every import that points the wrong way, as ``module -> imported (rule)``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        sub = _subpackage(module)
        if sub not in ALLOWED:  # mgiad/__init__, __main__, _moved: the package's own entry points
            continue
        for target in sorted(imports_of(path, root)):
            tsub = _subpackage(target)
            if target == "mgiad":
                continue  # the version string
            if tsub != sub and tsub not in ALLOWED[sub]:
                bad.append(f"{module} -> {target} ({sub} may import {sorted(ALLOWED[sub]) or 'nothing of mgiad'})")
            if module in READERS and target not in READER_IMPORTS:
                bad.append(f"{module} -> {target} (reports read records only: {sorted(READER_IMPORTS)})")
    return bad


def test_imports_point_down_only() -> None:
    assert violations() == []


def test_the_check_catches_a_model_importing_training(tmp_path) -> None:
    """The rule bites: a copy of the package whose model module imports training fails it."""
    import shutil

    copy = tmp_path / "mgiad"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    resnet = copy / "models" / "resnet.py"
    resnet.write_text(resnet.read_text() + "\n\ndef _bad():\n    from mgiad.training.config import RunConfig  # noqa\n")
    report = copy / "experiments" / "report.py"
    report.write_text(report.read_text() + "\nfrom mgiad.training.loop import train  # noqa\n")
    bad = violations(copy)
    assert any(b.startswith("mgiad.models.resnet -> mgiad.training.config") for b in bad), bad
    assert any(b.startswith("mgiad.experiments.report -> mgiad.training.loop") for b in bad), bad


def test_every_subpackage_is_in_the_readme() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert subpackages == sorted(ALLOWED)
    for sub in subpackages:
        assert f"mgiad/{sub}/" in layout, sub


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_import_paths_still_work(old: str) -> None:
    module = importlib.import_module(old)
    new = [importlib.import_module(t) for t in MOVED[old]]
    name = next(n for n in dir(new[0]) if not n.startswith("_") and getattr(new[0], n).__class__.__name__ != "module")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert getattr(module, name) is getattr(new[0], name)
    assert any(issubclass(w.category, FutureWarning) and MOVED[old][0] in str(w.message) for w in caught)


def test_old_paths_of_the_main_functions() -> None:
    from mgiad.training import train
    from mgiad.training.evaluation import evaluate

    with pytest.warns(FutureWarning, match="mgiad.training.loop"):
        from mgiad.train import train as old_train
    assert old_train is train
    from mgiad.train import evaluate as old_evaluate  # found in the second new home

    assert old_evaluate is evaluate
    from mgiad.layers import Smoother

    from mgiad.nn.layers import Smoother as new

    assert Smoother is new
    import mgiad.train as old

    with pytest.raises(AttributeError, match="moved to mgiad.training.loop / .* defines 'no_such_name'"):
        old.no_such_name  # noqa: B018
