"""timm as timm users expect it (issue 21): the published weights in timm's pretrained listing with
their cfgs, ``pretrained_cfg_overlay=dict(file=...)`` loading that file, ``in_chans`` and
``num_classes`` adapted as timm's own ``load_pretrained`` does, and the feature interface of every
family (``features_only``, ``forward_intermediates``, ``feature_info``, ``set_grad_checkpointing``,
``group_matcher``, ``no_weight_decay``). Tiny models; the real published files (up to 1.6 MB)."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

import mgiad
from mgiad.models import pretrained
from mgiad.models.registry import timm_name

timm = pytest.importorskip("timm")

#: one tiny network of each family (name, hyper-parameters, the feature container's name)
TINY = [
    ("mgiad_3lvl", dict(c_K=4, g_s=4, widths=(8, 16, 32)), "levels"),
    ("mgiad", dict(c_K=8, g_s=4, widths=(8, 16, 32, 32)), "levels"),
    ("mgnet_ab_3lvl", dict(widths=(8, 16, 32)), "levels"),
    ("mgnet_a", dict(widths=(8, 8, 16, 16)), "levels"),
    ("resnet20", {}, "stages"),
    ("resnet18", dict(widths=(8, 16, 32, 64)), "stages"),
    ("resnet18_maxpool", dict(widths=(8, 16, 32, 64)), "stages"),
    ("mgic_3lvl", dict(widths=(8, 16, 32), c_K=4, g=4), "stages"),
]
IDS = [t[0] for t in TINY]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _packaged(key: str) -> dict[str, torch.Tensor]:
    return load_file(str(pretrained.WEIGHTS_DIR / pretrained.PUBLISHED[key].file))


# --- the published weights in timm's listing ---------------------------------------------------


def test_every_published_weight_is_in_timms_pretrained_listing() -> None:
    expected = {f"{timm_name(k.partition('.')[0])}.{k.partition('.')[2]}" for k in pretrained.PUBLISHED}
    listed = set(timm.list_models("mgiad*", pretrained=True))
    assert listed == expected and "mgiad_resnet20.cifar10" in listed
    assert not set(timm.list_models("resnet20*")) & set(mgiad.list_models())  # no clash, no rename
    assert type(timm.create_model("resnet18")).__module__.startswith("timm.")
    for key, w in pretrained.PUBLISHED.items():
        arch, _, tag = key.partition(".")
        cfg = timm.models.get_pretrained_cfg(f"{timm_name(arch)}.{tag}").to_dict()
        size = w.pad_to or w.image_size
        assert cfg["file"] == str(pretrained.WEIGHTS_DIR / w.file) and (pretrained.WEIGHTS_DIR / w.file).is_file()
        assert (cfg["num_classes"], cfg["input_size"]) == (w.num_classes, (w.in_chans, size, size))
        assert (cfg["mean"], cfg["std"], cfg["label_names"]) == (w.mean, w.std, w.classes)
        assert (cfg["classifier"], cfg["first_conv"], cfg["tag"]) == ("head.2", "stem.0", tag)
        assert cfg["architecture"] == timm_name(arch)
    # untagged: the first published tag, as timm's default; a model without weights has a cfg
    assert timm.models.get_pretrained_cfg("mgiad_resnet20").tag == "fashionmnist"
    plain = timm.models.get_pretrained_cfg("mgiad_fmnist")
    assert plain.file is None and plain.input_size == (1, 28, 28)
    assert not timm.models.get_pretrained_cfg("mgiad_mgnet_ab").has_weights


def test_the_packaged_file_loads_hash_checked(monkeypatch) -> None:
    model = timm.create_model("mgiad_resnet20.cifar10", pretrained=True)
    packaged = _packaged("resnet20.cifar10")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in packaged.items())
    cfg = model.pretrained_cfg
    assert f"sha256: {pretrained.PUBLISHED['resnet20.cifar10'].sha256}" in cfg["notes"] and cfg["tag"] == "cifar10"
    assert timm.models.PretrainedCfg(**cfg).file == cfg["file"]  # timm's fields only
    assert timm.data.resolve_data_config({}, model=model)["mean"] == (0.4914, 0.4822, 0.4465)
    damaged = dict(pretrained.PUBLISHED)
    damaged["resnet20.cifar10"] = pretrained.Weights(**{**vars(damaged["resnet20.cifar10"]), "sha256": "0" * 64})
    monkeypatch.setattr(pretrained, "PUBLISHED", damaged)
    with pytest.raises(ValueError, match="does not match the published"):
        timm.create_model("mgiad_resnet20.cifar10", pretrained=True)


# --- another weights file ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def modified(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    """A copy of the published ResNet20 CIFAR-10 weights with every float tensor changed."""
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in _packaged("resnet20.cifar10").items()}
    file = tmp_path_factory.mktemp("weights") / "mine.safetensors"
    save_file(state, str(file))
    return str(file), state


def _holds(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return set(own) == set(state) and all(torch.equal(own[k], v) for k, v in state.items())


@pytest.mark.parametrize("how", ["overlay", "cfg_dict", "mgiad"])
def test_a_file_override_loads_that_file(modified, how) -> None:
    file, state = modified
    if how == "overlay":
        model = timm.create_model("mgiad_resnet20.cifar10", pretrained=True, pretrained_cfg_overlay=dict(file=file))
    elif how == "cfg_dict":  # a full cfg, as timm's get_pretrained_cfg gives it, with another file
        cfg = {**timm.models.get_pretrained_cfg("mgiad_resnet20.cifar10").to_dict(), "file": file}
        model = timm.create_model("mgiad_resnet20", pretrained=True, pretrained_cfg=cfg)
    else:
        model = mgiad.create_model("resnet20.cifar10", pretrained=True, pretrained_cfg_overlay=dict(file=file))
    assert _holds(model, state)
    assert model.pretrained_cfg["file"] == file and model.pretrained_cfg["tag"] == "cifar10"


def test_other_weight_formats_and_sources(modified, tmp_path) -> None:
    file, state = modified
    # timm's in-memory source, and a model without published weights given its own file
    assert _holds(timm.create_model("mgiad_resnet20.cifar10", pretrained=True,
                                    pretrained_cfg_overlay=dict(state_dict=state)), state)
    with pytest.raises(ValueError, match=r"does not fit input_size\[0\]=1"):  # the default tag: 1 channel
        timm.create_model("mgiad_resnet20", pretrained=True, pretrained_cfg_overlay=dict(state_dict=state))
    torch.manual_seed(0)
    tiny = mgiad.create_model("mgnet_ab_3lvl", widths=(8, 16, 32))
    save_file(_state(tiny), str(tmp_path / "tiny.safetensors"))
    loaded = timm.create_model("mgiad_mgnet_ab_3lvl", widths=(8, 16, 32), pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / "tiny.safetensors")))
    assert _holds(loaded, _state(tiny))
    # a torch.save checkpoint as timm's train.py writes it: loaded with weights_only=True
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "ckpt.pth.tar")
    assert _holds(mgiad.create_model("resnet20.cifar10", pretrained=True,
                                     pretrained_cfg_overlay=dict(file=str(tmp_path / "ckpt.pth.tar"))), state)
    # an `mgiad train` checkpoint is no state dict: refused, naming what loads it
    meta = {"format": "mgiad-checkpoint", "version": "2"}
    save_file({"model/" + k: v for k, v in state.items()}, str(tmp_path / "last.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="mgiad export RUN --format safetensors"):
        mgiad.create_model("resnet20.cifar10", pretrained=True,
                           pretrained_cfg_overlay=dict(file=str(tmp_path / "last.safetensors")))
    # a pickle that would run code is refused, and the code does not run
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(ValueError, match=r"weights_only=True"):
        mgiad.create_model("resnet20.cifar10", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "evil.pth")))
    assert not _Evil.ran
    for source in (dict(url="https://example.invalid/w.pth"), dict(hf_hub_id="someone/weights")):
        with pytest.raises(ValueError, match="local file"):
            timm.create_model("mgiad_resnet20.cifar10", pretrained=True, pretrained_cfg_overlay=dict(file=None, **source))
    with pytest.raises(ValueError, match="does not fit"):  # another network's weights: loud
        timm.create_model("mgiad_3lvl", pretrained=True, pretrained_cfg_overlay=dict(file=file))
    with pytest.raises(ValueError, match="no pretrained weights for 'mgnet_ab'"):
        timm.create_model("mgiad_mgnet_ab", pretrained=True)
    # a cfg dict's tag picks the published weights; a tag without pretrained=True: its cfg, fresh
    # weights (timm's behaviour)
    by_dict = timm.create_model("mgiad_resnet20", pretrained=True, pretrained_cfg=dict(tag="cifar10"))
    assert by_dict.in_chans == 3 and _holds(by_dict, _packaged("resnet20.cifar10"))
    fresh = timm.create_model("mgiad_resnet20.fashionmnist")
    assert fresh.in_chans == 1 and fresh.pretrained_cfg["tag"] == "fashionmnist"


class _Evil:
    ran = False

    def __reduce__(self):
        return (_Evil._run, ())

    @staticmethod
    def _run() -> None:
        _Evil.ran = True


# --- in_chans and num_classes adapted as timm does ---------------------------------------------


@pytest.mark.parametrize("name,key,in_chans,num_classes", [
    ("mgiad_3lvl", "mgiad_3lvl.cifar10", 1, 10),  # 3 -> 1: channels summed
    ("mgiad_3lvl", "mgiad_3lvl.cifar10", 5, 4),  # 3 -> 5: repeated, scaled 3/5; a new classifier
    ("resnet20", "resnet20.fashionmnist", 3, 10),  # 1 -> 3: repeated, scaled 1/3
    ("resnet20", "resnet20.cifar10", 2, 0),  # no classifier: pooled features
])
def test_in_chans_and_num_classes_as_timms_load_pretrained(name, key, in_chans, num_classes) -> None:
    tag = key.partition(".")[2]
    model = timm.create_model(f"{timm_name(name)}.{tag}", pretrained=True, in_chans=in_chans, num_classes=num_classes)
    assert (model.in_chans, model.num_classes) == (in_chans, num_classes)
    packaged = _packaged(key)
    base = pretrained.PUBLISHED[key].in_chans
    w = packaged["stem.0.weight"]
    expect = w.sum(1, keepdim=True) if in_chans == 1 else w.repeat(1, in_chans, 1, 1)[:, :in_chans] * (base / in_chans)
    torch.testing.assert_close(model.stem[0].weight, expect, rtol=0, atol=1e-7)
    # timm's own loader on the same network gives the same weights (the new classifier aside)
    reference = mgiad.create_model(name, in_chans=in_chans, num_classes=num_classes)
    timm.models.load_pretrained(reference, pretrained_cfg=timm.models.get_pretrained_cfg(f"{timm_name(name)}.{tag}").to_dict(),
                                num_classes=num_classes, in_chans=in_chans)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    for k in ours:
        if not k.startswith("head.2.") or num_classes == 10:
            assert torch.equal(ours[k], theirs[k]), k
    x = torch.randn(2, in_chans, 16, 16)
    assert model.eval()(x).shape == (2, num_classes or model.num_features)


# --- the feature interface of every family -----------------------------------------------------


def _tiny(name: str, kw: dict, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(timm_name(name), **kw, **extra)


@pytest.mark.parametrize("name,kw,container", TINY, ids=IDS)
def test_features_only_and_forward_intermediates(name, kw, container) -> None:
    model = _tiny(name, kw).eval()
    assert timm.models.PretrainedCfg(**model.pretrained_cfg).architecture == timm_name(name)
    n = len(getattr(model, container))
    info = model.feature_info
    assert [f["module"] for f in info] == [f"{container}.{i}" for i in range(n)]
    x = torch.randn(2, model.in_chans, 16, 16)
    seen: dict[str, torch.Tensor] = {}
    for f in info:  # what each level's module outputs, copied at once (an in-place change would show)
        model.get_submodule(f["module"]).register_forward_hook(
            lambda m, i, o, name=f["module"]: seen.__setitem__(name, o.clone()))
    with torch.no_grad():
        last, maps = model.forward_intermediates(x)
        assert torch.equal(last, model.forward_features(x))
        assert len(maps) == n
        for f, t in zip(info, maps):
            assert torch.equal(t, seen[f["module"]])
            assert t.shape == (2, f["num_chs"], -(-16 // f["reduction"]), -(-16 // f["reduction"]))
        assert [t.shape for t in model.forward_intermediates(x, indices=2, intermediates_only=True)] == \
            [t.shape for t in maps[-2:]]
        early, picked = model.forward_intermediates(x, indices=[0, -2], stop_early=True)
        assert torch.equal(early, maps[-2]) and all(torch.equal(a, b) for a, b in zip(picked, [maps[0], maps[-2]]))
        with pytest.raises(ValueError, match="out of range"):
            model.forward_intermediates(x, indices=[n])
        # timm's features_only: the default extractor, all levels, channels and reductions right
        features = _tiny(name, kw, features_only=True).eval()
        assert type(features).__name__ == ("FeatureGetterNet" if container == "levels" else "FeatureListNet")
        assert features.feature_info.channels() == [f["num_chs"] for f in info]
        assert features.feature_info.reduction() == [f["reduction"] for f in info]
        assert "num_classes" not in features.pretrained_cfg
        out = features(x)
        assert len(out) == n and all(torch.equal(a, b) for a, b in zip(out, maps))
        some = _tiny(name, kw, features_only=True, out_indices=(1,), feature_cls="hook").eval()(x)
        assert len(some) == 1 and torch.equal(some[0], maps[1])
        pruned = _tiny(name, kw, features_only=True, out_indices=(0,), feature_cls="getter")
        assert len(getattr(pruned.model, container)) == 1 and torch.equal(pruned.eval()(x)[0], maps[0])


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes autograd keeps for backward outside checkpointed regions, and the loss."""
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).square().mean()
    return total[0], loss


