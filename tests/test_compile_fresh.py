"""``torch.compile(model, fullgraph=True)`` as the first thing a fresh process does.

The modules ask :func:`mgiad.ops.native.active` before they choose an operator; the first call
decides (and may build) the native kernels under a lock, which Dynamo cannot trace. The other
compile tests (tests/test_export.py) run after the kernels were decided in the same process, so
they cannot see this: each case here runs in a new interpreter that imports only torch and
mgiad, with the native kernels decided for the first time inside the compiled call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mgiad.ops import native

_CHILD = r"""
import json, torch, mgiad
from mgiad.ops import native
assert not native._state.decided  # nothing decided the kernels before the compile
CL = torch.channels_last
torch.manual_seed(0)
model = mgiad.create_model({name!r}, **{kwargs!r}).to(memory_format=CL)
x = torch.randn(4, model.in_chans, {size}, {size}).contiguous(memory_format=CL)
compiled = torch.compile(model, fullgraph=True, backend={backend!r})
out = {{}}
if {train}:  # a training step: forward and backward through AOTAutograd
    compiled(x).square().sum().backward()
    out["grads"] = sum(p.grad is not None for p in model.parameters())
    out["params"] = sum(1 for _ in model.parameters())
model.eval()
with torch.no_grad():
    got = compiled(x)
    want = model(x)
out["err"] = ((got - want).norm() / want.norm()).item()
out["native"] = native.active()
print(json.dumps(out))
"""

#: one small configuration of every family (ResNet20 and MGIC at their registered sizes)
FAMILIES = {
    "mgiad": {"c_K": 8, "g_s": 4, "widths": (16, 32, 64, 64)},
    "mgiad_3lvl": {},
    "mgnet_ab_3lvl": {},
    "mgnet_ab_grouped": {"widths": (32, 32, 64, 64), "g_s": 8},
    "resnet20": {},
    "mgic_3lvl": {},
}


def _child(name: str, kwargs: dict, *, backend: str, train: bool, size: int = 16) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MGIAD_NATIVE"}  # the default: native on
    code = _CHILD.format(name=name, kwargs=kwargs, size=size, backend=backend, train=train)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fullgraph_training_step_in_a_fresh_process(name: str) -> None:
    """Every family, forward and backward: backend aot_eager traces what Inductor would get
    (Dynamo's graph, AOTAutograd's joint graph) without its minutes of code generation."""
    got = _child(name, FAMILIES[name], backend="aot_eager", train=True)
    assert got["grads"] == got["params"]
    assert got["err"] < 1e-5


def test_the_issue_24_case_with_inductor() -> None:
    """The exact case of the issue: ``mgiad`` c_K=16 g_s=4, channels_last, Inductor, eval."""
    got = _child("mgiad", {"c_K": 16, "g_s": 4}, backend="inductor", train=False, size=32)
    assert got["err"] < 1e-5
    assert got["native"] == native.active()  # the native paths were active, where they can be
