"""timm's model interface on every network, and the models inside timm when it is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import mgiad
from mgiad.models.classifier import DATA_CFG

NAMES = mgiad.list_models()


def _x(model: torch.nn.Module, n: int = 2) -> torch.Tensor:
    return torch.randn(n, model.in_chans, 16, 16)


@pytest.mark.parametrize("name", NAMES)
def test_classifier_interface(name: str) -> None:
    torch.manual_seed(0)
    model = mgiad.create_model(name, num_classes=5).eval()
    x = _x(model)
    feats = model.forward_features(x)
    assert feats.shape[:2] == (2, model.num_features) and feats.dim() == 4
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(model(x), model.forward_head(feats), rtol=0, atol=0)
    assert model.get_classifier().out_features == 5
    assert set(model.state_dict()) >= {"head.2.weight", "head.2.bias"}  # checkpoints keep their keys
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features) and model.num_classes == 0
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3


def test_feature_extractor_and_config() -> None:
    model = mgiad.create_model("mgiad_3lvl_fmnist", num_classes=0)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 64)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == DATA_CFG["fashionmnist"]["input_size"] and cfg["mean"] == (0.2860,)
    assert cfg["classifier"] == "head.2" and cfg["first_conv"] == "stem.0"
    assert mgiad.create_model("mgiad", pretrained_cfg_overlay={"crop_pct": 0.9}).pretrained_cfg["crop_pct"] == 0.9


def test_drop_rate_acts_in_training_only() -> None:
    torch.manual_seed(0)
    model = mgiad.create_model("resnet20", drop_rate=0.5)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    plain = mgiad.create_model("resnet20")
    plain.load_state_dict(model.state_dict())
    plain.eval()
    torch.testing.assert_close(model(x), plain(x))
    model.train(), plain.train()
    feats = model.forward_features(x)
    assert not torch.allclose(model.forward_head(feats), plain.forward_head(feats))


@pytest.mark.parametrize("kwargs,match", [
    ({"pretrained": True}, "no pretrained weights for 'mgnet_ab'"),
    ({"out_indices": (0, 1)}, "go with features_only=True"),
    ({"features_only": True, "feature_cls": "list"}, "pass three tensors"),
    ({"drop_path_rate": 0.1}, "drop_path_rate"),
    ({"global_pool": "max"}, "global_pool='max'"),
    ({"drop_rate": 1.5}, r"drop_rate must be a number in \[0, 1\)"),
    ({"num_classes": -1}, "num_classes must be an integer >= 0"),
])
def test_arguments_we_cannot_honour_are_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        mgiad.create_model("mgnet_ab" if kwargs.get("pretrained") else "mgiad_3lvl", **kwargs)


TIMM_SCRIPT = r"""
import sys
order = sys.argv[1]
if order == "mgiad-first":
    import mgiad, timm
else:
    import timm, mgiad
import torch
names = timm.list_models("mgiad*")
assert "mgiad_3lvl" in names and "mgiad_resnet20" in names and "mgiad_mgnet_ab" in names, names
assert "resnet20" not in names
m = timm.create_model("mgiad_3lvl", num_classes=7, in_chans=1, drop_rate=0.1)
assert type(m).__name__ == "MGiaD" and m.num_classes == 7 and m.in_chans == 1
assert m(torch.randn(2, 1, 28, 28)).shape == (2, 7)
assert m.pretrained_cfg["input_size"] == (1, 28, 28)
assert type(timm.create_model("resnet18")).__module__.startswith("timm.")  # timm's own, untouched
try:
    timm.create_model("mgiad_mgnet_ab", pretrained=True)
except ValueError as e:
    assert "no pretrained weights" in str(e)
else:
    raise AssertionError("pretrained=True without weights did not fail")
print("ok")
"""


@pytest.mark.parametrize("order", ["mgiad-first", "timm-first"])
def test_timm_create_model(order: str) -> None:
    pytest.importorskip("timm")
    res = subprocess.run([sys.executable, "-c", TIMM_SCRIPT, order], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_torch_hub_local(tmp_path, monkeypatch) -> None:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hubconf = torch.hub._import_module("hubconf", str(repo / "hubconf.py"))  # what hub.load reads
    entries = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")}
    assert entries == set(NAMES)
    model = torch.hub.load(str(repo), "mgiad_3lvl", source="local", num_classes=4, c_K=8)
    assert type(model).__name__ == "MGiaD" and model.c_K == 8
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_timm_training_pipeline_on_an_image_folder(tmp_path) -> None:
    """What timm's train.py does, with timm's own pieces: create_model by name, resolve the data
    config, a folder dataset and loader with timm's transforms, timm's optimizer and scheduler;
    the loss falls over a few steps. (train.py itself is not in the timm wheel:
    benchmarks/timm_train.sh runs it; results/timm/train-py.txt.)"""
    timm = pytest.importorskip("timm")
    from PIL import Image
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    g = torch.Generator().manual_seed(0)
    for k, name in enumerate(("cat", "dog")):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(16):
            a = torch.randint(0, 60, (32, 32, 3), generator=g, dtype=torch.uint8)
            a[8 * k: 8 * k + 8] += 180  # class k is bright in its own band
            Image.fromarray(a.numpy()).save(tmp_path / "train" / name / f"{i}.png")
    torch.manual_seed(0)
    model = timm.create_model("mgiad_3lvl", pretrained=False, num_classes=2, drop_rate=0.1)
    cfg = resolve_data_config({}, model=model)
    assert cfg["input_size"] == (3, 32, 32)
    dataset = create_dataset("", root=str(tmp_path), split="train", is_training=True)
    loader = create_loader(dataset, input_size=cfg["input_size"], batch_size=8, is_training=True,
                           use_prefetcher=False, mean=cfg["mean"], std=cfg["std"], num_workers=0,
                           no_aug=True)
    optimizer = create_optimizer_v2(model, opt="sgd", lr=0.05, momentum=0.9)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=4)
    losses = []
    for epoch in range(4):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step(epoch + 1)
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses
