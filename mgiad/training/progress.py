"""Progress of a run: a tqdm bar over all steps on a terminal; elsewhere (a file, a pipe) plain
lines, one per epoch and one at least every ``interval`` seconds within an epoch."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def fmt_time(seconds: float) -> str:
    """``1h05m`` or ``4m07s``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """A tqdm bar over all steps when stderr is a terminal; otherwise plain lines on stdout.

    Without a terminal, :meth:`step` prints ``DESC  step DONE/TOTAL  N img/s  eta T`` once
    ``interval`` seconds have passed since the last line of any kind (img/s over that stretch,
    the eta of the whole run's remaining steps at that rate), so that a log file or a pipe shows
    a long epoch advancing instead of minutes of silence. ``tty`` and ``clock`` are for tests.
    """

    def __init__(self, enabled: bool, total_steps: int, done_steps: int, *, interval: float = 30.0,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.bar = None
        self.enabled = enabled
        self.total, self.done = total_steps, done_steps
        self.interval, self.clock = interval, clock
        if enabled and (sys.stderr.isatty() if tty is None else tty):
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=done_steps, unit="step", dynamic_ncols=True,
                            leave=False)
        self._restart()

    def _restart(self) -> None:
        """Start a new stretch for the next timed line: now, no images or steps yet."""
        self.t_last, self.images, self.steps = self.clock(), 0, 0

    def step(self, desc: str, images: int = 0) -> None:
        """One optimizer step of ``images`` images done (``desc``: e.g. ``epoch 2/400``)."""
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(desc, refresh=False)
            self.bar.update(1)
            return
        if not self.enabled:
            return
        self.images += images
        self.steps += 1
        now = self.clock()
        elapsed = now - self.t_last
        if elapsed < self.interval:
            return
        eta = (self.total - self.done) * elapsed / self.steps
        rate = f"  {self.images / elapsed:.0f} img/s" if self.images else ""
        print(f"{desc}  step {self.done}/{self.total}{rate}  eta {fmt_time(eta)}", flush=True)
        self._restart()

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)
            self._restart()  # the next timed line measures steps only, not what came in between

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
