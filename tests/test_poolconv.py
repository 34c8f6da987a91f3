"""The native learnable depthwise pooling Π, R (mgiad/ops/native/depthwise_pool.cpp,
mgiad/ops/poolconv.py): 3×3, stride 2, padding 1, one group per input channel.

Each build the CPU runs against ``F.conv2d`` in float64 (output, input and weight gradient; odd
and one-pixel sizes, batch 1, four memory layouts); gradients of second order against the
built-in convolution; ``torch.library.opcheck``; the layer's choice of path. The whole models
with it are compared with the float64 reference in tests/test_fast_paths.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_native import _layouts  # tests/ is on sys.path (pytest)

from mgiad.nn.layers import DepthwisePool
from mgiad.ops import native, poolconv

CL = torch.channels_last
ISAS = native.cpu_isas()
needs_native = pytest.mark.skipif(
    native.kernels() is None, reason=f"native kernels not active here: {native.status()['reason']}")
BUILDS = [pytest.param(isa, marks=pytest.mark.skipif(isa not in ISAS, reason=f"this CPU does not run {isa}"))
          for isa in ("avx2", "avx512")]
#: (N, C, H, W): vector-width channel counts and odd ones, odd and one-pixel sizes, batch 1
SHAPES = [(2, 64, 8, 8), (1, 3, 1, 1), (3, 16, 7, 5), (2, 20, 2, 9), (1, 128, 4, 4), (2, 37, 6, 3)]


@needs_native
@pytest.mark.parametrize("isa", BUILDS)
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_each_build_equals_conv2d_in_float64(shape, isa) -> None:
    ops = native.load(isa)
    g = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    x = torch.randn(shape, generator=g)
    weight = torch.randn(2 * c, 1, 3, 3, generator=g)
    xd, wd = x.double().requires_grad_(), weight.double().requires_grad_()
    y = F.conv2d(xd, wd, stride=2, padding=1, groups=c)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    dx, dw = torch.autograd.grad(y, (xd, wd), gy)
    gyf = gy.float().contiguous(memory_format=CL)
    for name, xv in _layouts(x).items():
        got = ops.pool_forward(xv.contiguous(memory_format=CL), weight)
        assert got.is_contiguous(memory_format=CL)
        torch.testing.assert_close(got.double(), y.detach(), rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(ops.pool_weight_grad(gyf, xv.contiguous(memory_format=CL), 2).double(),
                                   dw, rtol=1e-4, atol=1e-4, msg=name)
    torch.testing.assert_close(ops.pool_input_grad(gyf, weight, c, h, w).double(), dx, rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_operator_gradients_of_first_and_second_order(layout: str) -> None:
    """Through autograd, against the built-in convolution in float32 (the operator's inputs in
    any layout)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 7, 6, generator=g)
    x = x.contiguous(memory_format=CL) if layout == "channels_last" else x.contiguous()
    w = torch.randn(16, 1, 3, 3, generator=g)

    def grads(f):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = f(xi, wi)
        dx, dw = torch.autograd.grad(y.square().sum(), (xi, wi), create_graph=True)
        ddx, ddw = torch.autograd.grad((dx.square().sum() + dw.square().sum()), (xi, wi))
        return [y, dx, dw, ddx, ddw]

    got = grads(poolconv.depthwise_pool)
    want = grads(lambda xi, wi: F.conv2d(xi, wi, stride=2, padding=1, groups=8))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@needs_native
def test_operators_schema_fake_and_autograd() -> None:
    x = torch.randn(2, 8, 5, 6).contiguous(memory_format=CL)
    w = torch.randn(16, 1, 3, 3)
    gy = torch.randn(2, 16, 3, 3).contiguous(memory_format=CL)
    torch.library.opcheck(poolconv.depthwise_pool, (x.requires_grad_(), w.requires_grad_()))
    torch.library.opcheck(poolconv.depthwise_pool_input_grad, (gy, w.detach(), 8, 5, 6))
    torch.library.opcheck(poolconv.depthwise_pool_weight_grad, (gy, x.detach()))


def test_the_layer_runs_the_kernel_only_where_it_applies() -> None:
    active = native.kernels() is not None
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=CL)
    assert poolconv.applies(x, DepthwisePool(8, 16)) is active
    assert not poolconv.applies(x, DepthwisePool(8, 8))  # one output per channel: oneDNN is as fast
    assert not poolconv.applies(x.contiguous(), DepthwisePool(8, 16))
    assert not poolconv.applies(x.double(), DepthwisePool(8, 16).double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not poolconv.applies(x, DepthwisePool(8, 16))
    layer = DepthwisePool(8, 16)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, stride=2, padding=1, groups=8),
                               rtol=1e-5, atol=1e-5)
    assert set(layer.state_dict()) == {"weight"}
