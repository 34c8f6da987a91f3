"""Native kernels: loading, instruction-set choice and the fallback.

``native/*.cpp`` (grouped 3×3 convolution with 4 or 8 channels per group, fused BatchNorm +
ReLU, the depthwise pooling transfer and the pair transfers' weight gradient; fp32,
channels_last) make one library per instruction set, each with its own operator namespace
(``torch.ops.mgiad_native_avx2``, ``torch.ops.mgiad_native_avx512``). The build for the CPU is
chosen at run time from ``torch.backends.cpu.get_cpu_capability()`` (which is also lowered by
``ATEN_CPU_CAPABILITY``).

Where a library comes from, in order:

1. **prebuilt** at install (``setup.py``, torch's ``BuildExtension``: both builds, beside this
   file), used when it was built against this torch from these sources;
2. **compiled at run time** with ``torch.utils.cpp_extension.load`` into
   ``$TORCH_EXTENSIONS_DIR/<build key>`` (default ``~/.cache/torch_extensions/...``), the key
   naming the instruction set, torch version, flags and a hash of the sources
   (:func:`native_build.build_key`): installations of the same sources share it, and a
   compile always says so on stderr, with why the prebuilt library did not fit.

Whatever goes wrong — no AVX2, no compiler or ninja where a build is needed, a compile error,
a library that does not load — is reported by one :class:`NativeWarning` that names the cause,
and the built-in convolution runs instead; nothing else changes. ``MGIAD_NATIVE`` chooses:

- unset, ``1`` or ``auto``: the widest build the CPU runs;
- ``0`` (or ``off``, ``false``, ``no``): no native kernel, no build, no warning;
- ``avx2`` or ``avx512``: that build (a warning and the built-in convolution if the CPU lacks it).

``MGIAD_NATIVE_PREBUILT=0`` ignores the prebuilt libraries (a run-time build instead).
:func:`status` says which kernels are active, where they come from and why; ``mgiad native``
prints it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import native_build as nb

ENV = "MGIAD_NATIVE"
#: ``0`` ignores the kernels prebuilt at install and builds at run time
PREBUILT_ENV = "MGIAD_NATIVE_PREBUILT"
_PACKAGE_DIR = Path(__file__).resolve().parent
#: compiled together into one library per instruction set (mgiad/ops/native_build.py)
SOURCES = tuple(nb.SOURCE_DIR / name for name in nb.SOURCE_NAMES)
ISA_FLAGS = nb.ISA_FLAGS
#: what the kernels of one build compute (``status()["kernels"]`` when active)
KERNELS = tuple(f"group_conv3x3 {k} ({g} channels/group)" for g in (4, 8)
                for k in ("forward", "input gradient", "weight gradient")) + (
    "bn_relu forward (BatchNorm statistics, apply with ReLU and residual)", "bn_relu backward") + tuple(
    f"depthwise_pool 3x3/2 {k} (2 outputs/channel)" for k in ("forward", "input gradient", "weight gradient")) + (
    "pair_sum, pair_spread (the pair transfers Π̂, R̂, P̂ and their input gradients)",
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
    origin: dict[str, str] = field(default_factory=dict)  # isa -> prebuilt / compiled / cached, where
    build_seconds: float = 0.0  # spent compiling at run time in this process


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


def _build_directory(cpp_extension: Any, key: str) -> Path:
    """``key``'s folder in torch's extensions directory: ``$TORCH_EXTENSIONS_DIR`` or its default
    with its python/accelerator subfolder."""
    try:  # private, hence the fallback
        return Path(cpp_extension._get_build_directory(key, verbose=False))
    except Exception:  # noqa: BLE001
        return Path(cpp_extension.get_default_build_root()) / key


def prebuilt(isa: str, digest: str | None = None) -> tuple[Path | None, str]:
    """(the installed library of ``isa``, or None; why not).

    A library prebuilt at install (setup.py) fits when it was built against this torch from
    these sources (:data:`native_build.PREBUILT_INFO` says which); ``MGIAD_NATIVE_PREBUILT=0``
    ignores it.
    """
    if os.environ.get(PREBUILT_ENV, "").strip().lower() in _OFF:
        return None, f"{PREBUILT_ENV}={os.environ[PREBUILT_ENV]}"
    info_file = _PACKAGE_DIR / nb.PREBUILT_INFO
    try:
        info = json.loads(info_file.read_text())
        built_for, built_from, builds = info["torch"], info["sources_sha256"], info["builds"]
    except FileNotFoundError:
        return None, "no prebuilt kernels were installed (installed without torch in the build environment or without a compiler)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{info_file} is unreadable ({e})"
    if built_for != torch.__version__:
        return None, f"the prebuilt kernels are for torch {built_for}, this is torch {torch.__version__}"
    if built_from != (digest or nb.sources_digest(SOURCES)):
        return None, "the kernel sources changed since the kernels were prebuilt"
    if isa not in builds or not (_PACKAGE_DIR / str(builds[isa])).is_file():
        return None, f"no prebuilt {isa} library (its build failed at install)"
    return _PACKAGE_DIR / str(builds[isa]), ""


def _load_library(path: Path, isa: str) -> Any:
    """Load one library and check that it is the build of ``isa``; its ``torch.ops`` namespace."""
    torch.ops.load_library(str(path))
    return _checked_ops(isa, str(path))


def _checked_ops(isa: str, what: str) -> Any:
    """The loaded ``torch.ops`` namespace of ``isa``, which must report that instruction set."""
    ops = getattr(torch.ops, nb.namespace(isa))
    got = ops.isa()
    if got != isa:
        raise NativeUnavailable(f"{what} reports instruction set {got!r}, not {isa}")
    return ops


def _compile(isa: str, digest: str, why: str, verbose: bool) -> tuple[Any, str]:
    """Build ``isa`` at run time (or load the cached build) in a directory keyed by the sources,
    torch version, flags and instruction set; (ops, where). A build always says so, with why."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which((shlex.split(cxx) or [""])[0]) is None:
        raise NativeUnavailable(f"no C++ compiler: {cxx!r} is not found (install g++, or set CXX); "
                                f"no prebuilt kernels either: {why}")
    if shutil.which("ninja") is None:
        raise NativeUnavailable(f"ninja is not found (pip install ninja); no prebuilt kernels either: {why}")
    # importing cpp_extension logs a warning about CUDA_HOME on CUDA builds of torch without
    # a GPU; it concerns CUDA extensions only, and this one is not.
    ext_log = logging.getLogger("torch.utils.cpp_extension")
    level = ext_log.level
    ext_log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension

        name = nb.namespace(isa)
        build_dir = _build_directory(cpp_extension, nb.build_key(isa, torch.__version__, digest))
        library = build_dir / f"{name}.so"
        if library.is_file():  # built before from the same sources, flags and torch
            try:
                return _load_library(library, isa), f"cached run-time build {build_dir}"
            except Exception:  # noqa: BLE001  (a partial file of an interrupted build: build again)
                library.unlink(missing_ok=True)
        # Sources copied into the build directory: the build file then names the same paths for
        # every installation of these sources, so that they do not rebuild each other.
        src = build_dir / "src"
        src.mkdir(parents=True, exist_ok=True)
        copies = []
        for source in SOURCES:
            copy = src / source.name
            if not copy.is_file() or copy.read_bytes() != source.read_bytes():
                copy.write_bytes(source.read_bytes())
            copies.append(str(copy))
        print(f"mgiad: compiling the native {isa} kernels for torch {torch.__version__} ({why}); "
              f"once, into {build_dir}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            cpp_extension.load(name=name, sources=copies, extra_cflags=nb.cflags(isa),
                               extra_ldflags=nb.LDFLAGS, build_directory=str(build_dir),
                               is_python_module=False, verbose=verbose)
        except Exception as e:  # noqa: BLE001  (any failure means: use the built-in kernels)
            raise NativeUnavailable(f"building the {isa} kernels failed: {_first_error(str(e))}") from e
        seconds = time.perf_counter() - t0
        _state.build_seconds += seconds
        print(f"mgiad: compiled the native {isa} kernels in {seconds:.0f} s", file=sys.stderr, flush=True)
        try:
            ops = _checked_ops(isa, f"the {isa} build")
        except NativeUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            raise NativeUnavailable(f"the {isa} kernels were built but do not load: {e}") from e
        return ops, f"compiled at run time into {build_dir} ({why})"
    finally:
        ext_log.setLevel(level)


