"""The thread rule of a run (mgiad/training/threads.py) and the OpenMP wait policy the ``mgiad``
command sets before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mgiad.training.threads import (
    ThreadChoice,
    choose_threads,
    configure_threads,
    idle_cores,
    passive_wait,
    recorded_threads,
    usable_cores,
)


@pytest.fixture
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_rule_counts_free_cores():
    assert choose_threads(2, 1.97, passive=True) == ThreadChoice(2, "2 (2 cores, both idle at start)")
    assert choose_threads(2, 1.0, passive=True) == ThreadChoice(
        1, "1 (1.0 of 2 cores busy at start; --threads overrides)")
    assert choose_threads(2, 1.6, passive=True).threads == 1  # 0.4 of a core taken: not free
    assert choose_threads(2, 1.8, passive=True).threads == 2
    assert choose_threads(2, 0.0, passive=True).threads == 1  # never fewer than 1
    assert choose_threads(8, 5.3, passive=True).threads == 5
    assert choose_threads(8, 8.0, passive=True).reason == "8 (8 cores, all idle at start)"
    assert choose_threads(2, None, passive=True) == ThreadChoice(2, "2 (2 cores, load unknown)")
    assert choose_threads(1, 0.0, passive=True) == ThreadChoice(1, "1 (1 core)")


def test_rule_says_when_waiting_threads_spin():
    choice = choose_threads(2, 2.0, passive=False)
    assert choice == ThreadChoice(2, "2 (2 cores, both idle at start; waiting threads spin: "
                                     "OMP_WAIT_POLICY is not PASSIVE)")
    assert choose_threads(2, 1.0, passive=False).threads == 1


def test_requested_threads_always_win(keep_torch_threads):
    choice = configure_threads(1)
    assert choice == ThreadChoice(1, "1 (--threads)")
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads=0: give at least 1"):
        configure_threads(0)


def test_a_resumed_run_keeps_its_thread_count(tmp_path, keep_torch_threads):
    assert recorded_threads(None) is None
    assert recorded_threads(tmp_path) is None  # no run.json
    (tmp_path / "run.json").write_text(json.dumps({"weights": 1}))
    assert recorded_threads(tmp_path) is None  # a run of mgiad 0.1
    (tmp_path / "run.json").write_text(json.dumps({"threads": 1}))
    assert recorded_threads(tmp_path) == 1
    choice = configure_threads(None, previous=recorded_threads(tmp_path))
    assert choice.threads == 1 and choice.reason.startswith("1 (as the run started")
    assert torch.get_num_threads() == 1
    cores = len(usable_cores())
    assert configure_threads(cores, previous=1).threads == cores  # --threads still wins


def test_more_threads_than_cores_are_capped_with_a_warning(tmp_path, keep_torch_threads):
    """--threads 999 on 2 cores trained at 1 img/s instead of 76 (issue 22): capped, and said."""
    from mgiad.training.threads import ThreadsWarning

    cores = len(usable_cores())
    with pytest.warns(ThreadsWarning, match=rf"--threads 999 is more than the {cores} core"):
        choice = configure_threads(999)
    assert choice.threads == cores == torch.get_num_threads()
    assert "999 asked" in choice.reason and "capped" in choice.reason
    with pytest.warns(ThreadsWarning, match="no longer bit-identical"):  # a run resumed on fewer cores
        assert configure_threads(None, previous=cores + 1).threads == cores


def test_configure_threads_sets_what_it_chose(keep_torch_threads):
    choice = configure_threads(None)
    assert 1 <= choice.threads <= len(usable_cores())
    assert torch.get_num_threads() == choice.threads
    assert choice.reason.startswith(f"{choice.threads} (")


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(usable_cores()) < 2,
                    reason="needs /proc/stat and 2 cores")
def test_idle_cores_sees_a_busy_core():
    cpus = usable_cores()
    spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        idle = idle_cores(0.5, cpus)
    finally:
        spinner.kill()
        spinner.wait()
    assert idle is not None
    assert 0.0 <= idle <= len(cpus) - 0.6  # one core spinning (others may take more, never less)


def test_passive_wait_reads_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert passive_wait()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert not passive_wait()
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert not passive_wait()


POLICY = r"""
import contextlib, io, os, sys
import mgiad.cli
torch_then = []
policy = mgiad.cli.openmp_wait_policy
def spy(command):
    torch_then.append("torch" in sys.modules)
    policy(command)
mgiad.cli.openmp_wait_policy = spy
with contextlib.redirect_stdout(io.StringIO()):
    mgiad.cli.main(sys.argv[1:])
print(os.environ.get("OMP_WAIT_POLICY"), torch_then)
"""


@pytest.mark.parametrize("user, expected", [(None, "PASSIVE"), ("active", "active")])
def test_cli_sets_passive_wait_unless_the_user_chose(user, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user is not None:
        env["OMP_WAIT_POLICY"] = user
    out = subprocess.run([sys.executable, "-c", POLICY, "experiments"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expected, "[False]"]  # set once, before torch was loaded


def test_wait_policy_per_command():
    from mgiad.cli import openmp_wait_policy

    env: dict[str, str] = {}
    openmp_wait_policy("train", env, torch_loaded=False)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for command, torch_loaded in (("bench", False), ("train", True)):
        env = {}
        openmp_wait_policy(command, env, torch_loaded=torch_loaded)
        assert env == {}  # bench measures torch as it is; too late once torch is loaded