@pytest.mark.parametrize("name,kw,container", TINY, ids=IDS)
def test_grad_checkpointing_gives_the_same_gradients(name, kw, container) -> None:
    plain, ckpt = _tiny(name, kw).train(), _tiny(name, kw).train()
    ckpt.set_grad_checkpointing(True)
    assert ckpt.grad_checkpointing and not plain.grad_checkpointing
    x = torch.randn(4, plain.in_chans, 16, 16)
    kept_plain, loss_plain = _saved_bytes(plain, x)
    kept_ckpt, loss_ckpt = _saved_bytes(ckpt, x)
    assert kept_ckpt < 0.6 * kept_plain, (kept_ckpt, kept_plain)  # activations really recomputed
    loss_plain.backward()
    loss_ckpt.backward()
    torch.testing.assert_close(loss_ckpt, loss_plain, rtol=0, atol=0)
    for (k, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0, msg=k)  # the same kernels again
    for (k, a), b in zip(plain.named_buffers(), ckpt.buffers()):  # BN statistics updated once
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=k)
    ckpt.set_grad_checkpointing(False)
    assert not ckpt.grad_checkpointing


@pytest.mark.parametrize("name,kw,container", TINY, ids=IDS)
def test_group_matcher_and_weight_decay_with_timms_optimizer(name, kw, container) -> None:
    from timm.models import group_parameters
    from timm.optim import create_optimizer_v2

    model = _tiny(name, kw)
    names = [k for k, _ in model.named_parameters()]
    n = len(getattr(model, container))
    for coarse in (True, False):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        flat = [k for g in groups.values() for k in g]
        assert sorted(flat) == sorted(names)  # every parameter in exactly one group
        assert all(k.startswith("stem.") for k in groups[0]) and groups[max(groups)] == ["head.2.weight", "head.2.bias"]
        if coarse:
            assert len(groups) == n + 2  # stem, one per level (smoother + transfer) or stage, head
            for level in range(n):
                assert {k.split(".")[1] for k in groups[level + 1]} == {str(level)}
        else:
            assert len(groups) >= n + 2
    assert model.no_weight_decay() == set()
    opt = create_optimizer_v2(model, opt="sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.7)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(names)


@pytest.mark.parametrize("name,kwargs", [("mgiad_3lvl", {"widths": (8, 16, 32), "c_K": 4, "g_s": 4}),
                                         ("resnet20", {"widths": (4, 8, 16)})])
def test_prune_intermediate_layers_keeps_the_first_levels(name: str, kwargs: dict) -> None:
    import mgiad

    model = mgiad.create_model(name, **kwargs).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model.forward_intermediates(x, intermediates_only=True)
    assert model.prune_intermediate_layers(2) == [1, 2]  # the last two of three levels
    assert model.num_classes == 0 and model._keep_levels(None) == 3  # nothing dropped: 2 is the last
    assert model.prune_intermediate_layers([0]) == [0]
    assert model._keep_levels(None) == 1
    with torch.no_grad():
        after = model.forward_intermediates(x, intermediates_only=True)
        pooled = model(x)
    torch.testing.assert_close(after[0], before[0])
    assert pooled.shape == (2, model.feature_info[0]["num_chs"])  # the head reads level 0 now
