"""Native kernels: loading, instruction-set choice and the fallback.

``native/group_conv.cpp`` (3×3, stride 1, padding 1, 4 or 8 channels per group, fp32,
channels_last; forward, input and weight gradient) is compiled on first use with
``torch.utils.cpp_extension.load``, once per instruction set, each build with its own
extension name and operator namespace (``torch.ops.mgiad_native_avx2``,
``torch.ops.mgiad_native_avx512``), cached in the torch extensions directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). The build for the CPU is
chosen at run time from ``torch.backends.cpu.get_cpu_capability()`` (which is also lowered by
``ATEN_CPU_CAPABILITY``).

Whatever goes wrong — no AVX2, no compiler or ninja, a compile error, a library that does not
load — is reported by one :class:`NativeWarning` that names the cause, and the built-in
convolution runs instead; nothing else changes. ``MGIAD_NATIVE`` chooses:

- unset, ``1`` or ``auto``: the widest build the CPU runs;
- ``0`` (or ``off``, ``false``, ``no``): no native kernel, no build, no warning;
- ``avx2`` or ``avx512``: that build (a warning and the built-in convolution if the CPU lacks it).

:func:`status` says which kernels are active and why; ``mgiad native`` prints it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ENV = "MGIAD_NATIVE"
_DIR = Path(__file__).resolve().parent / "native"
#: compiled together into one extension per instruction set
SOURCES = (_DIR / "group_conv.cpp", _DIR / "bn_relu.cpp", _DIR / "depthwise_pool.cpp",
           _DIR / "pair_dot.cpp")
#: compiler flags per build; -fopenmp: at::parallel_for runs on one thread without it
ISA_FLAGS = {
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"],
}
#: what the kernels of one build compute (``status()["kernels"]`` when active)
KERNELS = tuple(f"group_conv3x3 {k} ({g} channels/group)" for g in (4, 8)
                for k in ("forward", "input gradient", "weight gradient")) + (
    "bn_relu forward (BatchNorm statistics, apply with ReLU and residual)", "bn_relu backward") + tuple(
    f"depthwise_pool 3x3/2 {k} (2 outputs/channel)" for k in ("forward", "input gradient", "weight gradient")) + (
    "pair_dot (weight gradient of the pair transfers)",)
_OFF = {"0", "off", "false", "no"}
_AUTO = {"", "1", "on", "true", "yes", "auto"}


class NativeWarning(RuntimeWarning):
    """The native kernels could not be used; the built-in convolution runs instead."""


class NativeUnavailable(RuntimeError):
    """Why one build cannot be used (raised by :func:`load`)."""


@dataclass
class _State:
    decided: bool = False
    ops: Any = None  # torch.ops.<namespace> of the active build, or None
    isa: str | None = None
    reason: str = ""
    loaded: dict[str, Any] = field(default_factory=dict)  # isa -> ops namespace


_state = _State()
_lock = threading.RLock()


def cpu_isas() -> list[str]:
    """The builds this CPU runs, narrowest first: ``[]``, ``["avx2"]`` or ``["avx2", "avx512"]``.

    From PyTorch's own dispatch level (AVX512 there means F, BW, VL and DQ, with AVX2 and FMA).
    """
    cap = torch.backends.cpu.get_cpu_capability().upper()
    if cap.startswith("AVX512"):
        return ["avx2", "avx512"]
    return ["avx2"] if cap.startswith("AVX2") else []


def _namespace(isa: str) -> str:
    return f"mgiad_native_{isa}"


def _first_error(text: str) -> str:
    """The compiler's first error line of a failed build (or the message's last line)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"not found|No such file", ln):
            return ln[:300]
    for ln in lines:
        if re.search(r"\berror\b", ln, re.IGNORECASE) and "Error building extension" not in ln:
            return ln[:300]
    return (lines[-1] if lines else text)[:300]


def _build_directory(cpp_extension: Any, name: str) -> Path:
    try:  # private: $TORCH_EXTENSIONS_DIR or the default root with its python/CUDA subfolder
        return Path(cpp_extension._get_build_directory(name, verbose=False))
    except Exception:  # noqa: BLE001
        return Path(cpp_extension.get_default_build_root()) / name


