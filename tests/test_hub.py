"""Hugging Face interface (mgiad/models/hub.py, docs/hub.md): every model records the config that
rebuilds it; ``save_pretrained``/``from_pretrained`` round-trip architecture, weights, drop_rate
and pretrained_cfg; a hand-written config that does not rebuild the model is refused at save
time; loading runs nothing from the folder; ``push_to_hub`` uploads what ``save_pretrained``
writes (mocked: no network in tests); huggingface_hub stays optional."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mgiad
from mgiad.models import MGiaD, ResNet

TINY = dict(widths=(8, 16, 32), c_K=4, g_s=4)  # a 3-level MGiaD of ~10k weights


def _x(in_chans: int = 3) -> torch.Tensor:
    return torch.randn(2, in_chans, 32, 32, generator=torch.Generator().manual_seed(0))


def _same_logits(a: torch.nn.Module, b: torch.nn.Module, in_chans: int = 3) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(_x(in_chans)), b.eval()(_x(in_chans)))


@pytest.mark.parametrize("build", [
    lambda: mgiad.create_model("mgiad_3lvl", **TINY, num_classes=4, drop_rate=0.25),
    lambda: mgiad.create_model("resnet20", widths=(4, 8, 16), in_chans=1, num_classes=3),
    lambda: MGiaD(levels=3, **TINY, num_classes=5, transfer_norm=False),  # built from its class
    lambda: ResNet(widths=(4, 8), blocks=1, shortcut="A", num_classes=2),
], ids=["create_model", "resnet20", "MGiaD-class", "ResNet-class"])
def test_round_trip_rebuilds_the_model(build, tmp_path) -> None:
    model = build()
    assert model.save_pretrained(tmp_path / "m") is None  # huggingface_hub's return: no push
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = type(model).from_pretrained(tmp_path / "m")
    assert type(loaded) is type(model) and not loaded.training
    assert (loaded.num_classes, loaded.in_chans, loaded.drop_rate) == \
        (model.num_classes, model.in_chans, model.drop_rate)
    assert loaded.config == model.config
    assert _same_logits(model, loaded, model.in_chans)


def test_config_records_variant_drop_rate_and_data_cfg(tmp_path) -> None:
    """The issue's case: c_K/g_s variants, drop_rate and the pretrained cfg's mean/std/classes."""
    model = mgiad.create_model("mgiad_3lvl", **TINY, num_classes=3, drop_rate=0.1,
                               pretrained_cfg_overlay=dict(mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0),
                                                           label_names=("cat", "dog", "eel")))
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model"] == "mgiad_3lvl"
    assert cfg["model_kwargs"] == {"widths": [8, 16, 32], "c_K": 4, "g_s": 4}
    assert (cfg["num_classes"], cfg["in_chans"], cfg["drop_rate"]) == (3, 3, 0.1)
    assert (cfg["mean"], cfg["std"], cfg["classes"]) == ([0.1, 0.2, 0.3], [1.0, 2.0, 3.0], ["cat", "dog", "eel"])
    assert cfg["library"] == "mgiad" and "file" not in cfg["pretrained_cfg"]
    loaded = mgiad.from_pretrained(tmp_path)
    assert loaded.drop_rate == 0.1
    assert loaded.pretrained_cfg["mean"] == (0.1, 0.2, 0.3)
    assert loaded.pretrained_cfg["label_names"] == ("cat", "dog", "eel")
    assert loaded.pretrained_cfg["input_size"] == (3, 32, 32)


def test_published_weights_keep_their_name_classes_and_normalisation(tmp_path) -> None:
    model = mgiad.create_model("mgiad_3lvl_fmnist.fashionmnist", pretrained=True)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert (cfg["model"], cfg["model_kwargs"], cfg["in_chans"]) == ("mgiad_3lvl_fmnist", {}, 1)
    assert cfg["classes"][0] == "T-shirt/top" and cfg["mean"] == [0.286] and cfg["input_size"] == 28
    loaded = mgiad.from_pretrained(tmp_path)
    with torch.no_grad():
        x = torch.randn(2, 1, 28, 28)
        assert torch.equal(loaded(x), model.eval()(x))


def test_changes_after_building_are_recorded(tmp_path) -> None:
    """num_classes after reset_classifier, drop_rate and checkpointing set on the model."""
    model = mgiad.create_model("mgiad_3lvl", **TINY)
    model.reset_classifier(7)
    model.drop_rate = 0.3
    model.set_grad_checkpointing(True)
    cfg = model.config
    assert (cfg["num_classes"], cfg["drop_rate"], cfg["model_kwargs"]["memory_efficient"]) == (7, 0.3, True)
    model.save_pretrained(tmp_path)
    loaded = MGiaD.from_pretrained(tmp_path)
    assert (loaded.num_classes, loaded.drop_rate, loaded.memory_efficient) == (7, 0.3, True)


def test_timm_models_record_their_config(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("mgiad_3lvl", **TINY, num_classes=4, drop_rate=0.2)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert (cfg["model"], cfg["num_classes"], cfg["drop_rate"]) == ("mgiad_3lvl", 4, 0.2)
    assert _same_logits(model, mgiad.from_pretrained(tmp_path))


# -- a hand-written config (the older functional API) is checked at save time ----------------


def test_the_issue_case_is_refused_at_save_time(tmp_path) -> None:
    """A c_K=16 model saved as plain "mgiad" was written and failed only at load."""
    model = mgiad.create_model("mgiad", c_K=16)
    with pytest.raises(ValueError, match=r"builds c_K=64 \(the model has 16\).*without a config"):
        mgiad.save_pretrained(model, tmp_path / "m", {"model": "mgiad", "num_classes": 10, "in_chans": 3})
    assert not (tmp_path / "m").exists()
    mgiad.save_pretrained(model, tmp_path / "m")  # the model's own config
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_kwargs"] == {"c_K": 16}


@pytest.mark.parametrize("config, message", [
    ({"model": "mgiad", "model_kwargs": TINY}, r"builds levels=4 \(the model has 3\)"),
    ({"model": "resnet20"}, "builds a ResNet, the model is a MGiaD"),
    ({"model": "mgiad_3lvl", "model_kwargs": TINY, "num_classes": 5}, "num_classes=5, the model 4"),
    ({"model": "mgiad_3lvl", "model_kwargs": {**TINY, "g_s": 3}}, "cannot build a model"),
    ({"model": "mgiad_3lvl", "model_kwargs": {**TINY, "pretrained": True}}, "not hyper-parameters"),
    ({"model": "mgiad_4lvl"}, "unknown model name 'mgiad_4lvl'"),
])
def test_a_config_that_does_not_rebuild_the_model_is_refused(config, message, tmp_path) -> None:
    model = mgiad.create_model("mgiad_3lvl", **TINY, num_classes=4)
    config = {"num_classes": 4, "in_chans": 3, **config}
    with pytest.raises(ValueError, match=message):
        mgiad.save_pretrained(model, tmp_path / "m", config)
    assert not (tmp_path / "m").exists()


def test_a_shape_mismatch_names_the_weights(tmp_path) -> None:
    """A model built without a record (a hand-made subclass) is checked by its weights' shapes."""
    class Custom(ResNet):
        pass

    model = Custom(widths=(4, 8), blocks=1, shortcut="A")
    with pytest.raises(ValueError, match="records no config"):
        model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"builds a ResNet, the model is a Custom"):
        mgiad.save_pretrained(model, tmp_path / "m", {"model": "resnet20", "num_classes": 10, "in_chans": 3})
    plain = ResNet(widths=(4, 8), blocks=1, shortcut="A")
    plain.__dict__.pop("_init_kwargs")  # only the weights to compare
    with pytest.raises(ValueError, match=r"does not build the model's weights: .*of another shape"):
        mgiad.save_pretrained(plain, tmp_path / "m", {"model": "resnet20", "model_kwargs": {
            "widths": (4, 16), "blocks": 1}, "num_classes": 10, "in_chans": 3})
    assert not (tmp_path / "m").exists()


