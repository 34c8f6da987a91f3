"""Real data sets the tests read, and what a test does when one is not on this machine.

A test that needs real data it cannot find is *skipped* with one line naming the data and how to
get it — a new user's `make test` on a machine without ``../shared`` passes — except under
``CI=true``, where missing data *fails*: CI must run every test, never skip one silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Debian's dataset-fashion-mnist (what `make` installs as root)
FASHIONMNIST = Path("/usr/share/datasets/fashion-mnist")

HOW = {
    "CIFAR-10": "put the exact CIFAR-10 as train.npz/test.npz in ../shared/data/cifar10 beside the "
                "checkout (or $MGIAD_SHARED/data/cifar10), or fetch it with `mgiad train --dataset "
                "cifar10 --download --epochs 1`",
    "FashionMNIST": "apt-get install dataset-fashion-mnist (Debian; `make test` does it as root), "
                    "or fetch it with `mgiad demo --download`",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def cifar10_dir() -> Path:
    """The real CIFAR-10 npz folder: $MGIAD_SHARED's, else the one beside the checkout."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
    env = os.environ.get("MGIAD_SHARED")
    candidates = [Path(env) / "data" / "cifar10", Path(env) / "cifar10"] if env else []
    return next((c for c in candidates if c.is_dir()), default)


def require(name: str, path: Path, file: str | None = None) -> Path:
    """``path`` (holding ``file`` when given) or skip — fail under CI=true — naming the data."""
    if (path / file).is_file() if file else path.is_dir():
        return path
    message = f"needs real {name} at {path / file if file else path}: {HOW[name]}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: missing data fails)")
    pytest.skip(message)


def require_cifar10() -> Path:
    return require("CIFAR-10", cifar10_dir(), "test.npz")


def require_fashionmnist() -> Path:
    return require("FashionMNIST", FASHIONMNIST, "train-images-idx3-ubyte.gz")
