"""Every invalid hyper-parameter is a ValueError naming the parameter, the value and the fix."""

from __future__ import annotations

import pytest
import torch

import mgiad
from mgiad.models.registry import register_model


@pytest.mark.parametrize(
    "name, kwargs, words",
    [
        ("mgiad", {"g_s": 5}, ["g_s=5", "divisor", "128"]),
        ("mgiad", {"g_s": 0}, ["g_s", ">= 1", "0"]),
        ("mgiad", {"g_s": 3, "c_K": 64}, ["g_s=3", "does not divide"]),
        ("mgiad", {"c_K": 128}, ["c_K=128", "larger", "64"]),
        ("mgiad", {"c_K": 0}, ["c_K", ">= 1"]),
        ("mgiad", {"c_K": 4, "g_s": 1, "widths": (30, 60)}, ["c_K=4", "not reachable by halving", "30 -> 15"]),
        ("mgiad", {"lam": 0}, ["lam", "> 0", "0"]),
        ("mgiad", {"lam": -1.0}, ["lam", "> 0"]),
        ("mgiad", {"lam": 1.01}, ["lam=1.01", "non-integer width"]),
        ("mgiad", {"eta_pre": -1}, ["eta_pre", ">= 0", "-1"]),
        ("mgiad", {"eta_post": -2}, ["eta_post", ">= 0"]),
        ("mgiad", {"eta_pre": 0, "eta_post": 0}, ["eta_pre + eta_post", ">= 1"]),
        ("mgiad", {"eta_post": 1.5}, ["eta_post", "integer", "1.5"]),
        ("mgiad", {"levels": 5}, ["levels", "3 or 4", "5"]),
        ("mgiad", {"num_classes": -1}, ["num_classes", ">= 0"]),  # 0: no classifier (timm)
        ("mgiad", {"in_chans": 0}, ["in_chans", ">= 1"]),
        ("mgiad", {"widths": ()}, ["widths", "at least one"]),
        ("mgiad", {"widths": (64, -8)}, ["widths[1]", ">= 1", "-8"]),
        ("mgiad", {"gs": 4}, ["'gs'", "g_s"]),
        ("mgnet_ab", {"nu": 0}, ["nu", ">= 1", "0"]),
        ("mgnet_ab", {"nu": -1}, ["nu", ">= 1"]),
        ("mgnet_ab", {"g_s": 48}, ["g_s=48", "does not divide", "64"]),
        ("resnet18", {"shortcut": "C"}, ["shortcut", "'A'", "'B'"]),
        ("resnet20", {"blocks": (3, 3)}, ["blocks", "one count per stage"]),
        ("mgic", {"g": 1}, ["g", ">= 2"]),
    ],
)
def test_bad_hyperparameters(name: str, kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        mgiad.create_model(name, **kwargs)
    message = str(info.value)
    for w in words:
        assert w in message, f"{w!r} not in {message!r}"


def test_unknown_model_name_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="did you mean mgiad"):
        mgiad.create_model("mgaid")
    with pytest.raises(ValueError, match="unknown model name 'zzz'"):
        mgiad.create_model("zzz")


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("mgiad", mgiad.models.MGiaD)
    with pytest.raises(ValueError, match="not arguments"):
        register_model("mgiad_bad_default", mgiad.models.MGiaD, c_k=3)
    assert "mgiad_bad_default" not in mgiad.list_models()


@pytest.mark.parametrize("name", ["mgiad", "mgnet_ab", "resnet20", "mgic_3lvl"])
def test_wrong_in_chans_at_forward(name: str) -> None:
    model = mgiad.create_model(name)
    with pytest.raises(ValueError, match=r"input has 1 channels but the model was built with in_chans=3"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D input"):
        model(torch.randn(3, 32, 32))
