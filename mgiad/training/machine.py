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


def _amd_core(family: int, model: int) -> str:
    """AMD's core generation from the CPUID family and model (AMD's family/model tables)."""
    if family == 25:  # 0x19: Zen 4 at models 0x10-0x1f, 0x60-0x7f, 0xa0-0xaf, else Zen 3
        return "Zen 4" if model in range(0x10, 0x20) or model in range(0x60, 0x80) or model in range(0xA0, 0xB0) else "Zen 3"
    return {23: "Zen/Zen 2", 26: "Zen 5"}.get(family, "")


def cpu_string() -> str:
    """The CPU: its model name, and for "AMD EPYC"-like names that hide the generation, the
    family/model and core generation; plus the widest vector ISA torch dispatches to."""
    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break  # the first processor is enough
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    details = []
    if fields.get("cpu family", "").isdigit() and fields.get("model", "").isdigit():
        family, model = int(fields["cpu family"]), int(fields["model"])
        core = _amd_core(family, model) if fields.get("vendor_id") == "AuthenticAMD" else ""
        details.append(f"family {family} model {model}" + (f", {core}" if core else ""))
    details.append(torch.backends.cpu.get_cpu_capability().replace("AVX512", "AVX-512"))
    return f"{cpu} [{'; '.join(details)}]"


def hardware_string(device: torch.device) -> str:
    """A one-line description of the machine a run used (for summaries and reports)."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(idx)} (CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU)"
    return f"{cpu_string()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


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
