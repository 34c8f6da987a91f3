"""Your own data (mgiad/data/custom.py): ``imagefolder:PATH`` and ``npz:PATH`` load with classes,
channels and size from the data, a recorded stratified split, a decode cache; `mgiad train`,
`eval` and `predict` work on such a run; bad folders and files are one clear error naming them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import TINY_ARGS

from mgiad import cli
from mgiad.data import custom
from mgiad.data.datasets import DataError, load_dataset
from mgiad.training.checkpoint import load_checkpoint


def _folder(root: Path, classes: dict[str, int], size=(12, 12), mode="RGB", seed=0) -> Path:
    """Class c's images are bright in row band c, so a model can learn them."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 60, size=(size[1], size[0], 3), dtype=np.uint8)
            a[2 * k: 2 * k + 3] += 180
            img = Image.fromarray(a)
            (img.convert("L") if mode == "L" else img).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(custom.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_image_folder_made_split_is_stratified_recorded_and_cached(tmp_path, monkeypatch, capsys) -> None:
    root = _folder(tmp_path / "pets", {"cat": 10, "dog": 15, "emu": 5})
    data = load_dataset(f"imagefolder:{root}")
    assert data.classes == ["cat", "dog", "emu"] and data.in_chans == 3 and data.image_size == 12
    assert torch.bincount(data.y_test).tolist() == [2, 3, 1]  # round(20%) of each class
    assert len(data.y_train) == 24 and data.name == f"imagefolder:{root}"
    assert "split made: 6 test images, 20% of each class, seed 0" in data.source
    assert "decoded 30 images" in capsys.readouterr().out
    # the second load reads the cache: decoding is not called again, the data are the same
    monkeypatch.setattr(custom, "_decode", lambda parts: pytest.fail("decoded again"))
    again = load_dataset(f"imagefolder:{root}")
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    # a changed file invalidates it
    monkeypatch.undo()
    Image.new("RGB", (12, 12), "white").save(root / "emu" / "000.png")
    changed = load_dataset(f"imagefolder:{root}")
    assert not torch.equal(changed.x_train, data.x_train) or not torch.equal(changed.x_test, data.x_test)


def test_image_folder_given_split_and_greyscale(tmp_path) -> None:
    _folder(tmp_path / "d" / "train", {"a": 4, "b": 4}, mode="L")
    _folder(tmp_path / "d" / "val", {"a": 2, "b": 1}, mode="L", seed=1)
    data = load_dataset(f"imagefolder:{tmp_path / 'd'}")
    assert data.in_chans == 1 and len(data.y_train) == 8 and data.y_test.tolist() == [0, 0, 1]
    assert "split given (train/ and val/)" in data.source


def test_mixed_grey_and_colour_become_rgb(tmp_path) -> None:
    root = _folder(tmp_path / "m", {"a": 3, "b": 3})
    Image.new("L", (12, 12), 90).save(root / "a" / "grey.png")
    data = load_dataset(f"imagefolder:{root}")
    assert data.in_chans == 3


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "a").mkdir(parents=True) or (r / "b").mkdir(), "no images"),
    (lambda r: _folder(r, {"only": 4}), "at least 2 classes"),
    (lambda r: _folder(r, {"a": 3, "b": 3}) and Image.new("RGB", (20, 12)).save(r / "b" / "big.png"),
     "big.png is 20x12 but"),
    (lambda r: _folder(r, {"a": 3, "b": 3}) and (r / "a" / "broken.png").write_bytes(b"not a png"),
     "broken.png: cannot read this image"),
    (lambda r: _folder(r, {"a": 3, "b": 1}), "class 1 has 1 image"),
])
def test_bad_image_folders_name_the_problem(tmp_path, make, message) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    make(root)
    with pytest.raises(DataError, match=message):
        load_dataset(f"imagefolder:{root}")


def test_missing_path_and_data_dir(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="data_dir does not apply"):
        load_dataset(f"npz:{tmp_path / 'x.npz'}", tmp_path)


