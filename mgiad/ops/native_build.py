"""What a build of the native kernels is made of: sources, compiler flags, and the key that names it.

Torch-free, so that ``setup.py`` reads it (by path, without importing mgiad) to prebuild the
kernels when the package is installed, and :mod:`mgiad.ops.native` uses the same flags for a
build at run time. One build per instruction set, each with its own operator namespace
(``torch.ops.mgiad_native_avx2`` / ``mgiad_native_avx512``), so both can be loaded at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

#: the C++ sources, compiled together into one library per instruction set
SOURCE_DIR = Path(__file__).resolve().parent / "native"
SOURCE_NAMES = ("group_conv.cpp", "bn_relu.cpp", "depthwise_pool.cpp", "pair_dot.cpp")
#: instruction-set flags per build (AVX512 as PyTorch's dispatch means it: F, BW, VL and DQ)
ISA_FLAGS = {
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"],
}
#: the module a prebuilt library is installed as (``mgiad/ops/_native_<isa>*.so``); it is
#: loaded with ``torch.ops.load_library``, never imported
PREBUILT_MODULE = "mgiad.ops._native_{isa}"
#: what the prebuilt libraries were built from: written by setup.py beside them
PREBUILT_INFO = "_native_build.json"


def namespace(isa: str) -> str:
    """The operator namespace (and library name) of one build."""
    return f"mgiad_native_{isa}"


def cflags(isa: str) -> list[str]:
    """Compiler flags of one build; the same at install and at run time.

    ``-fopenmp``: at::parallel_for runs on one thread without it; ``-fvisibility=hidden``: the
    two builds' C++ symbols stay apart when both are loaded.
    """
    return ["-O3", "-fopenmp", "-fvisibility=hidden", *ISA_FLAGS[isa], f"-DMGIAD_NS={namespace(isa)}"]


LDFLAGS = ["-fopenmp"]


def sources_digest(sources: Iterable[Path]) -> str:
    """SHA-256 over the sources' names and contents: a build is valid for exactly these sources."""
    h = hashlib.sha256()
    for path in sources:
        path = Path(path)
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_key(isa: str, torch_version: str, digest: str) -> str:
    """The name of a run-time build directory: instruction set, torch version, flags and sources.

    Two installations of the same sources (an editable clone and a wheel) share the directory
    instead of rebuilding each other; an edited source or another torch builds anew.
    """
    flags = hashlib.sha256(" ".join(cflags(isa) + LDFLAGS).encode()).hexdigest()[:8]
    version = torch_version.replace("+", "_")
    return f"{namespace(isa)}-torch{version}-{flags}-{digest[:12]}"
