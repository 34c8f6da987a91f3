"""Checkpoints: round trip, atomic writes, corrupt and foreign files, architecture mismatch."""

from __future__ import annotations

import json
import os
import struct

import pytest
import safetensors.torch
import torch
import torch.nn as nn

from mgiad import create_model
from mgiad.training.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    checkpoint_path,
    load_checkpoint,
    load_model,
    read_header,
    save_checkpoint,
)

KWARGS = {"c_K": 8, "g_s": 4, "widths": [8, 16, 32]}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("mgiad_3lvl", num_classes=10, in_chans=1, **KWARGS)


def _header(**extra) -> dict:
    return {"model": "mgiad_3lvl", "model_kwargs": KWARGS, "num_classes": 10, "in_chans": 1,
            "dataset": "fashionmnist", "classes": [str(i) for i in range(10)], "mean": [0.286],
            "std": [0.353], **extra}


def _trained(steps: int = 2) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = _model().to(memory_format=torch.channels_last)  # saving must normalise the layout
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 1, 28, 28, generator=g)
        loss = nn.functional.cross_entropy(model(x), torch.randint(0, 10, (8,), generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _save(path, model, opt=None, **kw):
    g = torch.Generator().manual_seed(5)
    return save_checkpoint(
        path, header=_header(**kw), model_state=model.state_dict(),
        optimizer_state=opt.state_dict() if opt is not None else None,
        rng={"torch": torch.get_rng_state(), "shuffle": g.get_state()},
        train_state={"epoch": 3, "history": [{"epoch": 1, "test_acc": 0.5}]},
    )


def test_round_trip_restores_everything(tmp_path) -> None:
    model, opt = _trained()
    path = _save(tmp_path / "c.safetensors", model, opt)
    ckpt = load_checkpoint(path)
    assert ckpt.header["model"] == "mgiad_3lvl" and ckpt.train_state["epoch"] == 3
    assert ckpt.header == read_header(path)
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.model_state[k], v), k
    # the optimizer continues bit for bit
    model2 = _model().to(memory_format=torch.channels_last)
    model2.load_state_dict(ckpt.model_state)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt2.load_state_dict(ckpt.optimizer_state)
    x = torch.randn(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    for m, o in ((model, opt), (model2, opt2)):
        loss = nn.functional.cross_entropy(m(x), y)
        o.zero_grad()
        loss.backward()
        o.step()
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    g = torch.Generator()
    g.set_state(ckpt.rng["shuffle"])
    assert torch.equal(torch.randperm(10, generator=g),
                       torch.randperm(10, generator=torch.Generator().manual_seed(5)))


def test_load_model_rebuilds_from_the_file_alone(tmp_path) -> None:
    model, _ = _trained()
    _save(tmp_path / "last.safetensors", model)
    rebuilt, header = load_model(tmp_path)  # a run directory works too
    assert not rebuilt.training and header["classes"][0] == "0"
    model.eval()
    rebuilt = rebuilt.to(memory_format=torch.channels_last)  # same layout, same kernels
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(rebuilt(x), model(x))


def test_a_loaded_model_describes_the_data_it_was_trained_on(tmp_path) -> None:
    """pretrained_cfg from the header (timm's data pipeline, save_pretrained and export read it),
    not a fresh model's defaults; images taken as given (no mean/std) mean no normalisation."""
    model, _ = _trained()
    _save(tmp_path / "a.safetensors", model, mean=[0.25], std=[0.5], image_size=28,
          classes=list("abcdefghij"))
    rebuilt, _ = load_model(tmp_path / "a.safetensors")
    cfg = rebuilt.pretrained_cfg
    assert cfg["mean"] == (0.25,) and cfg["std"] == (0.5,) and cfg["input_size"] == (1, 28, 28)
    assert cfg["label_names"] == tuple("abcdefghij") and cfg["num_classes"] == 10
    assert create_model("mgiad_3lvl", num_classes=10, in_chans=1, **KWARGS).pretrained_cfg["mean"] != (0.25,)
    hub = rebuilt.config  # what save_pretrained writes
    assert hub["mean"] == [0.25] and hub["pretrained_cfg"]["label_names"] == list("abcdefghij")
    _save(tmp_path / "b.safetensors", model, mean=[], std=[])
    assert load_model(tmp_path / "b.safetensors")[0].pretrained_cfg["std"] == (1.0,)


def test_shared_tensors_are_stored_once(tmp_path) -> None:
    w = torch.randn(4, 4)
    state = {"a.weight": w, "b.weight": w, "c": torch.zeros(3)}  # tied weights
    path = save_checkpoint(tmp_path / "t.safetensors", header=_header(), model_state=state)
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt.model_state["a.weight"], w) and torch.equal(ckpt.model_state["b.weight"], w)
    assert len(safetensors.torch.load_file(path)) == 2


def test_crash_mid_write_leaves_old_file(tmp_path, monkeypatch) -> None:
    model, opt = _trained()
    path = _save(tmp_path / "last.safetensors", model, opt)
    before = path.read_bytes()
    model2, opt2 = _trained(steps=3)

    def crash(fd):  # the process "dies" after writing, before the rename
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated crash"):
        _save(path, model2, opt2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]  # no temporaries
    load_checkpoint(path)

    def no_rename(src, dst):
        raise OSError("simulated crash in rename")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_atomic_write_replaces(tmp_path) -> None:
    path = tmp_path / "sub" / "f.txt"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # normal permissions, not mkstemp's


@pytest.fixture
def good(tmp_path):
    model, opt = _trained()
    return _save(tmp_path / "good.safetensors", model, opt)


def _expect(path, *fragments: str) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_truncated_checkpoints(good, tmp_path) -> None:
    data = good.read_bytes()
    for n in (0, 5, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"trunc{n}.safetensors"
        bad.write_bytes(data[:n])
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(bad)
        assert str(bad) in str(info.value)


def test_flipped_bytes_are_detected(good, tmp_path) -> None:
    data = bytearray(good.read_bytes())
    data[-50] ^= 0xFF  # inside the tensor data: safetensors alone would not notice
    bad = tmp_path / "flip.safetensors"
    bad.write_bytes(bytes(data))
    _expect(bad, "corrupt", "SHA-256")
    header_len = struct.unpack("<Q", bytes(data[:8]))[0]
    data = bytearray(good.read_bytes())
    data[8 + header_len // 2] = 0  # a NUL inside the JSON header
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_garbage_and_foreign_files(tmp_path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    _expect(garbage)
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, plain)
    _expect(plain, "not an mgiad checkpoint")
    future = tmp_path / "future.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, future,
                                metadata={"format": "mgiad-checkpoint", "version": "99"})
    _expect(future, "version 99")
    headerless = tmp_path / "headerless.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, headerless,
                                metadata={"format": "mgiad-checkpoint", "version": "1"})
    _expect(headerless, "no header")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match="directory without a checkpoint"):
        checkpoint_path(tmp_path / "run")
    # a run that diverged in its first epoch says so (it used to read "has not finished")
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"status": "diverged"}))
    with pytest.raises(CheckpointError, match="the run diverged before its first epoch finished"):
        checkpoint_path(tmp_path / "run")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling would create the marker file


