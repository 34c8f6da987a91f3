"""Experiment tracking (mgiad/training/tracking.py) in the trackers' offline modes: MLflow with a
local file store, W&B with WANDB_MODE=offline. Every epoch's metrics arrive at step = epoch, a
resumed run continues its tracked run, a tracker failing mid-run does not stop training, and a
missing tracker package fails before any work."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from test_train import tiny_config, write_fake_fmnist

from mgiad.training.loop import train


def _local_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local file store (mlflow-skinny has no database backend; MLflow 3 wants the opt-in)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory) -> Path:
    return write_fake_fmnist(tmp_path_factory.mktemp("fmnist"))


def test_mlflow_gets_every_epoch_and_a_resumed_run_continues(fake_dir, tmp_path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    _local_mlflow(tmp_path, monkeypatch)
    cfg = tiny_config(fake_dir, tmp_path / "runs", epochs=3, track="mlflow", track_project="tiny",
                      time_budget_s=1e-3)  # stops after epoch 1, "time_budget"
    assert train(cfg)["epochs_done"] == 1
    run_dir = tmp_path / "runs" / "run"
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    summary = train(tiny_config(fake_dir, tmp_path / "runs", epochs=3, track="mlflow",
                                track_project="tiny"), resume=run_dir)
    assert summary["status"] == "completed"
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["model"] == "mgiad_3lvl"
    history = client.get_metric_history(run_id, "test_acc")
    assert [m.step for m in history] == [1, 2, 3]
    assert history[-1].value == pytest.approx(summary["final_test_acc"])
    assert len(client.search_runs([run.info.experiment_id])) == 1  # one tracked run, continued


def test_mlflow_default_store_works_with_the_extra_as_installed(fake_dir, tmp_path, monkeypatch,
                                                              capsys) -> None:
    """No MLFLOW_TRACKING_URI: MLflow 3's default is sqlite, which the [mlflow] extra cannot
    open (no SQLAlchemy); the run logs to a file store beside the run directories and says so."""
    mlflow = pytest.importorskip("mlflow")
    import importlib.util

    if importlib.util.find_spec("sqlalchemy") is not None:
        pytest.skip("SQLAlchemy is installed: MLflow's default store works as it is")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"):  # restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)  # MLflow's own default, whatever an earlier test chose
    try:
        assert mlflow.get_tracking_uri().startswith("sqlite")
        summary = train(tiny_config(fake_dir, tmp_path / "runs", epochs=2, track="mlflow"))
        store = tmp_path / "runs" / "mlruns"
        assert f"MLflow logs to {store}" in capsys.readouterr().err
        run_id = (tmp_path / "runs" / "run" / "mlflow_run_id").read_text().strip()
        history = mlflow.tracking.MlflowClient(store.as_uri()).get_metric_history(run_id, "test_acc")
        assert [m.step for m in history] == [1, 2]
        assert history[-1].value == pytest.approx(summary["final_test_acc"])
    finally:
        mlflow.set_tracking_uri(None)  # mgiad chose the store for this process: unset it again


def test_wandb_offline_run_is_written_under_the_run(fake_dir, tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(tiny_config(fake_dir, tmp_path / "runs", epochs=2, track="wandb"))
    run_dir = tmp_path / "runs" / "run"
    import json

    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    (offline,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    (log,) = offline.glob("*.wandb")
    # wandb's service process (wandb-core) may still be writing its log after finish() returns:
    # on one loaded core the file held only its 7-byte header at first
    deadline = time.monotonic() + 60
    while not (b"test_acc" in (data := log.read_bytes()) and b"train_loss" in data) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert b"test_acc" in data and b"train_loss" in data  # the epoch rows went in


def test_a_failing_tracker_does_not_stop_training(fake_dir, tmp_path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    _local_mlflow(tmp_path, monkeypatch)

    def down(*args, **kwargs):
        raise ConnectionError("tracking server unreachable")

    monkeypatch.setattr(mlflow, "log_metrics", down)
    with pytest.warns(UserWarning, match="mlflow tracking is off for the rest of this run.*unreachable"):
        summary = train(tiny_config(fake_dir, tmp_path / "runs", epochs=2, track="mlflow"))
    assert summary["status"] == "completed" and summary["epochs_done"] == 2


def test_unknown_or_missing_tracker_fails_before_work(fake_dir, tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="unknown tracker 'neptune'"):
        tiny_config(fake_dir, tmp_path / "runs", track="wandb,neptune").validate()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'mgiad\[wandb\]'"):
        train(tiny_config(fake_dir, tmp_path / "runs", track="wandb"))
    assert not (tmp_path / "runs").exists()
