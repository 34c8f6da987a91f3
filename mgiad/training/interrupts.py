"""How a run stops early: :class:`TrainingDiverged` (NaN/inf loss or weights),
:class:`TrainingInterrupted` (Ctrl-C or SIGTERM, with what is checkpointed and the command that
continues) and :class:`sigterm_as_interrupt`, which turns SIGTERM into such an interrupt."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN or infinite; the message names epoch and step."""

    def __init__(self, message: str, *, epoch: int, step: int | None, run_dir: Path | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.run_dir = epoch, step, run_dir


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run; the message says what is checkpointed and
    how to continue. A ``KeyboardInterrupt``, so code that stops on Ctrl-C stops on it too."""

    def __init__(self, message: str, *, signal_name: str, run_dir: Path | None) -> None:
        super().__init__(message)
        self.signal_name, self.run_dir = signal_name, run_dir

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


class SigTerm(KeyboardInterrupt):
    """Raised in the main thread by the SIGTERM handler of :class:`sigterm_as_interrupt`."""


def signal_name(e: KeyboardInterrupt) -> str:
    """``SIGTERM`` for the interrupt :class:`sigterm_as_interrupt` raises, else ``SIGINT``."""
    return "SIGTERM" if isinstance(e, SigTerm) else "SIGINT"


class sigterm_as_interrupt:  # noqa: N801  (a context manager used like a function)
    """SIGTERM interrupts training like Ctrl-C does (a true message, a summary, the lock
    released), instead of killing the process without a word. Main thread only."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise SigTerm()

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
