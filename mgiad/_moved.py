"""Old import paths keep working: ``mgiad.train``, ``mgiad.layers``, ... of the flat layout.

Version 0.1 had every module directly under ``mgiad/``. Importing an old path gives a module
that finds each name in its new home and warns (``FutureWarning``) with the new path,
e.g. ``from mgiad.train import train`` -> ``mgiad.training.loop``. A name that no longer
exists raises an ``AttributeError`` that lists where to look.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

#: old module -> the modules that now hold its names (searched in order)
MOVED: dict[str, tuple[str, ...]] = {
    "mgiad.pairconv": ("mgiad.ops.pairconv",),
    "mgiad.checks": ("mgiad.nn.checks",),
    "mgiad.layers": ("mgiad.nn.layers",),
    "mgiad.sic": ("mgiad.nn.sic",),
    "mgiad.recompute": ("mgiad.nn.recompute",),
    "mgiad.registry": ("mgiad.models.registry",),
    "mgiad.counting": ("mgiad.models.counting",),
    "mgiad.augment": ("mgiad.data.augment", "mgiad.data.autoaugment"),
    "mgiad.config": ("mgiad.training.config", "mgiad.training.values",
                     "mgiad.training.config_checks", "mgiad.training.trajectory"),
    "mgiad.checkpoint": ("mgiad.training.checkpoint",),
    "mgiad.train": ("mgiad.training.loop", "mgiad.training.evaluation", "mgiad.training.machine",
                    "mgiad.training.distributed"),
    "mgiad.experiment": ("mgiad.experiments.spec",),
    "mgiad.paper": ("mgiad.experiments.paper",),
    "mgiad.sweep": ("mgiad.experiments.sweep", "mgiad.experiments.variant",
                    "mgiad.experiments.records", "mgiad.experiments.slurm"),
    "mgiad.report": ("mgiad.experiments.report",),
    "mgiad.plot": ("mgiad.experiments.plot",),
    "mgiad.bench": ("mgiad.perf.bench", "mgiad.cli.bench"),
    "mgiad.allocator": ("mgiad.perf.allocator",),
    "mgiad.run_cli": ("mgiad.cli.run",),
    "mgiad.sweep_cli": ("mgiad.cli.sweep",),
    "mgiad.params_cli": ("mgiad.cli.params",),
    "mgiad.demo": ("mgiad.cli.demo",),
}


class _MovedModule(types.ModuleType):
    """Stands at an old path; each attribute comes from the first new module that has it."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"moved to {', '.join(targets)}")
        self.__targets = targets

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for target in self.__targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):  # the warnings filter shows it once per call site
                warnings.warn(f"{self.__name__} moved: import {attr} from {target}",
                              FutureWarning, stacklevel=2)
                return getattr(module, attr)
        raise AttributeError(f"{self.__name__} moved to {' / '.join(self.__targets)}, "
                             f"and none of them defines {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted({n for t in self.__targets for n in dir(importlib.import_module(t))})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _MovedModule(spec.name, MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        pass


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())  # after the real finders: a real module always wins
