"""One image file as 8-bit pixels, read right or refused: the decoder of image folders
(``--dataset imagefolder:DIR``) and of ``mgiad predict``, so training, evaluation and prediction
see a file the same way.

Pillow alone gets three kinds of file silently wrong; here:

- **EXIF orientation** is applied (``ImageOps.exif_transpose``): a phone photo is seen upright,
  as every image viewer shows it, not as the sensor stored it;
- **16-bit grey** (PNG/TIFF modes ``I;16``, ``I;16B``, ``I;16L`` and ``I`` with values in
  0..65535) is *scaled* to 8 bits, v·255/65535 rounded — Pillow's ``convert("L")`` clips it, so
  a 16-bit image became almost all 255; ``I`` values outside 0..65535 and 32-bit float images
  (``F``: no range to map from) are refused;
- **multi-frame files** (animated GIF/WebP/PNG, multi-page TIFF) are refused: which frame is
  meant is not known, and Pillow would silently give the first.

Everything else is converted by Pillow: palette, CMYK, YCbCr and 1-bit images to grey (``L``)
or ``RGB``; an alpha channel is dropped (the colours as stored). 16-bit RGB PNGs are reduced to 8
bits by Pillow itself (by scaling).

:class:`CentreCrop` is the one resize of the package: image folders of mixed sizes
(``imagefolder:PATH?size=N``) and ``mgiad predict`` both go through it, so a file predicted is
prepared as the test split evaluated. It is timm's evaluation transform (``crop_mode="center"``)
on a PIL image: the shorter side to ``floor(size / crop_pct)`` (the longer side scaled to keep the
aspect ratio, truncated to an integer, as ``torchvision.transforms.Resize(int)``), Pillow's
bilinear or bicubic filter (antialiased when shrinking, as torchvision on PIL images), then the
centre ``size x size`` (torchvision's ``CenterCrop`` offsets, ``round((H - size) / 2)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

#: modes decoded as one grey channel (the rest as RGB)
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_WIDE = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


class ImageDecodeError(ValueError):
    """A file that is not one image mgiad can read right; the message names the file and the fix."""


def is_grey(mode: str) -> bool:
    return mode in GREY_MODES


def _eight_bit(img: Any, path: str) -> Any:
    """A 16-bit (or 32-bit integer) grey image scaled to mode L; float images refused."""
    from PIL import Image

    if img.mode == "F":
        raise ImageDecodeError(f"{path}: a 32-bit floating-point image (mode F) has no known "
                               "range to map to 8 bits; save it as 8- or 16-bit PNG")
    a = np.asarray(img).astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise ImageDecodeError(f"{path}: a 32-bit integer image with values outside 0..65535 "
                               f"({a.min()}..{a.max()}); save it as 8- or 16-bit PNG")
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8))  # 2-D uint8: mode L


def open_image(src: str | Path | IO[bytes], *, name: str | None = None) -> Any:
    """The decoded single-frame image, upright, with 16-bit grey scaled to ``L``."""
    from PIL import Image, ImageOps

    path = name or str(src)
    with Image.open(src) as img:
        if getattr(img, "n_frames", 1) > 1:
            raise ImageDecodeError(f"{path}: has {img.n_frames} frames (an animation or a "
                                   "multi-page file); save the frame you mean as a single image")
        img.load()
        img = ImageOps.exif_transpose(img)  # a copy, upright, without the orientation tag
    if img.mode in _WIDE or img.mode == "F":
        img = _eight_bit(img, path)
    return img


#: the filters of :class:`CentreCrop`, by the names timm's ``interpolation`` uses
INTERPOLATIONS = ("bilinear", "bicubic")
#: crop_pct when none is given: 1.0, the models' ``pretrained_cfg`` (small images: nothing lost)
DEFAULT_CROP_PCT = 1.0


@dataclass(frozen=True)
class CentreCrop:
    """timm's evaluation resize and crop: shorter side to ``floor(size / crop_pct)``, then the
    centre ``size x size`` (see the module docstring).

    ``crop_pct`` is in (0, 1]: 1.0 (the default, as the models' ``pretrained_cfg`` says) keeps
    the whole shorter side; timm's ImageNet default 0.875 first enlarges by 1/0.875 and so crops a
    margin. ``interpolation`` is ``"bilinear"`` (the default) or ``"bicubic"``.
    """

    size: int
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size={self.size!r}: the side of the square crop, an integer >= 1")
        if not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise ValueError(f"crop_pct={self.crop_pct!r}: a fraction in (0, 1] (1.0 keeps the "
                             "whole shorter side; timm's ImageNet default is 0.875)")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={self.interpolation!r}: one of "
                             f"{', '.join(INTERPOLATIONS)}")

    @property
    def scale_size(self) -> int:
        """The shorter side after the resize: timm's ``math.floor(img_size / crop_pct)``."""
        return math.floor(self.size / self.crop_pct)

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize: torchvision's ``Resize(scale_size)`` rule."""
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.scale_size, int(self.scale_size * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def __call__(self, img: Any) -> Any:
        """The PIL image resized and centre-cropped (a ``size x size`` PIL image)."""
        from PIL import Image

        w, h = self.resized(*img.size)
        if (w, h) != img.size:
            resample = Image.BICUBIC if self.interpolation == "bicubic" else Image.BILINEAR
            img = img.resize((w, h), resample)
        if (w, h) != (self.size, self.size):
            top = int(round((h - self.size) / 2.0))
            left = int(round((w - self.size) / 2.0))
            img = img.crop((left, top, left + self.size, top + self.size))
        return img

    def describe(self) -> str:
        pct = "" if self.crop_pct == 1 else f", crop_pct {self.crop_pct:g}"
        return (f"resized shorter side to {self.scale_size} ({self.interpolation}{pct}), "
                f"centre-cropped {self.size}x{self.size}")


def decode(src: str | Path | IO[bytes], *, channels: int | None = None,
           name: str | None = None, resize: CentreCrop | None = None) -> np.ndarray:
    """The image as uint8 pixels: (H, W) for one channel, (H, W, 3) for three.

    ``channels=None`` keeps grey images grey and makes everything else RGB; 1 or 3 converts
    (RGB to grey with Pillow's ITU-R 601 luma, grey to RGB by repetition). ``resize``: a
    :class:`CentreCrop` applied after the conversion (the result is ``size x size``).
    """
    img = open_image(src, name=name)
    grey = is_grey(img.mode) if channels is None else channels == 1
    if channels not in (None, 1, 3):
        raise ValueError(f"channels={channels!r}: 1 (grey) or 3 (RGB)")
    img = img.convert("L" if grey else "RGB")
    if resize is not None:
        img = resize(img)
    return np.asarray(img, dtype=np.uint8)


__all__ = ["DEFAULT_CROP_PCT", "GREY_MODES", "INTERPOLATIONS", "CentreCrop", "ImageDecodeError",
           "decode", "is_grey", "open_image"]
