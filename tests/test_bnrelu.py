"""The fused σ(BN(x)) (+ residual) operator (mgiad/ops/bnrelu.py, mgiad/nn/bnrelu.py).

Against ``F.relu(nn.BatchNorm2d(x)) + residual`` in float64: output, running statistics and
``num_batches_tracked``, and the gradients of x, γ, β and the residual, in training and eval,
with the native kernels (channels_last) and the operator's built-in fallback (NCHW); schema,
fake tensors and autograd (``torch.library.opcheck``); the recomputation of σ(BN(x)) by
``conv_of_bn_relu``; when the fused path steps aside (the switch, hooks, autocast, batch
statistics of one value). The whole models with it are compared with the float64 reference in
tests/test_fast_paths.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from mgiad.nn import bnrelu
from mgiad.nn.layers import GroupConv3x3
from mgiad.ops import bnrelu as op
from mgiad.ops import native

CL = torch.channels_last
needs_native = pytest.mark.skipif(
    native.kernels() is None, reason=f"native kernels not active here: {native.status()['reason']}")

#: (N, C, H, W): vector-width channel counts and odd ones, one-pixel images, batch 1
SHAPES = [(8, 16, 5, 7), (2, 3, 1, 1), (1, 64, 4, 4), (3, 20, 9, 2), (16, 128, 2, 2), (4, 37, 3, 5)]


def _bn(c: int, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c, momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return bn


def _inputs(shape, offset: float = 0.0, fmt=CL):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g) * 2 + offset).contiguous(memory_format=fmt)
    res = torch.randn(shape, generator=g).contiguous(memory_format=fmt)
    gy = torch.randn(shape, generator=g).contiguous(memory_format=fmt)
    return x, res, gy


def _run(bn, x, res, gy, fused: bool, monkeypatch):
    """(y, dx, dγ, dβ, dres, buffers) of one call of ``bnrelu.bn_relu``."""
    monkeypatch.setenv(bnrelu.ENV, "1" if fused else "0")
    bn = copy.deepcopy(bn)
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    res = None if res is None else res.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    y = bnrelu.bn_relu(bn, x, res)
    y.backward(gy.to(y.dtype))
    grads = [x.grad, bn.weight.grad, bn.bias.grad, None if res is None else res.grad]
    return y, grads, [b.clone() for b in bn.buffers()]


@needs_native
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])  # native kernels / built-in fallback
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "plain"])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_equals_batchnorm_relu_in_float64(shape, residual, training, layout, monkeypatch) -> None:
    fmt = CL if layout == "channels_last" else torch.contiguous_format
    if shape[0] * shape[2] * shape[3] == 1 and training:
        pytest.skip("one value per channel: nn.BatchNorm2d refuses training (tested below)")
    bn = _bn(shape[1]).train(training)
    x, res, gy = _inputs(shape, offset=3.0, fmt=fmt)
    res = res if residual else None
    want = _run(copy.deepcopy(bn).double(), x.double(), None if res is None else res.double(), gy.double(),
                False, monkeypatch)
    got = _run(bn, x, res, gy, True, monkeypatch)
    if layout == "channels_last":
        assert bnrelu.applies(bn, x.contiguous(memory_format=CL), res)
    torch.testing.assert_close(got[0].double(), want[0], rtol=1e-5, atol=1e-5)
    for name, g, w in zip(["x", "weight", "bias", "residual"], got[1], want[1]):
        if w is None:
            assert g is None, name
        else:
            torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-4 * w.abs().max().item(), msg=name)
    for b, w in zip(got[2], want[2]):  # running mean, running var, num_batches_tracked
        torch.testing.assert_close(b.to(w.dtype), w, rtol=1e-5, atol=1e-6)


@needs_native
def test_statistics_of_data_far_from_zero_keep_their_precision(monkeypatch) -> None:
    """Mean 1e4, std 1: a plain E[x²] − E[x]² in float would lose the variance entirely."""
    bn = _bn(16)
    x, _, gy = _inputs((8, 16, 6, 6), offset=1e4)
    want = _run(copy.deepcopy(bn).double(), x.double(), None, gy.double(), False, monkeypatch)
    got = _run(bn, x, None, gy, True, monkeypatch)
    torch.testing.assert_close(got[2][1].double(), want[2][1], rtol=1e-4, atol=1e-4)  # running var
    torch.testing.assert_close(got[0].double(), want[0], rtol=1e-3, atol=1e-3)


@needs_native
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_operator_schema_fake_and_autograd(training: bool, layout: str) -> None:
    fmt = CL if layout == "channels_last" else torch.contiguous_format
    bn = _bn(8)
    x, res, _ = _inputs((2, 8, 3, 4), fmt=fmt)
    args = (x.requires_grad_(), bn.weight, bn.bias, bn.running_mean, bn.running_var,
            res.requires_grad_(), training, bn.eps)
    torch.library.opcheck(torch.ops.mgiad.bn_relu.default, args)
    grad = torch.randn_like(x)
    _, mean, invstd, _ = torch.ops.mgiad.bn_relu(*args)
    torch.library.opcheck(torch.ops.mgiad.bn_relu_backward.default,
                          (grad, x.detach(), bn.weight.detach(), bn.bias.detach(), mean, invstd, training))


@needs_native
def test_conv_of_bn_relu_recomputes_the_activation_and_gives_the_same_gradients(monkeypatch) -> None:
    torch.manual_seed(0)
    conv, bn = GroupConv3x3(16, groups=4), _bn(16)
    x, _, _ = _inputs((4, 16, 6, 6))
    recomputed = []
    apply = op.apply
    monkeypatch.setattr(op, "apply", lambda *a: recomputed.append(1) or apply(*a))

    def step(keep: bool):
        c, b = copy.deepcopy(conv), copy.deepcopy(bn)
        xi = x.clone(memory_format=CL).requires_grad_()
        y = bnrelu.conv_of_bn_relu(c, b, xi, keep=keep)
        y.square().sum().backward()
        return y, [xi.grad, c.weight.grad, b.weight.grad, b.bias.grad], list(b.buffers())

    kept = step(keep=True)
    assert recomputed == []
    lean = step(keep=False)
    assert recomputed == [1]  # σ(BN(x)) was not kept: backward recomputed it, once
    assert torch.equal(lean[0], kept[0])
    for a, b in zip(lean[1] + lean[2], kept[1] + kept[2]):
        assert torch.equal(a, b)  # the recomputation is bitwise the forward's


def test_steps_aside(monkeypatch) -> None:
    bn = _bn(8)
    x, res, _ = _inputs((2, 8, 3, 3))
    fused = native.kernels() is not None
    assert bnrelu.applies(bn, x, res) is fused
    assert not bnrelu.applies(bn, x.contiguous(), None)  # NCHW: built-in BatchNorm and ReLU
    assert not bnrelu.applies(bn, x.double(), None)
    assert not bnrelu.applies(copy.deepcopy(bn).double(), x, None)
    assert not bnrelu.applies(nn.BatchNorm2d(8, affine=False), x)
    assert not bnrelu.applies(nn.BatchNorm2d(8, momentum=None), x)
    assert not bnrelu.applies(nn.BatchNorm2d(8, track_running_stats=False), x)
    monkeypatch.setenv(bnrelu.ENV, "0")
    assert not bnrelu.applies(bn, x, res)
    monkeypatch.setenv(bnrelu.ENV, "1")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not bnrelu.applies(bn, x, res)
    seen = []
    handle = bn.register_forward_hook(lambda m, i, o: seen.append(o))
    assert not bnrelu.applies(bn, x, res)  # a hook sees the BatchNorm output, as always
    bnrelu.bn_relu(bn, x, res)
    assert len(seen) == 1
    handle.remove()
    assert bnrelu.applies(bn, x, res) is fused


def test_one_value_per_channel_is_refused_as_batchnorm_refuses_it() -> None:
    bn = _bn(4).train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bnrelu.bn_relu(bn, torch.randn(1, 4, 1, 1).contiguous(memory_format=CL))


@needs_native
def test_second_order_gradients_are_refused_not_wrong() -> None:
    bn = _bn(8)
    x = torch.randn(4, 8, 3, 3).contiguous(memory_format=CL).requires_grad_()
    y = bnrelu.bn_relu(bn, x)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="second-order gradients.*MGIAD_FUSED_BN=0"):
        gx.sum().backward()
