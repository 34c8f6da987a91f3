"""Keep freed tensor memory in the process (glibc ``malloc``), the CPU fast path's first step.

PyTorch's CPU allocator asks ``malloc`` for every tensor. glibc serves blocks above its mmap
threshold (at most 32 MiB; a CIFAR batch of 128 images with 64 channels is 33.5 MB) with
``mmap`` and hands them back with ``munmap`` when freed, so every such tensor costs a page
fault per 4 KiB page on first touch. MGiaD runs many cheap memory-bound operations (BN,
ReLU, residuals) on exactly such tensors; measured here (2-core Xeon, batch 128, 64×32×32,
channels_last; ``python benchmarks/kernels.py`` §1) ReLU forward+backward took 29.6 ms with
mmap and 11.5 ms without, BatchNorm forward+backward 46.1 ms and 26.8 ms. This is what
jemalloc/tcmalloc via ``LD_PRELOAD`` do for the Intel PyTorch CPU guides; ``mallopt`` gets
the same from inside the process, with no dependency. The price: the process's resident
memory does not shrink after a peak.

The ``mgiad`` command calls :func:`keep_freed_memory` once at start-up (``MGIAD_MALLOC=default``
turns it off); library users may call it themselves. It changes no number, only where memory
comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # <malloc.h>: free memory above this at the heap top goes back to the OS
_M_MMAP_MAX = -4  # <malloc.h>: how many blocks may be mmap-ed at once (0: none, use the heap)

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc ``malloc`` reuse freed blocks instead of mmap/munmap-ing large ones.

    Returns True when the setting took effect (Linux with glibc), False where it does not apply
    (other platforms, another C library, ``MGIAD_MALLOC=default``). Idempotent.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("MGIAD_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both settings or neither.
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