def load(isa: str, *, verbose: bool = False) -> Any:
    """Build (or find in the cache) and load the kernels of ``isa``; their ``torch.ops`` namespace.

    Raises :class:`NativeUnavailable` with the cause. Does not check that the CPU runs ``isa``:
    :func:`kernels` does.
    """
    with _lock:
        if isa in _state.loaded:
            return _state.loaded[isa]
        if isa not in ISA_FLAGS:
            raise NativeUnavailable(f"unknown instruction set {isa!r}; one of {sorted(ISA_FLAGS)}")
        for source in SOURCES:
            if not source.is_file():
                raise NativeUnavailable(f"the kernel source {source} is missing from the installation")
        cxx = os.environ.get("CXX", "c++")
        if shutil.which((shlex.split(cxx) or [""])[0]) is None:
            raise NativeUnavailable(f"no C++ compiler: {cxx!r} is not found (install g++, or set CXX)")
        if shutil.which("ninja") is None:
            raise NativeUnavailable("ninja is not found (pip install ninja)")
        # importing cpp_extension logs a warning about CUDA_HOME on CUDA builds of torch without
        # a GPU; it concerns CUDA extensions only, and this one is not.
        ext_log = logging.getLogger("torch.utils.cpp_extension")
        level = ext_log.level
        ext_log.setLevel(logging.ERROR)
        try:
            from torch.utils import cpp_extension

            name = _namespace(isa)
            build_dir = _build_directory(cpp_extension, name)
            if not verbose and not any(build_dir.glob(f"{name}*.so")):
                print(f"mgiad: compiling the native {isa} convolution kernels (once; cached in "
                      f"{build_dir})", file=sys.stderr, flush=True)
            cpp_extension.load(
                name=name, sources=[str(s) for s in SOURCES],
                extra_cflags=["-O3", "-fopenmp", "-fvisibility=hidden", *ISA_FLAGS[isa],
                              f"-DMGIAD_NS={name}"],
                extra_ldflags=["-fopenmp"], is_python_module=False, verbose=verbose)
        except Exception as e:  # noqa: BLE001  (any failure means: use the built-in kernels)
            raise NativeUnavailable(f"building the {isa} kernels failed: {_first_error(str(e))}") from e
        finally:
            ext_log.setLevel(level)
        try:
            ops = getattr(torch.ops, _namespace(isa))
            got = ops.isa()
        except Exception as e:  # noqa: BLE001
            raise NativeUnavailable(f"the {isa} kernels were built but do not load: {e}") from e
        if got != isa:
            raise NativeUnavailable(f"the {isa} build reports instruction set {got!r}")
        _state.loaded[isa] = ops
        return ops


def requested() -> tuple[str | None, str]:
    """(build to use or None, reason) from ``MGIAD_NATIVE`` and the CPU; no building."""
    value = os.environ.get(ENV, "").strip().lower()
    runnable = cpu_isas()
    if value in _OFF:
        return None, f"{ENV}={os.environ[ENV]}"
    if value in ISA_FLAGS:
        if value not in runnable:
            return None, (f"{ENV}={value}, but this CPU runs {runnable or 'neither AVX2 nor AVX-512'} "
                          f"(torch CPU capability {torch.backends.cpu.get_cpu_capability()})")
        return value, f"{ENV}={value}"
    if value not in _AUTO:
        return None, f"{ENV}={os.environ[ENV]!r} is not one of 0, 1, auto, {', '.join(ISA_FLAGS)}"
    if not runnable:
        return None, (f"the CPU has no AVX2 (torch CPU capability "
                      f"{torch.backends.cpu.get_cpu_capability()})")
    return runnable[-1], f"widest build this CPU runs (torch CPU capability {torch.backends.cpu.get_cpu_capability()})"


@contextmanager
def _untraced() -> Iterator[None]:
    """Outside ``torch.jit.trace``'s recording: when the first model call of a process is being
    traced, the decision (the build, and the ``isa()`` query of the loaded library, an operator
    without tensor arguments that the tracer cannot record) must not enter the trace."""
    state = torch._C._get_tracing_state()
    if state is None:
        yield
        return
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def kernels() -> Any:
    """The ``torch.ops`` namespace of the active kernels, or None (built-in convolution).

    Decided once per process, on first call: builds or loads the kernels, or warns once why not.
    """
    if _state.decided:
        return _state.ops
    with _lock, _untraced():
        if _state.decided:
            return _state.ops
        isa, reason = requested()
        ops = None
        if isa is not None:
            try:
                ops = load(isa)
            except NativeUnavailable as e:
                reason = str(e)
        if ops is None and os.environ.get(ENV, "").strip().lower() not in _OFF:
            warnings.warn(f"mgiad: native convolution kernels not used: {reason}; the built-in "
                          f"convolution runs instead (set {ENV}=0 to silence)", NativeWarning,
                          stacklevel=2)
        _state.ops, _state.isa, _state.reason = ops, isa if ops is not None else None, reason
        _state.decided = True
        return ops


@torch.compiler.assume_constant_result
def active() -> bool:
    """Whether a native build is active: ``kernels() is not None``.

    The modules ask this before they choose an operator. ``torch.compile`` runs it while it traces
    and takes the result as a constant, so the decision (and any build, with its lock) happens
    outside the traced code: ``torch.compile(model, fullgraph=True)`` works as the first thing a
    process does. The decision is made once per process, so the constant stays true.
    """
    return kernels() is not None


def runs_on(*tensors: torch.Tensor | None) -> bool:
    """Whether the active kernels take these tensors: each (``None`` skipped) on the CPU in
    float32, and a build active (decided, and built, on first call as :func:`kernels` does).
    Shapes, layouts and group sizes are each operator's own test."""
    return (all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors)
            and kernels() is not None)


def status() -> dict[str, Any]:
    """Which native kernels are active: ``{"active", "isa", "kernels", "reason", "cpu_capability"}``.

    Decides (and builds) as :func:`kernels` does.
    """
    ops = kernels()
    return {"active": ops is not None, "isa": _state.isa, "kernels": list(KERNELS) if ops is not None else [],
            "reason": _state.reason, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_isas": cpu_isas()}


def _reset() -> None:
    """Forget the decision (tests); builds already loaded stay loaded."""
    with _lock:
        _state.decided, _state.ops, _state.isa, _state.reason = False, None, None, ""