def test_npz_made_and_given_splits(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(20, 8, 8), dtype=np.uint8)
    y = np.arange(20) % 2
    np.savez(tmp_path / "two.npz", x=x, y=y, classes=np.array(["no", "yes"]))
    data = load_dataset(f"npz:{tmp_path / 'two.npz'}")
    assert data.classes == ["no", "yes"] and data.num_classes == 2 and data.in_chans == 1
    assert torch.bincount(data.y_test).tolist() == [2, 2] and "split made" in data.source
    np.savez(tmp_path / "given.npz", x_train=x[:, :, :, None].repeat(3, 3), y_train=y,
             x_test=x[:4, :, :, None].repeat(3, 3), y_test=y[:4])
    given = load_dataset(f"npz:{tmp_path / 'given.npz'}")
    assert given.in_chans == 3 and given.classes == ["0", "1"] and "split given" in given.source


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 8, 8), np.float32), "y": np.arange(4) % 2}, "x is float32; images must be uint8"),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.arange(4) / 2}, "integer class indices"),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.arange(3)}, "4 images but y has 3"),
    ({"images": np.zeros((4, 8, 8), np.uint8)}, "expected arrays x and y"),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 0, 1], dtype=object)}, "without pickles"),
])
def test_bad_npz_files(tmp_path, arrays, message) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def _damaged(kind: str, path: Path) -> None:
    """A damaged .npz: cut short, one stored byte changed (its CRC no longer matches), or not a zip."""
    x = np.random.default_rng(0).integers(0, 255, (6, 8, 8), dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(6) % 2)  # stored, not compressed: the bytes of x are in the file
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "crc":
        i = data.find(x.tobytes()[:16])
        assert i > 0
        data[i + 5] ^= 0xFF
    else:
        data = bytearray(b"this is not a zip archive\n" * 10)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["truncated", "crc", "not-a-zip"])
def test_a_damaged_npz_is_one_line_and_exit_2(tmp_path, kind, capsys) -> None:
    """Issue 22: a truncated file or a CRC error ended in a traceback (BadZipFile)."""
    _damaged(kind, tmp_path / "bad.npz")
    with pytest.raises(DataError, match=r"bad.npz: not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    code = cli.main(["train", f"--dataset=npz:{tmp_path / 'bad.npz'}", *TINY_ARGS, "--epochs=1",
                     f"--out_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.npz: not a readable .npz" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "error" in ln]) == 1, err
    # numpy reads a file that is no zip as a pickle and blames pickles: the line says what it is
    assert ("does not start as a zip file" in err) == (kind == "not-a-zip") and "allow_pickle" not in err


def test_train_eval_predict_on_an_image_folder(tmp_path, capsys) -> None:
    """The acceptance path: train --dataset imagefolder:PATH --epochs 1, then eval and predict on
    the run; classes and channels come from the folder, the run directory name is a file name."""
    root = _folder(tmp_path / "pets", {"cat": 12, "dog": 12, "emu": 12}, size=(16, 16))
    out = tmp_path / "runs"
    args = ["train", f"--dataset=imagefolder:{root}", *TINY_ARGS, "--epochs=1", "--batch_size=8",
            "--threads=1", f"--out_dir={out}", "--augment=crop-flip", "--tensorboard=false"]
    assert cli.main(args) == 0
    (run,) = out.iterdir()
    assert run.name.startswith("mgiad_3lvl-imagefolder-pets-s0-")
    header = load_checkpoint(run).header
    assert header["classes"] == ["cat", "dog", "emu"] and header["num_classes"] == 3
    assert header["augment_policy"] == "crop-flip"
    assert header["dataset"] == f"imagefolder:{root}"
    assert "split made: 6 test images" in json.loads((run / "run.json").read_text())["data_source"]
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_images"] == 6 and sorted(result["per_class"]) == ["cat", "dog", "emu"]
    assert "split made: 6 test images" in result["data_source"]  # the same split again
    assert cli.main(["predict", str(run), str(root / "dog" / "000.png"), "--topk", "3"]) == 0
    line = capsys.readouterr().out
    assert "000.png" in line and all(c in line for c in ("cat", "dog", "emu"))


# -- folders of mixed sizes: imagefolder:PATH?size=N[,crop_pct=F][,interpolation=...] --------


def _mixed(root: Path) -> Path:
    """Two classes of 48x40, 40x48, 33x37 and 32x32 images (class b's a bright band)."""
    rng = np.random.default_rng(3)
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate([(48, 40), (40, 48), (33, 37), (32, 32)] * 2):
            a = rng.integers(0, 200, size=(h, w, 3), dtype=np.uint8)
            a[10 * k: 10 * k + 6] = 250
            Image.fromarray(a).save(root / name / f"{i:02d}.png")
    return root


def _timm_pixels(path: Path, size: int, crop_pct: float, interpolation: str) -> np.ndarray:
    """timm's eval resize and centre crop (before ToTensor) of a file, as uint8 HWC."""
    from timm.data import create_transform

    t = create_transform(input_size=(3, size, size), is_training=False, crop_pct=crop_pct,
                         interpolation=interpolation, crop_mode="center")
    resize_crop = [s for s in t.transforms if type(s).__name__ in ("Resize", "CenterCrop")]
    assert len(resize_crop) == 2, t  # timm builds Resize(int) + CenterCrop for these settings
    img = Image.open(path).convert("RGB")
    for step in resize_crop:
        img = step(img)
    return np.asarray(img)


