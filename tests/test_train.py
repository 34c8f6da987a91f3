"""Training runs: run directory, SIGKILL + resume bit-identity, NaN stop, eval/predict, real data.

The runs use a tiny MGiaD (about 10k weights) on a tiny synthetic FashionMNIST written in the
official IDX format, so that ``python -m mgiad train`` subprocesses find it through
``--data_dir`` exactly as they would find the real files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import require_fashionmnist

from mgiad import cli
from mgiad.data.datasets import load_dataset
from mgiad.training.checkpoint import load_checkpoint
from mgiad.training.config import RunConfig
from mgiad.training.loop import TrainingDiverged, evaluate, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"c_K": 8, "g_s": 4, "widths": [8, 16, 32]}
TINY_ARGS = ["--model=mgiad_3lvl", "--model_kwargs.c_K=8", "--model_kwargs.g_s=4",
             "--model_kwargs.widths=(8,16,32)"]


def write_fake_fmnist(root: Path, n_train: int = 256, n_test: int = 128, seed: int = 0) -> Path:
    """Learnable FashionMNIST-format IDX files: class c is a bright band at rows 2c+2..2c+5."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = rng.integers(0, 80, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 2 * c + 2 : 2 * c + 6, 4:24] += 150
        return x, y.astype(np.uint8)

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = split(n)
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(
            (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in x.shape) + x.tobytes())
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(
            (2049).to_bytes(4, "big") + len(y).to_bytes(4, "big") + y.tobytes())
    return root


def tiny_config(data_dir: Path, out_dir: Path, **kw) -> RunConfig:
    values = dict(model="mgiad_3lvl", model_kwargs=dict(TINY), dataset="fashionmnist",
                  data_dir=str(data_dir), epochs=2, batch_size=32, lr=0.05, threads=1,
                  out_dir=str(out_dir), run_name="run", tensorboard=False)
    values.update(kw)
    return RunConfig(**values)


def mgiad_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mgiad", *args]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors differ in any bit (or exist on one side only)."""
    diff = sorted(set(a) ^ set(b))
    diff += [k for k in sorted(set(a) & set(b)) if not torch.equal(a[k], b[k])]
    return diff


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory) -> Path:
    return write_fake_fmnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="module")
def finished_run(fake_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs")
    summary = train(tiny_config(fake_dir, out, epochs=3, tensorboard=True))
    return out / "run", summary


# --------------------------------------------------------------------------------------


def test_run_directory_contents(finished_run) -> None:
    run_dir, summary = finished_run
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "git_rev", "run.json", "metrics.jsonl", "last.safetensors",
            "summary.json"} <= names
    assert "tb" in names  # tensorboard is installed here
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"train_loss", "train_acc", "test_acc", "lr", "img_per_s", "elapsed_s"} <= set(r)
        # what the time was measured on: CPU time (over all threads), threads, the machine's load
        assert 0 < r["epoch_cpu_s"] and r["load_avg_1m"] >= 0
        assert r["threads"] == json.loads((run_dir / "run.json").read_text())["threads"] >= 1
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["status"] == "completed" and summary["epochs_done"] == 3
    assert summary["final_test_acc"] == rows[-1]["test_acc"]
    assert summary["weights"] == json.loads((run_dir / "run.json").read_text())["weights"] > 0
    cfg = RunConfig.from_file(run_dir / "config.json")
    assert cfg.schedule == "step" and cfg.step_size == 25  # resolved FashionMNIST defaults
    assert (run_dir / "git_rev").read_text().strip()
    ckpt = load_checkpoint(run_dir)
    assert ckpt.header["epoch"] == 3 and ckpt.header["classes"][0] == "T-shirt/top"
    # the augmentation is recorded by name, resolved from the data set for the default recipe
    assert (ckpt.header["augment"], ckpt.header["augment_policy"]) == ("none", "none")
    # the synthetic data is easy: a working loop learns it
    assert summary["final_test_acc"] > 0.5


def test_existing_run_dir_and_bad_resume(finished_run, fake_dir, tmp_path) -> None:
    run_dir, _ = finished_run
    with pytest.raises(ValueError, match="already exists"):
        train(tiny_config(fake_dir, run_dir.parent))
    cfg = RunConfig.from_file(run_dir / "config.json")
    with pytest.raises(ValueError, match="cannot change lr"):
        train(cfg.with_overrides(["--lr=0.5"]), resume=run_dir)
    with pytest.raises(ValueError, match="not a run directory"):
        train(resume=tmp_path)


