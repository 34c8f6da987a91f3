"""The training loop: ``train(cfg)`` runs the paper's recipe and writes a run directory.

A run directory (``OUT_DIR/RUN_NAME/``) holds

- ``config.json``: the resolved :class:`~mgiad.training.config.RunConfig`;
- ``git_rev``: the commit of the code (``unknown`` outside a git checkout);
- ``run.json``: weight count, hardware, versions, world size;
- ``metrics.jsonl``: one JSON row per epoch (train loss/accuracy, test accuracy, lr, img/s, ...);
- ``last.safetensors``: the checkpoint after the latest finished epoch (atomic rewrite);
- ``summary.json``: written at the end (final/best test accuracy, wall time, status);
- ``tb/``: TensorBoard events, if tensorboard is installed.

The loop is :class:`_Run` in named steps, one module each: ``set_up`` (threads, data, model,
optimizer, random streams, run directory; :mod:`.set_up`), ``resume`` (state from the last
checkpoint, which must belong to the run; :mod:`.resume`), ``write_run_files`` (and what the
epochs need; :mod:`.run_files`), then for every epoch ``train_epoch``, ``evaluate`` and
``end_epoch`` (checkpoint, then the log row; :mod:`.epoch`), and ``finish`` (the summary; with
what a run that stops early leaves: :mod:`.finish`). This module holds :func:`train` and the
order of the steps. Where a run directory goes and what a resume may change: :mod:`.rundir`; a
run's identity (the trajectory hash that resume and sweeps check): :mod:`.trajectory`; how a
run stops early (divergence, Ctrl-C, SIGTERM): :mod:`.interrupts`.

Design choices, each for a reason:

- The whole dataset lives on the training device as uint8; a batch is an index into it, and
  augmentation runs batched on the device (:mod:`mgiad.data.augment`), so no data-loader workers.
- Epoch boundaries are the only resumption points. Everything random comes from generators
  whose states the checkpoint stores (shuffling: a CPU generator; augmentation: a generator on
  the data device; torch's global CPU/CUDA generators), and the learning rate is a function of
  the epoch alone, so ``--resume`` after a kill continues bit for bit on CPU.
- The loss of every step is checked for NaN/inf before the optimizer step (on CUDA every
  ``_CUDA_CHECK_EVERY`` steps, :mod:`.epoch`, to avoid a host sync per step); divergence stops
  the run with :class:`TrainingDiverged` and the last checkpoint, written only after a clean
  epoch, stays.
- Under ``torchrun`` every process draws the same permutation and augments the same global
  batch, then takes its contiguous share; losses are summed and scaled so that the averaged
  gradient equals the single-process gradient of the global batch. BatchNorm still sees only
  the local share (per-process statistics) unless ``sync_bn`` is set: with BN the runs are
  close, not equal.
"""


from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from mgiad.data.policies import LEGACY_RECIPES

from .config import RunConfig
from .distributed import Dist, init_distributed
from .epoch import Epoch
from .evaluation import evaluate as evaluate  # re-exported (tests, mgiad.train)
from .finish import Finish
from .interrupts import TrainingDiverged, TrainingInterrupted, sigterm_as_interrupt
from .lock import RunLock
from .machine import resolve_device
from .progress import Progress
from .resume import Resume
from .run_files import RunFiles
from .rundir import RESUME_MUTABLE, load_run_config, resume_config
from .set_up import SetUp
from .tracking import Trackers

StepHook = Callable[[int, int, nn.Module], None]
EpochHook = Callable[[dict[str, Any]], None]