def test_mixed_sizes_are_an_error_that_names_the_option(tmp_path) -> None:
    root = _mixed(tmp_path / "mixed")
    with pytest.raises(DataError) as e:
        load_dataset(f"imagefolder:{root}")
    text = str(e.value)
    assert "\n" not in text and "01.png is 40x48 but" in text and "00.png is 48x40" in text
    assert f"--dataset 'imagefolder:{root}?size=32'" in text  # the smallest side: none enlarged


@pytest.mark.parametrize("options, crop_pct, interpolation", [
    ("size=32", 1.0, "bilinear"),
    ("size=24,crop_pct=0.875,interpolation=bicubic", 0.875, "bicubic"),
])
def test_size_option_is_timms_eval_resize_and_crop(tmp_path, options, crop_pct, interpolation) -> None:
    root = _mixed(tmp_path / "mixed")
    _folder(tmp_path / "given" / "train", {"a": 3, "b": 3}, size=(48, 40))
    _folder(tmp_path / "given" / "test", {"a": 2, "b": 2}, size=(40, 48), seed=1)
    size = int(options.split(",")[0].split("=")[1])
    data = load_dataset(f"imagefolder:{tmp_path / 'given'}?{options}")
    assert data.image_size == size and data.x_train.shape[1:] == (size, size, 3)
    assert f"centre-cropped {size}x{size}" in data.source
    files = sorted((tmp_path / "given" / "test").rglob("*.png"))
    for row, f in zip(data.x_test.numpy(), files):
        np.testing.assert_array_equal(row, _timm_pixels(f, size, crop_pct, interpolation))
    mixed = load_dataset(f"imagefolder:{root}?{options}")
    assert len(mixed.y_train) + len(mixed.y_test) == 16 and mixed.x_test.shape[1:] == (size, size, 3)


def test_the_decode_cache_keys_on_the_options(tmp_path, monkeypatch, capsys) -> None:
    root = _mixed(tmp_path / "mixed")
    s32 = load_dataset(f"imagefolder:{root}?size=32")
    s20 = load_dataset(f"imagefolder:{root}?size=20")
    s32b = load_dataset(f"imagefolder:{root}?size=32,interpolation=bicubic")
    assert s20.image_size == 20 and not torch.equal(s32.x_train, s32b.x_train)
    assert capsys.readouterr().out.count("decoded 16 images") == 3
    monkeypatch.setattr(custom, "_decode", lambda *a: pytest.fail("decoded again"))
    again = load_dataset(f"imagefolder:{root}?size=32,crop_pct=1.0")  # the same options
    assert torch.equal(again.x_train, s32.x_train) and again.name == f"imagefolder:{root}?size=32"


@pytest.mark.parametrize("name, canonical", [
    ("imagefolder:d?size=32", "imagefolder:{}/d?size=32"),
    ("imagefolder:d?size=32&crop_pct=1&interpolation=bilinear", "imagefolder:{}/d?size=32"),
    ("imagefolder:d?SIZE=32,crop-pct=0.875,interpolation=BICUBIC",
     "imagefolder:{}/d?size=32,crop_pct=0.875,interpolation=bicubic"),
    ("imagefolder:d?x", "imagefolder:{}/d?x"),  # a '?' without options is part of the path
])
def test_option_names_are_canonical(tmp_path, monkeypatch, name, canonical) -> None:
    monkeypatch.chdir(tmp_path)
    assert custom.canonical_custom(name) == canonical.format(tmp_path)


@pytest.mark.parametrize("name, message", [
    ("imagefolder:d?size=0", "size=0: the side of the square crop, an integer >= 1"),
    ("imagefolder:d?size=big", "size='big' is not an integer"),
    ("imagefolder:d?size=32,crop_pct=1.5", "crop_pct=1.5: a fraction in (0, 1]"),
    ("imagefolder:d?size=32,interpolation=nearest", "one of bilinear, bicubic"),
    ("imagefolder:d?size=32,resize=1", "unknown option 'resize=1'; the options are size, crop_pct"),
    ("imagefolder:d?crop_pct=0.9", "go with size=N"),
    ("npz:d.npz?size=32", "apply to imagefolder: only"),
])
def test_bad_options_are_one_line_naming_the_form(tmp_path, capsys, name, message) -> None:
    with pytest.raises(DataError, match=re.escape(message)) as e:
        custom.canonical_custom(name)
    assert "\n" not in str(e.value) and "imagefolder:PATH?size=N" in str(e.value) or "npz" in name
    code = cli.main(["train", f"--dataset={name}", *TINY_ARGS, f"--out_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
