"""When the fast paths give way to the built-in convolutions.

- Inside ``torch.onnx.export`` (either exporter): every ONNX runtime runs the built-in
  convolutions as its own ``Conv``, and the custom operators of this package have no ONNX
  counterpart.
- Inside :func:`builtin_kernels`: ``mgiad export`` writes TorchScript and ``torch.export`` files
  that need only torch to load (``--keep-custom-ops`` keeps the operators instead).
- Under a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ``jvp``, ``functionalize``,
  …) and while ``torch.fx.symbolic_trace`` traces (:func:`transforming`): the operators'
  autograd formulas are not ``torch.func`` rules (``torch.library``'s ``register_autograd``
  has no functorch support), they have no batching rules, and the layers' tests of layout and
  dtype cannot be asked of a batched tensor or an ``fx.Proxy``. The built-in computation is
  the same function (up to float rounding), so per-sample gradients, Jacobians and fx graphs
  see the network users see (docs/transforms.md).

``torch.compile``, ``torch.export`` and ``torch.jit.trace`` otherwise keep the operators.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.fx

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


def transforming(*values: object) -> bool:
    """True under a ``torch.func`` transform, or when one of ``values`` is an ``fx.Proxy`` (a
    ``torch.fx`` symbolic trace is running: torchvision's feature extraction traces this way).

    ``torch.compile`` takes the functorch answer as a constant of the graph (dynamo knows the
    query), so a compiled model keeps its operators.
    """
    return torch._C._are_functorch_transforms_active() or any(
        isinstance(v, torch.fx.Proxy) for v in values)


def fast_paths_off(*values: object) -> bool:
    """The fast paths give way: an ONNX export is tracing, :func:`builtin_kernels` is active, or
    :func:`transforming` (of ``values``, the layer's inputs). The layers ask this first: under
    ``vmap`` a tensor cannot say whether it is channels_last, and under fx its attributes are
    proxies."""
    return _builtin_depth > 0 or exporting_onnx() or transforming(*values)


class ScriptingUnsupported(RuntimeError):
    """``torch.jit.script`` was asked to compile a module of this package (see :class:`NotScriptable`)."""


class NotScriptable:
    """Mixin: ``torch.jit.script`` refuses the module at once, naming the reason and what to use.

    TorchScript's compiler calls ``__prepare_scriptable__`` on a module and each submodule before
    it compiles anything. These modules choose their kernels in Python at run time (native
    operators, fused BatchNorm + ReLU, recomputation in backward; :func:`fast_paths_off`), hold
    optional states (u = 0 as ``None``) and recursive submodules (SiC), and every network checks
    its input and has timm's classifier properties (the ResNet baselines too), none of which
    TorchScript compiles; TorchScript itself is deprecated in PyTorch 2. Without this the
    compiler failed with an unrelated message about a type annotation ("Unknown type
    annotation: 'nn.ModuleList'").
    """

    def __prepare_scriptable__(self):
        name = type(self).__name__
        raise ScriptingUnsupported(
            f"torch.jit.script cannot compile {name}: mgiad's networks are written in Python that "
            "the TorchScript compiler does not support (kernels chosen at run time, optional "
            "states, recursive modules, input checks, timm's classifier properties), and "
            "TorchScript is deprecated in PyTorch 2. "
            "Use torch.jit.trace(model.eval(), example_input) for a TorchScript file (what "
            "`mgiad export --format torchscript` writes), torch.export.export(model, "
            "(example_input,)) for an ExportedProgram, or torch.compile(model) for speed "
            "(docs/transforms.md)")
