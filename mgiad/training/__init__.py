"""Training: the run configuration (the paper's recipe as defaults), the loop in named steps,
evaluation, checkpoints (safetensors, atomic, never unpickled) and data-parallel training.
Imports :mod:`mgiad.models` and :mod:`mgiad.data`, never the command line."""

from .config import RunConfig
from .evaluate import evaluate
from .loop import RESUME_MUTABLE, TrainingDiverged, load_run_config, train

__all__ = ["RESUME_MUTABLE", "RunConfig", "TrainingDiverged", "evaluate", "load_run_config", "train"]
