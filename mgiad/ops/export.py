"""When the fast paths give way to the built-in convolutions.

- Inside ``torch.onnx.export`` (either exporter): every ONNX runtime runs the built-in
  convolutions as its own ``Conv``, and the custom operators of this package have no ONNX
  counterpart.
- Inside :func:`builtin_kernels`: ``mgiad export`` writes TorchScript and ``torch.export`` files
  that need only torch to load (``--keep-custom-ops`` keeps the operators instead).

``torch.compile``, ``torch.export`` and ``torch.jit.trace`` otherwise keep the operators.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

_builtin_depth = 0


def exporting_onnx() -> bool:
    """True inside ``torch.onnx.export`` (either exporter). Reads ``torch.onnx`` only when it has
    been imported: without it no export can be running, and importing it costs time."""
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


@contextmanager
def builtin_kernels() -> Iterator[None]:
    """Run every layer with the built-in convolutions while inside (the fast paths are off)."""
    global _builtin_depth
    _builtin_depth += 1
    try:
        yield
    finally:
        _builtin_depth -= 1


def fast_paths_off() -> bool:
    """The fast paths give way: an ONNX export is tracing, or :func:`builtin_kernels` is active."""
    return _builtin_depth > 0 or exporting_onnx()