def test_time_budget_then_resume_is_bit_identical(fake_dir, tmp_path) -> None:
    full = train(tiny_config(fake_dir, tmp_path / "a", epochs=3))
    part = train(tiny_config(fake_dir, tmp_path / "b", epochs=3, time_budget_s=1e-3))
    assert part["status"] == "time_budget" and part["epochs_done"] == 1
    cfg = RunConfig.from_file(tmp_path / "b" / "run" / "config.json")
    done = train(cfg.with_overrides(["--time_budget_s=none"]), resume=tmp_path / "b" / "run")
    assert done["status"] == "completed" and done["epochs_done"] == 3
    a, b = load_checkpoint(tmp_path / "a" / "run"), load_checkpoint(tmp_path / "b" / "run")
    assert same_tensors(a.model_state, b.model_state) == []
    assert full["final_test_acc"] == done["final_test_acc"]


def test_interrupt_and_resume_through_cli(finished_run, fake_dir, tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C mid-epoch exits 130; ``--resume`` then ends bit-identical to the uninterrupted run."""
    import mgiad.training.loop

    real = mgiad.training.loop.train

    def interrupted(cfg, resume=None):
        def hook(epoch, step, model):
            if (epoch, step) == (1, 2):
                raise KeyboardInterrupt
        return real(cfg, resume=resume, on_step=hook)

    args = ["train", f"--data_dir={fake_dir}", "--dataset=fashionmnist", *TINY_ARGS, "--epochs=3",
            "--batch_size=32", "--threads=1", "--tensorboard=false", f"--out_dir={tmp_path}",
            "--run_name=run"]
    monkeypatch.setattr(mgiad.training.loop, "train", interrupted)
    assert cli.main(args) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run").train_state["epoch"] == 1
    assert cli.main(["train", "--resume", str(tmp_path / "run")]) == 0
    ref = load_checkpoint(finished_run[0])  # same config, never interrupted (tensorboard on)
    assert same_tensors(ref.model_state, load_checkpoint(tmp_path / "run").model_state) == []


def test_resume_before_first_checkpoint_starts_over(finished_run, fake_dir, tmp_path, capsys) -> None:
    def hook(epoch, step, model):
        if (epoch, step) == (0, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(fake_dir, tmp_path, epochs=3), on_step=hook)
    assert not (tmp_path / "run" / "last.safetensors").exists()
    capsys.readouterr()
    summary = train(resume=tmp_path / "run")
    assert "has no checkpoint (it was stopped before its first epoch finished): the run starts " \
           "again from epoch 1" in capsys.readouterr().err  # said, not silent (issue 22)
    assert summary["epochs_done"] == 3
    ref = load_checkpoint(finished_run[0])
    assert same_tensors(ref.model_state, load_checkpoint(tmp_path / "run").model_state) == []


def test_sigkill_then_resume_is_bit_identical(fake_dir, tmp_path) -> None:
    """A run SIGKILLed mid-training and resumed ends with the uninterrupted run's exact bits."""
    common = [f"--data_dir={fake_dir}", "--dataset=fashionmnist", *TINY_ARGS, "--epochs=6",
              "--batch_size=32", "--threads=1", "--tensorboard=false", "--run_name=run",
              "--subset_test=50"]
    env = subprocess_env()
    ref = subprocess.run(mgiad_cmd("train", *common, f"--out_dir={tmp_path / 'ref'}"), env=env,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr

    run_dir = tmp_path / "killed" / "run"
    proc = subprocess.Popen(mgiad_cmd("train", *common, f"--out_dir={tmp_path / 'killed'}"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: the hard case
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    killed_at = load_checkpoint(run_dir).train_state["epoch"]
    assert 2 <= killed_at < 6

    res = subprocess.run(mgiad_cmd("train", "--resume", str(run_dir)), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"resuming after epoch {killed_at}" in res.stdout

    a, b = load_checkpoint(tmp_path / "ref" / "run"), load_checkpoint(run_dir)
    assert same_tensors(a.model_state, b.model_state) == []
    for key in ("shuffle", "augment", "torch"):
        assert torch.equal(a.rng[key], b.rng[key])
    ma = a.optimizer_state["state"]
    mb = b.optimizer_state["state"]
    assert all(torch.equal(ma[i]["momentum_buffer"], mb[i]["momentum_buffer"]) for i in ma)
    rows_a = [json.loads(x) for x in (tmp_path / "ref" / "run" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["train_loss"], r["test_acc"]) for r in rows_a] == \
           [(r["epoch"], r["train_loss"], r["test_acc"]) for r in rows_b]
    assert list(run_dir.glob(".*.tmp")) == []


def test_nan_stops_and_keeps_last_good_checkpoint(fake_dir, tmp_path) -> None:
    saved: dict[str, bytes] = {}
    ckpt = tmp_path / "run" / "last.safetensors"

    def poison(epoch: int, step: int, model: torch.nn.Module) -> None:
        if epoch == 1 and step == 0:
            saved["before"] = ckpt.read_bytes()  # the checkpoint of epoch 1
        if epoch == 1 and step == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged) as info:
        train(tiny_config(fake_dir, tmp_path, epochs=3), on_step=poison)
    msg = str(info.value)
    assert "epoch 2, step 3" in msg and "unchanged" in msg, msg
    assert (info.value.epoch, info.value.step) == (2, 3)
    assert ckpt.read_bytes() == saved["before"]
    good = load_checkpoint(ckpt)
    assert good.train_state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in good.model_state.values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epoch"] == 2


def test_nan_exit_code_through_cli(fake_dir, tmp_path, monkeypatch, capsys) -> None:
    import mgiad.training.loop

    real = mgiad.training.loop.train

    def poisoned(cfg, resume=None):
        def hook(epoch, step, model):
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))
        return real(cfg, resume=resume, on_step=hook)

    monkeypatch.setattr(mgiad.training.loop, "train", poisoned)
    rc = cli.main(["train", f"--data_dir={fake_dir}", "--dataset=fashionmnist", *TINY_ARGS,
                   "--epochs=1", "--threads=1", "--tensorboard=false", f"--out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "mgiad train: error: loss became NaN/inf at epoch 1, step 2" in err
    assert "no checkpoint was written" in err


def test_cli_user_errors_exit_2(capsys, tmp_path) -> None:
    assert cli.main(["train", "--lrr=0.1"]) == 2
    assert "did you mean lr" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert "directory without a checkpoint" in capsys.readouterr().err


def test_eval_on_run_dir_and_checkpoint(finished_run, capsys) -> None:
    run_dir, summary = finished_run
    assert cli.main(["eval", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {100 * summary['final_test_acc']:.2f}%" in out
    assert "T-shirt/top" in out and "Ankle boot" in out
    assert cli.main(["eval", str(run_dir / "last.safetensors"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc"] == summary["final_test_acc"]
    assert list(result["per_class"].values()) == summary["final_test_per_class"]


def test_eval_and_predict_take_threads(finished_run, tmp_path, capsys, monkeypatch) -> None:
    """--threads sets torch's CPU threads as in train; a bad count is a one-line error."""
    from PIL import Image

    from mgiad.training import threads

    run_dir, summary = finished_run
    monkeypatch.setattr(threads, "usable_cores", lambda: [0, 1])  # 2 asked must fit (not capped)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    seen: list[int] = []
    assert cli.main(["eval", str(run_dir), "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_acc"] == summary["final_test_acc"]
    image = tmp_path / "x.png"
    Image.new("L", (28, 28), 100).save(image)
    assert cli.main(["predict", str(run_dir), str(image), "--threads", "2"]) == 0
    assert seen == [1, 2]
    for command in (["eval", str(run_dir)], ["predict", str(run_dir), str(image)]):
        assert cli.main([*command, "--threads", "0"]) == 2
        assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_cli_prints_own_warnings_as_one_line(capsys) -> None:
    """A warning of mgiad's code prints as `mgiad COMMAND: warning: ...`, not with our source
    line; other warnings keep Python's format, and the format is restored after the command."""
    import warnings

    from mgiad.cli import warning_format

    before = warnings.formatwarning
    fmt = warning_format("train")
    ours = str(Path(cli.__file__).parent.parent / "training" / "loop.py")
    assert fmt(UserWarning("no augmentation"), UserWarning, ours, 169) == \
        "mgiad train: warning: no augmentation\n"
    # the library's own "mgiad: " is not said twice (issue 22: "mgiad train: warning: mgiad: ...")
    assert fmt(UserWarning("mgiad: native kernels not used"), UserWarning, ours, 1) == \
        "mgiad train: warning: native kernels not used\n"
    theirs = fmt(UserWarning("deprecated"), UserWarning, "/elsewhere/torch/x.py", 3)
    assert theirs.startswith("/elsewhere/torch/x.py:3: UserWarning: deprecated")
    assert cli.main(["eval", "/nonexistent/run"]) == 2
    capsys.readouterr()
    assert warnings.formatwarning is before


def test_evaluate_matches_a_manual_loop(finished_run, fake_dir) -> None:
    from mgiad.training.checkpoint import load_model

    run_dir, _ = finished_run
    model, header = load_model(run_dir)
    data = load_dataset("fashionmnist", fake_dir)
    acc, per_class = evaluate(model, data, batch_size=7)
    x = (data.x_test.permute(0, 3, 1, 2).float() / 255 - data.mean[0]) / data.std[0]
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert acc == pytest.approx((pred == data.y_test).float().mean().item())
    for c in range(10):
        mask = data.y_test == c
        assert per_class[c] == pytest.approx((pred[mask] == c).float().mean().item())


def test_predict_image_files(finished_run, fake_dir, tmp_path, capsys) -> None:
    from PIL import Image

    from mgiad.training.checkpoint import load_model

    run_dir, _ = finished_run
    data = load_dataset("fashionmnist", fake_dir)
    paths = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(data.x_test[i, :, :, 0].numpy()).convert("RGB").save(path)  # RGB -> L
        paths.append(str(path))
    assert cli.main(["predict", str(run_dir), *paths, "--topk", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    model, header = load_model(run_dir)
    x = (data.x_test[:3].permute(0, 3, 1, 2).float() / 255 - data.mean[0]) / data.std[0]
    with torch.no_grad():
        expected = model(x).argmax(1).tolist()
    assert [r["top"][0]["class"] for r in result] == [header["classes"][i] for i in expected]
    assert all(len(r["top"]) == 2 and r["top"][0]["prob"] >= r["top"][1]["prob"] for r in result)
    assert cli.main(["predict", str(run_dir), str(tmp_path / "nope.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_real_fashionmnist_learns(tmp_path) -> None:
    """2000 real FashionMNIST images, 2 epochs, the paper's 3-level FashionMNIST MGiaD (37k)."""
    REAL_FMNIST = require_fashionmnist()
    cfg = RunConfig(model="mgiad_3lvl_fmnist", dataset="fashionmnist", data_dir=str(REAL_FMNIST),
                    epochs=2, batch_size=32, subset_train=2000, subset_test=1000, threads=1,
                    out_dir=str(tmp_path), run_name="real", tensorboard=False)
    summary = train(cfg)
    # Chance is 0.1. Training accuracy is the steady measure here (0.69-0.71 over seeds 0-2);
    # test accuracy, evaluated with BatchNorm running statistics after 126 steps, swung between
    # 0.28 and 0.77 across seeds and float summation orders (measured), so its bound is loose.
    assert summary["final_train_acc"] > 0.5, summary
    assert summary["best_test_acc"] > 0.25, summary


def test_cosine_steps_sets_every_steps_rate(fake_dir, tmp_path) -> None:
    """--schedule=cosine-steps: the optimizer's rate at the last step is the schedule's last
    (near 0), the metrics rows report each epoch's first; a per-epoch cosine keeps one per epoch."""
    lasts = {}
    for schedule in ("cosine-steps", "cosine"):
        cfg = tiny_config(fake_dir, tmp_path / schedule, schedule=schedule, max_steps_per_epoch=4)
        s = train(cfg)
        groups = load_checkpoint(s["run_dir"]).optimizer_state["param_groups"]
        rows = [json.loads(line) for line in Path(s["run_dir"], "metrics.jsonl").read_text().splitlines()]
        assert [r["lr"] for r in rows if r.get("lr") is not None] == [cfg.lr_at(0), cfg.lr_at(1)]
        expected = cfg.lr_at(1, 3, 4) if schedule == "cosine-steps" else cfg.lr_at(1)
        assert groups[0]["lr"] == pytest.approx(expected, rel=1e-12)
        lasts[schedule] = groups[0]["lr"]
    assert lasts["cosine-steps"] < 0.1 * lasts["cosine"]


def test_on_epoch_end_receives_each_epochs_metrics(tmp_path) -> None:
    data = write_fake_fmnist(tmp_path / "data")
    rows = []
    train(tiny_config(data, tmp_path / "out", epochs=2), on_epoch_end=rows.append)
    logged = [json.loads(r) for r in (tmp_path / "out" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows == logged and [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["test_acc"] is not None and rows[0]["train_loss"] > 0


def test_named_augmentation_policy_trains_and_is_recorded(fake_dir, tmp_path) -> None:
    """``augment=autoaugment-cifar10-authors`` (the authors' PIL policy) trains on any data
    (here 1-channel images) and the checkpoint names the policy, not the data set."""
    summary = train(tiny_config(fake_dir, tmp_path, epochs=1, augment="autoaugment-cifar10-authors"))
    assert summary["status"] == "completed"
    header = load_checkpoint(tmp_path / "run").header
    assert header["augment_policy"] == "autoaugment-cifar10-authors"
