"""How a training run ends (:class:`mgiad.training.loop._Run`, which mixes :class:`Finish`
in): ``finish`` writes ``summary.json`` and the closing line; a run that stops early says what it
leaves: ``write_diverged`` (NaN/inf), ``interrupted`` (Ctrl-C, SIGTERM: what is checkpointed and
the command that continues) and ``io_failed`` (an OS error, with what is kept). The exceptions
themselves: :mod:`.interrupts`."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from .checkpoint import atomic_write_text
from .interrupts import TrainingDiverged, TrainingInterrupted, signal_name
from .progress import fmt_time


class Finish:
    """The ends of :class:`mgiad.training.loop._Run` (module docstring)."""

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
