"""The fast execution paths give the numbers of the plain algorithm (tests/reference.py).

The library's forward reuses A u after every FAS restriction, skips A·0, forms residuals as
f + (−A) u, applies ReLU in place, runs Π̂, R̂, P̂ as pair products (mgiad.ops.pairconv) and, with
``memory_efficient``, recomputes activations in backward. Each must leave outputs, every
gradient and the BatchNorm running statistics equal to the literal Algorithms 1–3 up to
float rounding. The comparison runs in float64: in float32 the two summation orders differ by
up to 1e-2 relative in the stem's weight gradient with one torch thread (batch-6 BatchNorm
amplifies round-off; measured on an AMD EPYC), which would hide a real difference.

The native grouped-convolution kernels (mgiad/ops/native) run in float32 only: the models with
4 or 8 channels per group are compared in float32 channels_last, with the kernels active, against
the float64 reference, with the float32 built-in path's error as the scale (batch 16).
"""

from __future__ import annotations

import copy

import pytest
import reference  # tests/reference.py (pytest puts tests/ on sys.path)
import torch
import torch.nn.functional as F

import mgiad
from mgiad.ops import native
from mgiad.ops.pairconv import PairInterpolation, PairRestriction
from mgiad.perf.allocator import keep_freed_memory

CASES = [
    ("mgiad_3lvl", {}),
    ("mgiad", {"c_K": 16, "g_s": 4, "widths": (16, 32, 64, 64)}),
    ("mgiad", {"levels": 3, "c_K": 4, "g_s": 2, "eta_pre": 0, "eta_post": 2}),
    ("mgiad", {"levels": 3, "c_K": 4, "g_s": 4, "eta_pre": 2, "eta_post": 1}),
    ("mgiad_3lvl_fmnist", {}),
    ("mgnet_ab_3lvl", {}),
    ("mgnet_a_3lvl", {}),
]


