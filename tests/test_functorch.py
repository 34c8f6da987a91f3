"""torch.func (grad, vmap, functional_call), torch.fx and TorchScript on every model family.

Under a ``torch.func`` transform and while ``torch.fx`` traces symbolically, the fast paths
(native kernels, fused BatchNorm + ReLU, the pair-transfer operators, recomputation) step aside
to the built-in computation (mgiad/ops/export.py, ``fast_paths_off``): the ``mgiad::`` operators
have no functorch rules, and a batched tensor or an ``fx.Proxy`` cannot answer the layers'
questions about layout. These tests hold the transformed results to eager execution, which
does run the fast paths (channels_last float32 input, native kernels on), and repeat the
per-sample gradients with ``MGIAD_NATIVE=0``. Why each model failed before: docs/transforms.md.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap
from torch.utils._python_dispatch import TorchDispatchMode

import mgiad
from mgiad.ops import native
from mgiad.ops.export import ScriptingUnsupported

CL = torch.channels_last
#: one small member of each family: name, hyper-parameters (native group sizes 4/8, widths
#: doubling so that the depthwise pooling kernel applies too)
FAMILIES = {
    "mgiad": ("mgiad", dict(widths=(8, 16), c_K=4, g_s=4)),
    "mgiad_3lvl_fmnist": ("mgiad_3lvl_fmnist", dict(widths=(8, 16, 16), c_K=4, g_s=4,
                                                    channel_norm="prolongation",
                                                    coarse_correction="fas")),
    "mgnet_ab": ("mgnet_ab", dict(widths=(8, 16), g_s=4, nu=1)),
    "mgnet_a_3lvl": ("mgnet_a_3lvl", dict(widths=(8, 16, 32), g_s=8, nu=1)),
    "resnet18": ("resnet18", dict(widths=(8, 8, 16, 16))),
    "resnet20": ("resnet20", dict(widths=(8, 16, 32), blocks=1)),
    "mgic": ("mgic", dict(widths=(8, 16), g=4, c_K=4, blocks=1)),
}
MULTIGRID = {"mgiad", "mgiad_3lvl_fmnist", "mgnet_ab", "mgnet_a_3lvl"}


def _model(family: str, *, seed: int = 0, **extra) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The family's small model in eval mode, channels_last, with BatchNorm statistics that are not
    the identity (a few training batches), an input batch of 3 at 16×16 and targets."""
    name, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    model = mgiad.create_model(name, **kwargs, **extra).to(memory_format=CL)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, model.in_chans, 16, 16).contiguous(memory_format=CL))
    x = torch.randn(3, model.in_chans, 16, 16).contiguous(memory_format=CL)
    return model.eval(), x, torch.randint(0, 10, (3,))


#: the operators the layers call only when the native kernels are active
NATIVE_OPS = {"mgiad::bn_relu", "mgiad::group_conv3x3", "mgiad::depthwise_pool"}


class _Ops(TorchDispatchMode):
    """The operators called inside (outermost only: ``mgiad::bn_relu``, ``aten::conv2d``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func._schema.name)
        return func(*args, **(kwargs or {}))

    def fast_paths(self) -> set[str]:
        return {op for op in self.seen if op.startswith("mgiad::")}


@pytest.fixture(params=["native", "MGIAD_NATIVE=0"])
def native_on(request, monkeypatch):
    """The native kernels as the process found them, or switched off with ``MGIAD_NATIVE=0``."""
    if request.param == "native":
        yield native.kernels() is not None
        return
    monkeypatch.setenv(native.ENV, "0")
    native._reset()
    try:
        yield False
    finally:
        monkeypatch.delenv(native.ENV)
        native._reset()


def _close(got: torch.Tensor, expected: torch.Tensor, rel: float) -> bool:
    got, expected = got.detach(), expected.detach()
    return float((got - expected).norm()) <= rel * float(expected.norm()) + 1e-7


@pytest.mark.parametrize("family", list(FAMILIES))
def test_per_sample_gradients_equal_a_loop_of_autograd(family, native_on) -> None:
    """vmap(grad(loss)) over functional_call, eval mode, equals per-sample torch.autograd.grad on
    the eager model, which runs the native kernels (float32: the two differ by rounding only)."""
    model, x, y = _model(family)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    with _Ops() as transformed:
        per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    assert transformed.fast_paths() == set()  # the built-in computation under the transforms

    with _Ops() as eager:
        loop = [torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]),
                                    list(model.parameters())) for i in range(len(x))]
    assert bool(eager.seen & NATIVE_OPS) == (native_on and family in MULTIGRID)  # the reference ran them
    for j, (pname, g) in enumerate(per_sample.items()):
        assert g.shape == (len(x), *params[pname].shape)
        for i in range(len(x)):
            assert _close(g[i], loop[i][j], 1e-5), (pname, i)

    # the forward pass under vmap too
    out = vmap(lambda xi: model(xi.unsqueeze(0)).squeeze(0))(x)
    assert _close(out, model(x), 1e-5)


@pytest.mark.parametrize("family", ["mgiad", "mgnet_ab", "resnet20", "mgic"])
def test_grad_in_training_mode_with_batch_statistics(family) -> None:
    """torch.func.grad alone (no vmap) in training mode: BatchNorm normalises with the batch's
    statistics and updates the running ones, which must be inputs of the transformed function
    (torch.func refuses to mutate a captured tensor). float64: exact up to rounding."""
    model, x, y = _model(family, **({"memory_efficient": True} if family in MULTIGRID else {}))
    model = model.double().train()
    x = x.double()
    ref = copy.deepcopy(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}

    def loss(p, b):
        return F.cross_entropy(functional_call(model, (p, b), (x,)), y)

    grads = grad(loss)(params, buffers)
    F.cross_entropy(ref(x), y).backward()
    for name, p in ref.named_parameters():
        assert _close(grads[name], p.grad, 1e-10), name
    for name, b in ref.named_buffers():  # the same statistics update as eager training
        assert torch.allclose(buffers[name], b, rtol=1e-12, atol=1e-12), name


def test_grad_in_training_mode_float32_against_the_fused_path() -> None:
    """The same in float32 channels_last, where eager training runs the fused BatchNorm + ReLU and
    the native convolutions (when active): the transformed gradients differ by rounding only."""
    model, x, y = _model("mgiad")
    model.train()
    ref = copy.deepcopy(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    grads = grad(lambda p, b: F.cross_entropy(functional_call(model, (p, b), (x,)), y))(params, buffers)
    F.cross_entropy(ref(x), y).backward()
    for name, p in ref.named_parameters():
        assert _close(grads[name], p.grad, 1e-3), name
    for name, b in ref.named_buffers():
        assert torch.allclose(buffers[name].double(), b.double(), rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("family", ["mgiad", "resnet20"])
def test_per_sample_gradients_in_training_mode_without_running_statistics(family) -> None:
    """vmap over BatchNorm in training mode needs per-sample statistics and no running ones:
    torch.func.replace_all_batch_norm_modules_ (the fused path steps aside for such a BatchNorm)."""
    model, x, y = _model(family)
    replace_all_batch_norm_modules_(model.train())
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(len(x)):
        loop = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        for (name, g), g_loop in zip(per_sample.items(), loop):
            assert _close(g[i], g_loop, 1e-3), (name, i)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fx_symbolic_trace_equals_the_model(family) -> None:
    """torch.fx.symbolic_trace gives a GraphModule of built-in operations (no mgiad:: operator),
    whose output equals the eager model's (native kernels on), in eval and training mode."""
    model, x, _ = _model(family)
    gm = torch.fx.symbolic_trace(model)
    assert isinstance(gm, torch.fx.GraphModule)
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert not any("mgiad" in t for t in targets), targets
    with torch.no_grad():
        assert _close(gm(x), model(x), 1e-6)
    torch.fx.symbolic_trace(model.train())  # training mode traces too (feature extraction does)


