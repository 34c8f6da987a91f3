"""The training loop: ``train(cfg)`` runs the paper's recipe and writes a run directory.

A run directory (``OUT_DIR/RUN_NAME/``) holds

- ``config.json``: the resolved :class:`~mgiad.training.config.RunConfig`;
- ``git_rev``: the commit of the code (``unknown`` outside a git checkout);
- ``run.json``: weight count, hardware, versions, world size;
- ``metrics.jsonl``: one JSON row per epoch (train loss/accuracy, test accuracy, lr, img/s, ...);
- ``last.safetensors``: the checkpoint after the latest finished epoch (atomic rewrite);
- ``summary.json``: written at the end (final/best test accuracy, wall time, status);
- ``tb/``: TensorBoard events, if tensorboard is installed.

The loop is :class:`_Run` in named steps: ``set_up`` (threads, data, model, optimizer, random
streams, run directory), ``resume`` (state from the last checkpoint), ``write_run_files``, then
for every epoch ``train_epoch``, ``evaluate`` and ``end_epoch`` (checkpoint, then the log row),
and ``finish`` (the summary). Where a run directory goes and what a resume may change:
:mod:`.rundir`; how a run stops early (divergence, Ctrl-C, SIGTERM): :mod:`.interrupts`.

Design choices, each for a reason:

- The whole dataset lives on the training device as uint8; a batch is an index into it, and
  augmentation runs batched on the device (:mod:`mgiad.data.augment`), so no data-loader workers.
- Epoch boundaries are the only resumption points. Everything random comes from generators
  whose states the checkpoint stores (shuffling: a CPU generator; augmentation: a generator on
  the data device; torch's global CPU/CUDA generators), and the learning rate is a function of
  the epoch alone, so ``--resume`` after a kill continues bit for bit on CPU.
- The loss of every step is checked for NaN/inf before the optimizer step (on CUDA every
  ``_CUDA_CHECK_EVERY`` steps, to avoid a host sync per step); divergence stops the run with
  :class:`TrainingDiverged` and the last checkpoint, written only after a clean epoch, stays.
- Under ``torchrun`` every process draws the same permutation and augments the same global
  batch, then takes its contiguous share; losses are summed and scaled so that the averaged
  gradient equals the single-process gradient of the global batch. BatchNorm still sees only
  the local share (per-process statistics) unless ``sync_bn`` is set: with BN the runs are
  close, not equal.
"""


from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from mgiad import __version__
from mgiad.data.augment import BatchAugment, augment_policy
from mgiad.data.policies import LEGACY_RECIPES, recipe_policy
from mgiad.models.registry import create_model

from .checkpoint import (
    LAST,
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    remove_stale_temporaries,
    save_checkpoint,
)
from .config import RunConfig
from .distributed import Dist, init_distributed, shard
from .evaluation import autocast, evaluate
from .interrupts import TrainingDiverged, TrainingInterrupted, signal_name, sigterm_as_interrupt
from .lock import RunLock
from .machine import git_rev, hardware_string, resolve_device
from .progress import Progress, fmt_time
from .rundir import RESUME_MUTABLE, create_run_dir, load_run_config, read_json, resume_config
from .threads import configure_threads, recorded_threads
from .tracking import Trackers, check_installed, parse_trackers

_CUDA_CHECK_EVERY = 25  # steps between NaN checks on CUDA (each check is a host sync)

StepHook = Callable[[int, int, nn.Module], None]
EpochHook = Callable[[dict[str, Any]], None]


def train(
    cfg: RunConfig | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    data: Any = None,
    on_step: StepHook | None = None,
    on_epoch_end: EpochHook | None = None,
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
        cfg = resume_config(Path(resume), cfg)
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
                           on_step, on_epoch_end).run()
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