def test_pickles_are_refused_never_unpickled(tmp_path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state": _Evil(str(marker))}, evil)
    _expect(evil, "pickle")
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    _expect(legacy, "pickle")
    assert not marker.exists()


def test_weights_of_another_architecture(tmp_path) -> None:
    torch.manual_seed(0)
    resnet = create_model("resnet20", num_classes=10, in_chans=1)
    path = save_checkpoint(tmp_path / "x.safetensors", header=_header(), model_state=resnet.state_dict())
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert "do not fit" in msg and "missing" in msg and "unexpected" in msg and str(path) in msg
    # same architecture, other hyper-parameters: shape mismatches are named
    model = create_model("mgiad_3lvl", num_classes=10, in_chans=1, c_K=8, g_s=8, widths=[8, 16, 32])
    path = save_checkpoint(tmp_path / "y.safetensors", header=_header(), model_state=model.state_dict())
    with pytest.raises(CheckpointError, match="another shape"):
        load_model(path)
    # a header naming a model this mgiad does not know
    path = save_checkpoint(tmp_path / "z.safetensors", header=_header(model="mgiad_9000"),
                           model_state=model.state_dict())
    with pytest.raises(CheckpointError, match="mgiad_9000"):
        load_model(path)


def test_header_is_plain_json(good) -> None:
    with safetensors.safe_open(good, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "mgiad-checkpoint" and meta["version"] == "2" and len(meta["meta_sha256"]) == 64
    header = json.loads(meta["header"])
    assert header["model_kwargs"] == KWARGS and header["mean"] == [0.286]


def _same_checkpoint(a, b) -> bool:
    """Every part a resume reads, compared exactly."""
    def tensors_equal(x: dict, y: dict) -> bool:
        return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)

    if (a.header, a.train_state) != (b.header, b.train_state) or not tensors_equal(a.model_state, b.model_state):
        return False
    if not tensors_equal(a.rng, b.rng):
        return False
    oa, ob = a.optimizer_state, b.optimizer_state
    return oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys() and all(
        tensors_equal({k: v for k, v in oa["state"][i].items() if torch.is_tensor(v)},
                      {k: v for k, v in ob["state"][i].items() if torch.is_tensor(v)})
        and {k: v for k, v in oa["state"][i].items() if not torch.is_tensor(v)}
        == {k: v for k, v in ob["state"][i].items() if not torch.is_tensor(v)}
        for i in oa["state"])


def test_every_header_byte_flipped_is_refused_or_harmless(tmp_path) -> None:
    """Issue 22: the digest covered tensors only; 10 of 600 random header flips loaded and resumed
    a different run. Now every byte of the length prefix and the JSON header, flipped in its
    lowest bit and in all bits, is refused or gives the very same checkpoint; so does a sample of
    the tensor data. (A small model keeps the header at about 1.3 kB: the same kinds of entry —
    model header, optimizer groups and momentum, random states, history — in 2,600 loads.)"""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model(torch.randn(4, 3)).square().sum().backward()
    opt.step()
    good = _save(tmp_path / "good.safetensors", model, opt)
    clean = load_checkpoint(good)
    data = good.read_bytes()
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    gen = torch.Generator().manual_seed(0)
    sample = torch.randint(header_end, len(data), (200,), generator=gen).tolist()
    bad = tmp_path / "bad.safetensors"
    accepted_different = []
    for i in [*range(header_end), *sample]:
        for mask in (0x01, 0xFF):
            flipped = bytearray(data)
            flipped[i] ^= mask
            bad.write_bytes(bytes(flipped))
            try:
                loaded = load_checkpoint(bad)
            except CheckpointError:
                continue
            if not _same_checkpoint(loaded, clean):
                accepted_different.append((i, mask, bytes(data[max(i - 20, 0):i + 20])))
    assert accepted_different == []


def test_version_1_checkpoints_still_load(tmp_path) -> None:
    """Files written before the metadata digest (version 1, e.g. committed unfinished runs) load
    with their tensors checked."""
    from mgiad.training import checkpoint as ck

    model, opt = _trained()
    path = _save(tmp_path / "v2.safetensors", model, opt)
    with safetensors.safe_open(path, "pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "meta_sha256"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["version"] = "1"
    v1 = tmp_path / "v1.safetensors"
    safetensors.torch.save_file(tensors, v1, metadata=meta)
    assert _same_checkpoint(load_checkpoint(v1), load_checkpoint(path))
    # a version-2 file without its metadata digest (the key's name damaged, say) is refused
    meta["version"] = str(ck.VERSION)
    safetensors.torch.save_file(tensors, v1, metadata=meta)
    _expect(v1, "corrupt", "metadata")