def test_feature_extraction_mgiad_and_resnet() -> None:
    """torchvision's create_feature_extractor on an MGiaD and a ResNet: the useful node names are
    the module paths ``stem``, ``levels.ℓ`` (MGiaD, MgNet: u after level ℓ) or ``stages.s``
    (ResNet, MGIC), ``head.1`` (pooled features) and ``head.2`` (logits)."""
    fe = pytest.importorskip("torchvision.models.feature_extraction")
    model, x, _ = _model("mgiad")
    names = set(fe.get_graph_node_names(model)[1])
    assert {"stem.0", "stem.1", "head.1", "head.2"} <= names
    ext = fe.create_feature_extractor(model, {"stem": "f1", "levels.0": "u1", "levels.1": "u2",
                                              "head.1": "pooled", "head.2": "logits"})
    with torch.no_grad():
        got = ext(x)
        assert _close(got["f1"], model.stem(x), 1e-5)
        assert got["u1"].shape == (3, 8, 16, 16)
        assert _close(got["u2"], model.forward_features(x), 1e-5)
        assert _close(got["pooled"], model.forward_head(model.forward_features(x), pre_logits=True), 1e-5)
        assert _close(got["logits"], model(x), 1e-5)

    model, x, _ = _model("resnet20")
    ext = fe.create_feature_extractor(model, {"stages.0": "s1", "stages.2": "s3", "head.1": "pooled"})
    with torch.no_grad():
        got = ext(x)
        assert got["s1"].shape == (3, 8, 16, 16)
        assert _close(got["s3"], model.forward_features(x), 1e-6)
        assert _close(got["pooled"], model.forward_head(model.forward_features(x), pre_logits=True), 1e-6)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_jit_script_refuses_with_the_alternatives(family) -> None:
    """TorchScript (deprecated) cannot compile the networks: a clear error before it tries."""
    model, _, _ = _model(family)
    with pytest.raises(ScriptingUnsupported, match=r"torch\.jit\.trace.*torch\.export.*torch\.compile"):
        torch.jit.script(model)
    if family in MULTIGRID:  # a submodule with fast paths alone too
        with pytest.raises(ScriptingUnsupported, match="cannot compile"):
            torch.jit.script(model.levels[0])


def test_jit_trace_is_the_alternative() -> None:
    """What the refusal points to works: torch.jit.trace of an MGiaD equals the eager model."""
    model, x, _ = _model("mgiad")
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        assert _close(traced(x), model(x), 1e-6)


def test_jit_trace_as_the_first_call_of_a_process() -> None:
    """The native kernels are decided (built, loaded, asked their instruction set) outside the
    trace: tracing the first model call of a process failed with "ArrayRef: invalid index"."""
    code = """if True:
        import torch, mgiad
        m = mgiad.create_model("mgiad", widths=(8, 16), c_K=4, g_s=4).eval().to(memory_format=torch.channels_last)
        x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            traced = torch.jit.trace(m, x, check_trace=False)
            assert torch.allclose(traced(x), m(x), rtol=1e-5, atol=1e-6)
        print("ok")
    """
    env = {k: v for k, v in os.environ.items() if k != native.ENV}  # the default: native on
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
