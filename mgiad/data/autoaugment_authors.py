"""The authors' AutoAugment: a PIL CIFAR-10 policy with grey fill, batched and bit-exact.

The paper's authors (vanbetteray/Poly-MgNet, ``utils/autoaugment.py``) do not use torchvision's
AutoAugment but a copy of DeepVoltaire/AutoAugment's ``CIFAR10Policy``: a PIL implementation with
its own sub-policy list, magnitudes and conventions (docs/paper-notes.md section 5):

- geometric ops fill with grey 128 instead of black; shears resample bicubic, translations and the
  rotation nearest; the rotation is always counter-clockwise (no random sign);
- colour ops are Pillow's ``ImageEnhance`` (factor ``1 +- m``) and ``ImageOps``;
- an op runs when ``random.random() < p`` (strict).

This module computes those ops on a whole ``(N, C, H, W)`` uint8 batch with Pillow's own integer
and floating-point arithmetic (``libImaging/Geometry.c``, ``Blend.c``, ``Filter.c``,
``Convert.c`` and ``ImageOps``), so that a batch augmented here equals what the authors' policy
produces with Pillow for the same random choices (``tests/test_augment_authors.py`` checks every
op and the whole pipeline against Pillow). Choices are drawn by
:meth:`mgiad.data.augment.BatchAugment.sample`; here everything is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .autoaugment import _equalize, _invert, _per_image, _posterize, policy_tensors

__all__ = ["AUTHORS_CIFAR10_POLICY", "AUTHORS_OP_NAMES", "FILL", "apply_authors_ops", "authors_tables"]

#: Grey level of every area the geometric ops uncover (``fillcolor=(128, 128, 128)``).
FILL = 128

#: Op kinds of the authors' policy; index 0 (Identity) is what a skipped stage becomes.
AUTHORS_OP_NAMES: tuple[str, ...] = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Color", "Posterize",
    "Solarize", "Contrast", "Sharpness", "Brightness", "AutoContrast", "Equalize", "Invert",
)
_OP = {name: i for i, name in enumerate(AUTHORS_OP_NAMES)}
#: Ops whose magnitude gets a random sign (``random.choice([-1, 1])``); Rotate does not.
_SIGNED = frozenset(("ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Contrast",
                     "Sharpness", "Brightness"))

#: The 25 sub-policies, ``((op, probability, magnitude bin), (op, probability, magnitude bin))``,
#: in the authors' order. Bins of the magnitude-free ops are kept as written though unused.
AUTHORS_CIFAR10_POLICY: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
)


def _magnitude(op: str, bin_: int, height: int, width: int) -> float:
    """The unsigned magnitude of ``op`` at ``bin_``: the float64 value of the authors' numpy
    ``linspace`` tables; translations are already multiplied by the image size, as the policy
    does (``magnitude * img.size[0]`` before the sign)."""
    if op in ("ShearX", "ShearY"):
        return float(np.linspace(0, 0.3, 10)[bin_])
    if op == "TranslateX":
        return float(np.linspace(0, 150 / 331, 10)[bin_]) * width
    if op == "TranslateY":
        return float(np.linspace(0, 150 / 331, 10)[bin_]) * height
    if op == "Rotate":
        return float(np.linspace(0, 30, 10)[bin_])
    if op in ("Color", "Contrast", "Sharpness", "Brightness"):
        return float(np.linspace(0.0, 0.9, 10)[bin_])
    if op == "Posterize":
        return float(np.round(np.linspace(8, 4, 10), 0).astype(int)[bin_])
    if op == "Solarize":
        return float(np.linspace(256, 0, 10)[bin_])
    return 0.0


def authors_tables(height: int, width: int) -> dict[str, Tensor]:
    """The policy as (25, 2) tensors for ``height x width`` images: ``op`` (int64 into
    :data:`AUTHORS_OP_NAMES`), unsigned ``magnitude`` (float64), ``signed``, ``prob`` (float64:
    the policy compares Python's ``random.random() < p``)."""
    return policy_tensors(AUTHORS_CIFAR10_POLICY, _OP,
                          lambda name, bin_: _magnitude(name, bin_, height, width), _SIGNED,
                          torch.float64)


# --------------------------------------------------------------------------------------------
# Colour ops (Pillow ImageEnhance / ImageOps). ``img`` is (k, C, H, W) uint8.
# --------------------------------------------------------------------------------------------


def _luma(img: Tensor) -> Tensor:
    """``convert("L")``: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16`` (Convert.c), (k, 1, H, W)."""
    if img.shape[1] == 1:
        return img
    r, g, b = img.to(torch.int32).unbind(dim=1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8).unsqueeze(1)


def _blend(degenerate: Tensor, img: Tensor, factor: Tensor) -> Tensor:
    """``Image.blend(degenerate, img, factor)`` (Blend.c): ``in1 + alpha * (in2 - in1)`` in C
    float arithmetic (alpha rounded to float32), clipped to [0, 255] and truncated."""
    alpha = _per_image(factor.to(torch.float32))
    diff = (img.to(torch.int32) - degenerate.to(torch.int32)).to(torch.float32)
    out = degenerate.to(torch.float32) + alpha * diff
    return out.clamp(0, 255).to(torch.uint8)


def _factor(mag: Tensor) -> Tensor:
    """The enhance factor ``1 + magnitude * sign`` (the magnitude arrives signed)."""
    return 1.0 + mag


def _color(img: Tensor, mag: Tensor) -> Tensor:
    """``ImageEnhance.Color``: blend with ``convert("L").convert(mode)``."""
    return _blend(_luma(img).expand_as(img), img, _factor(mag))


def _contrast(img: Tensor, mag: Tensor) -> Tensor:
    """``ImageEnhance.Contrast``: blend with the grey level ``int(mean(L) + 0.5)`` (ImageStat's
    float64 mean of the histogram)."""
    luma = _luma(img)
    count = luma.shape[-1] * luma.shape[-2]
    mean = luma.to(torch.int64).sum(dim=(1, 2, 3)).to(torch.float64) / count
    level = (mean + 0.5).trunc().to(torch.uint8)
    return _blend(_per_image(level).expand_as(img), img, _factor(mag))


def _brightness(img: Tensor, mag: Tensor) -> Tensor:
    """``ImageEnhance.Brightness``: blend with black."""
    return _blend(torch.zeros_like(img), img, _factor(mag))


def _smooth(img: Tensor) -> Tensor:
    """``filter(ImageFilter.SMOOTH)`` (Filter.c ``ImagingFilter3x3``): kernel [[1,1,1],[1,5,1],
    [1,1,1]] / 13 in float32 summed row by row (row below, centre row, row above) from a +0.5
    rounding offset, truncated; the one-pixel border is copied."""
    h, w = img.shape[-2:]
    if h < 3 or w < 3:
        return img.clone()
    one = torch.tensor(1.0 / 13.0, dtype=torch.float32).item()
    five = torch.tensor(5.0 / 13.0, dtype=torch.float32).item()
    x = img.to(torch.float32)

    def row(r: slice, centre: float) -> Tensor:
        # KERNEL1x3: (in[x-1] * k0 + in[x] * k1) + in[x+1] * k2, in this order.
        rows = x[..., r, :]
        return (rows[..., :-2] * one + rows[..., 1:-1] * centre) + rows[..., 2:] * one

    ss = torch.full_like(x[..., 1:-1, 1:-1], 0.5)
    ss = ss + row(slice(2, h), one)
    ss = ss + row(slice(1, h - 1), five)
    ss = ss + row(slice(0, h - 2), one)
    out = img.clone()
    out[..., 1:-1, 1:-1] = ss.clamp(0, 255).to(torch.uint8)
    return out


def _sharpness(img: Tensor, mag: Tensor) -> Tensor:
    """``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image."""
    return _blend(_smooth(img), img, _factor(mag))


def _solarize(img: Tensor, mag: Tensor) -> Tensor:
    """``ImageOps.solarize(img, t)``: values ``>= t`` become ``255 - v`` (t = 256: none)."""
    return torch.where(img.to(torch.float64) >= _per_image(mag), 255 - img, img)


def _autocontrast(img: Tensor, mag: Tensor) -> Tensor:
    """``ImageOps.autocontrast(img)`` (cutoff 0): per channel ``lut[v] = int(v * scale + offset)``
    with ``scale = 255 / (hi - lo)``, ``offset = -lo * scale`` in float64; flat channels stay."""
    lo = img.amin(dim=(-2, -1), keepdim=True).to(torch.float64)
    hi = img.amax(dim=(-2, -1), keepdim=True).to(torch.float64)
    flat = hi <= lo
    # A tensor numerator: ``255.0 / tensor`` is computed as ``reciprocal(tensor) * 255``, which
    # rounds differently from Python's division.
    scale = torch.full_like(hi, 255.0) / torch.where(flat, 1.0, hi - lo)
    offset = -lo * scale
    out = (img.to(torch.float64) * scale + offset).trunc().clamp(0, 255).to(torch.uint8)
    return torch.where(flat, img, out)


# --------------------------------------------------------------------------------------------
# Geometric ops (Pillow Image.transform / rotate, Geometry.c), grey fill.
# --------------------------------------------------------------------------------------------


def _gather(img: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``img[i, :, rows[i, y, x], cols[i, y, x]]`` for (k, H, W) index maps, (k, C, H, W)."""
    k, c, h, w = img.shape
    source = (rows * w + cols).view(k, 1, h * w).expand(k, c, h * w)
    return img.reshape(k, c, h * w).gather(2, source).view(k, c, h, w)


def _bicubic(v1: Tensor, v2: Tensor, v3: Tensor, v4: Tensor, d: Tensor) -> Tensor:
    """Pillow's BICUBIC macro (a = -1 cubic convolution) in its operation order, float64."""
    p1 = v2
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return p1 + d * (p2 + d * (p3 + d * p4))


def _shear(img: Tensor, op: Tensor, mag: Tensor) -> Tensor:
    """ShearX/ShearY: ``transform(size, AFFINE, (1, m, 0, 0, 1, 0) | (1, 0, 0, m, 1, 0), BICUBIC,
    fillcolor=128)``. Source of output pixel (x, y): ``(x + 0.5 + m (y + 0.5), y + 0.5)`` (ShearX);
    outside the image: grey; inside: Pillow's bicubic filter with clamped neighbours, clipped to
    [0, 255] and truncated."""
    k, c, h, w = img.shape
    dev = img.device
    ys = (torch.arange(h, device=dev, dtype=torch.float64) + 0.5).view(1, h, 1).expand(k, h, w)
    xs = (torch.arange(w, device=dev, dtype=torch.float64) + 0.5).view(1, 1, w).expand(k, h, w)
    m = mag.view(k, 1, 1)
    is_x = (op == _OP["ShearX"]).view(k, 1, 1)
    zero = torch.zeros_like(m)
    a1 = torch.where(is_x, m, zero)  # a = (1, a1, 0, a3, 1, 0)
    a3 = torch.where(is_x, zero, m)
    # affine_transform: a0 * xin + a1 * yin + a2 (a0 = 1, a2 = 0: "+ 0.0" changes nothing).
    x_in = xs + a1 * ys
    y_in = a3 * xs + ys
    inside = (x_in >= 0) & (x_in < w) & (y_in >= 0) & (y_in < h)
    x_in, y_in = x_in - 0.5, y_in - 0.5
    x0, y0 = x_in.floor(), y_in.floor()
    dx, dy = x_in - x0, y_in - y0
    x0, y0 = x0.long() - 1, y0.long() - 1
    src = img.to(torch.float64)
    # Rows beyond the image reuse the previous row's value, which equals clamping the index for
    # every source position that passes the inside test.
    rows = []
    for i in range(4):
        r = (y0 + i).clamp(0, h - 1)
        taps = [_gather(src, r, (x0 + j).clamp(0, w - 1)) for j in range(4)]
        rows.append(_bicubic(*taps, dx.unsqueeze(1)))
    v = _bicubic(*rows, dy.unsqueeze(1))
    out = v.clamp(0, 255).trunc().to(torch.uint8)  # v <= 0 -> 0, v >= 255 -> 255, else (UINT8)v
    return torch.where(inside.unsqueeze(1), out, torch.full_like(out, FILL))


def _coord(v: Tensor) -> Tensor:
    """Pillow's COORD: -1 for negative values, else truncation."""
    return torch.where(v < 0, -1, v.trunc()).long()


def _translate(img: Tensor, op: Tensor, mag: Tensor) -> Tensor:
    """TranslateX/Y: ``transform(size, AFFINE, (1, 0, t, 0, 1, 0) | (1, 0, 0, 0, 1, t),
    fillcolor=128)`` -- nearest, through ``ImagingScaleAffine``: source column ``COORD(xo)`` with
    ``xo = t + 0.5`` advanced by ``+= 1.0`` per column in float64 (likewise rows)."""
    k, c, h, w = img.shape
    zero = torch.zeros_like(mag)
    tx = torch.where(op == _OP["TranslateX"], mag, zero)
    ty = torch.where(op == _OP["TranslateY"], mag, zero)

    def table(t: Tensor, n: int) -> Tensor:
        pos, out = t + 0.5, []  # xo = a[2] + a[0] * 0.5
        for _ in range(n):  # the same sequence of float64 additions as the C loop
            out.append(_coord(pos))
            pos = pos + 1.0
        return torch.stack(out, dim=1)  # (k, n)

    cols, rows = table(tx, w), table(ty, h)
    ok = ((rows >= 0) & (rows < h)).view(k, h, 1) & ((cols >= 0) & (cols < w)).view(k, 1, w)
    out = _gather(img, rows.clamp(0, h - 1).view(k, h, 1).expand(k, h, w),
                  cols.clamp(0, w - 1).view(k, 1, w).expand(k, h, w))
    return torch.where(ok.unsqueeze(1), out, torch.full_like(out, FILL))


def _rotation_fixed(angle: float, height: int, width: int) -> tuple[int, ...]:
    """``Image.rotate(angle)``'s inverse matrix as Geometry.c's 16.16 fixed-point coefficients
    ``(a0, a1, a2, a3, a4, a5)`` with the half-pixel offsets folded into a2 and a5."""
    cx, cy = width / 2, height / 2
    theta = -math.radians(angle)
    a = [round(math.cos(theta), 15), round(math.sin(theta), 15), 0.0,
         round(-math.sin(theta), 15), round(math.cos(theta), 15), 0.0]
    a[2] = a[0] * -cx + a[1] * -cy + a[2] + cx
    a[5] = a[3] * -cx + a[4] * -cy + a[5] + cy

    def fix(v: float) -> int:  # FLOOR(v * 65536.0 + 0.5)
        return math.floor(v * 65536.0 + 0.5)

    return (fix(a[0]), fix(a[1]), fix(a[2] + a[0] * 0.5 + a[1] * 0.5),
            fix(a[3]), fix(a[4]), fix(a[5] + a[3] * 0.5 + a[4] * 0.5))


def _rotate(img: Tensor, mag: Tensor) -> Tensor:
    """Rotate by ``mag`` degrees counter-clockwise about the centre, nearest, grey outside: the
    authors' ``rotate_with_fill`` (RGBA rotate, composite over grey). Pillow takes its
    fixed-point affine path, so source pixel = ``(a2 + x a0 + y a1) >> 16`` (likewise rows)."""
    k, c, h, w = img.shape
    if max(h, w) >= 16384:  # Geometry.c check_fixed: beyond it Pillow switches arithmetic
        raise ValueError(f"rotation of {h}x{w} images is not supported (at most 16383 pixels)")
    angles = mag.remainder(360.0)
    out = img.clone()
    dev = img.device
    ys = torch.arange(h, device=dev).view(h, 1)
    xs = torch.arange(w, device=dev).view(1, w)
    for angle in torch.unique(angles).tolist():  # a few distinct magnitudes per batch
        if angle == 0.0:  # Image.rotate returns a copy
            continue
        if angle in (90.0, 180.0, 270.0):
            raise ValueError(f"rotation by {angle} degrees takes Pillow's transpose path, "
                             "which this implementation does not reproduce")
        a0, a1, a2, a3, a4, a5 = _rotation_fixed(angle, h, w)
        cols = (a2 + ys * a1 + xs * a0) >> 16
        rows = (a5 + ys * a4 + xs * a3) >> 16
        ok = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        idx = torch.nonzero(angles == angle).view(-1)
        sub = _gather(img.index_select(0, idx), rows.clamp(0, h - 1).expand(len(idx), h, w),
                      cols.clamp(0, w - 1).expand(len(idx), h, w))
        sub = torch.where(ok, sub, torch.full_like(sub, FILL))
        out.index_copy_(0, idx, sub)
    return out


_FNS = {
    "ShearX": lambda img, op, mag: _shear(img, op, mag),
    "ShearY": lambda img, op, mag: _shear(img, op, mag),
    "TranslateX": lambda img, op, mag: _translate(img, op, mag),
    "TranslateY": lambda img, op, mag: _translate(img, op, mag),
    "Rotate": lambda img, op, mag: _rotate(img, mag),
    "Color": lambda img, op, mag: _color(img, mag),
    "Posterize": lambda img, op, mag: _posterize(img, mag),
    "Solarize": lambda img, op, mag: _solarize(img, mag),
    "Contrast": lambda img, op, mag: _contrast(img, mag),
    "Sharpness": lambda img, op, mag: _sharpness(img, mag),
    "Brightness": lambda img, op, mag: _brightness(img, mag),
    "AutoContrast": lambda img, op, mag: _autocontrast(img, mag),
    "Equalize": lambda img, op, mag: _equalize(img, mag),
    "Invert": lambda img, op, mag: _invert(img, mag),
}


def apply_authors_ops(img: Tensor, op: Tensor, magnitude: Tensor) -> Tensor:
    """Apply one op of the authors' policy per image: image ``i`` gets
    ``AUTHORS_OP_NAMES[op[i]]`` with the signed magnitude ``magnitude[i]`` (translations in
    pixels, enhance ops as ``factor - 1``).

    Args:
        img: (N, C, H, W) uint8, C in {1, 3}; any device, any memory format.
        op: (N,) int64 indices into :data:`AUTHORS_OP_NAMES` (0 = Identity).
        magnitude: (N,) float64.

    Returns:
        (N, C, H, W) uint8, a new tensor.
    """
    if img.dtype != torch.uint8 or img.dim() != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W) uint8 images, got {tuple(img.shape)} {img.dtype}")
    out = img.clone()
    op = op.to(img.device)
    magnitude = magnitude.to(device=img.device, dtype=torch.float64)
    order = torch.argsort(op, stable=True)
    counts = torch.bincount(op, minlength=len(AUTHORS_OP_NAMES)).tolist()
    for name, idx in zip(AUTHORS_OP_NAMES, order.split(counts)):
        if name == "Identity" or idx.numel() == 0:
            continue
        sub = _FNS[name](img.index_select(0, idx), op.index_select(0, idx),
                         magnitude.index_select(0, idx))
        out.index_copy_(0, idx, sub.contiguous())
    return out

