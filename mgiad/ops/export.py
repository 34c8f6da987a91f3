"""Whether an ONNX export is tracing the model: the fast paths then give way to the built-in
convolutions, which every ONNX runtime runs as its own ``Conv`` (the custom operators of this
package have no ONNX counterpart). ``torch.compile``, ``torch.export`` and ``torch.jit.trace``
keep the operators."""

from __future__ import annotations

import sys


def exporting_onnx() -> bool:
    """True inside ``torch.onnx.export`` (either exporter). Reads ``torch.onnx`` only when it has
    been imported: without it no export can be running, and importing it costs time."""
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()
