"""The ``resume`` step of a training run (:class:`mgiad.training.loop._Run`, which mixes
:class:`Resume` in): weights, optimizer, random streams and history from the last checkpoint, after
checking that the checkpoint belongs to this run (its run id and trajectory hash,
:meth:`~mgiad.training.config.RunConfig.matches_trajectory`). Which configuration a resumed run
may have: :func:`mgiad.training.rundir.resume_config`."""

from __future__ import annotations

import sys
import uuid
import warnings
from typing import Any

import torch

from .checkpoint import CheckpointError, load_checkpoint, load_weights, remove_stale_temporaries
from .rundir import read_json


class Resume:
    """Resumption of :class:`mgiad.training.loop._Run` (module docstring)."""

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
