"""The ``write_run_files`` step of a training run (:class:`mgiad.training.loop._Run`, which
mixes :class:`RunFiles` in): ``config.json``, ``git_rev``, ``run.json``, ``metrics.jsonl`` (from
the checkpoint's history), TensorBoard and trackers; then everything the epochs need: the
augmentation, the data on the device, the DDP/compile-wrapped model, the steps per epoch and the
progress line. The checkpoint's header (:meth:`RunFiles._header`) says what the weights are."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mgiad import __version__
from mgiad.data.augment import BatchAugment, augment_policy

from .checkpoint import atomic_write_text
from .epoch import _CUDA_CHECK_EVERY
from .machine import git_rev, hardware_string
from .progress import Progress
from .tracking import Trackers, parse_trackers


class RunFiles:
    """Run files of :class:`mgiad.training.loop._Run` (module docstring)."""

    def write_run_files(self) -> None:
        """config.json, git_rev, run.json, metrics.jsonl (from the checkpoint's history), TensorBoard;
        then everything the epochs need: augmentation, data on the device, DDP/compile wrapping."""
        cfg, device, D, data, run_dir = self.cfg, self.device, self.dist, self.data, self.run_dir
        # What mgiad.train() may pass besides ImageData (mgiad/training/api.py): a DataLoader used
        # as given, float images with their own batch transforms, no test split.
        self.loader = getattr(data, "loader", None)
        n = len(self.loader.dataset) if self.loader is not None else len(data.y_train)
        n_test = len(data.y_test) if data.y_test is not None else 0
        self.header = self._header()
        rev, dirty = git_rev()
        self.hardware = hardware_string(device)
        if D.main:
            atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
            atomic_write_text(run_dir / "git_rev", rev + "\n")
            atomic_write_text(run_dir / "run.json", json.dumps({
                "run_id": self.run_id, "config_hash": self.config_hash,
                "weights": self.weights, "hardware": self.hardware, "device": str(device),
                "threads": self.threads.threads,
                "world_size": D.world, "git_rev": rev, "git_dirty": dirty,
                "torch": torch.__version__, "mgiad": __version__, "python": platform.python_version(),
                "argv": sys.argv, "data_source": getattr(data, "source", ""),
                "train_images": n, "test_images": n_test,
            }, indent=2) + "\n")
            # Rows after the checkpoint's epoch (a kill between checkpoint and log, or a run
            # killed mid-epoch) are dropped: the checkpoint's history is the truth.
            atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
            if cfg.tensorboard:
                self.writer = _summary_writer(run_dir / "tb", purge_step=self.start_epoch + 1)
            if parse_trackers(cfg.track):
                self.trackers = Trackers(parse_trackers(cfg.track), run_dir=run_dir,
                                         run_id=self.run_id, project=cfg.track_project,
                                         config={**cfg.to_dict(), "weights": self.weights})

        norm = {"mean": data.mean, "std": data.std, "pad_to": cfg.pad_to, "channels_last": cfg.channels_last}
        transforms = getattr(data, "batch_transforms", None)  # float images: the user's values
        if transforms is not None:
            self.augment, self.test_transform = transforms(
                self.augment_policy, pad_to=cfg.pad_to, channels_last=cfg.channels_last)
        else:
            self.augment = augment_policy(self.augment_policy, **norm)
            self.test_transform = BatchAugment(**norm).test
        if self.loader is None:
            self.x_train, self.y_train = data.x_train.to(device), data.y_train.to(device)
        self.test_data = (data.x_test.to(device), data.y_test.to(device)) if n_test else None

        self.model = self.raw_model
        if D.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            self.model = torch.compile(self.model)

        B = cfg.batch_size
        # The last, partial batch is kept (as the authors' DataLoader did) unless some
        # process would get no image of it; a DataLoader's own batches are its length.
        self.steps = len(self.loader) if self.loader is not None else n // B + (1 if n % B >= D.world else 0)
        if cfg.max_steps_per_epoch is not None:
            self.steps = min(self.steps, cfg.max_steps_per_epoch)
        self.check_every = _CUDA_CHECK_EVERY if device.type == "cuda" else 1
        self.progress = Progress(D.main, cfg.epochs * self.steps, self.start_epoch * self.steps)
        if D.main:
            self.progress.line(
                f"run {run_dir}: {cfg.model} ({self.weights:,} weights) on {data.name} "
                f"({n} train / {n_test} test images from {data.source or 'memory'}), "
                f"{cfg.epochs} epochs x {self.steps} steps, "
                f"batch {B}{f' over {D.world} processes' if D.world > 1 else ''}, {device} [{self.hardware}], threads: {self.threads.reason}"
                + (f", resuming after epoch {self.start_epoch}" if self.start_epoch else "")
            )
        self.t_run = time.perf_counter()
        self.epoch_times: list[float] = []

    def _header(self) -> dict[str, Any]:
        cfg, data = self.cfg, self.data
        return {
            "model": cfg.model,
            "model_kwargs": json.loads(json.dumps(cfg.model_kwargs)),
            "num_classes": data.num_classes,
            "in_chans": data.in_chans,
            "image_size": data.image_size,
            "input_size": cfg.pad_to or data.image_size,
            "pad_to": cfg.pad_to,
            "dataset": data.name,
            "classes": list(data.classes),
            "mean": list(data.mean),
            "std": list(data.std),
            "augment": cfg.augment,
            "augment_policy": self.augment_policy,
            "weights": self.weights,
            "mgiad_version": __version__,
            "run_id": self.run_id,  # the run this checkpoint belongs to (checked on resume)
            "config_hash": self.config_hash,
        }


def _summary_writer(log_dir: Path, purge_step: int) -> Any:
    """A TensorBoard ``SummaryWriter``, or ``None`` if tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional dependency: metrics.jsonl has everything
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
