"""Training and evaluation: ``train(cfg)`` runs the paper's recipe and writes a run directory.

A run directory (``OUT_DIR/RUN_NAME/``) holds

- ``config.json``: the resolved :class:`~mgiad.config.RunConfig`;
- ``git_rev``: the commit of the code (``unknown`` outside a git checkout);
- ``run.json``: weight count, hardware, versions, world size;
- ``metrics.jsonl``: one JSON row per epoch (train loss/accuracy, test accuracy, lr, img/s, ...);
- ``last.safetensors``: the checkpoint after the latest finished epoch (atomic rewrite);
- ``summary.json``: written at the end (final/best test accuracy, wall time, status);
- ``tb/``: TensorBoard events, if tensorboard is installed.

Design choices, each for a reason:

- The whole dataset lives on the training device as uint8; a batch is an index into it, and
  augmentation runs batched on the device (``mgiad.augment``), so no data-loader workers.
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

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from . import __version__
from .augment import BatchAugment, paper_augment
from .checkpoint import (
    LAST,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    remove_stale_temporaries,
    save_checkpoint,
)
from .config import RunConfig
from .registry import create_model

#: Keys a resumed run may change: they do not alter the training trajectory.
RESUME_MUTABLE = frozenset(
    {"data_dir", "download", "device", "threads", "compile", "eval_every", "time_budget_s", "tensorboard",
     "out_dir", "run_name"}
)
_CUDA_CHECK_EVERY = 25  # steps between NaN checks on CUDA (each check is a host sync)

StepHook = Callable[[int, int, nn.Module], None]


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN or infinite; the message names epoch and step."""

    def __init__(self, message: str, *, epoch: int, step: int | None, run_dir: Path | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.run_dir = epoch, step, run_dir


# --------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 1000,
    split: str = "test",
    num_classes: int | None = None,
    amp: str = "none",
    distributed: bool = False,
) -> tuple[float, list[float | None]]:
    """Accuracy and per-class accuracy (fractions in [0, 1]) of ``model`` on a split.

    Args:
        model: the network; its device is the device of its first parameter. It runs in eval
            mode and gets its previous mode back afterwards.
        data: an :class:`mgiad.data.ImageData` (``split`` picks ``x_test``/``x_train``) or a
            pair ``(images uint8 NHWC, labels)``.
        transform: uint8 NHWC batch -> normalised float NCHW batch; default: normalisation
            with ``data.mean``/``data.std`` (``BatchAugment.test``).
        num_classes: default ``data.num_classes`` or ``max(label) + 1``.
        amp: ``"bf16"`` evaluates under bf16 autocast on CUDA.
        distributed: every process evaluates a share and the counts are summed (all
            processes must call it).

    Returns:
        ``(accuracy, per_class)``; ``per_class[c]`` is ``None`` for a class without images.
    """
    if isinstance(data, tuple):
        x, y = data
    else:
        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        num_classes = num_classes or data.num_classes
        if transform is None:
            transform = BatchAugment(mean=data.mean, std=data.std).test
    if transform is None:
        raise ValueError("evaluate: pass transform= when data is an (images, labels) pair")
    num_classes = num_classes or int(y.max().item()) + 1
    device = next(model.parameters()).device
    lo, hi = 0, len(y)
    if distributed and dist.is_initialized() and dist.get_world_size() > 1:
        lo, hi = _shard(len(y), dist.get_rank(), dist.get_world_size())
    correct = torch.zeros(num_classes, dtype=torch.int64, device=device)
    total = torch.zeros(num_classes, dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    try:
        for start in range(lo, hi, batch_size):
            xb = x[start : min(start + batch_size, hi)].to(device, non_blocking=True)
            yb = y[start : min(start + batch_size, hi)].to(device, non_blocking=True)
            with _autocast(device, amp):
                pred = model(transform(xb)).argmax(1)
            total += torch.bincount(yb, minlength=num_classes)
            correct += torch.bincount(yb[pred == yb], minlength=num_classes)
    finally:
        model.train(was_training)
    if distributed and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(correct)
        dist.all_reduce(total)
    correct_l, total_l = correct.tolist(), total.tolist()
    acc = sum(correct_l) / max(sum(total_l), 1)
    per_class = [c / t if t else None for c, t in zip(correct_l, total_l)]
    return acc, per_class


# --------------------------------------------------------------------------------------
# training


@dataclass
class _Dist:
    """Process-group facts; ``world == 1`` without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this call initialised the group and must destroy it

    @property
    def main(self) -> bool:
        return self.rank == 0


def train(
    cfg: RunConfig | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    data: Any = None,
    on_step: StepHook | None = None,
) -> dict[str, Any]:
    """Train a model as ``cfg`` says and return the run summary (also in ``summary.json``).

    Args:
        cfg: the run configuration; with ``resume`` it may be omitted (the run's own
            ``config.json`` is used) or differ from it only in :data:`RESUME_MUTABLE` keys.
        resume: a run directory to continue from its last checkpoint.
        data: an :class:`mgiad.data.ImageData` to train on instead of loading ``cfg.dataset``
            (its ``name`` then picks the augmentation when ``cfg.augment == "paper"``).
        on_step: ``on_step(epoch, step, model)`` after every optimizer step (0-based epoch
            and step; tests use it to inject faults).

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
        cfg = _resume_config(Path(resume), cfg)
    assert cfg is not None
    cfg = cfg.resolved()
    cfg.validate(check_names=data is None)
    device = _device(cfg.device)
    dist_ = _init_distributed(device)
    if dist_.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist_.local_rank)
        torch.cuda.set_device(device)
    try:
        return _Run(cfg, device, dist_, Path(resume) if resume is not None else None, data,
                    on_step).run()
    finally:
        if dist_.owned:
            dist.destroy_process_group()


