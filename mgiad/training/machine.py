"""Where a run executes: the device, a one-line description of the hardware, the code revision."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; an unavailable device is a ``ValueError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available here; use device=cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available here; use device=cpu or auto")
    return device


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


@functools.lru_cache(maxsize=1)
def git_rev() -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the checkout holding this package; ``("unknown", None)`` if none.

    Read once per process: a sweep trains run after run in one process with the code it imported
    at its start, so later commits to the checkout must not be credited to its later runs.
    """
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
