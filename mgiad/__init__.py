"""mgiad: MGiaD — Multigrid in all dimensions — and its baselines in PyTorch."""

from . import models  # noqa: F401  (registers the models)
from .registry import create_model, list_models, model_defaults, model_doc, model_hyperparameters

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "model_defaults", "model_doc", "model_hyperparameters", "__version__"]