def load(isa: str, *, verbose: bool = False) -> Any:
    """The kernels of ``isa``: the prebuilt library when it fits (:func:`prebuilt`), else built
    (or found in the cache) at run time; their ``torch.ops`` namespace.

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
        digest = nb.sources_digest(SOURCES)
        library, why = prebuilt(isa, digest)
        ops = None
        if library is not None:
            try:
                ops, where = _load_library(library, isa), f"prebuilt {library}"
            except Exception as e:  # noqa: BLE001  (say why, then build as if there were none)
                why = f"the prebuilt library {library} does not load: {str(e).splitlines()[0][:200]}"
        if ops is None:
            ops, where = _compile(isa, digest, why, verbose)
        _state.loaded[isa], _state.origin[isa] = ops, where
        return ops


def origin(isa: str) -> str:
    """Where the loaded library of ``isa`` comes from (prebuilt, compiled, cached), or ``""``."""
    return _state.origin.get(isa, "")


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
    """Which native kernels are active: ``{"active", "isa", "kernels", "reason", "build" (where
    the active library comes from), "build_seconds" (compiling in this process),
    "cpu_capability", "cpu_isas"}``.

    Decides (and builds) as :func:`kernels` does.
    """
    ops = kernels()
    return {"active": ops is not None, "isa": _state.isa, "kernels": list(KERNELS) if ops is not None else [],
            "reason": _state.reason, "build": origin(_state.isa or ""),
            "build_seconds": round(_state.build_seconds, 1),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_isas": cpu_isas()}


def _reset() -> None:
    """Forget the decision (tests); builds already loaded stay loaded."""
    with _lock:
        _state.decided, _state.ops, _state.isa, _state.reason = False, None, None, ""
