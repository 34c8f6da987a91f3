"""Faults during training: SIGKILL at random moments, a full disk, a foreign checkpoint, two
trainers in one run directory, Ctrl-C and SIGTERM.

The fault-injection run kills a short CPU training run with SIGKILL 21 times at seeded random
moments — during steps, during evaluation, and at every stage of the checkpoint write (half the
bytes written, written but not fsynced, fsynced but not renamed, renamed but not logged) — and
resumes after each kill. The final weights, optimizer state, random streams and metrics must
equal those of an uninterrupted run bit for bit, with no temporary file left behind.

The runs are forked from one server process that imported torch and mgiad once (a kill then
costs a fork, not a Python start-up); it runs no torch operation before forking, so the children
start with no OpenMP threads to inherit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import (
    TINY_ARGS,
    mgiad_cmd,
    same_tensors,
    subprocess_env,
    tiny_config,
    write_fake_fmnist,
)

from mgiad import cli
from mgiad.training import checkpoint as checkpoint_module
from mgiad.training import train
from mgiad.training.checkpoint import load_checkpoint
from mgiad.training.config import RunConfig

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fault server forks (POSIX)")

EPOCHS, STEPS = 3, 8  # 256 fake training images, batch 32
#: the fields of a metrics row that measure time and load, not the training trajectory
TIMING = {"img_per_s", "epoch_time_s", "elapsed_s", "epoch_cpu_s", "load_avg_1m"}

SERVER = r"""
import json, os, signal, sys
from pathlib import Path

import mgiad.training.checkpoint as ckpt
import mgiad.training.epoch as epoch_module
import mgiad.training.loop as loop
from mgiad.training.config import RunConfig

cfg = RunConfig.from_dict(json.loads(sys.argv[1]))
KILL = signal.SIGKILL


def die():
    os.kill(os.getpid(), KILL)


def run(kind, epoch, arg, resume):
    # Arm one fault: the process SIGKILLs itself at that moment.
    on_step = None
    state = {"ckpt": False}
    if kind == "step":
        def on_step(e, s, model):
            if (e, s) == (epoch, arg):
                die()
    elif kind == "eval":  # part-way through the test set
        real_eval = epoch_module.evaluate
        def partial(model, data, **kw):
            x, y = data
            k = max(1, len(y) * arg // 100)
            real_eval(model, (x[:k], y[:k]), **kw)
            if loop_epoch[0] == epoch:
                die()
            return real_eval(model, data, **kw)
        epoch_module.evaluate = partial
    real_save = epoch_module.save_checkpoint
    def save(path, **kw):
        state["ckpt"] = kw["header"]["epoch"] == epoch + 1 and kind in ("write", "fsync", "replace")
        real_save(path, **kw)
        if kind == "after" and kw["header"]["epoch"] == epoch + 1:
            die()  # checkpoint renamed, metrics row not yet written
        state["ckpt"] = False
    epoch_module.save_checkpoint = save
    real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace
    class HalfWriter:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *a):
            return self.f.__exit__(*a)
        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            die()
        def __getattr__(self, name):
            return getattr(self.f, name)
    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        return HalfWriter(f) if state["ckpt"] and kind == "write" else f
    def fsync(fd):
        if state["ckpt"] and kind == "fsync":
            die()
        return real_fsync(fd)
    def replace(src, dst):
        if state["ckpt"] and kind == "replace":
            die()
        return real_replace(src, dst)
    ckpt.os.fdopen, ckpt.os.fsync, ckpt.os.replace = fdopen, fsync, replace
    loop_epoch = [None]
    real_train_epoch = loop._Run.train_epoch
    def train_epoch(self, e):
        loop_epoch[0] = e
        return real_train_epoch(self, e)
    loop._Run.train_epoch = train_epoch
    loop.train(cfg if resume is None else None, resume=resume, on_step=on_step)


