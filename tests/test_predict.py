"""`mgiad predict` prepares a file as evaluation prepares the checkpoint's test split: the shorter
side resized to the recorded input size (over crop_pct, if the data set names one), the centre
cropped, the checkpoint's mean/std (issue 21: it squashed 48x40 images to 32x32, and 4 of 40
top-1 classes changed). The same logits as the eval path (mgiad.data + model) and as timm's
``create_transform(**resolve_data_config(...), is_training=False)`` where the settings agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import TINY_ARGS

from mgiad import cli
from mgiad.cli.run import _predict_preparation, load_image
from mgiad.data import custom
from mgiad.data.augment import BatchAugment
from mgiad.data.datasets import load_dataset
from mgiad.data.images import CentreCrop, open_image
from mgiad.training.checkpoint import load_model


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(custom.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _images(root: Path, n: int, seed: int, sizes=((48, 40), (40, 48))) -> list[Path]:
    """Three classes (a bright band at rows 12c..12c+8) of images with texture, so a resize
    and a squash give different pixels."""
    rng = np.random.default_rng(seed)
    files = []
    for k, name in enumerate(("cat", "dog", "emu")):
        (root / name).mkdir(parents=True)
        for i in range(n):
            w, h = sizes[i % len(sizes)]
            a = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
            a[12 * k: 12 * k + 8] += 120
            files.append(root / name / f"{i:02d}.png")
            Image.fromarray(a).save(files[-1])
    return files


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """A 1-epoch run on an image folder of 48x40 and 40x48 images, given split, ?size=32."""
    tmp = tmp_path_factory.mktemp("predict")
    mp = pytest.MonkeyPatch()
    mp.setenv(custom.ENV_CACHE_DIR, str(tmp / "cache"))
    try:
        root = tmp / "pets"
        _images(root / "train", 6, seed=0)
        test_files = _images(root / "test", 4, seed=1)
        out = tmp / "runs"
        assert cli.main(["train", f"--dataset=imagefolder:{root}?size=32", *TINY_ARGS, "--epochs=1",
                         "--batch_size=6", "--threads=1", f"--out_dir={out}", "--augment=crop-flip",
                         "--tensorboard=false"]) == 0
    finally:
        mp.undo()
    (run_dir,) = out.iterdir()
    return run_dir, root, test_files


def _eval_logits(model, header, x: torch.Tensor) -> torch.Tensor:
    transform = BatchAugment(mean=header["mean"], std=header["std"], pad_to=header.get("pad_to")).test
    with torch.no_grad():
        return model(transform(x))


def test_predict_prepares_as_eval_and_timm(run, capsys) -> None:
    from timm.data import create_transform, resolve_data_config

    run_dir, root, files = run
    model, header = load_model(run_dir)
    assert header["dataset"] == f"imagefolder:{root}?size=32" and header["image_size"] == 32
    data = load_dataset(header["dataset"])  # the eval path: the test split in file order
    resize, how = _predict_preparation(header, 32, published=False)
    assert resize == CentreCrop(32)
    assert how == ("resized shorter side to 32 (bilinear), centre-cropped 32x32, normalised with "
                   "the checkpoint's mean/std")
    x = torch.stack([load_image(f, size=32, channels=3, resize=resize) for f in files])
    assert torch.equal(x, data.x_test)  # the same pixels, so the same logits
    logits = _eval_logits(model, header, data.x_test)
    assert torch.equal(_eval_logits(model, header, x), logits)
    # timm's eval transform with the model's data config (crop_pct 1.0, bilinear, 32x32: the
    # same settings) and the checkpoint's mean/std
    cfg = resolve_data_config({}, model=model)
    assert (cfg["crop_pct"], cfg["interpolation"], cfg["input_size"]) == (1.0, "bilinear", (3, 32, 32))
    timm_t = create_transform(**{**cfg, "mean": tuple(header["mean"]), "std": tuple(header["std"])},
                              is_training=False)
    timm_x = torch.stack([timm_t(open_image(f).convert("RGB")) for f in files])
    torch.testing.assert_close(timm_x, BatchAugment(mean=header["mean"], std=header["std"]).test(x),
                               rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model(timm_x), logits, rtol=0, atol=1e-5)
    # the command: all classes' probabilities are the softmax of those logits
    capsys.readouterr()
    assert cli.main(["predict", str(run_dir), *map(str, files), "--topk", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == f"mgiad predict: {how}\n"
    probs = torch.softmax(logits, dim=1)
    for r, p in zip(json.loads(out), probs):
        got = {t["class"]: t["prob"] for t in r["top"]}
        want = dict(zip(header["classes"], p.tolist()))
        assert got == pytest.approx(want, abs=1e-6)


def test_a_squash_is_what_changed(run) -> None:
    """The old preparation (a bilinear squash to 32x32) gives other pixels for 48x40 files."""
    _, _, files = run
    f = files[0]
    assert Image.open(f).size == (48, 40)
    squashed = np.asarray(open_image(f).convert("RGB").resize((32, 32), Image.BILINEAR))
    assert not np.array_equal(load_image(f, size=32, channels=3).numpy(), squashed)


@pytest.mark.parametrize("dataset, size, crop_pct, interpolation, pad_to, line", [
    ("imagefolder:/d?size=32,crop_pct=0.875,interpolation=bicubic", 32, 0.875, "bicubic", None,
     "resized shorter side to 36 (bicubic, crop_pct 0.875), centre-cropped 32x32, normalised"),
    ("fashionmnist", 28, 1.0, "bilinear", 32,
     "resized shorter side to 28 (bilinear), centre-cropped 28x28, zero-padded to 32x32, normalised"),
    ("cifar10", 32, 1.0, "bilinear", None, "resized shorter side to 32 (bilinear), centre-cropped"),
    ("imagefolder:/d", 16, 1.0, "bilinear", None, "resized shorter side to 16 (bilinear)"),
])
def test_the_checkpoints_settings_and_timm_agree(tmp_path, dataset, size, crop_pct, interpolation,
                                                 pad_to, line) -> None:
    """What predict does for each kind of checkpoint, pixel for pixel timm's eval transform with
    the same crop_pct and interpolation, on 48x40 and 40x48 files."""
    from timm.data import create_transform

    header = {"dataset": dataset, "image_size": size, "pad_to": pad_to, "mean": [0.5] * 3,
              "std": [0.25] * 3}
    resize, how = _predict_preparation(header, size, published=False)
    assert resize == CentreCrop(size, crop_pct, interpolation) and how.startswith(line)
    t = create_transform(input_size=(3, size, size), is_training=False, crop_pct=crop_pct,
                         interpolation=interpolation, mean=(0.5,) * 3, std=(0.25,) * 3)
    for f in _images(tmp_path / "img", 1, seed=2)[:2]:
        x = load_image(f, size=size, channels=3, resize=resize)
        torch.testing.assert_close(BatchAugment(mean=[0.5] * 3, std=[0.25] * 3).test(x[None])[0],
                                   t(open_image(f).convert("RGB")), rtol=0, atol=1e-6)


def test_an_image_of_the_training_size_is_left_as_it_is(tmp_path) -> None:
    a = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.png")
    np.testing.assert_array_equal(load_image(tmp_path / "x.png", size=28, channels=1)[..., 0], a)