def _pair(name: str, kwargs: dict, **fast: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The plain model and a copy with the attributes ``fast`` set, both in float64."""
    torch.manual_seed(0)
    plain = mgiad.create_model(name, **kwargs).double()
    model = copy.deepcopy(plain)
    for k, v in fast.items():
        setattr(model, k, v)
    return plain, model


def _assert_close_grads(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        scale = p.grad.abs().max().clamp_min(1e-6)
        assert ((p.grad - q.grad).abs().max() / scale) < 1e-10, name


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["default", "memory_efficient"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_training_step_equals_the_plain_algorithm(name, kwargs, channels_last, memory_efficient) -> None:
    ref, model = _pair(name, kwargs, memory_efficient=memory_efficient)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ref, model = ref.to(memory_format=fmt), model.to(memory_format=fmt)
    x = torch.randn(6, model.in_chans, 16, 16, dtype=torch.float64).contiguous(memory_format=fmt)
    target = torch.randn(6, 10, dtype=torch.float64)
    expected = reference.forward(ref, x)
    out = model(x)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    (expected * target).sum().backward()
    (out * target).sum().backward()
    _assert_close_grads(ref, model)
    for (name_, b), b2 in zip(ref.named_buffers(), model.buffers()):  # running statistics, counts
        torch.testing.assert_close(b2, b, rtol=1e-10, atol=1e-12, msg=name_)
    ref.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.forward(ref, x), rtol=1e-10, atol=1e-10)


NATIVE_CASES = [
    ("mgiad", {"c_K": 16, "g_s": 4, "widths": (16, 32, 64, 64)}),
    ("mgiad", {"c_K": 8, "g_s": 4, "widths": (16, 32, 64, 64), "eta_pre": 0, "eta_post": 2}),
    ("mgiad", {"levels": 3, "c_K": 8, "g_s": 4, "widths": (16, 32, 64)}),
    ("mgnet_ab_grouped", {"g_s": 4, "widths": (16, 32, 64, 64)}),
    ("mgiad_3lvl", {}),  # 8 channels per group
]


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).norm() / want.norm().clamp_min(1e-30)).item()


def _float32_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor):
    """Output, parameter gradients and buffers of one training step, with the count of native
    forward kernels that ran and of grouped A, B convolutions."""
    model = copy.deepcopy(model)
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(1)) for m in model.modules()
             if isinstance(m, mgiad.nn.layers.GroupConv3x3) and m.groups > 1]
    with torch.profiler.profile() as prof:
        out = model(x)
    for h in hooks:
        h.remove()
    ran = sum(e.count for e in prof.key_averages()
              if e.key.startswith("mgiad_native_") and e.key.endswith("::forward"))
    (out * target.float()).sum().backward()
    return out, [p.grad for p in model.parameters()], list(model.buffers()), ran, len(calls)


@pytest.mark.skipif(native.kernels() is None, reason=f"native kernels off: {native.status()['reason']}")
@pytest.mark.parametrize("memory_efficient", [False, True], ids=["default", "memory_efficient"])
@pytest.mark.parametrize("name,kwargs", NATIVE_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(NATIVE_CASES)])
def test_float32_with_native_kernels_equals_the_plain_algorithm(name, kwargs, memory_efficient,
                                                                monkeypatch) -> None:
    """Against the float64 reference, with the error of the built-in float32 path as the scale:
    BatchNorm over few pixels amplifies float32 round-off into the gradients by an amount that
    depends on the summation order (measured up to 1.3e-2 relative with one torch thread, 2e-4
    with two, the built-in convolutions alike). A wrong kernel is an O(1) error; each kernel is
    held to float64 in tests/test_native.py."""
    torch.manual_seed(0)
    model = mgiad.create_model(name, memory_efficient=memory_efficient, **kwargs)
    model = model.to(memory_format=torch.channels_last)
    ref = copy.deepcopy(model).double()
    x = torch.randn(16, model.in_chans, 16, 16).contiguous(memory_format=torch.channels_last)
    target = torch.randn(16, 10, dtype=torch.float64)
    expected = reference.forward(ref, x.double())
    (expected * target).sum().backward()
    out, grads, buffers, ran, convs = _float32_step(model, x, target)
    assert ran == convs > 0  # every grouped A, B of the model ran the native kernel
    monkeypatch.setenv(native.ENV, "0")
    native._reset()
    try:
        out_b, grads_b, _, ran_b, _ = _float32_step(model, x, target)
    finally:
        monkeypatch.delenv(native.ENV)
        native._reset()
    assert ran_b == 0 and native.kernels() is not None
    assert _relative(out, expected) < 1e-4
    for (pname, q), g, g_b in zip(ref.named_parameters(), grads, grads_b):
        assert _relative(g, q.grad) <= 4 * _relative(g_b, q.grad) + 3e-4, pname
    for (bname, b), b2 in zip(ref.named_buffers(), buffers):
        if b.is_floating_point():
            assert _relative(b2, b) < 1e-4, bname
        else:
            assert torch.equal(b2, b), bname


def test_memory_efficient_flag_reaches_every_part_and_is_a_model_argument() -> None:
    model = mgiad.create_model("mgiad_3lvl", memory_efficient=True)
    assert model.memory_efficient
    model.memory_efficient = False
    assert not model.memory_efficient
    assert mgiad.create_model("mgnet_ab_3lvl", memory_efficient=True).memory_efficient
    with pytest.raises(ValueError, match="memory_efficient must be True or False, got 'yes'"):
        mgiad.create_model("mgiad_3lvl", memory_efficient="yes")


def test_memory_efficient_keeps_less_for_backward() -> None:
    """Counted with autograd's saved-tensor hooks: what the plain forward keeps alive."""
    plain, lean = _pair("mgiad", {"c_K": 16, "g_s": 4, "widths": (16, 32, 64, 64)}, memory_efficient=True)
    x = torch.randn(8, 3, 16, 16, dtype=torch.float64)

    def kept(model: torch.nn.Module) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x).sum().backward()
        return sum(storages.values())

    assert kept(lean) < kept(plain) / 2


def test_allocator_setting_is_idempotent_and_changes_no_number() -> None:
    ref, model = _pair("mgiad_3lvl", {})
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    before = model(x)
    first = keep_freed_memory()
    assert keep_freed_memory() is first  # once per process
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [PairRestriction, PairInterpolation])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pair_transfers_equal_the_grouped_convolution(cls, channels_last: bool) -> None:
    torch.manual_seed(0)
    conv = cls(8).double()
    x = torch.randn(3, conv.in_channels, 5, 4, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, groups=conv.groups), rtol=0, atol=1e-12)
    assert conv(x).is_contiguous(memory_format=torch.channels_last) == channels_last
    # gradcheck perturbs x and conv.weight in place; conv(x) reads both.
    assert torch.autograd.gradcheck(lambda x, w: conv(x), (x, conv.weight))
    conv.weight.grad = None
    conv(x.detach()).sum().backward()  # an input without gradient: the weight's alone
    assert conv.weight.grad is not None


