"""Register the models with timm when timm is used, without importing timm (or torch) here.

``import mgiad`` calls :func:`install`: if timm is already imported, the models are registered
now; otherwise a one-shot import hook registers them right after ``import timm`` finishes. So
``import mgiad, timm; timm.create_model('mgiad_3lvl')`` works in either import order.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any


def _register() -> None:
    from mgiad.models import timm_registry  # noqa: F401  (registers on import)


class _AfterTimm(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; the real finders find timm
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _register()

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def install() -> None:
    if "timm" in sys.modules:
        _register()
    elif importlib.util.find_spec("timm") is not None and not any(
            isinstance(f, _AfterTimm) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTimm())
