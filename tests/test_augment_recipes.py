"""Augmentation recipes by name: the authors' recipe is the default (the paper names none), the
old name ``paper`` still means what it did (torchvision's policy on CIFAR-10), and runs recorded
under it keep their identity."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from mgiad.data.policies import AUGMENT_MODES, POLICIES, RECIPES, recipe_policy
from mgiad.training.config import RunConfig


def test_the_default_is_the_authors_recipe() -> None:
    assert RunConfig().augment == "authors"
    picks = {d: RunConfig(dataset=d).resolved().augment for d in ("cifar10", "cifar100", "fmnist")}
    # CIFAR-10: Poly-MgNet's Cifar10DataReader; CIFAR-100: Cifar100DataReader (reflect crop);
    # FashionMNIST: FashionMNISTDataReader (nothing)
    assert picks == {"cifar10": "autoaugment-cifar10-authors", "cifar100": "crop-flip-reflect",
                     "fmnist": "none"}


def test_recipes_pick_policies_and_refuse_unknown_names() -> None:
    assert set(AUGMENT_MODES) == {*RECIPES, *POLICIES, "paper"}
    assert recipe_policy("torchvision", "CIFAR-10") == "autoaugment-cifar10"
    assert recipe_policy("paper", "cifar10") == "autoaugment-cifar10"  # its old meaning
    assert recipe_policy("crop-flip", "anything") == "crop-flip"
    assert recipe_policy("authors", "my-pets") is None  # your own data: no choice
    with pytest.raises(ValueError, match="unknown augmentation 'bogus'; expected one of authors"):
        recipe_policy("bogus", "cifar10")
    with pytest.raises(ValueError, match="augment"):
        RunConfig(augment="bogus").validate()


def test_equal_runs_have_equal_identities() -> None:
    """A recipe and the policy it picks train the same: same trajectory hash."""
    by_recipe = RunConfig(augment="authors").trajectory_hash()
    assert by_recipe == RunConfig(augment="autoaugment-cifar10-authors").trajectory_hash()
    assert RunConfig(augment="paper").trajectory_hash() == RunConfig(augment="torchvision").trajectory_hash()
    assert by_recipe != RunConfig(augment="torchvision").trajectory_hash()


def test_checkpoints_hashed_under_the_old_name_still_resume() -> None:
    """Before 2026-12-07 ``paper`` was hashed by its name: a checkpoint of such a run carries
    that hash, and its run (config.json says ``paper``) must still be recognised."""
    import dataclasses
    import hashlib
    import json

    from mgiad.training.config import NEUTRAL_KEYS

    cfg = RunConfig(augment="paper", epochs=2)
    old = dataclasses.replace(cfg.resolved(), augment="paper").to_dict()
    old_hash = hashlib.sha256(json.dumps({k: v for k, v in old.items() if k not in NEUTRAL_KEYS},
                                         sort_keys=True).encode()).hexdigest()[:16]
    assert old_hash != cfg.trajectory_hash()
    for same in (cfg, cfg.resolved(), RunConfig(augment="torchvision", epochs=2)):
        assert same.matches_trajectory(old_hash) and same.matches_trajectory(cfg.trajectory_hash())
    assert not RunConfig(augment="authors", epochs=2).matches_trajectory(old_hash)
    assert not cfg.matches_trajectory(None)


def test_deprecated_paper_augment_keeps_its_behaviour() -> None:
    from mgiad.data import paper_augment

    with pytest.warns(DeprecationWarning, match="paper names no augmentation"):
        aug = paper_augment("cifar10", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert (aug.autoaugment, aug.policy, aug.crop_fill) == (True, "torchvision", 0)


def test_policy_names_load_no_torch() -> None:
    code = ("import sys, mgiad.data.policies, mgiad.training.config; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_training_with_the_old_name_warns(tmp_path) -> None:
    from mgiad.training.loop import train

    cfg = RunConfig(model="resnet20", model_kwargs={"widths": [4, 8, 16]}, dataset="fashionmnist",
                    augment="paper", epochs=1, max_steps_per_epoch=1, subset_train=32,
                    subset_test=16, batch_size=16, out_dir=str(tmp_path), tensorboard=False,
                    threads=1, data_dir="/nonexistent-so-it-stops-early")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            train(cfg)
    assert any("augment=paper is the old name of augment=torchvision" in str(w.message)
               for w in caught)
