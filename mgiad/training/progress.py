"""Progress of a run: a tqdm bar over all steps on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys


def fmt_time(seconds: float) -> str:
    """``1h05m`` or ``4m07s``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
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
