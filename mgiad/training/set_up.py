"""The ``set_up`` step of a training run (:class:`mgiad.training.loop._Run`, which mixes
:class:`SetUp` in): global torch settings, threads, the data, the model and its optimizer, the
random streams of the run (seeded from ``seed`` alone, :func:`_derived_seed`) and the run
directory, locked by the main process."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from mgiad.data.policies import recipe_policy
from mgiad.models.registry import create_model
from mgiad.nn.layers import uses_native_kernels
from mgiad.ops import native

from .checkpoint import LAST
from .lock import RunLock
from .rundir import create_run_dir
from .threads import configure_threads, recorded_threads
from .tracking import check_installed, parse_trackers


def _derived_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seeds for the random streams of a run (shuffle, augment)."""
    digest = hashlib.sha256(f"mgiad/{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class SetUp:
    """Set-up of :class:`mgiad.training.loop._Run` (module docstring)."""

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
            model = (self.build_model() if self.build_model is not None else  # mgiad.train()
                     create_model(cfg.model, num_classes=data.num_classes, in_chans=data.in_chans,
                                  **cfg.model_kwargs))
        except TypeError as e:  # an unknown hyper-parameter name
            raise ValueError(f"model {cfg.model!r}: {e} (check model_kwargs)") from None
        self.weights = sum(p.numel() for p in model.parameters())
        if device.type == "cpu" and uses_native_kernels(model):
            # The native kernels are decided (and, where no prebuilt library fits, compiled: half
            # a minute or more) now, before the run's clock starts: not in the first step's img/s.
            # A model without native paths (the ResNet, MGIC baselines, your module) needs none.
            native.kernels()
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
        n = len(data.loader.dataset) if getattr(data, "loader", None) is not None else len(data.y_train)
        if n < self.dist.world:
            raise ValueError(f"{n} training images cannot be split over "
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
