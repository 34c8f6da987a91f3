"""The native grouped 3×3 convolution kernels (mgiad/ops/native/, mgiad/ops/groupconv.py).

Each build the CPU runs (AVX2, AVX-512) against ``F.conv2d`` in float64; the operator's
autograd formulas (also of second order), fake tensors and schema (``torch.library.opcheck``);
which convolutions of the model run it; and the fallback when the kernels are off or cannot be
built. The whole-model comparison with the native kernels active is in tests/test_fast_paths.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mgiad.nn.layers import DataFeatureMap, GroupConv3x3
from mgiad.ops import groupconv, native

CL = torch.channels_last
ISAS = native.cpu_isas()
needs_native = pytest.mark.skipif(
    native.kernels() is None, reason=f"native kernels not active here: {native.status()['reason']}")


def _isa_param(isa: str):
    return pytest.param(isa, marks=pytest.mark.skipif(
        isa not in ISAS, reason=f"this CPU does not run {isa} (torch capability "
        f"{torch.backends.cpu.get_cpu_capability()})"))


BUILDS = [_isa_param("avx2"), _isa_param("avx512")]

#: (G, N, C, H, W), G channels per group: channel counts that take every vector width of both
#: builds (16-, 8- and, for G = 4, 4-channel chunks), odd and one-pixel sizes, batch 1
SHAPES = [(4, 2, 4, 5, 7), (4, 1, 12, 1, 1), (4, 3, 28, 6, 3), (4, 2, 32, 8, 8), (4, 1, 64, 2, 9),
          (4, 2, 20, 1, 5), (4, 1, 36, 7, 1), (4, 2, 8, 4, 4), (4, 1, 256, 3, 4), (4, 4, 44, 9, 11),
          (8, 2, 8, 5, 7), (8, 1, 24, 1, 1), (8, 3, 40, 6, 3), (8, 2, 32, 8, 8), (8, 1, 64, 2, 9),
          (8, 2, 16, 1, 5), (8, 1, 56, 7, 4), (8, 4, 48, 9, 11)]


def _layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same values as channels_last, NCHW, and two non-contiguous views."""
    n, c, h, w = x.shape
    wide = torch.zeros(n, c, h, 2 * w, dtype=x.dtype).contiguous(memory_format=CL)
    wide[..., ::2] = x
    return {"channels_last": x.contiguous(memory_format=CL), "nchw": x.contiguous(),
            "strided": wide[..., ::2], "permuted": x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)}


