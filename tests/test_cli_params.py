"""The `mgiad list` and `mgiad params` commands as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from mgiad.cli import main


def test_params_paper_exits_zero_and_accounts_for_every_row(capsys) -> None:
    assert main(["params", "--paper"]) == 0
    out = capsys.readouterr().out
    assert "79 rows" in out and "MISMATCH" not in out
    assert "authors' counting" in out and "mislabelled" in out


def test_params_single_table(capsys) -> None:
    assert main(["params", "--paper", "--table", "IV"]) == 0
    out = capsys.readouterr().out
    assert "5 rows" in out


def test_params_model_with_overrides(capsys) -> None:
    assert main(["params", "mgiad", "--c_K=64", "--g_s=4"]) == 0
    out = capsys.readouterr().out
    assert "391,626" in out and "393,034" in out and "GFLOPs" in out and "level 4" in out
    assert main(["params", "mgiad_3lvl", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["weights"] == 37_530 and data["gflops"] > 0


def test_list(capsys) -> None:
    assert main(["list", "mgiad*"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("mgiad ")
    assert "resnet18" not in out


def test_bad_input_is_one_clear_line(capsys) -> None:
    assert main(["params", "mgiad", "--g_s=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mgiad params: error: g_s=5") and "Traceback" not in err
    assert main(["params", "mgiadd"]) == 2
    assert "did you mean mgiad" in capsys.readouterr().err


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "mgiad", "params", "resnet20"], capture_output=True, text=True, check=True)
    assert "269,722" in out.stdout


def test_boolean_overrides_are_booleans(capsys) -> None:
    """`--transfer_norm=false` must switch the BNs off, not pass the (truthy) string 'false'."""
    assert main(["params", "mgiad_3lvl", "--transfer_norm=false", "--json"]) == 0
    off = json.loads(capsys.readouterr().out)["weights"]
    assert main(["params", "mgiad_3lvl", "--json"]) == 0
    on = json.loads(capsys.readouterr().out)["weights"]
    assert on - off == 2 * 2 * (32 + 64)  # the two transfer BNs of levels 2 and 3
