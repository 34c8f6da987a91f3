"""``mgiad --help``, ``mgiad COMMAND --help`` and ``import mgiad`` do not load torch (≈4 s on a busy
2-core CPU); the model API still works after a plain ``import mgiad``.

Start-up time itself is not asserted (flaky on a shared machine); which modules a fresh process
has loaded is exact. Measured before/after in docs/training.md, "Threads and progress".
"""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = r"""
import contextlib, io, json, sys
import mgiad.cli

heavy = ("torch", "numpy", "mgiad.models", "mgiad.training.loop", "mgiad.perf.bench")
loaded = {}
for argv in ([], ["--help"], ["--version"], *[[c, "--help"] for c in sys.argv[1:]]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            mgiad.cli.main(argv)
        except SystemExit:
            pass
    assert "usage" in out.getvalue() or "mgiad 0" in out.getvalue(), (argv, out.getvalue())
    loaded[" ".join(argv) or "(none)"] = [m for m in heavy if m in sys.modules]
import mgiad  # the package API, lazily
loaded["import mgiad"] = [m for m in heavy if m in sys.modules]
model = mgiad.create_model("mgiad_3lvl", num_classes=10)
print(json.dumps({"loaded": loaded, "after_create_model": "torch" in sys.modules,
                  "model": type(model).__name__, "models": mgiad.list_models("resnet*")}))
"""

COMMANDS = ["list", "params", "train", "eval", "predict", "demo", "bench", "experiments", "sweep",
            "report", "plot"]


def test_help_does_not_load_torch():
    proc = subprocess.run([sys.executable, "-c", CHECK, *COMMANDS], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["loaded"]) == {"(none)", "--help", "--version", "import mgiad",
                                     *(f"{c} --help" for c in COMMANDS)}
    assert {k: v for k, v in result["loaded"].items() if v} == {}
    # the lazy package API loads the models (and torch) on first use
    assert result["after_create_model"] is True
    assert result["model"] == "MGiaD"
    assert result["models"] == ["resnet18", "resnet18_maxpool", "resnet20"]


BAD_VALUE = r"""
import contextlib, io, json, sys
import mgiad.cli

err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = mgiad.cli.main(["train", "--lr", "nan"])
print(json.dumps({"code": code, "err": err.getvalue(), "torch": "torch" in sys.modules}))
"""


def test_a_bad_training_value_is_reported_before_torch_loads():
    """Issue 22: `mgiad train --lr nan` answered only after torch loaded (5-25 s under load)."""
    proc = subprocess.run([sys.executable, "-c", BAD_VALUE], capture_output=True, text=True, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 2 and "lr=nan is not allowed" in result["err"]
    assert result["torch"] is False