def test_a_model_changed_after_building_is_refused(tmp_path) -> None:
    model = mgiad.create_model("mgiad_3lvl", **TINY)
    model.prune_intermediate_layers([0])
    with pytest.raises(ValueError, match="changed after it was built.*state_dict"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_right_hand_written_config_still_works(tmp_path) -> None:
    """The older API: the config's mean/std/classes/input_size describe the data it was trained on."""
    model = mgiad.create_model("mgiad_3lvl", **TINY, num_classes=2)
    mgiad.save_pretrained(model, tmp_path, {"model": "mgiad_3lvl", "model_kwargs": TINY, "num_classes": 2,
                                            "in_chans": 3, "input_size": 40, "mean": [0.5] * 3,
                                            "classes": ["no", "yes"]})
    loaded = mgiad.from_pretrained(tmp_path)
    assert loaded.pretrained_cfg["input_size"] == (3, 40, 40)
    assert loaded.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert loaded.pretrained_cfg["label_names"] == ("no", "yes")
    assert _same_logits(model, loaded)


# -- loading runs nothing and refuses what is not an mgiad folder -----------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    mgiad.create_model("mgiad_3lvl", **TINY).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def _edit(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_a_foreign_config_is_refused(saved) -> None:
    (saved / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(ValueError, match="not an mgiad config, it lacks model, num_classes, in_chans"):
        mgiad.from_pretrained(saved)
    (saved / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an mgiad config"):
        mgiad.from_pretrained(saved)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not an mgiad config \(not JSON"):
        mgiad.from_pretrained(saved)


def test_a_config_cannot_make_the_loader_read_other_files(saved, tmp_path) -> None:
    """Only hyper-parameters: no weight file, timm switch or pretrained flag from config.json."""
    _edit(saved, model_kwargs={"pretrained_cfg_overlay": {"file": str(tmp_path / "evil.pth")}})
    with pytest.raises(ValueError, match=r"\['pretrained_cfg_overlay'\] are not hyper-parameters of mgiad_3lvl"):
        mgiad.from_pretrained(saved)
    _edit(saved, model="os.system", model_kwargs={})
    with pytest.raises(ValueError, match="unknown model name 'os.system'"):
        mgiad.from_pretrained(saved)


def test_corrupt_or_missing_files_are_clear(saved, tmp_path) -> None:
    with pytest.raises(ValueError, match="no such folder"):
        mgiad.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not a saved mgiad model: config.json is missing"):
        mgiad.from_pretrained(tmp_path)
    _edit(saved, model_kwargs={**TINY, "c_K": 8})
    with pytest.raises(ValueError, match="does not fit mgiad_3lvl"):
        mgiad.from_pretrained(saved)
    (saved / "model.safetensors").write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="unreadable safetensors file"):
        mgiad.from_pretrained(saved)


def test_the_class_must_match(saved) -> None:
    with pytest.raises(ValueError, match=r"holds a MGiaD \(mgiad_3lvl\), not a ResNet"):
        ResNet.from_pretrained(saved)
    assert isinstance(mgiad.models.MultigridNet.from_pretrained(saved), MGiaD)  # a base class is fine


# -- the Hub, offline -------------------------------------------------------------------------


class FakeApi:
    """Stands in for huggingface_hub.HfApi: records the calls and the uploaded folder's files."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, repo_type, folder_path, commit_message, revision, create_pr):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.calls.append(("upload_folder", repo_id, repo_type, files, commit_message, revision))
        return f"https://huggingface.co/{repo_id}/commit/abc"


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi.calls


def test_push_to_hub_uploads_the_saved_folder(fake_hub, tmp_path) -> None:
    model = mgiad.create_model("mgiad_3lvl", **TINY, drop_rate=0.1)
    url = model.push_to_hub("someone/tiny-mgiad", token="t0k", private=True, branch="dev")
    assert url == "https://huggingface.co/someone/tiny-mgiad/commit/abc"
    assert fake_hub[0] == ("init", "t0k")
    assert fake_hub[1] == ("create_repo", "someone/tiny-mgiad", True, True)
    _, repo, kind, files, _, revision = fake_hub[2]
    assert (repo, kind, revision) == ("someone/tiny-mgiad", "model", "dev")
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads(files["config.json"]) == json.loads(json.dumps(
        {**model.config, "library": "mgiad", "mgiad_version": mgiad.__version__}))
    assert b"mgiad.from_pretrained('someone/tiny-mgiad')" in files["README.md"]
    # what was uploaded loads back as the model
    (tmp_path / "hub").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "hub" / name).write_bytes(files[name])
    assert _same_logits(model, MGiaD.from_pretrained(tmp_path / "hub"))


def test_save_pretrained_can_push(fake_hub, tmp_path) -> None:
    model = mgiad.create_model("resnet20", widths=(4, 8, 16))
    url = model.save_pretrained(tmp_path / "tiny-resnet", push_to_hub=True, repo_id="someone/r20",
                                commit_message="first")
    assert url.startswith("https://huggingface.co/someone/r20/")
    assert (tmp_path / "tiny-resnet" / "model.safetensors").is_file()
    assert fake_hub[-1][1] == "someone/r20" and fake_hub[-1][4] == "first"


def test_a_refused_config_uploads_nothing(fake_hub) -> None:
    model = mgiad.create_model("mgiad_3lvl", **TINY)
    config = {"model": "mgiad_3lvl", "model_kwargs": {**TINY, "g_s": 2}, "num_classes": 10, "in_chans": 3}
    with pytest.raises(ValueError, match=r"builds g_s=2 \(the model has 4\)"):
        model.push_to_hub("someone/x", config=config)
    assert [c[0] for c in fake_hub] == ["init"]  # no repository created, nothing uploaded


def test_from_pretrained_by_hub_id(saved, monkeypatch, tmp_path) -> None:
    import huggingface_hub

    asked = {}

    def fake_download(repo_id, **kwargs):
        asked.update(repo_id=repo_id, **kwargs)
        return str(saved)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.chdir(tmp_path)
    model = MGiaD.from_pretrained("someone/tiny", revision="v2", token="t0k", cache_dir="c")
    assert asked == {"repo_id": "someone/tiny", "revision": "v2", "token": "t0k", "cache_dir": "c",
                     "allow_patterns": ["config.json", "model.safetensors"]}
    assert isinstance(model, MGiaD)
    with pytest.raises(ValueError, match="token: for a Hub repository"):
        mgiad.from_pretrained(saved, token="t0k")


def test_without_huggingface_hub_the_error_names_the_extra(saved, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub fails
    model = mgiad.create_model("mgiad_3lvl", **TINY)
    with pytest.raises(ValueError, match=r"push_to_hub needs huggingface_hub: pip install 'mgiad\[hub\]'"):
        model.push_to_hub("someone/x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"Hugging Face Hub needs huggingface_hub: pip install 'mgiad\[hub\]'"):
        mgiad.from_pretrained("someone/x")
    model.save_pretrained(tmp_path / "local")  # local folders need no huggingface_hub
    assert isinstance(MGiaD.from_pretrained(tmp_path / "local"), MGiaD)


def test_import_save_and_load_do_not_import_huggingface_hub(tmp_path) -> None:
    code = ("import sys, mgiad; m = mgiad.create_model('resnet20', widths=(4, 8, 16)); "
            "m.save_pretrained('m'); mgiad.from_pretrained('m'); "
            "assert 'huggingface_hub' not in sys.modules, 'huggingface_hub was imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