def load_run_config(run_dir: str | os.PathLike[str]) -> RunConfig:
    """The resolved configuration a run directory was started with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ValueError(
            f"{run_dir} is not a run directory (no config.json); pass the directory that "
            "`mgiad train` created"
        )
    return RunConfig.from_file(path)


def _resume_config(run_dir: Path, cfg: RunConfig | None) -> RunConfig:
    saved = load_run_config(run_dir)
    if cfg is None:
        return saved
    cfg = cfg.resolved()
    # Compare the JSON forms: a tuple given in Python equals the list config.json holds.
    new, old = cfg.to_dict(), saved.resolved().to_dict()
    changed = [k for k in RunConfig.keys() if k not in RESUME_MUTABLE and new[k] != old[k]]
    if changed:
        diffs = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(cfg, k)!r}" for k in changed)
        raise ValueError(
            f"cannot change {diffs} when resuming {run_dir}: it would change the training "
            f"trajectory; start a new run instead (changeable on resume: {', '.join(sorted(RESUME_MUTABLE))})"
        )
    return cfg


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available here; use device=cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available here; use device=cpu or auto")
    return device


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    owned = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
        owned = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank,
                 owned=owned)


def _shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Bounds of ``rank``'s contiguous share of ``n`` items (``torch.tensor_split`` sizes)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _derived_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seeds for the random streams of a run (shuffle, augment)."""
    digest = hashlib.sha256(f"mgiad/{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _autocast(device: torch.device, amp: str) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=amp == "bf16" and device.type == "cuda")


def _git_rev() -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the checkout holding this package; ``("unknown", None)`` if none."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=10, check=True).stdout
        return rev or "unknown", bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def hardware_string(device: torch.device) -> str:
    """A one-line description of the machine a run used (for summaries and reports)."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(idx)} (CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class _Progress:
    """A tqdm bar over all steps on a TTY; plain one-line-per-epoch logging otherwise."""

    def __init__(self, enabled: bool, total_steps: int, done_steps: int) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=done_steps, unit="step", dynamic_ncols=True,
                            leave=False)
        self.enabled = enabled

    def step(self, desc: str) -> None:
        if self.bar is not None:
            self.bar.set_description(desc, refresh=False)
            self.bar.update(1)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Run:
    """One training run; ``run()`` does the work. Split out of :func:`train` for readability."""

    def __init__(self, cfg: RunConfig, device: torch.device, dist_: _Dist, resume: Path | None,
                 data: Any, on_step: StepHook | None) -> None:
        self.cfg, self.device, self.dist, self.resume_dir = cfg, device, dist_, resume
        self.data, self.on_step = data, on_step

    # -- setup ---------------------------------------------------------------------------

    def _load_data(self) -> Any:
        from .data import load_dataset, subset

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
        cfg = self.cfg
        if self.resume_dir is not None:
            return self.resume_dir
        name = [None]
        if self.dist.main:
            base = Path(cfg.out_dir)
            stem = cfg.run_name or f"{cfg.model}-{cfg.dataset}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            path = base / stem
            if cfg.run_name is not None:
                if path.exists() and any(path.iterdir()):
                    raise ValueError(
                        f"run directory {path} already exists; continue it with "
                        f"`mgiad train --resume {path}` or choose another run_name"
                    )
                path.mkdir(parents=True, exist_ok=True)
            else:  # a generated name: never collide with a run started in the same second
                base.mkdir(parents=True, exist_ok=True)
                for i in range(1, 1000):
                    try:
                        path.mkdir()
                        break
                    except FileExistsError:
                        path = base / f"{stem}-{i + 1}"
            name = [str(path)]
        if self.dist.world > 1:
            dist.broadcast_object_list(name, src=0)
        return Path(name[0])

    def _header(self, data: Any, weights: int) -> dict[str, Any]:
        cfg = self.cfg
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
            "weights": weights,
            "mgiad_version": __version__,
        }

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:  # noqa: C901  (the training loop reads best in one piece)
        cfg, device, D = self.cfg, self.device, self.dist
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: autotuning pays off
        amp = cfg.amp
        if amp == "bf16" and device.type != "cuda":
            # Documented fallback: CPU bf16 autocast is slow on most CPUs and changes numerics
            # for no speed gain; train in fp32 instead of failing a long job at start.
            warnings.warn("amp=bf16 acts only on CUDA; training in fp32 on " + device.type,
                          stacklevel=2)
            amp = "none"

        data = self._load_data()
        torch.manual_seed(cfg.seed)  # model initialisation (identical on every process)
        try:
            model = create_model(cfg.model, num_classes=data.num_classes, in_chans=data.in_chans,
                                 **cfg.model_kwargs)
        except TypeError as e:  # an unknown hyper-parameter name
            raise ValueError(f"model {cfg.model!r}: {e} (check model_kwargs)") from None
        weights = sum(p.numel() for p in model.parameters())
        if D.world > 1 and cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        model = model.to(device, memory_format=fmt)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay, nesterov=False)
        shuffle_gen = torch.Generator().manual_seed(_derived_seed(cfg.seed, "shuffle"))
        aug_gen = torch.Generator(device=device).manual_seed(_derived_seed(cfg.seed, "augment"))

        run_dir = self._run_dir()
        ckpt_path = run_dir / LAST
        start_epoch, history, elapsed_before = 0, [], 0.0
        if self.resume_dir is not None and D.main:  # a killed writer leaves its temporary file
            remove_stale_temporaries(ckpt_path)
        # A run killed during its first epoch has no checkpoint yet: resuming it means starting
        # it again, which (same seed) gives what the uninterrupted run would have.
        if self.resume_dir is not None and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            load_weights(model, ckpt.model_state, path=ckpt.path)
            if ckpt.optimizer_state is None:
                raise ValueError(f"{ckpt.path} holds weights only; cannot resume training from it")
            optimizer.load_state_dict(ckpt.optimizer_state)
            torch.set_rng_state(ckpt.rng["torch"])
            if "cuda" in ckpt.rng and device.type == "cuda":
                torch.cuda.set_rng_state(ckpt.rng["cuda"], device)
            shuffle_gen.set_state(ckpt.rng["shuffle"])
            if ckpt.rng["augment"].numel() == aug_gen.get_state().numel():
                aug_gen.set_state(ckpt.rng["augment"])
            else:  # resumed on another device type: its generator state does not fit
                warnings.warn("the augmentation random stream restarts: the run was resumed on "
                              f"{device.type}, its checkpoint comes from another device type",
                              stacklevel=2)
            start_epoch = int(ckpt.train_state["epoch"])
            history = list(ckpt.train_state.get("history", []))
            elapsed_before = float(ckpt.train_state.get("elapsed_s", 0.0))

        header = self._header(data, weights)
        rev, dirty = _git_rev()
        hardware = hardware_string(device)
        writer = None
        if D.main:
            atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
            atomic_write_text(run_dir / "git_rev", rev + "\n")
            atomic_write_text(run_dir / "run.json", json.dumps({
                "weights": weights, "hardware": hardware, "device": str(device),
                "world_size": D.world, "git_rev": rev, "git_dirty": dirty,
                "torch": torch.__version__, "mgiad": __version__, "python": platform.python_version(),
                "argv": sys.argv, "data_source": getattr(data, "source", ""),
                "train_images": len(data.y_train), "test_images": len(data.y_test),
            }, indent=2) + "\n")
            # Rows after the checkpoint's epoch (a kill between checkpoint and log, or a run
            # killed mid-epoch) are dropped: the checkpoint's history is the truth.
            atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            if cfg.tensorboard:
                writer = _summary_writer(run_dir / "tb", purge_step=start_epoch + 1)

        if cfg.augment == "paper":
            augment = paper_augment(data.name, mean=data.mean, std=data.std, pad_to=cfg.pad_to,
                                    channels_last=cfg.channels_last)
        else:
            augment = BatchAugment(mean=data.mean, std=data.std, pad_to=cfg.pad_to,
                                   channels_last=cfg.channels_last)
        test_transform = BatchAugment(mean=data.mean, std=data.std, pad_to=cfg.pad_to,
                                      channels_last=cfg.channels_last).test
        x_train, y_train = data.x_train.to(device), data.y_train.to(device)
        test_data = (data.x_test.to(device), data.y_test.to(device))

        raw_model = model
        if D.world > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            model = torch.compile(model)

        n, B = len(y_train), cfg.batch_size
        # The last, partial batch is kept (as the authors' DataLoader did) unless some
        # process would get no image of it.
        steps = n // B + (1 if n % B >= D.world else 0)
        if cfg.max_steps_per_epoch is not None:
            steps = min(steps, cfg.max_steps_per_epoch)
        check_every = _CUDA_CHECK_EVERY if device.type == "cuda" else 1
        progress = _Progress(D.main, cfg.epochs * steps, start_epoch * steps)
        status = "completed"
        if D.main:
            progress.line(
                f"run {run_dir}: {cfg.model} ({weights:,} weights) on {data.name} "
                f"({n} train / {len(test_data[1])} test images), {cfg.epochs} epochs x {steps} steps, "
                f"batch {B}{f' over {D.world} processes' if D.world > 1 else ''}, {device} [{hardware}]"
                + (f", resuming after epoch {start_epoch}" if start_epoch else "")
            )
        t_run = time.perf_counter()
        epoch_times: list[float] = []
        try:
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.perf_counter()
                lr = cfg.lr_at(epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                model.train()
                perm = torch.randperm(n, generator=shuffle_gen).to(device)
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
                    xb = augment.train(x_train[idx], aug_gen)
                    yb = y_train[idx]
                    n_global = len(idx)
                    if D.world > 1:
                        lo, hi = _shard(n_global, D.rank, D.world)
                        xb, yb = xb[lo:hi], yb[lo:hi]
                    with _autocast(device, amp):
                        logits = model(xb)
                    loss_sum = F.cross_entropy(logits.float(), yb, reduction="sum")
                    # DDP averages gradients over processes; scaling the local sum by
                    # world / n_global makes that average the mean over the global batch.
                    loss = loss_sum * (D.world / n_global)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    ls = loss_sum.detach()
                    bad = torch.where((bad == 0) & ~torch.isfinite(ls), steps - step, bad)
                    if (step + 1) % check_every == 0 or step + 1 == steps:
                        self._check_finite(bad, steps, epoch, run_dir, ckpt_path)
                    optimizer.step()
                    loss_total += ls.double()
                    correct += (logits.argmax(1) == yb).sum()
                    seen += len(yb)
                    if self.on_step is not None:
                        self.on_step(epoch, step, raw_model)
                    progress.step(f"epoch {epoch + 1}/{cfg.epochs}")
                # Weights can overflow in the last step with a finite loss: check before saving.
                if not all(bool(torch.isfinite(p).all()) for p in raw_model.parameters()):
                    raise TrainingDiverged(
                        f"weights became NaN/inf in epoch {epoch + 1} (by step {steps}); "
                        + self._kept(ckpt_path), epoch=epoch + 1, step=steps, run_dir=run_dir)
                stats = torch.stack([loss_total, correct.double(),
                                     torch.tensor(float(seen), dtype=torch.float64, device=device)])
                if D.world > 1:
                    dist.all_reduce(stats)
                train_time = time.perf_counter() - t0
                loss_sum_all, correct_all, seen_all = stats.tolist()
                row: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum_all / max(seen_all, 1),
                    "train_acc": correct_all / max(seen_all, 1),
                    "test_acc": None,
                    "lr": lr,
                    "img_per_s": seen_all / max(train_time, 1e-9),
                    "steps": steps,
                }
                last = epoch + 1 == cfg.epochs
                if (epoch + 1) % cfg.eval_every == 0 or last:
                    if D.world > 1:  # evaluate with rank 0's BN statistics: those get saved
                        for buf in raw_model.buffers():
                            dist.broadcast(buf, 0)
                    row["test_acc"], per_class = evaluate(
                        raw_model, test_data, transform=test_transform, num_classes=data.num_classes,
                        amp=amp, distributed=D.world > 1)
                    if last:
                        row["test_per_class"] = per_class
                epoch_time = time.perf_counter() - t0
                epoch_times.append(epoch_time)
                row["epoch_time_s"] = epoch_time
                row["elapsed_s"] = elapsed_before + time.perf_counter() - t_run
                history.append(row)
                if D.main:
                    # Checkpoint first, then the log row: metrics.jsonl never runs ahead of
                    # a checkpoint (and is rebuilt from the checkpoint on resume anyway).
                    rng = {"torch": torch.get_rng_state(), "shuffle": shuffle_gen.get_state(),
                           "augment": aug_gen.get_state()}
                    if device.type == "cuda":
                        rng["cuda"] = torch.cuda.get_rng_state(device)
                    save_checkpoint(
                        ckpt_path, header={**header, "epoch": epoch + 1}, model_state=raw_model.state_dict(),
                        optimizer_state=optimizer.state_dict(), rng=rng,
                        train_state={"epoch": epoch + 1, "history": history, "elapsed_s": row["elapsed_s"]},
                    )
                    with open(run_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                    if writer is not None:
                        for key in ("train_loss", "train_acc", "test_acc", "lr", "img_per_s"):
                            if row[key] is not None:
                                writer.add_scalar(key, row[key], epoch + 1)
                        writer.flush()
                    remaining = (cfg.epochs - epoch - 1) * (sum(epoch_times) / len(epoch_times))
                    test = f"{100 * row['test_acc']:.2f}%" if row["test_acc"] is not None else "-"
                    progress.line(
                        f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                        f"train {100 * row['train_acc']:.2f}%  test {test}  lr {lr:.4g}  "
                        f"{row['img_per_s']:.0f} img/s  {epoch_time:.1f}s  "
                        f"elapsed {_fmt_time(row['elapsed_s'])}  eta {_fmt_time(remaining)}"
                    )
                if not last and cfg.time_budget_s is not None:
                    spent = elapsed_before + time.perf_counter() - t_run
                    stop = torch.tensor(int(spent + epoch_time > cfg.time_budget_s), device=device)
                    if D.world > 1:
                        dist.broadcast(stop, 0)  # rank 0's clock decides for everyone
                    if stop.item():
                        status = "time_budget"
                        progress.line(f"time budget of {cfg.time_budget_s:g}s reached after epoch "
                                      f"{epoch + 1}; continue with `mgiad train --resume {run_dir}`")
                        break
        except TrainingDiverged as e:
            if D.main:
                progress.close()
                atomic_write_text(run_dir / "summary.json", json.dumps({
                    "status": "diverged", "error": str(e), "epoch": e.epoch, "step": e.step,
                    "epochs_done": len(history), "run_dir": str(run_dir)}, indent=2) + "\n")
            raise
        finally:
            progress.close()
            if writer is not None:
                writer.close()

        summary = self._summary(history, status, run_dir, weights, hardware, device, data)
        if D.main:
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
            final = summary["final_test_acc"]
            progress.line(
                f"done ({status}): test {100 * final:.2f}% (best {100 * summary['best_test_acc']:.2f}% "
                f"at epoch {summary['best_epoch']}), train {100 * summary['final_train_acc']:.2f}%, "
                f"{_fmt_time(summary['wall_time_s'])}; results in {run_dir}"
                if final is not None else f"done ({status}); results in {run_dir}"
            )
        return summary

    def _check_finite(self, bad: torch.Tensor, steps: int, epoch: int, run_dir: Path,
                      ckpt_path: Path) -> None:
        if self.dist.world > 1:
            bad = bad.clone()
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)  # every process stops at the same check
        value = int(bad.item())
        if value:
            step = steps - value + 1
            raise TrainingDiverged(
                f"loss became NaN/inf at epoch {epoch + 1}, step {step} of {steps} "
                f"(learning rate {self.cfg.lr_at(epoch):.4g}); " + self._kept(ckpt_path),
                epoch=epoch + 1, step=step, run_dir=run_dir)

    @staticmethod
    def _kept(ckpt_path: Path) -> str:
        if ckpt_path.exists():
            return f"the last good checkpoint {ckpt_path} is unchanged"
        return "no checkpoint was written (the first epoch did not finish)"

    def _summary(self, history: list[dict[str, Any]], status: str, run_dir: Path, weights: int,
                 hardware: str, device: torch.device, data: Any) -> dict[str, Any]:
        tested = [r for r in history if r.get("test_acc") is not None]
        best = max(tested, key=lambda r: r["test_acc"], default=None)
        last = history[-1] if history else {}
        return {
            "status": status,
            "run_dir": str(run_dir),
            "model": self.cfg.model,
            "model_kwargs": self.cfg.model_kwargs,
            "dataset": data.name,
            "seed": self.cfg.seed,
            "epochs_done": len(history),
            "epochs": self.cfg.epochs,
            "final_test_acc": tested[-1]["test_acc"] if tested else None,
            "final_test_per_class": last.get("test_per_class"),
            "best_test_acc": best["test_acc"] if best else None,
            "best_epoch": best["epoch"] if best else None,
            "final_train_acc": last.get("train_acc"),
            "final_train_loss": last.get("train_loss"),
            "weights": weights,
            "wall_time_s": last.get("elapsed_s", 0.0),
            "mean_img_per_s": (sum(r["img_per_s"] for r in history) / len(history)) if history else None,
            "hardware": hardware,
            "device": str(device),
            "world_size": self.dist.world,
        }


def _summary_writer(log_dir: Path, purge_step: int) -> Any:
    """A TensorBoard ``SummaryWriter``, or ``None`` if tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional dependency: metrics.jsonl has everything
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


__all__ = ["RESUME_MUTABLE", "TrainingDiverged", "evaluate", "hardware_string", "load_run_config",
           "train"]
