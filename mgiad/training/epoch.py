"""One epoch of a training run (:class:`mgiad.training.loop._Run`, which mixes :class:`Epoch`
in): ``train_epoch`` (a pass over the shuffled training set, every step's loss checked for
NaN/inf), ``evaluate`` (the test set), ``end_epoch`` (the checkpoint, then the log row) and
``out_of_time`` (the time budget)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checkpoint import save_checkpoint
from .distributed import shard
from .evaluation import autocast, evaluate
from .interrupts import TrainingDiverged
from .progress import fmt_time

_CUDA_CHECK_EVERY = 25  # steps between NaN checks on CUDA (each check is a host sync)


class Epoch:
    """The epoch steps of :class:`mgiad.training.loop._Run` (module docstring)."""

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the shuffled training set; returns the epoch's log row (no test yet)."""
        cfg, device, D, steps = self.cfg, self.device, self.dist, self.steps
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        lr = cfg.lr_at(epoch)  # the epoch's first step's, which the metrics row reports
        per_step = cfg.lr_per_step
        self.model.train()
        loss_total = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        # first non-finite step, stored as steps - step so that MAX finds the earliest
        bad = torch.zeros((), dtype=torch.int64, device=device)
        for step, (xb, yb) in enumerate(self._global_batches()):
            n_global = len(yb)
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

    def _global_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's global batches, augmented, on the device. Every process augments the
        whole global batch (same generator state everywhere) and then takes its share: the global
        batch is the single-process batch, image for image."""
        device, B = self.device, self.cfg.batch_size
        if self.loader is not None:  # a DataLoader given to mgiad.train(): its order and batches
            for _, (xb, yb) in zip(range(self.steps), self.loader):
                yield self.augment.train(xb.to(device), self.aug_gen), yb.to(device)
            return
        perm = torch.randperm(len(self.y_train), generator=self.shuffle_gen).to(device)
        for step in range(self.steps):
            idx = perm[step * B : (step + 1) * B]
            yield self.augment.train(self.x_train[idx], self.aug_gen), self.y_train[idx]

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
