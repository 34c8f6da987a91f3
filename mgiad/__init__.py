"""mgiad: MGiaD — Multigrid in all dimensions — and its baselines in PyTorch.

The package holds four systems, each a subpackage (README, "Layout"): the network library
(:mod:`mgiad.ops`, :mod:`mgiad.nn`, :mod:`mgiad.models`), training (:mod:`mgiad.data`,
:mod:`mgiad.training`), the paper's reproduction (:mod:`mgiad.experiments`) and the command line
(:mod:`mgiad.cli`), plus :mod:`mgiad.perf`.
"""

__version__ = "0.1.0"

# ruff: noqa: E402, I001  (the version first: submodules read it)
from . import _moved  # noqa: F401  (old flat module paths: mgiad.train, mgiad.layers, ...)
from . import models  # noqa: F401  (registers the models)
from .models.registry import create_model, list_models, model_defaults, model_doc, model_hyperparameters

__all__ = ["create_model", "list_models", "model_defaults", "model_doc", "model_hyperparameters", "__version__"]
