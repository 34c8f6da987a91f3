"""The run directory of :func:`mgiad.training.loop.train`: where a new run goes
(:func:`create_run_dir`, locked, never two runs in one directory), and what a run directory
says about the run it holds (:func:`load_run_config`, :func:`resume_config`, :func:`read_json`)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from .config import RunConfig
from .lock import RunLock
from .trajectory import NEUTRAL_KEYS, trajectory_changes

#: Keys a resumed run may change: they do not alter the training trajectory.
RESUME_MUTABLE = NEUTRAL_KEYS


def load_run_config(run_dir: str | os.PathLike[str], *, check_names: bool = True) -> RunConfig:
    """The resolved configuration a run directory was started with (``check_names=False``: a
    run of data and model passed in by :func:`mgiad.train`, whose names are labels)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ValueError(
            f"{run_dir} is not a run directory (no config.json); pass the directory that "
            "`mgiad train` created"
        )
    return RunConfig.from_file(path, check_names=check_names)


def resume_config(run_dir: Path, cfg: RunConfig | None, *, check_names: bool = True) -> RunConfig:
    """The configuration to resume ``run_dir`` with: its own, or ``cfg`` if that differs from
    it only in :data:`RESUME_MUTABLE` keys (anything else would change the trajectory)."""
    saved = load_run_config(run_dir, check_names=check_names)
    if cfg is None:
        return saved
    cfg = cfg.resolved()
    # Compared in their JSON forms: a tuple given in Python equals the list config.json holds.
    changed = trajectory_changes(saved, cfg)
    if changed:
        diffs = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(cfg, k)!r}" for k in changed)
        raise ValueError(
            f"cannot change {diffs} when resuming {run_dir}: it would change the training "
            f"trajectory; start a new run instead (changeable on resume: {', '.join(sorted(RESUME_MUTABLE))})"
        )
    return cfg


def run_name(cfg: RunConfig) -> str:
    """``run_name``, or ``MODEL-DATA-sSEED-YYYYmmdd-HHMMSS`` (``imagefolder:/data/pets`` ->
    ``imagefolder-pets``: a path is not a file name)."""
    if cfg.run_name:
        return cfg.run_name
    data = cfg.dataset
    if ":" in data:
        kind, path = data.split(":", 1)
        data = re.sub(r"[^A-Za-z0-9_.]+", "-", f"{kind}-{Path(path).name}")
    return f"{cfg.model}-{data}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_run_dir(cfg: RunConfig) -> tuple[Path, RunLock]:
    """A new run directory in ``out_dir``, locked (one trainer per directory). A chosen
    ``run_name`` that already holds a run is refused (resume it instead); a generated name
    never collides with a run started in the same second."""
    base = Path(cfg.out_dir)
    path = base / run_name(cfg)
    if cfg.run_name is not None:
        if path.exists() and any(p.name != RunLock.NAME for p in path.iterdir()):
            raise ValueError(
                f"run directory {path} already exists; continue it with "
                f"`mgiad train --resume {path}` or choose another run_name"
            )
        path.mkdir(parents=True, exist_ok=True)
    else:
        base.mkdir(parents=True, exist_ok=True)
        stem = path.name
        for i in range(1, 1000):
            try:
                path.mkdir()
                break
            except FileExistsError:
                path = base / f"{stem}-{i + 1}"
    return path, RunLock(path).acquire()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` if it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