@pytest.mark.parametrize("spread", [False, True], ids=["pair_sum", "pair_spread"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pair_products_are_operators_with_fake_and_autograd(spread: bool, channels_last: bool) -> None:
    """torch.library.opcheck: schema, fake tensors (strides included), autograd registration."""
    from mgiad.ops.pairconv import pair_spread, pair_sum

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 4 if spread else 8, 3, 5).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(*((8, 1) if spread else (4, 2)), 1, 1, requires_grad=True)  # as the modules hold it
    op = pair_spread if spread else pair_sum
    torch.library.opcheck(op, (x, w))
    assert torch.autograd.gradgradcheck(op, (x.double().detach().requires_grad_(),
                                             w.double().detach().requires_grad_()))


def _strided_pair(x: torch.Tensor, w: torch.Tensor, spread: bool) -> torch.Tensor:
    """The built-in computation of pair_sum / pair_spread: products over stride-2 channel views."""
    from mgiad.ops.pairconv import _EVEN, _ODD, _channel, _empty

    if spread:
        y = _empty(x, 2 * x.shape[1])
        torch.mul(x, _channel(w, _EVEN), out=y[:, _EVEN])
        torch.mul(x, _channel(w, _ODD), out=y[:, _ODD])
        return y
    y = _empty(x, x.shape[1] // 2)
    torch.mul(x[:, _EVEN], _channel(w, _EVEN), out=y)
    return y.addcmul_(x[:, _ODD], _channel(w, _ODD))


@pytest.mark.skipif(native.kernels() is None, reason=f"native kernels off: {native.status()['reason']}")
@pytest.mark.parametrize("spread", [False, True], ids=["pair_sum", "pair_spread"])
@pytest.mark.parametrize("shape", [(3, 24, 7, 5), (1, 2, 1, 3), (1, 4, 1, 1), (128, 64, 8, 8), (2, 512, 2, 2)],
                         ids=lambda s: "x".join(map(str, s)))
def test_native_pair_products_give_the_bits_of_the_builtin_ones(spread: bool, shape) -> None:
    """``mgiad::pair_sum``/``pair_spread`` run one pass of native/pair_dot.cpp over contiguous
    channels_last rows instead of strided multiplies: the same bits and strides (the built-in
    pair_sum adds the odd product by a fused multiply-add, and so does the kernel), and
    ``MGIAD_NATIVE=0`` or an NCHW input takes the built-in path. Against the grouped 1×1
    convolution in float64 as well."""
    from mgiad.ops import pairconv

    n, c, h, wd = shape
    g = torch.Generator().manual_seed(c)
    x = torch.randn(n, c // 2 if spread else c, h, wd, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(*((c, 1) if spread else (c // 2, 2)), 1, 1, generator=g)
    op = pairconv.pair_spread if spread else pairconv.pair_sum
    fast = not x.is_contiguous()  # one channel or one pixel: also NCHW, the built-in strides
    assert pairconv._native(x, w) == fast
    with torch.profiler.profile() as prof:
        got = op(x, w)
    ran = {e.key for e in prof.key_averages() if e.key.startswith("mgiad_native_")}
    name = "pair_spread" if spread else "pair_sum"
    assert ran == ({f"mgiad_native_{native.status()['isa']}::{name}"} if fast else set())
    want = _strided_pair(x, w, spread)
    assert torch.equal(got, want) and got.stride() == want.stride()
    ref = F.conv2d(x.double(), w.double(), groups=c // 2)
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-6)
    nchw = x.contiguous()
    assert not pairconv._native(nchw, w) and torch.equal(op(nchw, w), got.contiguous())
    if fast:
        for isa in native.cpu_isas():  # every build this CPU runs (AVX2, AVX-512)
            assert torch.equal(getattr(native.load(isa), name)(x, w.reshape(-1)), want), isa


@pytest.mark.skipif(native.kernels() is None, reason=f"native kernels off: {native.status()['reason']}")
@pytest.mark.parametrize("spread", [False, True], ids=["pair_sum", "pair_spread"])
def test_pair_weight_gradient_native_equals_float64(spread: bool) -> None:
    """``mgiad::pair_weight_grad`` runs the native one-pass kernel for float32 channels_last
    tensors: against the grouped 1×1 convolution's weight gradient in float64, with opcheck and
    gradients of second order against the built-in convolution in float32."""
    from mgiad.ops.pairconv import pair_spread, pair_sum, pair_weight_grad

    cl = torch.channels_last
    g = torch.Generator().manual_seed(0)
    c_in, c_out = (12, 24) if spread else (24, 12)
    x = torch.randn(3, c_in, 7, 5, generator=g).contiguous(memory_format=cl)
    w = torch.randn(*((24, 1) if spread else (12, 2)), 1, 1, generator=g)
    gy = torch.randn(3, c_out, 7, 5, generator=g).contiguous(memory_format=cl)
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    (dw,) = torch.autograd.grad(F.conv2d(xd, wd, groups=12), wd, gy.double())
    torch.testing.assert_close(pair_weight_grad(gy, x, w).double(), dw, rtol=1e-5, atol=1e-5)
    torch.library.opcheck(pair_weight_grad, (gy, x.requires_grad_(), w))
    op = pair_spread if spread else pair_sum

    def second_order(f):
        xi, wi = x.detach().clone().requires_grad_(), w.clone().requires_grad_()
        dx, dwi = torch.autograd.grad(f(xi, wi).square().sum(), (xi, wi), create_graph=True)
        return torch.autograd.grad(dx.square().sum() + dwi.square().sum(), (xi, wi))

    for a, b in zip(second_order(op), second_order(lambda xi, wi: F.conv2d(xi, wi, groups=12))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.skipif(native.kernels() is None, reason=f"native kernels off: {native.status()['reason']}")
@pytest.mark.parametrize("group,shape", [(4, (3, 16, 9, 7)), (8, (2, 32, 5, 6)), (4, (1, 4, 1, 3)),
                                         (4, (16, 64, 32, 32))], ids=lambda v: str(v))
def test_residual_in_one_pass_gives_the_bits_of_conv_then_sum(group: int, shape) -> None:
    """``mgiad::group_conv3x3_add`` (the native convolution adding f as it stores: the residual
    f − A u of every smoothing step and transfer) equals f + (−A) u computed as before, to the
    bit, for every build this CPU runs; its schema, fake tensor and autograd (float64, built-in
    path) are checked too."""
    from mgiad.nn.layers import DataFeatureMap
    from mgiad.ops.groupconv import group_conv3x3_add

    g = torch.Generator().manual_seed(shape[1])
    cl = torch.channels_last
    u = torch.randn(*shape, generator=g).contiguous(memory_format=cl)
    f = torch.randn(*shape, generator=g).contiguous(memory_format=cl)
    A = DataFeatureMap(shape[1], shape[1] // group)
    with torch.no_grad():
        want = f + A(u, negate=True)
        assert torch.equal(A.residual(f, u), want)
    for isa in native.cpu_isas():
        ops = native.load(isa)
        assert torch.equal(ops.forward_add(u, -A.weight.detach(), f), f + ops.forward(u, -A.weight.detach())), isa
    x, w, a = (t.detach().clone().requires_grad_() for t in (u[:2, :, :4, :4], A.weight, f[:2, :, :4, :4]))
    torch.library.opcheck(group_conv3x3_add, (x.contiguous(memory_format=cl), w, a.contiguous(memory_format=cl)))
    assert torch.autograd.gradcheck(group_conv3x3_add, tuple(t.detach().double().requires_grad_() for t in (x, w, a)))


@pytest.mark.skipif(native.kernels() is None, reason=f"native kernels off: {native.status()['reason']}")
def test_a_hook_on_A_sees_minus_A_u_as_always() -> None:
    """The one-pass residual steps aside while a forward hook watches A, so the hook sees A's
    usual call and output (−A u), and the residual is the same."""
    from mgiad.nn.layers import DataFeatureMap

    cl = torch.channels_last
    A = DataFeatureMap(16, 4)
    u, f = (torch.randn(2, 16, 5, 5).contiguous(memory_format=cl) for _ in range(2))
    seen = []
    handle = A.register_forward_hook(lambda m, args, out: seen.append(out.detach().clone()))
    try:
        r = A.residual(f, u)
    finally:
        handle.remove()
    assert len(seen) == 1 and torch.equal(seen[0], A(u, negate=True)) and torch.equal(r, f + seen[0])
    with torch.profiler.profile() as prof:
        A.residual(f, u)
    assert any(e.key.endswith("::forward_add") for e in prof.key_averages())
