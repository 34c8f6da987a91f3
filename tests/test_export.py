"""MGiaD through the PyTorch tools: torch.compile without graph breaks, torch.export (forward and
backward of the exported module), ONNX export with either exporter run in onnxruntime, and a
traced model saved and loaded — all equal to eager execution.

The fast paths are operators (``mgiad::group_conv3x3`` and its gradients, ``mgiad::pair_sum``,
``mgiad::pair_spread``) with fake tensors and autograd, so compile and export keep each as one
node; ONNX export writes the built-in convolutions instead (mgiad/ops/export.py), which ONNX
runtimes run as their own Conv. The models run in float32 channels_last, where the native
kernels apply (when this machine has them).
"""

from __future__ import annotations

import copy

import pytest
import torch

import mgiad
from mgiad.ops import native

CL = torch.channels_last
#: 4 channels per group (SiC with 4 in-channel levels at 16 channels) and the 3-level MGiaD (8)
MODELS = [("mgiad", {"c_K": 8, "g_s": 4, "widths": (16, 32, 64, 64)}), ("mgiad_3lvl", {})]
IDS = ["mgiad-g4", "mgiad_3lvl-g8"]


def _model(name: str, kwargs: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = mgiad.create_model(name, **kwargs).to(memory_format=CL)
    with torch.no_grad():  # running statistics that are not the initial 0 and 1
        model(torch.randn(16, model.in_chans, 16, 16).contiguous(memory_format=CL))
    return model


def _input(model: torch.nn.Module, batch: int = 8) -> torch.Tensor:
    return torch.randn(batch, model.in_chans, 16, 16, generator=torch.Generator().manual_seed(1)) \
        .contiguous(memory_format=CL)


def _close(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    """Relative to ``want``'s norm (absolute where it is zero, e.g. a gradient that vanishes)."""
    err = ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1.0)
           if want.abs().max() == 0 else
           (got.double() - want.double()).norm() / want.double().norm()).item()
    assert err < tol, f"relative error {err:.3g}"


def _ops_in(graph_text: str) -> set[str]:
    """The package's operators named in a graph (FX spells them mgiad.op, TorchScript mgiad::op)."""
    text = graph_text.replace("::", ".")
    return {op for op in ("mgiad.group_conv3x3", "mgiad.pair_sum", "mgiad.pair_spread") if op in text}


@pytest.mark.parametrize("name,kwargs", MODELS, ids=IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_compile_sees_one_graph(name: str, kwargs: dict, training: bool) -> None:
    model = _model(name, kwargs).train(training)
    x = _input(model)
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert explained.graph_count == 1
    ops = _ops_in("\n".join(str(g.graph) for g in explained.graphs))
    assert {"mgiad.pair_sum", "mgiad.pair_spread"} <= ops
    assert ("mgiad.group_conv3x3" in ops) == (native.kernels() is not None)


@pytest.mark.parametrize("name,kwargs", MODELS, ids=IDS)
def test_compiled_training_step_equals_eager(name: str, kwargs: dict) -> None:
    """AOTAutograd traces forward and backward through the operators' fake and autograd
    registrations (backend aot_eager: the traced graphs run as they are, without Inductor's
    minutes of code generation on a small CPU)."""
    torch._dynamo.reset()
    model = _model(name, kwargs)
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    x = _input(model)
    target = torch.randn(8, 10)
    out, got = model(x), compiled(x)
    _close(got, out)
    (out * target).sum().backward()
    (got * target).sum().backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        _close(q.grad, p.grad, tol=1e-4)
    for b, b2 in zip(model.buffers(), twin.buffers()):  # running statistics, batch counts
        _close(b2, b) if b.is_floating_point() else torch.testing.assert_close(b2, b)


@pytest.mark.parametrize("name,kwargs", MODELS, ids=IDS)
def test_export_forward_and_backward(name: str, kwargs: dict) -> None:
    model = _model(name, kwargs).eval()
    x = _input(model)
    ep = torch.export.export(model, (x,))
    ops = _ops_in(str(ep.graph))
    assert {"mgiad.pair_sum", "mgiad.pair_spread"} <= ops
    assert ("mgiad.group_conv3x3" in ops) == (native.kernels() is not None)
    exported = ep.module()
    _close(exported(x), model(x), tol=1e-6)
    # backward through the exported module: every operator has its autograd formula
    target = torch.randn(8, 10)
    (model(x) * target).sum().backward()
    (exported(x) * target).sum().backward()
    grads = dict(exported.named_parameters())
    for n, p in model.named_parameters():
        assert grads[n].grad is not None, n
        _close(grads[n].grad, p.grad, tol=1e-4)


def _onnxruntime():
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install onnx)")
    return pytest.importorskip("onnxruntime", reason="running the ONNX model needs onnxruntime "
                               "(pip install onnxruntime)")


def _run_onnx(path, x: torch.Tensor):
    ort = _onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.contiguous().numpy()})[0])


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("name,kwargs", MODELS, ids=IDS)
def test_onnx_export_runs_in_onnxruntime_as_in_eager(name: str, kwargs: dict, dynamo: bool, tmp_path) -> None:
    _onnxruntime()
    if dynamo:
        pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript "
                            "(pip install onnxscript)")
    import onnx

    model = _model(name, kwargs).eval()
    x = _input(model)
    path = tmp_path / "model.onnx"
    with torch.no_grad():
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False)
        expected = model(x)
    graph = onnx.load(str(path)).graph
    kinds = {node.op_type for node in graph.node}
    assert "Conv" in kinds and not any(k.startswith("mgiad") for k in kinds), kinds
    _close(_run_onnx(path, x), expected, tol=1e-5)
    assert not torch.onnx.is_in_onnx_export()  # the fast paths are back after the export
    if native.kernels() is not None:
        with torch.profiler.profile() as prof:
            model(x)
        assert any(e.key.startswith("mgiad_native_") for e in prof.key_averages())


@pytest.mark.parametrize("name,kwargs", MODELS, ids=IDS)
def test_traced_model_saves_and_loads(name: str, kwargs: dict, tmp_path) -> None:
    model = _model(name, kwargs).eval()
    x = _input(model)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        path = tmp_path / "traced.pt"
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))
        _close(loaded(x), model(x), tol=1e-6)
        other = _input(model, batch=3)  # another batch size through the saved graph
        _close(loaded(other), model(other), tol=1e-6)
    ops = _ops_in(str(loaded.inlined_graph))
    assert {"mgiad.pair_sum", "mgiad.pair_spread"} <= ops
    assert ("mgiad.group_conv3x3" in ops) == (native.kernels() is not None)