for line in sys.stdin:
    kind, epoch, arg, resume = json.loads(line)
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # the run's progress lines must not mix with the replies on stdout
        try:
            run(kind, epoch, arg, resume)
            code = 0
        except BaseException as e:
            print(f"child failed: {e!r}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    result = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps(result), flush=True)
"""


def _kill_plan(seed: int) -> list[tuple[str, int, int]]:
    """Seven kills per epoch in a seeded random order within the epoch: two at random steps,
    one part-way through evaluation, one at each stage of the checkpoint write; the kill after
    the checkpoint (which advances the run to the next epoch) comes last."""
    rng = random.Random(seed)
    plan = []
    for epoch in range(EPOCHS):
        kills = [("step", epoch, rng.randrange(STEPS)), ("step", epoch, rng.randrange(STEPS)),
                 ("eval", epoch, rng.randrange(10, 90)), ("write", epoch, 0),
                 ("fsync", epoch, 0), ("replace", epoch, 0)]
        rng.shuffle(kills)
        plan += kills + [("after", epoch, 0)]
    return plan


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path) -> None:
    data = write_fake_fmnist(tmp_path / "data")
    ref_cfg = tiny_config(data, tmp_path / "ref", epochs=EPOCHS)
    cfg = tiny_config(data, tmp_path / "killed", epochs=EPOCHS)
    server = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(cfg.to_dict())],
                              env=subprocess_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "killed" / "run"

    def ask(kind: str, epoch: int, arg: int, resume: Path | None) -> int:
        server.stdin.write(json.dumps([kind, epoch, arg, None if resume is None else str(resume)]) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
        assert line, server.stderr.read()
        return json.loads(line)

    try:
        kills = 0
        for i, (kind, epoch, arg) in enumerate(_kill_plan(seed=20261201)):
            code = ask(kind, epoch, arg, run_dir if i else None)
            assert code == -signal.SIGKILL, (kind, epoch, arg, code)
            kills += 1
        assert ask("none", -1, 0, run_dir) == 0  # the last resume runs to the end
    finally:
        server.stdin.close()
        server.wait(timeout=60)
        server.stdout.close()
        server.stderr.close()
    assert kills >= 20
    train(ref_cfg)  # the uninterrupted run, same seed and threads

    a, b = load_checkpoint(tmp_path / "ref" / "run"), load_checkpoint(run_dir)
    assert b.train_state["epoch"] == EPOCHS
    assert same_tensors(a.model_state, b.model_state) == []
    assert same_tensors(a.rng, b.rng) == []
    sa, sb = a.optimizer_state["state"], b.optimizer_state["state"]
    assert sa.keys() == sb.keys() and all(same_tensors(sa[i], sb[i]) == [] for i in sa)
    assert _metrics(tmp_path / "ref" / "run") == _metrics(run_dir)
    assert [r["epoch"] for r in _metrics(run_dir)] == list(range(1, EPOCHS + 1))
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")) == []
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    """ENOSPC while writing epoch 2's checkpoint: one OSError naming the file and what is kept;
    epoch 1's checkpoint still loads; no temporary file is left."""
    data = write_fake_fmnist(tmp_path / "data")
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, b):
            self.f.write(b[:4096])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    real_save = checkpoint_module.save_checkpoint
    calls = []

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        return Full(f) if calls and calls[-1] == 2 else f

    def save(path, **kw):
        calls.append(kw["header"]["epoch"])
        return real_save(path, **kw)

    import mgiad.training.epoch as epoch_module

    monkeypatch.setattr(checkpoint_module.os, "fdopen", fdopen)
    monkeypatch.setattr(epoch_module, "save_checkpoint", save)
    with pytest.raises(OSError) as info:
        train(tiny_config(data, tmp_path / "out", epochs=3))
    monkeypatch.undo()
    run_dir = tmp_path / "out" / "run"
    e = info.value
    assert e.errno == 28 and e.filename == str(run_dir / "last.safetensors")
    assert "last good checkpoint" in e.strerror and f"--resume {run_dir}" in e.strerror
    assert load_checkpoint(run_dir).train_state["epoch"] == 1
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []
    # freed space: the run continues and finishes
    assert train(resume=run_dir)["status"] == "completed"