def _derived_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seeds for the random streams of a run (shuffle, augment)."""
    digest = hashlib.sha256(f"mgiad/{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _Run:
    """One training run of :func:`train`, in named steps (module docstring)."""

    def __init__(self, cfg: RunConfig, device: torch.device, dist_: Dist, resume: Path | None,
                 data: Any, on_step: StepHook | None, on_epoch_end: EpochHook | None = None) -> None:
        self.cfg, self.device, self.dist, self.resume_dir = cfg, device, dist_, resume
        self.data, self.on_step, self.on_epoch_end = data, on_step, on_epoch_end
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
            if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs:
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

    # -- set-up ----------------------------------------------------------------------------

    def set_up(self) -> None:
        """Global torch settings, data, model, optimizer, random streams and the run directory."""
        cfg, device = self.cfg, self.device
        check_installed(parse_trackers(cfg.track))  # a missing tracker fails before any work
        self.threads = configure_threads(cfg.threads, previous=recorded_threads(self.resume_dir))
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: autotuning pays off
        self.amp = cfg.amp
        if self.amp == "bf16" and device.type != "cuda":
            # Documented fallback: CPU bf16 autocast is slow on most CPUs and changes numerics
            # for no speed gain; train in fp32 instead of failing a long job at start.
            warnings.warn("amp=bf16 acts only on CUDA; training in fp32 on " + device.type,
                          stacklevel=3)
            self.amp = "none"

        if self.resume_dir is None and self.dist.main:
            cfg.check_out_dir()  # a read-only or blocked out_dir fails now, not after the data loads
        self.data = data = self._load_data()
        # The policy by name, so that eval/predict and the records do not depend on data-set names.
        self.augment_policy = recipe_policy(cfg.augment, data.name)
        if self.augment_policy is None:  # your own data: a recipe has no choice for it
            self.augment_policy = "none"
            warnings.warn(f"augment={cfg.augment}: the recipe has no augmentation for {data.name}; "
                          "training without (choose one with --augment=crop-flip, ...)",
                          stacklevel=3)
        torch.manual_seed(cfg.seed)  # model initialisation (identical on every process)
        try:
            model = create_model(cfg.model, num_classes=data.num_classes, in_chans=data.in_chans,
                                 **cfg.model_kwargs)
        except TypeError as e:  # an unknown hyper-parameter name
            raise ValueError(f"model {cfg.model!r}: {e} (check model_kwargs)") from None
        self.weights = sum(p.numel() for p in model.parameters())
        if self.dist.world > 1 and cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.raw_model = model.to(device, memory_format=fmt)
        self.optimizer = torch.optim.SGD(self.raw_model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, nesterov=False)
        self.shuffle_gen = torch.Generator().manual_seed(_derived_seed(cfg.seed, "shuffle"))
        self.aug_gen = torch.Generator(device=device).manual_seed(_derived_seed(cfg.seed, "augment"))
        self.run_dir = self._run_dir()
        self.ckpt_path = self.run_dir / LAST

    def _load_data(self) -> Any:
        from mgiad.data.datasets import load_dataset, subset

        cfg = self.cfg
        data = self.data
        if data is None:
            # With download, rank 0 fetches first so that processes do not race on the files.
            if self.dist.world > 1 and cfg.download and not self.dist.main:
                dist.barrier()
            data = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download)
            if self.dist.world > 1 and cfg.download and self.dist.main:
                dist.barrier()
        if cfg.subset_train is not None or cfg.subset_test is not None:
            # A fixed subset seed: runs with different seeds differ in initialisation and
            # order only, not in which images they see.
            data = subset(data, train=cfg.subset_train, test=cfg.subset_test, seed=0)
        if len(data.y_train) < self.dist.world:
            raise ValueError(f"{len(data.y_train)} training images cannot be split over "
                             f"{self.dist.world} processes")
        return data

    def _run_dir(self) -> Path:
        """The run directory, locked by the main process (one trainer per directory)."""
        if self.resume_dir is not None:
            if self.dist.main:
                self.lock = RunLock(self.resume_dir).acquire()
            return self.resume_dir
        name = [None]
        if self.dist.main:
            path, self.lock = create_run_dir(self.cfg)
            name = [str(path)]
        if self.dist.world > 1:
            dist.broadcast_object_list(name, src=0)
        return Path(name[0])

    # -- resume ------------------------------------------------------------------------------

    def resume(self) -> None:
        """Weights, optimizer, random streams and history from the last checkpoint, if any."""
        self.start_epoch, self.history, self.elapsed_before = 0, [], 0.0
        self.config_hash = self.cfg.trajectory_hash()
        self.run_id = uuid.uuid4().hex[:16]  # a new run's identity, carried by its checkpoints
        if self.resume_dir is None:
            return
        recorded_id = read_json(self.run_dir / "run.json").get("run_id")
        self.run_id = recorded_id or self.run_id
        if self.dist.main:  # a killed writer leaves its temporary file
            remove_stale_temporaries(self.ckpt_path)
        # A run killed during its first epoch has no checkpoint yet: resuming it means starting
        # it again, which (same seed) gives what the uninterrupted run would have.
        if not self.ckpt_path.exists():
            if self.dist.main:
                print(f"mgiad: {self.run_dir} has no checkpoint (it was stopped before its first "
                      "epoch finished): the run starts again from epoch 1 with its seed, which "
                      "gives what an uninterrupted run would have", file=sys.stderr, flush=True)
            return
        ckpt = load_checkpoint(self.ckpt_path)
        self._check_identity(ckpt, recorded_id)
        load_weights(self.raw_model, ckpt.model_state, path=ckpt.path)
        if ckpt.optimizer_state is None:
            raise ValueError(f"{ckpt.path} holds weights only; cannot resume training from it")
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        torch.set_rng_state(ckpt.rng["torch"])
        if "cuda" in ckpt.rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt.rng["cuda"], self.device)
        self.shuffle_gen.set_state(ckpt.rng["shuffle"])
        if ckpt.rng["augment"].numel() == self.aug_gen.get_state().numel():
            self.aug_gen.set_state(ckpt.rng["augment"])
        else:  # resumed on another device type: its generator state does not fit
            warnings.warn("the augmentation random stream restarts: the run was resumed on "
                          f"{self.device.type}, its checkpoint comes from another device type",
                          stacklevel=3)
        self.start_epoch = self.checkpointed = int(ckpt.train_state["epoch"])
        self.history = list(ckpt.train_state.get("history", []))
        self.elapsed_before = float(ckpt.train_state.get("elapsed_s", 0.0))

    def _check_identity(self, ckpt: Any, recorded_id: str | None) -> None:
        """Refuse a checkpoint of another run (copied or moved here): resuming on it would
        continue someone else's weights and history under this run's name."""
        theirs = ckpt.header.get("run_id")
        if theirs is None:  # written before checkpoints carried their run's identity
            warnings.warn(f"{ckpt.path} carries no run identity (written by mgiad 0.1); resuming "
                          f"without checking that it belongs to {self.run_dir}", stacklevel=4)
            return
        if recorded_id is None:
            raise CheckpointError(
                f"cannot check that {ckpt.path} belongs to {self.run_dir}: the run's run.json is "
                "missing or has no run_id; restore it, or move the checkpoint away to start over")
        if theirs != recorded_id or not self.cfg.matches_trajectory(ckpt.header.get("config_hash")):
            raise CheckpointError(
                f"{ckpt.path} belongs to another run (run id {theirs}, {ckpt.header.get('model')} "
                f"on {ckpt.header.get('dataset')}, epoch {ckpt.header.get('epoch')}), not to "
                f"{self.run_dir} (run id {recorded_id}): it was copied or moved here. Resume the "
                "run it belongs to, or move it away to start this run over")

    # -- files, augmentation, wrapped model, progress ------------------------------------------

    def write_run_files(self) -> None:
        """config.json, git_rev, run.json, metrics.jsonl (from the checkpoint's history), TensorBoard;
        then everything the epochs need: augmentation, data on the device, DDP/compile wrapping."""
        cfg, device, D, data, run_dir = self.cfg, self.device, self.dist, self.data, self.run_dir
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
                "train_images": len(data.y_train), "test_images": len(data.y_test),
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
        self.augment = augment_policy(self.augment_policy, **norm)
        self.test_transform = BatchAugment(**norm).test
        self.x_train, self.y_train = data.x_train.to(device), data.y_train.to(device)
        self.test_data = (data.x_test.to(device), data.y_test.to(device))

        self.model = self.raw_model
        if D.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            self.model = torch.compile(self.model)

        n, B = len(self.y_train), cfg.batch_size
        # The last, partial batch is kept (as the authors' DataLoader did) unless some
        # process would get no image of it.
        self.steps = n // B + (1 if n % B >= D.world else 0)
        if cfg.max_steps_per_epoch is not None:
            self.steps = min(self.steps, cfg.max_steps_per_epoch)
        self.check_every = _CUDA_CHECK_EVERY if device.type == "cuda" else 1
        self.progress = Progress(D.main, cfg.epochs * self.steps, self.start_epoch * self.steps)
        if D.main:
            self.progress.line(
                f"run {run_dir}: {cfg.model} ({self.weights:,} weights) on {data.name} "
                f"({n} train / {len(self.test_data[1])} test images from {data.source or 'memory'}), "
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

    # -- one epoch ----------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the shuffled training set; returns the epoch's log row (no test yet)."""
        cfg, device, D, steps = self.cfg, self.device, self.dist, self.steps
        B = cfg.batch_size
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        lr = cfg.lr_at(epoch)  # the epoch's first step's, which the metrics row reports
        per_step = cfg.lr_per_step
        self.model.train()
        perm = torch.randperm(len(self.y_train), generator=self.shuffle_gen).to(device)
        loss_total = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        # first non-finite step, stored as steps - step so that MAX finds the earliest
        bad = torch.zeros((), dtype=torch.int64, device=device)
        for step in range(steps):
            idx = perm[step * B : (step + 1) * B]
            # Augment the whole global batch on every process (same generator state
            # everywhere), then take this process's share: the global batch is the
            # single-process batch, image for image.
            xb = self.augment.train(self.x_train[idx], self.aug_gen)
            yb = self.y_train[idx]
            n_global = len(idx)
            if D.world > 1:
                lo, hi = shard(n_global, D.rank, D.world)
                xb, yb = xb[lo:hi], yb[lo:hi]
            with autocast(device, self.amp):
                logits = self.model(xb)
            loss_sum = F.cross_entropy(logits.float(), yb, reduction="sum")
            # DDP averages gradients over processes; scaling the local sum by
            # world / n_global makes that average the mean over the global batch.
            loss = loss_sum * (D.world / n_global)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if step == 0 or per_step:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr_at(epoch, step, steps)
            ls = loss_sum.detach()
            bad = torch.where((bad == 0) & ~torch.isfinite(ls), steps - step, bad)
            if (step + 1) % self.check_every == 0 or step + 1 == steps:
                self._check_finite(bad, epoch)
            self.optimizer.step()
            loss_total += ls.double()
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            if self.on_step is not None:
                self.on_step(epoch, step, self.raw_model)
            self.progress.step(f"epoch {epoch + 1}/{cfg.epochs}", images=n_global)
        # Weights can overflow in the last step with a finite loss: check before saving.
        if not all(bool(torch.isfinite(p).all()) for p in self.raw_model.parameters()):
            raise TrainingDiverged(
                f"weights became NaN/inf in epoch {epoch + 1} (by step {steps}); "
                + self._kept(), epoch=epoch + 1, step=steps, run_dir=self.run_dir)
        stats = torch.stack([loss_total, correct.double(),
                             torch.tensor(float(seen), dtype=torch.float64, device=device)])
        if D.world > 1:
            dist.all_reduce(stats)
        train_time = time.perf_counter() - self.t0
        loss_sum_all, correct_all, seen_all = stats.tolist()
        return {
            "epoch": epoch + 1,
            "train_loss": loss_sum_all / max(seen_all, 1),
            "train_acc": correct_all / max(seen_all, 1),
            "test_acc": None,
            "lr": lr,
            "img_per_s": seen_all / max(train_time, 1e-9),
            "steps": steps,
        }

    def _check_finite(self, bad: torch.Tensor, epoch: int) -> None:
        if self.dist.world > 1:
            bad = bad.clone()
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)  # every process stops at the same check
        value = int(bad.item())
        if value:
            step = self.steps - value + 1
            raise TrainingDiverged(
                f"loss became NaN/inf at epoch {epoch + 1}, step {step} of {self.steps} "
                f"(learning rate {self.cfg.lr_at(epoch, step - 1, self.steps):.4g}); " + self._kept(),
                epoch=epoch + 1, step=step, run_dir=self.run_dir)

    def _kept(self) -> str:
        if self.ckpt_path.exists():
            return f"the last good checkpoint {self.ckpt_path} is unchanged"
        return "no checkpoint was written (the first epoch did not finish)"

    def interrupted(self, e: KeyboardInterrupt) -> TrainingInterrupted:
        """What an interrupt leaves: the message names what is checkpointed and the command
        that continues; rank 0 writes a summary with status ``interrupted``."""
        self.end_status = "interrupted"
        name = signal_name(e)
        run_dir = self.run_dir
        if run_dir is None or not (run_dir / "config.json").is_file():
            return TrainingInterrupted(f"interrupted ({name}) while setting up the run; nothing "
                                       "was trained, nothing to resume", signal_name=name, run_dir=None)
        where = (f"in epoch {self.epoch + 1}/{self.cfg.epochs}" if self.epoch is not None
                 else "before its first step")
        resume = f"`mgiad train --resume {run_dir}`"
        if self.ckpt_path.exists():
            message = (f"interrupted ({name}) {where}; epoch {self.checkpointed} is checkpointed in "
                       f"{self.ckpt_path}; continue with {resume}")
        else:
            message = (f"interrupted ({name}) {where}; no epoch had finished, so nothing is "
                       f"checkpointed; {resume} starts the run again (same seed, same result)")
        if self.dist.main:
            with contextlib.suppress(OSError):
                atomic_write_text(run_dir / "summary.json", json.dumps({
                    "status": "interrupted", "signal": name, "message": message,
                    "epochs_done": self.checkpointed, "epochs": self.cfg.epochs,
                    "run_dir": str(run_dir)}, indent=2) + "\n")
        return TrainingInterrupted(message, signal_name=name, run_dir=run_dir)

    def io_failed(self, e: OSError) -> OSError:
        """The OS error with what is kept and how to continue (the file stays in ``filename``)."""
        if self.run_dir is None or not hasattr(self, "ckpt_path"):
            return e
        hint = f"; {self._kept()}"
        if (self.run_dir / "config.json").is_file():
            hint += f"; continue with `mgiad train --resume {self.run_dir}` once that is fixed"
        return OSError(e.errno, f"{e.strerror or e}{hint}", e.filename)

    def evaluate(self, epoch: int, row: dict[str, Any]) -> None:
        """Test accuracy into ``row`` (per class too after the last epoch)."""
        D = self.dist
        if D.world > 1:  # evaluate with rank 0's BN statistics: those get saved
            for buf in self.raw_model.buffers():
                dist.broadcast(buf, 0)
        row["test_acc"], per_class = evaluate(
            self.raw_model, self.test_data, transform=self.test_transform,
            num_classes=self.data.num_classes, amp=self.amp, distributed=D.world > 1)
        if epoch + 1 == self.cfg.epochs:
            row["test_per_class"] = per_class

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Timing into the row, then (rank 0) the checkpoint, the log row and the progress line."""
        cfg = self.cfg
        epoch_time = time.perf_counter() - self.t0
        self.epoch_times.append(epoch_time)
        row["epoch_time_s"] = epoch_time
        row["elapsed_s"] = self.elapsed_before + time.perf_counter() - self.t_run
        # what the time was measured on: this process's CPU time (all its threads), its torch
        # threads and the machine's load (time-to-accuracy figures read CPU hours from these)
        row["epoch_cpu_s"] = time.process_time() - self.cpu0
        row["threads"] = torch.get_num_threads()
        row["load_avg_1m"] = os.getloadavg()[0]
        self.history.append(row)
        if not self.dist.main:
            return
        # Checkpoint first, then the log row: metrics.jsonl never runs ahead of a checkpoint
        # (and is rebuilt from the checkpoint on resume anyway).
        rng = {"torch": torch.get_rng_state(), "shuffle": self.shuffle_gen.get_state(),
               "augment": self.aug_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(
            self.ckpt_path, header={**self.header, "epoch": epoch + 1},
            model_state=self.raw_model.state_dict(), optimizer_state=self.optimizer.state_dict(),
            rng=rng, train_state={"epoch": epoch + 1, "history": self.history, "elapsed_s": row["elapsed_s"]},
        )
        self.checkpointed = epoch + 1
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.on_epoch_end is not None:
            self.on_epoch_end(dict(row))
        if self.trackers is not None:
            self.trackers.log(row)
        if self.writer is not None:
            for key in ("train_loss", "train_acc", "test_acc", "lr", "img_per_s"):
                if row[key] is not None:
                    self.writer.add_scalar(key, row[key], epoch + 1)
            self.writer.flush()
        remaining = (cfg.epochs - epoch - 1) * (sum(self.epoch_times) / len(self.epoch_times))
        test = f"{100 * row['test_acc']:.2f}%" if row["test_acc"] is not None else "-"
        self.progress.line(
            f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
            f"train {100 * row['train_acc']:.2f}%  test {test}  lr {row['lr']:.4g}  "
            f"{row['img_per_s']:.0f} img/s  {epoch_time:.1f}s  "
            f"elapsed {fmt_time(row['elapsed_s'])}  eta {fmt_time(remaining)}"
        )

    def out_of_time(self, epoch: int) -> bool:
        """Would another epoch overrun ``time_budget_s``? (rank 0's clock decides for everyone)"""
        cfg = self.cfg
        if epoch + 1 == cfg.epochs or cfg.time_budget_s is None:
            return False
        spent = self.elapsed_before + time.perf_counter() - self.t_run
        stop = torch.tensor(int(spent + self.epoch_times[-1] > cfg.time_budget_s), device=self.device)
        if self.dist.world > 1:
            dist.broadcast(stop, 0)
        if stop.item():
            self.progress.line(f"time budget of {cfg.time_budget_s:g}s reached after epoch "
                               f"{epoch + 1}; continue with `mgiad train --resume {self.run_dir}`")
        return bool(stop.item())

    # -- the end -------------------------------------------------------------------------------

    def write_diverged(self, e: TrainingDiverged) -> None:
        self.end_status = "diverged"
        if self.dist.main:
            self.progress.close()
            atomic_write_text(self.run_dir / "summary.json", json.dumps({
                "status": "diverged", "error": str(e), "epoch": e.epoch, "step": e.step,
                "epochs_done": len(self.history), "run_dir": str(self.run_dir)}, indent=2) + "\n")

    def finish(self, status: str) -> dict[str, Any]:
        """summary.json and the closing line."""
        summary = self._summary(status)
        if self.trackers is not None:
            self.trackers.finish(summary)
            self.trackers = None
        if self.dist.main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
            final = summary["final_test_acc"]
            self.progress.line(
                f"done ({status}): test {100 * final:.2f}% (best {100 * summary['best_test_acc']:.2f}% "
                f"at epoch {summary['best_epoch']}), train {100 * summary['final_train_acc']:.2f}%, "
                f"{fmt_time(summary['wall_time_s'])}; results in {self.run_dir}"
                if final is not None else f"done ({status}); results in {self.run_dir}"
            )
        return summary

    def _summary(self, status: str) -> dict[str, Any]:
        history = self.history
        tested = [r for r in history if r.get("test_acc") is not None]
        best = max(tested, key=lambda r: r["test_acc"], default=None)
        last = history[-1] if history else {}
        return {
            "status": status,
            "run_dir": str(self.run_dir),
            "model": self.cfg.model,
            "model_kwargs": self.cfg.model_kwargs,
            "dataset": self.data.name,
            "seed": self.cfg.seed,
            "epochs_done": len(history),
            "epochs": self.cfg.epochs,
            "final_test_acc": tested[-1]["test_acc"] if tested else None,
            "final_test_per_class": last.get("test_per_class"),
            "best_test_acc": best["test_acc"] if best else None,
            "best_epoch": best["epoch"] if best else None,
            "final_train_acc": last.get("train_acc"),
            "final_train_loss": last.get("train_loss"),
            "weights": self.weights,
            "wall_time_s": last.get("elapsed_s", 0.0),
            "mean_img_per_s": (sum(r["img_per_s"] for r in history) / len(history)) if history else None,
            "hardware": self.hardware,
            "device": str(self.device),
            "world_size": self.dist.world,
        }


def _summary_writer(log_dir: Path, purge_step: int) -> Any:
    """A TensorBoard ``SummaryWriter``, or ``None`` if tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional dependency: metrics.jsonl has everything
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


__all__ = ["RESUME_MUTABLE", "TrainingDiverged", "TrainingInterrupted", "load_run_config", "train"]
