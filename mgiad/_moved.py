"""Old import paths keep working: ``mgiad.train``, ``mgiad.layers``, ... of the flat layout.

Version 0.1 had every module directly under ``mgiad/``. Importing an old path gives a module
that finds each name in its new home and warns (``FutureWarning``) with the new path,
e.g. ``from mgiad.train import train`` -> ``mgiad.training.loop``. A name that no longer
exists raises an ``AttributeError`` that lists where to look.

``mgiad.train`` is both: the training function of the library (:func:`mgiad.training.api.train`)
and the old module path. The object at ``mgiad.train`` (the package's attribute, and
``sys.modules["mgiad.train"]``, placed there on ``import mgiad``) is one :class:`_CallableModule`:
calling it trains, ``from mgiad.train import train`` still gives the old loop function with its
warning. One object for both, because ``import mgiad.train`` sets the package's attribute to the
module it imports: a separate function at ``mgiad.train`` would be replaced by the module as soon
as old code ran that import.
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


class _CallableModule(_MovedModule):
    """``mgiad.train``: calling it is :func:`mgiad.training.api.train` (loaded on the first call,
    so that ``import mgiad`` stays free of torch); its attributes are the old module's."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from mgiad.training.api import train

        return train(*args, **kwargs)

    @property
    def __signature__(self) -> Any:  # inspect.signature(mgiad.train), IDEs, help()
        import inspect

        from mgiad.training.api import train

        return inspect.signature(train)


#: old module paths that are also functions of the package: path -> the function's doc
CALLABLE: dict[str, str] = {
    "mgiad.train": "mgiad.train(model_or_name, train_data, test_data=None, **recipe): train a model "
                   "on a torch Dataset, DataLoader or (x, y) tensors and return a TrainResult "
                   "(mgiad.training.api.train; docs/library.md). Also the old module path "
                   "mgiad.train, moved to mgiad.training.loop.",
}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name in CALLABLE:
            module = _CallableModule(spec.name, MOVED[spec.name])
            module.__doc__ = CALLABLE[spec.name]
            return module
        return _MovedModule(spec.name, MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        pass


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())  # after the real finders: a real module always wins
