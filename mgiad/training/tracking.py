"""Experiment tracking: Weights & Biases and MLflow, off by default (``--track=wandb,mlflow``).

Each tracker gets the run's configuration once, every epoch's metrics (the ``metrics.jsonl`` row)
at step = epoch, and the summary at the end. A resumed run continues its tracked run (W&B: the
run id of mgiad's run; MLflow: the id kept in ``RUN_DIR/mlflow_run_id``). Both work offline:
``WANDB_MODE=offline`` writes under ``RUN_DIR/wandb``; MLflow logs to ``$MLFLOW_TRACKING_URI``
(default ``./mlruns``). Tracking never stops training: a tracker that fails mid-run is switched
off with one warning; the run's own files are the record.
"""

from __future__ import annotations

import json
import numbers
import os
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["TRACKERS", "Trackers", "parse_trackers"]

TRACKERS = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}  # name: (module, extra)


def parse_trackers(value: str | None) -> list[str]:
    """``"wandb,mlflow"`` -> ``["wandb", "mlflow"]``; ``None``/``""``/``"none"`` -> ``[]``."""
    if value is None or value.strip().lower() in ("", "none"):
        return []
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in TRACKERS:
            raise ValueError(f"track={value!r}: unknown tracker {n!r}; choose from "
                             f"{', '.join(TRACKERS)} (comma-separated) or none")
    return list(dict.fromkeys(names))


def check_installed(names: list[str]) -> None:
    """Fail before training when a chosen tracker's package is missing."""
    import importlib.util

    for n in names:
        module, extra = TRACKERS[n]
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"track={n} needs the {module} package: pip install 'mgiad[{extra}]'")


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and k != "epoch"}


class Trackers:
    """The chosen trackers of one run (the main process only)."""

    def __init__(self, names: list[str], *, run_dir: Path, run_id: str, project: str,
                 config: dict[str, Any]) -> None:
        self.active: dict[str, Any] = {}
        for name in names:
            self._guard(name, lambda n=name: self.active.__setitem__(
                n, getattr(self, f"_start_{n}")(run_dir, run_id, project, config)))

    def _guard(self, name: str, fn: Any) -> None:
        try:
            fn()
        except Exception as e:  # a tracker's outage must not end a training run
            self.active.pop(name, None)
            warnings.warn(f"{name} tracking is off for the rest of this run: {type(e).__name__}: "
                          f"{e} (the run's files keep every metric)", stacklevel=3)

    # -- W&B ------------------------------------------------------------------------------------

    @staticmethod
    def _start_wandb(run_dir: Path, run_id: str, project: str, config: dict[str, Any]) -> Any:
        import wandb

        return wandb.init(project=project, name=run_dir.name, id=run_id, resume="allow",
                          dir=str(run_dir), config=config, reinit="create_new")

    # -- MLflow ---------------------------------------------------------------------------------

    @staticmethod
    def _start_mlflow(run_dir: Path, run_id: str, project: str, config: dict[str, Any]) -> Any:
        import mlflow

        _default_mlflow_store(mlflow, run_dir.parent / "mlruns")
        id_file = run_dir / "mlflow_run_id"
        mlflow.set_experiment(project)
        if id_file.is_file():  # a resumed run continues its MLflow run
            return mlflow.start_run(run_id=id_file.read_text().strip())
        run = mlflow.start_run(run_name=run_dir.name, tags={"mgiad_run_id": run_id})
        id_file.write_text(run.info.run_id + "\n")
        flat = {k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in config.items()}
        mlflow.log_params(flat)
        return run

    # -- every epoch, and the end ---------------------------------------------------------------

    def log(self, row: dict[str, Any]) -> None:
        metrics, step = _scalars(row), int(row["epoch"])
        if "wandb" in self.active:
            self._guard("wandb", lambda: self.active["wandb"].log(metrics, step=step))
        if "mlflow" in self.active:
            import mlflow

            self._guard("mlflow", lambda: mlflow.log_metrics(metrics, step=step))

    def finish(self, summary: dict[str, Any]) -> None:
        status = summary.get("status", "completed")
        if "wandb" in self.active:
            run = self.active["wandb"]

            def end_wandb() -> None:
                run.summary.update({k: v for k, v in summary.items()
                                    if isinstance(v, (numbers.Real, str)) and v is not None})
                run.finish(exit_code=0 if status in ("completed", "time_budget") else 1)

            self._guard("wandb", end_wandb)
        if "mlflow" in self.active:
            import mlflow

            mlflow_status = {"completed": "FINISHED", "time_budget": "FINISHED",
                             "interrupted": "KILLED"}.get(status, "FAILED")
            self._guard("mlflow", lambda: mlflow.end_run(status=mlflow_status))
        self.active.clear()


def _default_mlflow_store(mlflow: Any, store: Path) -> None:
    """Where no tracking URI is chosen, MLflow 3 logs to ``sqlite:///mlflow.db``, which needs
    SQLAlchemy, which the ``[mlflow]`` extra (mlflow-skinny) does not install: every call would
    fail. Log to a file store beside the run directories instead (MLflow 3 wants the opt-in
    ``MLFLOW_ALLOW_FILE_STORE`` for it), and say where."""
    import importlib.util

    if os.environ.get("MLFLOW_TRACKING_URI") or not mlflow.get_tracking_uri().startswith("sqlite"):
        return
    if importlib.util.find_spec("sqlalchemy") is not None:
        return
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(store.resolve().as_uri())
    print(f"mgiad: MLflow logs to {store} (MLflow's default sqlite:///mlflow.db needs SQLAlchemy, "
          "which mlflow-skinny lacks; set MLFLOW_TRACKING_URI to log elsewhere; view with "
          f"`mlflow ui --backend-store-uri {store.resolve().as_uri()}`)", file=sys.stderr, flush=True)
