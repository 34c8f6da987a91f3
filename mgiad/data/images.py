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
"""

from __future__ import annotations

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


def decode(src: str | Path | IO[bytes], *, channels: int | None = None,
           name: str | None = None) -> np.ndarray:
    """The image as uint8 pixels: (H, W) for one channel, (H, W, 3) for three.

    ``channels=None`` keeps grey images grey and makes everything else RGB; 1 or 3 converts
    (RGB to grey with Pillow's ITU-R 601 luma, grey to RGB by repetition).
    """
    img = open_image(src, name=name)
    grey = is_grey(img.mode) if channels is None else channels == 1
    if channels not in (None, 1, 3):
        raise ValueError(f"channels={channels!r}: 1 (grey) or 3 (RGB)")
    return np.asarray(img.convert("L" if grey else "RGB"), dtype=np.uint8)


__all__ = ["GREY_MODES", "ImageDecodeError", "decode", "is_grey", "open_image"]