def _copy(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes())


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, capsys) -> None:
    data = write_fake_fmnist(tmp_path / "data")
    train(tiny_config(data, tmp_path / "a", epochs=1))
    train(tiny_config(data, tmp_path / "b", epochs=1, seed=1))
    # same architecture, another run: b's checkpoint copied over a's, then a is resumed longer
    _copy(tmp_path / "b" / "run" / "last.safetensors", tmp_path / "a" / "run" / "last.safetensors")
    def files() -> dict[str, bytes]:  # .lock: the lock file names its last holder
        return {p.name: p.read_bytes() for p in (tmp_path / "a" / "run").iterdir()
                if p.is_file() and p.name != ".lock"}

    before = files()
    code = cli.main(["train", "--resume", str(tmp_path / "a" / "run"), "--epochs=2"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    # --epochs changes the trajectory: refused before the checkpoint is even read
    assert len(err.splitlines()) == 1 and "cannot change epochs" in err
    code = cli.main(["train", "--resume", str(tmp_path / "a" / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "belongs to another run" in err and str(tmp_path / "a" / "run") in err
    assert files() == before  # nothing written


def test_second_trainer_in_a_run_directory_is_refused(tmp_path) -> None:
    """Two ``--resume`` of one run: the second exits 2 at once; metrics stay one row per epoch."""
    data = write_fake_fmnist(tmp_path / "data")
    env = subprocess_env()
    common = [f"--data_dir={data}", "--dataset=fashionmnist", *TINY_ARGS, "--epochs=400",
              "--batch_size=32", "--threads=1", "--tensorboard=false", "--run_name=run",
              f"--out_dir={tmp_path}"]
    first = subprocess.Popen(mgiad_cmd("train", *common), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "run"
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.safetensors").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # (a time budget: without the lock the second would train one epoch and exit 0)
        second = subprocess.run(mgiad_cmd("train", "--resume", str(run_dir), "--time_budget_s=1"), env=env,
                                capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second started"
        assert second.returncode == 2, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert "is in use" in second.stderr and f"pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    err = first.stderr.read()
    first.stderr.close()
    assert "interrupted (SIGTERM)" in err and f"--resume {run_dir}" in err
    epochs = [json.loads(r)["epoch"] for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, len(epochs) + 1))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert summary["epochs_done"] == load_checkpoint(run_dir).train_state["epoch"] == len(epochs)


def test_ctrl_c_messages_say_what_is_checkpointed(tmp_path, monkeypatch, capsys) -> None:
    import mgiad.training.loop as loop

    data = write_fake_fmnist(tmp_path / "data")
    real = loop.train

    def stop_at(at):
        def patched(cfg, resume=None):
            def hook(epoch, step, model):
                if (epoch, step) == at:
                    raise KeyboardInterrupt
            return real(cfg, resume=resume, on_step=hook)
        return patched

    args = ["train", f"--data_dir={data}", "--dataset=fashionmnist", *TINY_ARGS, "--epochs=3",
            "--batch_size=32", "--threads=1", "--tensorboard=false", f"--out_dir={tmp_path}",
            "--run_name=run"]
    run_dir = tmp_path / "run"
    monkeypatch.setattr(loop, "train", stop_at((0, 2)))  # in the first epoch: nothing saved
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted (SIGINT) in epoch 1/3" in err and "nothing is checkpointed" in err
    assert f"mgiad train --resume {run_dir}`" in err and "RUN_DIR" not in err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(loop, "train", stop_at((1, 3)))
    assert cli.main(["train", "--resume", str(run_dir)]) == 130
    err = capsys.readouterr().err
    assert "in epoch 2/3; epoch 1 is checkpointed" in err and f"--resume {run_dir}`" in err
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    capsys.readouterr()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 3
    assert RunConfig.from_file(run_dir / "config.json").epochs == 3
    assert torch.isfinite(next(iter(load_checkpoint(run_dir).model_state.values()))).all()