def train(
    cfg: RunConfig | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    data: Any = None,
    on_step: StepHook | None = None,
    on_epoch_end: EpochHook | None = None,
    build_model: Callable[[], nn.Module] | None = None,
) -> dict[str, Any]:
    """Train a model as ``cfg`` says and return the run summary (also in ``summary.json``).

    Args:
        cfg: the run configuration; with ``resume`` it may be omitted (the run's own
            ``config.json`` is used) or differ from it only in :data:`RESUME_MUTABLE` keys.
        resume: a run directory to continue from its last checkpoint.
        data: an :class:`mgiad.data.ImageData` to train on instead of loading ``cfg.dataset``
            (its ``name`` then picks the policy of an augmentation recipe such as ``authors``).
        on_step: ``on_step(epoch, step, model)`` after every optimizer step (0-based epoch
            and step; tests use it to inject faults).
        on_epoch_end: ``on_epoch_end(row)`` with the epoch's metrics (the ``metrics.jsonl``
            row: epoch, train loss/accuracy, test accuracy, lr, img/s, times) after the
            checkpoint and the log row are written, in the main process; for experiment
            trackers (Weights & Biases, MLflow, ...).
        build_model: builds the network instead of ``create_model(cfg.model, ...)``, called
            right after ``torch.manual_seed(cfg.seed)`` (:func:`mgiad.train` passes a user's
            module, or keeps the model it builds, this way).

    Raises:
        ValueError: bad configuration, data or run directory (user errors).
        TrainingDiverged: the loss became NaN/inf; the last checkpoint is left intact.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised here (NCCL on
    CUDA, gloo on CPU) and only rank 0 writes files. Global PyTorch settings touched:
    ``torch.manual_seed``, ``cudnn.benchmark`` (on unless ``deterministic``) and, with
    ``deterministic``, ``torch.use_deterministic_algorithms``.
    """
    if cfg is None and resume is None:
        raise ValueError("train() needs a RunConfig or a run directory to resume")
    if resume is not None:
        cfg = resume_config(Path(resume), cfg, check_names=data is None)
    assert cfg is not None
    if cfg.augment in LEGACY_RECIPES and resume is None:
        warnings.warn(f"augment={cfg.augment} is the old name of augment="
                      f"{LEGACY_RECIPES[cfg.augment]}; the paper names no augmentation. The "
                      "default, augment=authors, is the authors' code's", stacklevel=2)
    cfg = cfg.resolved()
    cfg.validate(check_names=data is None)
    device = resolve_device(cfg.device)
    dist_ = init_distributed(device)
    if dist_.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist_.local_rank)
        torch.cuda.set_device(device)
    finished = False
    try:
        with sigterm_as_interrupt():
            summary = _Run(cfg, device, dist_, Path(resume) if resume is not None else None, data,
                           on_step, on_epoch_end, build_model).run()
        finished = True
        return summary
    finally:
        if dist_.owned:
            if finished:
                # Leave together: a process that tears gloo down while its peer is still
                # finishing can be aborted by gloo ("terminate called without an active
                # exception"; 2 of 6 torchrun runs of tests/test_ddp.py on this CPU).
                dist.barrier()
            dist.destroy_process_group()


class _Run(SetUp, Resume, RunFiles, Epoch, Finish):
    """One training run of :func:`train`, in named steps (module docstring): the steps are
    methods of the classes it mixes in, one module each; they share the run's state in ``self``."""

    def __init__(self, cfg: RunConfig, device: torch.device, dist_: Dist, resume: Path | None,
                 data: Any, on_step: StepHook | None, on_epoch_end: EpochHook | None = None,
                 build_model: Callable[[], nn.Module] | None = None) -> None:
        self.cfg, self.device, self.dist, self.resume_dir = cfg, device, dist_, resume
        self.data, self.on_step, self.on_epoch_end = data, on_step, on_epoch_end
        self.build_model = build_model
        self.writer: Any = None
        self.progress: Progress | None = None
        self.lock: RunLock | None = None
        self.run_dir: Path | None = None
        self.epoch: int | None = None  # the epoch in progress (0-based)
        self.checkpointed = 0  # epochs in the checkpoint on disk
        self.trackers: Trackers | None = None  # W&B / MLflow (main process, when asked for)
        self.end_status = "failed"  # what the trackers hear if the run ends without finish()

    def run(self) -> dict[str, Any]:
        try:
            self.set_up()
            self.resume()
            self.write_run_files()
            return self.finish(self.train_epochs())
        except TrainingDiverged as e:
            self.write_diverged(e)
            raise
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (train() turns it into one)
            raise self.interrupted(e) from None
        except OSError as e:  # read-only, full disk, permissions: say what is kept
            raise self.io_failed(e) from None
        finally:
            self.close()

    def train_epochs(self) -> str:
        """Every remaining epoch; the run's status: ``completed`` or ``time_budget``."""
        for epoch in range(self.start_epoch, self.cfg.epochs):
            self.epoch = epoch
            row = self.train_epoch(epoch)
            tested = self.test_data is not None  # mgiad.train() without test data: none
            if tested and ((epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs):
                self.evaluate(epoch, row)
            self.end_epoch(epoch, row)
            if self.out_of_time(epoch):
                return "time_budget"
        return "completed"

    def close(self) -> None:
        if self.trackers is not None:  # interrupted, diverged or failed
            self.trackers.finish({"status": self.end_status})
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()
        if self.lock is not None:
            self.lock.release()


__all__ = ["RESUME_MUTABLE", "TrainingDiverged", "TrainingInterrupted", "load_run_config", "train"]
