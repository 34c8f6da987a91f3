"""Image files read right or refused (mgiad/data/images.py), the same in the image-folder loader
and in `mgiad predict`: 16-bit grey scaled (Pillow's convert clips it to 255), EXIF orientation
applied, multi-frame and float images refused, palette/CMYK/alpha converted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgiad.cli.run import load_image
from mgiad.data import custom
from mgiad.data.datasets import DataError, load_dataset
from mgiad.data.images import ImageDecodeError, decode


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(custom.ENV_CACHE_DIR, str(tmp_path / "cache"))


def _gradient16(path: Path) -> np.ndarray:
    """A 16-bit grey PNG whose values span 0..65535; returns its values."""
    a = (np.linspace(0, 65535, 16 * 16).reshape(16, 16)).round().astype(np.uint16)
    Image.fromarray(a).save(path)
    assert Image.open(path).mode == "I;16"
    return a


def test_16_bit_grey_is_scaled_not_clipped(tmp_path) -> None:
    a = _gradient16(tmp_path / "g16.png")
    want = ((a.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    got = decode(tmp_path / "g16.png")
    assert got.dtype == np.uint8 and got.shape == (16, 16)
    np.testing.assert_array_equal(got, want)
    assert got.min() == 0 and got.max() == 255 and 120 < got.mean() < 135  # Pillow's own: 254.5
    # predict reads it the same way (no resize at its own size)
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png", size=16, channels=1)[..., 0].numpy(), want)


def test_an_image_folder_of_16_bit_images_trains_on_their_pixels(tmp_path) -> None:
    root = tmp_path / "d"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            _gradient16(root / c / f"{i}.png")
    data = load_dataset(f"imagefolder:{root}")
    x = np.concatenate([np.asarray(data.x_train), np.asarray(data.x_test)])
    assert x.shape[1:] == (16, 16, 1) and 120 < x.mean() < 135


def _arrow(w: int = 8, h: int = 4) -> np.ndarray:
    """An RGB image that shows its orientation: a white left column, the rest black."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, 0] = 255
    return a


def test_exif_orientation_is_applied(tmp_path) -> None:
    img = Image.fromarray(_arrow())
    exif = img.getexif()
    exif[0x0112] = 6  # orientation 6: the viewer rotates 90° clockwise
    img.save(tmp_path / "rot.png", exif=exif)
    got = decode(tmp_path / "rot.png")
    want = np.asarray(Image.fromarray(_arrow()).transpose(Image.Transpose.ROTATE_270))
    assert got.shape == (8, 4, 3)  # upright: width and height swapped
    np.testing.assert_array_equal(got, want)
    assert got[0].max() == 255 and got[1:].max() == 0  # the white column is now the top row


def test_predict_sees_the_exif_rotation(tmp_path) -> None:
    a = np.zeros((8, 8, 3), np.uint8)
    a[:, 0] = 255  # white left column
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.png", exif=exif)
    got = load_image(tmp_path / "rot.png", size=8, channels=3).numpy()
    assert got[0].min() == 255 and got[1:].max() == 0  # top row white, not left column


def test_multi_frame_files_are_refused(tmp_path) -> None:
    frames = [Image.fromarray(np.full((6, 6), v, np.uint8)) for v in (0, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageDecodeError, match=r"anim.gif: has 2 frames.*save the frame you mean"):
        decode(tmp_path / "anim.gif")
    with pytest.raises(ValueError, match="has 2 frames"):
        load_image(tmp_path / "anim.gif", size=6, channels=1)
    root = tmp_path / "d"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(root / c / "0.png")
    frames[0].save(root / "a" / "1.png", save_all=True, append_images=frames[1:])  # animated PNG
    with pytest.raises(DataError, match=r"1.png: has 2 frames.*remove or replace it"):
        load_dataset(f"imagefolder:{root}")


def test_float_images_are_refused(tmp_path) -> None:
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageDecodeError, match="floating-point image"):
        decode(tmp_path / "f.tif")


@pytest.mark.parametrize("mode", ["P", "CMYK", "RGBA", "LA", "1"])
def test_other_modes_are_converted(tmp_path, mode: str) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8))
    path = tmp_path / f"x.{'jpg' if mode == 'CMYK' else 'png'}"
    (rgb.convert(mode)).save(path)
    got = decode(path)
    grey = mode in ("LA", "1")
    assert got.shape == ((5, 7) if grey else (5, 7, 3)) and got.dtype == np.uint8
    assert decode(path, channels=3).shape == (5, 7, 3) and decode(path, channels=1).shape == (5, 7)
