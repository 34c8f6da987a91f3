"""mgiad: MGiaD — Multigrid in all dimensions — and its baselines in PyTorch.

The package holds four systems, each a subpackage (README, "Layout"): the network library
(:mod:`mgiad.ops`, :mod:`mgiad.nn`, :mod:`mgiad.models`), training (:mod:`mgiad.data`,
:mod:`mgiad.training`), the paper's reproduction (:mod:`mgiad.experiments`) and the command line
(:mod:`mgiad.cli`), plus :mod:`mgiad.perf`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# ruff: noqa: E402, I001  (the version first: submodules read it)
from . import _moved  # noqa: F401  (old flat module paths: mgiad.train, mgiad.layers, ...)
from . import _timm  # the models in timm.create_model, once timm is imported

_timm.install()

#: ``mgiad.train(model_or_name, train_data, test_data=None, **recipe)``: the training API
#: (mgiad/training/api.py), and still the old module path ``mgiad.train`` (mgiad/_moved.py: one
#: callable object for both, so that ``import mgiad.train`` cannot replace the function).
from . import train as train  # noqa: E402  (imports no torch: the module is a stand-in)

#: The model API, loaded on first use (PEP 562): ``import mgiad`` alone does not load torch,
#: so that ``mgiad --help`` starts in a fraction of a second.
_REGISTRY = ("create_model", "list_models", "model_defaults", "model_doc", "model_hyperparameters")
_EXPORT = ("save_pretrained", "from_pretrained", "export_model")

__all__ = [*_REGISTRY, *_EXPORT, "train", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _REGISTRY or name in _EXPORT:
        import importlib

        from . import models  # noqa: F401  (registers the models; loads torch)

        module = importlib.import_module(".models." + ("registry" if name in _REGISTRY else "export"),
                                         __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mgiad' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API and the subpackages already imported (not ``Any``, ``annotations``)."""
    return sorted({*__all__, *(n for n, v in globals().items()
                              if not n.startswith("_") and type(v).__name__ == "module")})

