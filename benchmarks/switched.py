"""Shared by the side-by-side benchmarks: thread-CPU timing, whole training/inference steps with
one fast path switched per round, and the output's last line and file."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import mgiad
from mgiad.ops import native
from mgiad.training.machine import cpu_string

CL = torch.channels_last


def arguments(doc: str, call_rounds: str) -> argparse.Namespace:
    """The common options (threads, batch, rounds per call and per model, output); sets the
    threads and stops when no native build is active."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument(f"--{call_rounds}", type=int, default=7)
    ap.add_argument("--model-rounds", type=int, default=7)
    ap.add_argument("--out", help="write the output to OUT.txt as well")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if native.kernels() is None:
        raise SystemExit(f"native kernels inactive: {native.status()['reason']}")
    return args


def header(threads: int) -> str:
    return (f"# {cpu_string()}, {threads} torch thread(s), torch {torch.__version__}, native "
            f"{native.status()['isa']} build; thread CPU time; load before: {os.getloadavg()[0]:.2f}")


def timed(fn: Callable[[], object], calls: int) -> float:
    """Seconds of this thread's CPU time per call (a busy second core does not count)."""
    t0 = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - t0) / calls


def steps_row(label: str, name: str, kw: dict, batch: int, rounds: int, switch: Callable[[bool], None],
              on: str, off: str) -> str:
    """One model's SGD training step and eval forward (ms, median of ``rounds`` interleaved rounds
    of 2, order alternating), with ``switch(True)`` / ``switch(False)`` before each; the path is
    left on. A row: on, off, off/on for training, then the same for inference."""
    torch.manual_seed(0)
    m = mgiad.create_model(name, num_classes=10, **kw).to(memory_format=CL).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=CL)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()

    def infer() -> None:
        m.eval()
        with torch.no_grad():
            m(x)
        m.train()

    step()
    step()
    times: dict[str, list[float]] = {}
    try:
        for r in range(rounds):
            for mode in ((on, off) if r % 2 == 0 else (off, on)):
                switch(mode == on)
                times.setdefault(f"train {mode}", []).append(timed(step, 2) * 1e3)
                times.setdefault(f"infer {mode}", []).append(timed(infer, 2) * 1e3)
    finally:
        switch(True)
    t = {k: statistics.median(v) for k, v in times.items()}
    return (f"{label:<26} {t[f'train {on}']:>12.0f} {t[f'train {off}']:>14.0f} "
            f"{t[f'train {off}'] / t[f'train {on}']:>6.3f}  {t[f'infer {on}']:>12.0f} "
            f"{t[f'infer {off}']:>14.0f} {t[f'infer {off}'] / t[f'infer {on}']:>6.3f}")


def finish(lines: list[str], out: str | None) -> None:
    """Append the load average, print, and write ``out + ".txt"`` when given."""
    lines.append(f"\n# load after: {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out + ".txt").write_text(text + "\n")
