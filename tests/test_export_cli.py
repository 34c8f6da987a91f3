"""`mgiad export` and save_pretrained/from_pretrained: each format is written only after it was
loaded back by the tool that runs it and gave the model's logits; the files load without mgiad;
a wrong export writes nothing; bad input is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import tiny_config, write_fake_fmnist

import mgiad
from mgiad import cli
from mgiad.models import export as export_mod
from mgiad.models.export import ExportMismatch, export_model, from_pretrained, save_pretrained
from mgiad.training.checkpoint import load_checkpoint, load_model
from mgiad.training.loop import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    n = torch.get_num_threads()
    train(tiny_config(write_fake_fmnist(tmp / "data"), tmp / "runs", epochs=1))
    torch.set_num_threads(n)
    return tmp / "runs" / "run"


def _images(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(7))  # FashionMNIST


def _eager(run_dir: Path, x: torch.Tensor) -> torch.Tensor:
    model, _ = load_model(run_dir)
    with torch.no_grad():
        return model(x)


# Loads each file in a fresh interpreter that never imports mgiad: the files need only torch
# (or onnxruntime), and the logits must be the model's.
LOADERS = {
    "onnx": "import onnxruntime as ort; s = ort.InferenceSession(P); "
            "y = torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x.numpy()})[0])",
    "pt2": "y = torch.export.load(P).module()(x)",
    "torchscript": "y = torch.jit.load(P)(x)",
}


@pytest.mark.parametrize("fmt", ["onnx", "pt2", "torchscript"])
def test_export_formats_load_without_mgiad_and_give_the_logits(run_dir, tmp_path, fmt, capsys) -> None:
    out = tmp_path / f"model.{fmt}"
    assert cli.main(["export", str(run_dir), "--format", fmt, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "largest difference to the eager model" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary left
    x = _images()
    torch.save(x, tmp_path / "x.pt")
    code = (f"import sys, torch; P = {str(out)!r}; x = torch.load({str(tmp_path / 'x.pt')!r}); "
            f"{LOADERS[fmt]}; assert 'mgiad' not in sys.modules; "
            f"torch.save(y, {str(tmp_path / 'y.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    y = torch.load(tmp_path / "y.pt")
    assert torch.allclose(y, _eager(run_dir, x), atol=1e-5, rtol=1e-5)  # batch of 5: dynamic
    # the file says how to feed it and what its outputs mean
    from mgiad.models.export import file_config

    header = load_checkpoint(run_dir).header
    meta = file_config(out)
    assert (meta["mean"], meta["std"], meta["classes"]) == (header["mean"], header["std"], header["classes"])
    assert meta["input_size"] == header["input_size"] and meta["model"] == header["model"]


def test_safetensors_folder_round_trip(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "hf"
    assert cli.main(["export", str(run_dir), "--format", "safetensors", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "mgiad_3lvl" and cfg["in_chans"] == 1 and cfg["classes"][0] == "T-shirt/top"
    model = mgiad.from_pretrained(out)
    x = _images()
    with torch.no_grad():
        assert torch.equal(model(x), _eager(run_dir, x))


def test_hub_id_goes_through_huggingface_hub(run_dir, tmp_path, monkeypatch) -> None:
    """Offline: ``from_pretrained('owner/name')`` asks huggingface_hub for exactly the two files
    and loads what it returns (a local folder stands in for the Hub's cache)."""
    import huggingface_hub

    local = tmp_path / "snapshot"
    model, header = load_model(run_dir)
    save_pretrained(model, local, header)
    asked = {}

    def fake_download(repo_id, revision=None, allow_patterns=None):
        asked.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        return str(local)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.chdir(tmp_path)
    loaded = from_pretrained("someone/mgiad-fashionmnist", revision="v1")
    assert asked == {"repo_id": "someone/mgiad-fashionmnist", "revision": "v1",
                     "allow_patterns": ["config.json", "model.safetensors"]}
    x = _images()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_wrong_export_writes_nothing(run_dir, tmp_path, monkeypatch) -> None:
    """If the file computes other logits than the model (here: the reader is made to add 1e-2),
    export refuses and leaves no file behind -- also not an older one's temporary."""
    real = export_mod._RUN["torchscript"]
    monkeypatch.setitem(export_mod._RUN, "torchscript",
                        lambda path, inputs: [y + 1e-2 for y in real(path, inputs)])
    model, header = load_model(run_dir)
    out = tmp_path / "m.pt"
    with pytest.raises(ExportMismatch, match=r"largest difference 0\.01.*nothing was written"):
        export_model(model, out, "torchscript", header)
    assert list(tmp_path.iterdir()) == []


def test_custom_ops_are_kept_only_on_request(run_dir, tmp_path) -> None:
    model, header = load_model(run_dir)
    cfg = header
    export_model(model, tmp_path / "plain.pt2", "pt2", cfg)
    export_model(model, tmp_path / "custom.pt2", "pt2", cfg, keep_custom_ops=True)
    plain = str(torch.export.load(str(tmp_path / "plain.pt2")).graph)
    custom = str(torch.export.load(str(tmp_path / "custom.pt2")).graph)
    assert "mgiad." not in plain and "mgiad.pair_" in custom


@pytest.mark.parametrize("args, message", [
    (["nothing-here", "--format", "onnx"], "neither a checkpoint, a run directory nor a model name"),
    (["mgiad_3lvl", "--format", "onnx", "--in-chans", "0"], "--in-chans"),
    (["RUN", "--format", "onnx", "--num-classes", "3"], "--num-classes is for a model name"),
    (["RUN", "--format", "onnx", "-o", "EXISTS"], "exists; pass --force"),
    (["RUN", "--format", "onnx", "-o", "NODIR/m.onnx"], "is not a directory"),
    (["--format", "onnx"], "give one source"),
    (["RUN", "--model", "mgiad_3lvl", "--format", "onnx"], "give one source"),
    (["--model", "RUN", "--format", "onnx"], "--model takes a model name"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, args, message) -> None:
    (tmp_path / "exists").write_text("keep me")
    args = [a.replace("RUN", str(run_dir)).replace("EXISTS", str(tmp_path / "exists"))
            .replace("NODIR", str(tmp_path / "nodir")) for a in args]
    assert cli.main(["export", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert (tmp_path / "exists").read_text() == "keep me"


def test_from_pretrained_refuses_what_is_not_a_saved_model(run_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="not a saved mgiad model: config.json is missing"):
        from_pretrained(tmp_path)
    model, header = load_model(run_dir)
    save_pretrained(model, tmp_path / "m", header)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["model_kwargs"]["g_s"] = 8  # another architecture: the weights do not fit
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not fit mgiad_3lvl"):
        from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="unreadable safetensors file"):
        from_pretrained(tmp_path / "m")


def test_an_unwritable_output_fails_before_any_export_work(run_dir, tmp_path, monkeypatch, capsys) -> None:
    """Issue 22: an unwritable -o was reported only after 85 s of export work."""
    import os

    from mgiad.training import values

    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(values.os, "access", lambda p, mode: False if Path(p) == readonly else real_access(p, mode))

    def no_work(*args, **kwargs):
        raise AssertionError("export_model ran before the output was checked")

    monkeypatch.setattr(export_mod, "export_model", no_work)
    assert cli.main(["export", str(run_dir), "--format", "onnx", "-o", str(readonly / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write in -o {readonly}" in err[0]


def test_temporaries_of_a_killed_export_are_removed_next_time(run_dir, tmp_path, capsys) -> None:
    """Issue 22: a SIGKILL left a hidden .tmp-PID-*.onnx that nothing cleaned."""
    import os

    dead = next(p for p in range(4_000_000, 3_000_000, -1) if not os.path.exists(f"/proc/{p}"))
    stale, running = tmp_path / f".tmp-{dead}-m.pt", tmp_path / f".tmp-{os.getppid()}-m.pt"
    stale.write_bytes(b"half an export")
    running.write_bytes(b"another export still at work")
    model, header = load_model(run_dir)
    export_model(model, tmp_path / "m.pt", "torchscript", header)
    assert not stale.exists() and running.exists() and (tmp_path / "m.pt").is_file()
    assert f"removed {stale}, left by an export (process {dead}) that was killed" in capsys.readouterr().err