def _reference(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor):
    """Forward, input and weight gradient of the grouped convolution, in float64."""
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    y = F.conv2d(xd, wd, padding=1, groups=x.shape[1] // w.shape[1])
    dx, dw = torch.autograd.grad(y, (xd, wd), g.double())
    return y.detach(), dx, dw


def _close(got: torch.Tensor, want: torch.Tensor, tol: float = 2e-6) -> None:
    """Relative to the largest value (fp32 sums of up to 36·N·H·W products)."""
    err = (got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)
    assert err < tol, f"max error {err:.3g} relative to max |value|"


@pytest.mark.parametrize("isa", BUILDS)
@pytest.mark.parametrize("group,shape", [(s[0], s[1:]) for s in SHAPES],
                         ids=[f"g{s[0]}-" + "x".join(map(str, s[1:])) for s in SHAPES])
def test_kernels_equal_conv2d_in_float64(isa: str, group: int, shape: tuple[int, ...]) -> None:
    ops = native.load(isa)
    torch.manual_seed(sum(shape))
    x, g = torch.randn(shape), torch.randn(shape)
    w = torch.randn(shape[1], group, 3, 3)
    y, dx, dw = _reference(x, w, g)
    for name, xv in _layouts(x).items():
        gv = _layouts(g)[name]
        out = ops.forward(xv, w)
        assert out.is_contiguous(memory_format=CL), name
        _close(out, y)
        _close(ops.input_grad(gv, w), dx)
        _close(ops.weight_grad(gv, xv, group), dw)
    # a non-contiguous weight (a transposed copy viewed back)
    _close(ops.forward(x, w.transpose(0, 1).contiguous().transpose(0, 1)), y)


@pytest.mark.parametrize("isa", BUILDS)
@pytest.mark.parametrize("group", [4, 8])
def test_weight_gradient_sums_a_batch_of_many_pixels(isa: str, group: int) -> None:
    """65,536 products per weight and lane, split over the threads' partial sums."""
    ops = native.load(isa)
    torch.manual_seed(1)
    x, g = torch.randn(64, 32, 32, 32).contiguous(memory_format=CL), torch.randn(64, 32, 32, 32)
    w = torch.randn(32, group, 3, 3)
    y, dx, dw = _reference(x, w, g)
    _close(ops.forward(x, w), y)
    _close(ops.input_grad(g, w), dx)
    _close(ops.weight_grad(g, x, group), dw, tol=2e-5)


@pytest.mark.parametrize("isa", BUILDS)
def test_builds_run_on_several_threads(isa: str) -> None:
    """Built with OpenMP: at::parallel_for silently runs on one thread without -fopenmp."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert native.load(isa).parallel_threads(64) == 2
        torch.set_num_threads(1)
        assert native.load(isa).parallel_threads(64) == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("isa", BUILDS)
def test_kernels_reject_what_they_do_not_compute(isa: str) -> None:
    ops = native.load(isa)
    x = torch.randn(1, 8, 4, 4)
    with pytest.raises(RuntimeError, match="float32"):
        ops.forward(x.double(), torch.randn(8, 4, 3, 3).double())
    with pytest.raises(RuntimeError, match=r"weight must be \[C, 4, 3, 3\] or \[C, 8, 3, 3\]"):
        ops.forward(x, torch.randn(8, 2, 3, 3))
    with pytest.raises(RuntimeError, match="multiple of 4"):
        ops.forward(torch.randn(1, 6, 4, 4), torch.randn(6, 4, 3, 3))
    with pytest.raises(RuntimeError, match="multiple of 8"):
        ops.weight_grad(torch.randn(1, 12, 4, 4), torch.randn(1, 12, 4, 4), 8)
    with pytest.raises(RuntimeError, match="one shape"):
        ops.weight_grad(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 5))


def test_avx2_and_avx512_builds_agree() -> None:
    if len(ISAS) < 2:
        pytest.skip(f"this CPU runs only {ISAS}")
    torch.manual_seed(2)
    a, b = native.load("avx2"), native.load("avx512")
    for group in (4, 8):
        x, g = torch.randn(3, 56, 7, 9), torch.randn(3, 56, 7, 9)
        w = torch.randn(56, group, 3, 3)
        torch.testing.assert_close(a.forward(x, w), b.forward(x, w), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.input_grad(g, w), b.input_grad(g, w), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.weight_grad(g, x, group), b.weight_grad(g, x, group),
                                   rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------- the custom operator


def test_operator_gradients_of_first_and_second_order_in_float64() -> None:
    """float64 takes the built-in path inside the operator: this checks the autograd formulas
    (each operator differentiated into the others) with finite differences."""
    torch.manual_seed(3)
    x = torch.randn(2, 8, 4, 5, dtype=torch.double, requires_grad=True)
    w = torch.randn(8, 4, 3, 3, dtype=torch.double, requires_grad=True)
    g = torch.randn(2, 8, 4, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(groupconv.group_conv3x3, (x, w))
    assert torch.autograd.gradgradcheck(groupconv.group_conv3x3, (x, w))
    assert torch.autograd.gradcheck(groupconv.group_conv3x3_input_grad, (g, w))
    assert torch.autograd.gradcheck(lambda g, x: groupconv.group_conv3x3_weight_grad(g, x, 4), (g, x))
    w8 = torch.randn(8, 8, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(groupconv.group_conv3x3, (x, w8))


@needs_native
@pytest.mark.parametrize("group", [4, 8])
def test_operator_gradients_in_float32_equal_float64_conv2d(group: int) -> None:
    """The native kernels through autograd, first and second order, against float64 F.conv2d."""
    torch.manual_seed(4)
    x = torch.randn(3, 16, 6, 7).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(16, group, 3, 3, requires_grad=True)
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    t = torch.randn(3, 16, 6, 7)

    def first_and_second(x, w, conv):
        y = conv(x, w)
        gx, gw = torch.autograd.grad((y * t.to(y.dtype)).sum(), (x, w), create_graph=True)
        hx, hw = torch.autograd.grad(gx.square().sum() + gw.square().sum(), (x, w))
        return y, gx, gw, hx, hw

    got = first_and_second(x, w, groupconv.group_conv3x3)
    want = first_and_second(xd, wd, lambda x, w: F.conv2d(x, w, padding=1, groups=16 // group))
    for a, b in zip(got, want):
        _close(a.detach(), b.detach(), tol=1e-5)


@needs_native
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
def test_opcheck(channels_last: bool) -> None:
    fmt = CL if channels_last else torch.contiguous_format
    torch.manual_seed(5)
    x = torch.randn(2, 8, 5, 3).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(8, 4, 3, 3, requires_grad=True)
    g = torch.randn(2, 8, 5, 3).contiguous(memory_format=fmt)
    torch.library.opcheck(groupconv.group_conv3x3, (x, w))
    torch.library.opcheck(groupconv.group_conv3x3_input_grad, (g.requires_grad_(), w))
    torch.library.opcheck(groupconv.group_conv3x3_weight_grad, (g, x, 4))
    w8 = torch.randn(8, 8, 3, 3, requires_grad=True)
    torch.library.opcheck(groupconv.group_conv3x3, (x, w8))
    torch.library.opcheck(groupconv.group_conv3x3_weight_grad, (g, x, 8))


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _native_calls(module: torch.nn.Module, x: torch.Tensor, **kw) -> int:
    with _CountOps() as mode:
        module(x, **kw)
    return sum(c.startswith("mgiad.group_conv3x3") for c in mode.calls)


@needs_native
def test_which_convolutions_run_the_native_kernel() -> None:
    torch.manual_seed(6)
    conv = GroupConv3x3(16, groups=4)
    x = torch.randn(2, 16, 5, 5)
    cl = x.contiguous(memory_format=CL)
    assert _native_calls(conv, cl) == 1
    assert _native_calls(conv, x) == 0  # NCHW
    assert _native_calls(conv.double(), cl.double()) == 0
    conv.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _native_calls(conv, cl) == 0
    assert _native_calls(GroupConv3x3(16, groups=2), cl) == 1  # 8 channels per group
    assert _native_calls(GroupConv3x3(16, groups=8), cl) == 0  # 2 channels per group
    assert _native_calls(GroupConv3x3(16, groups=1), cl) == 0  # dense
    assert _native_calls(torch.nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False), cl) == 0


@needs_native
@pytest.mark.parametrize("groups", [8, 4], ids=["4-per-group", "8-per-group"])
@pytest.mark.parametrize("negate", [False, True])
def test_modules_equal_the_builtin_convolution(negate: bool, groups: int) -> None:
    """GroupConv3x3 (B) and DataFeatureMap (A, also −A u): outputs and gradients, hooks fire."""
    torch.manual_seed(7)
    A = DataFeatureMap(32, groups=groups)
    x = torch.randn(4, 32, 9, 6).contiguous(memory_format=CL).requires_grad_()
    seen = []
    A.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    y = A(x, negate=negate)
    assert seen == [y.shape]
    xd, wd = x.detach().double().requires_grad_(), A.weight.detach().double().requires_grad_()
    yd = F.conv2d(xd, -wd if negate else wd, padding=1, groups=groups)
    t = torch.randn_like(yd)
    (y * t.float()).sum().backward()
    (yd * t).sum().backward()
    _close(y.detach(), yd.detach())
    _close(x.grad, xd.grad)
    _close(A.weight.grad, wd.grad)


# --------------------------------------------------------------------------------- the fallback

_CHILD = textwrap.dedent("""
    import json, sys, warnings
    import torch, torch.nn.functional as F
    from mgiad.ops import native
    {setup}
    from mgiad.nn.layers import GroupConv3x3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conv = GroupConv3x3(16, groups=4)
        x = torch.randn(2, 16, 5, 5).contiguous(memory_format=torch.channels_last)
        y = conv(x)
        conv(x)  # a second call decides nothing anew
    err = (y - F.conv2d(x, conv.weight, padding=1, groups=4)).abs().max().item()
    print(json.dumps({{"status": native.status(), "err": err,
                      "warnings": [str(w.message) for w in caught
                                   if issubclass(w.category, native.NativeWarning)]}}))
""")


def _child(tmp_path, setup: str = "", own_cache: bool = True, **env: str) -> dict:
    """The child's result; ``own_cache``: build into tmp_path, not the shared extensions cache."""
    full = {**os.environ, **({"TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")} if own_cache else {}), **env}
    out = subprocess.run([sys.executable, "-c", _CHILD.format(setup=setup)], capture_output=True,
                         text=True, env=full, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_mgiad_native_0_turns_it_off_without_building_or_warning(tmp_path) -> None:
    got = _child(tmp_path, MGIAD_NATIVE="0")
    assert got["status"]["active"] is False and got["status"]["kernels"] == []
    assert got["status"]["reason"] == "MGIAD_NATIVE=0"
    assert got["warnings"] == [] and got["err"] < 1e-5
    assert not (tmp_path / "ext").exists() or not any((tmp_path / "ext").rglob("*.so"))


def test_a_compile_error_warns_once_and_the_builtin_convolution_runs(tmp_path) -> None:
    broken = tmp_path / "group_conv.cpp"
    broken.write_text("#include <torch/library.h>\nint f() { return undeclared_name; }\n")
    got = _child(tmp_path, setup=f"native.SOURCES = (__import__('pathlib').Path({str(broken)!r}),)",
                 MGIAD_NATIVE="auto")
    assert got["status"]["active"] is False
    assert len(got["warnings"]) == 1, got["warnings"]
    message = got["warnings"][0]
    assert "building the" in message and "undeclared_name" in message, message
    assert "built-in convolution runs instead" in message and "MGIAD_NATIVE=0" in message
    assert got["err"] < 1e-5


def test_no_compiler_warns_and_the_builtin_convolution_runs(tmp_path) -> None:
    # MGIAD_NATIVE_PREBUILT=0: a build is needed (with the prebuilt kernels none is:
    # tests/test_native_build.py)
    got = _child(tmp_path, CXX=str(tmp_path / "no-such-compiler"), MGIAD_NATIVE="auto",
                 MGIAD_NATIVE_PREBUILT="0")
    assert got["status"]["active"] is False
    assert len(got["warnings"]) == 1 and "no C++ compiler" in got["warnings"][0], got["warnings"]
    assert "no-such-compiler" in got["warnings"][0]
    assert got["err"] < 1e-5


def test_a_bad_mgiad_native_value_is_named(tmp_path) -> None:
    got = _child(tmp_path, MGIAD_NATIVE="fast")
    assert got["status"]["active"] is False
    assert len(got["warnings"]) == 1 and "MGIAD_NATIVE='fast'" in got["warnings"][0]


@pytest.mark.parametrize("isa", BUILDS)
def test_the_build_follows_the_cpu_capability(isa: str, tmp_path) -> None:
    """ATEN_CPU_CAPABILITY lowers what torch reports, as on a CPU without AVX-512 (an AMD Zen 3):
    the native kernels follow it; MGIAD_NATIVE=isa chooses a build directly."""
    got = _child(tmp_path, own_cache=False, ATEN_CPU_CAPABILITY=isa, MGIAD_NATIVE="auto")
    assert got["status"]["isa"] == isa and got["warnings"] == [] and got["err"] < 1e-5
    got = _child(tmp_path, own_cache=False, MGIAD_NATIVE=isa)
    assert got["status"]["isa"] == isa and got["warnings"] == [] and got["err"] < 1e-5


def test_a_cpu_without_avx2_warns_and_the_builtin_convolution_runs(tmp_path) -> None:
    got = _child(tmp_path, ATEN_CPU_CAPABILITY="default", MGIAD_NATIVE="auto")
    assert got["status"]["active"] is False and got["status"]["cpu_isas"] == []
    assert len(got["warnings"]) == 1 and "no AVX2" in got["warnings"][0], got["warnings"]
    assert got["err"] < 1e-5
    assert not (tmp_path / "ext").exists() or not any((tmp_path / "ext").rglob("*.so"))


def test_status_names_the_active_build() -> None:
    s = native.status()
    assert s["cpu_isas"] == ISAS
    if s["active"]:
        assert s["isa"] in ISAS and s["kernels"] == list(native.KERNELS) and len(s["kernels"]) >= 6
    else:
        assert s["isa"] is None and s["reason"]


# --------------------------------------------------------------------------- `mgiad native`


def _native_command(argv: list[str]) -> int:
    import argparse

    from mgiad.cli import native as command

    parser = argparse.ArgumentParser(prog="mgiad")
    command.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["native", *argv])
    return args.func(args, [])


def test_native_command_reports_the_active_kernels(capsys) -> None:
    rc = _native_command(["--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["active"] == (native.kernels() is not None) and rc == (0 if out["active"] else 1)
    assert out["cpu_isas"] == ISAS and out["builds"] == {}
    rc = _native_command(["--all"])
    text = capsys.readouterr().out
    for isa in ISAS:
        assert f"  {isa}: {native.origin(isa)}" in text and native.origin(isa).startswith(
            ("prebuilt ", "compiled at run time ", "cached run-time build "))
    assert ("active: " + str(native.status()["isa"])) in text if rc == 0 else "inactive" in text
