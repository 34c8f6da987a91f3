"""Training: the run configuration (the paper's recipe as defaults), the loop in named steps,
evaluation, checkpoints (safetensors, atomic, never unpickled) and data-parallel training.
Imports :mod:`mgiad.models` and :mod:`mgiad.data`, never the command line.

The run configuration: :mod:`.config` (keys, defaults, recipe, schedule), :mod:`.config_checks`
(what values may be, and the messages), :mod:`.values` (parsing), :mod:`.trajectory` (a run's
identity: the one trajectory hash and comparison of resume and sweeps). The loop:
:mod:`.loop` (``train()`` and the order of the steps), one module per step (:mod:`.set_up`,
:mod:`.resume`, :mod:`.run_files`, :mod:`.epoch`, :mod:`.finish`), :mod:`.rundir` (where a run
goes, what a resume may change), :mod:`.interrupts` (divergence, Ctrl-C, SIGTERM)."""

from __future__ import annotations

import importlib
from typing import Any

from .config import RunConfig

#: Loaded on first use (PEP 562), so that the run configuration, which the ``mgiad`` command's
#: ``--help`` shows, does not load torch.
_LAZY = {"evaluate": "evaluation", "RESUME_MUTABLE": "rundir", "TrainingDiverged": "interrupts",
         "load_run_config": "rundir", "train": "loop"}

__all__ = ["RESUME_MUTABLE", "RunConfig", "TrainingDiverged", "evaluate", "load_run_config", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

