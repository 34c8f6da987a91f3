"""A run's identity: which configuration keys change what a run computes, one hash of them and
one comparison.

:func:`trajectory_hash` is the identity that resume (a checkpoint's ``config_hash``) and sweeps
(a job's ``config_key``, :func:`mgiad.experiments.records.record_key`) both check;
:func:`trajectory_changes` names the keys in which two configurations differ in it, for the
messages of ``mgiad train --resume`` (:func:`mgiad.training.rundir.resume_config`) and of a sweep
whose experiment file changed (:mod:`mgiad.experiments.variant`, :mod:`mgiad.experiments.records`).
:class:`~mgiad.training.config.RunConfig` offers the hash as :meth:`trajectory_hash` and
:meth:`matches_trajectory`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mgiad.data.policies import LEGACY_RECIPES, recipe_policy

if TYPE_CHECKING:
    from .config import RunConfig

#: Keys that do not change what a run computes: a resumed run may change them
#: (``mgiad train --resume``), and they are left out of a run's identity
#: (:meth:`RunConfig.trajectory_hash`: checkpoints' ``config_hash``, sweeps' ``config_key``).
NEUTRAL_KEYS = frozenset(
    {"data_dir", "download", "device", "threads", "compile", "eval_every", "time_budget_s",
     "tensorboard", "out_dir", "run_name", "track", "track_project"}
)


def trajectory_hash(cfg: RunConfig) -> str:
    """16 hex digits of SHA-256 over the resolved keys that change what the run computes
    (all but :data:`NEUTRAL_KEYS`): equal hashes, equal training trajectories."""
    return _digest(cfg.resolved())


def matches_trajectory(cfg: RunConfig, recorded_hash: str | None) -> bool:
    """Whether ``recorded_hash`` (a checkpoint's ``config_hash``, a record's ``config_key``)
    names ``cfg``'s trajectory: :func:`trajectory_hash`, or the hash that a run of it was given
    before 2026-12-07, when ``augment=paper`` was hashed by that name instead of the policy it
    picks."""
    cfg = cfg.resolved()
    names = [cfg.augment] + [old for old in LEGACY_RECIPES
                             if recipe_policy(old, cfg.dataset) == cfg.augment]
    return any(recorded_hash == _digest(dataclasses.replace(cfg, augment=name))
               for name in names)


def trajectory_changes(old: RunConfig | Mapping[str, Any],
                       new: RunConfig | Mapping[str, Any]) -> list[str]:
    """The keys that change the trajectory (all but :data:`NEUTRAL_KEYS`) whose values differ
    from ``old`` to ``new``, in ``new``'s order; for two :class:`RunConfig` s it is empty exactly
    when their :func:`trajectory_hash` es are equal.

    A ``RunConfig`` is compared in its resolved JSON form (what :func:`trajectory_hash` digests),
    a mapping as it is (the JSON form of a config: ``config.json``, a job's or a record's
    ``config``; a key it lacks differs). JSON forms, so that a tuple given in Python equals the
    list config.json holds.
    """
    before, after = _trajectory_items(old), _trajectory_items(new)
    return [k for k in after if before.get(k) != after[k]]


def _trajectory_items(cfg: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    values = cfg if isinstance(cfg, Mapping) else cfg.resolved().to_dict()
    return {k: v for k, v in values.items() if k not in NEUTRAL_KEYS}


def _digest(cfg: RunConfig) -> str:
    d = _trajectory_items(cfg.to_dict())
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
