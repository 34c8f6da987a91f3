"""The paper's training augmentations, batched on the device that holds the batch.

The authors' CIFAR-10 pipeline (DESIGN.md section 2) is, per image on the CPU::

    RandomCrop(32, padding=4) -> RandomHorizontalFlip() -> AutoAugment(CIFAR10) -> ToTensor -> Normalize

CIFAR-100 uses the crop with reflect padding and the flip; FashionMNIST uses nothing. Running that
pipeline per image in Python costs more than a small model's training step, so this module does
the same work on a whole ``(N, H, W, C)`` uint8 batch at once, on whatever device it lives on,
with no Python loop over images (loops run over the 15 op kinds and the two AutoAugment stages).

Every op reproduces torchvision's tensor implementation (``torchvision/transforms/autoaugment.py``
``_apply_op`` and ``torchvision/transforms/_functional_tensor.py``) on uint8 images, including its
float32 arithmetic, truncating casts and affine-grid convention, so that a batch augmented here
equals the images torchvision would produce with the same random choices (``tests/test_augment.py``
checks this op by op and for the whole pipeline).

Randomness is separated from work: :meth:`BatchAugment.sample` draws every random choice of a batch
from one generator, :meth:`BatchAugment.apply` is deterministic, and
``train(x, g) == apply(x, sample(len(x), H, g))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "OP_NAMES",
    "CIFAR10_POLICY",
    "BatchAugment",
    "paper_augment",
    "apply_ops",
    "crop_flip",
]

#: AutoAugment op kinds, in the order of torchvision's ``_augmentation_space`` (Identity first so
#: that index 0 means "leave the image alone", which is also what a skipped stage becomes).
OP_NAMES: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
_OP = {name: i for i, name in enumerate(OP_NAMES)}
_GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
_SIGNED = frozenset(
    ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
     "Sharpness")
)

#: torchvision ``AutoAugment._get_policies(AutoAugmentPolicy.CIFAR10)``: 25 sub-policies of two
#: ``(op name, probability, magnitude bin or None)`` each, copied verbatim.
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def _magnitude_bins(op: str, height: int, width: int, num_bins: int = 10) -> Tensor:
    """The magnitude table of one op: torchvision ``AutoAugment._augmentation_space(10, (h, w))``.

    Built with the same float32 ``torch.linspace`` calls, because torchvision reads a magnitude as
    ``float(magnitudes[bin].item())`` -- the float32 value, not the decimal one.
    """
    if op in ("ShearX", "ShearY"):
        return torch.linspace(0.0, 0.3, num_bins)
    if op == "TranslateX":
        return torch.linspace(0.0, 150.0 / 331.0 * width, num_bins)
    if op == "TranslateY":
        return torch.linspace(0.0, 150.0 / 331.0 * height, num_bins)
    if op == "Rotate":
        return torch.linspace(0.0, 30.0, num_bins)
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return torch.linspace(0.0, 0.9, num_bins)
    if op == "Posterize":
        return 8 - (torch.arange(num_bins) / ((num_bins - 1) / 4)).round().int()
    if op == "Solarize":
        return torch.linspace(255.0, 0.0, num_bins)
    return torch.zeros(num_bins)


def _policy_tables(height: int, width: int) -> dict[str, Tensor]:
    """Per (sub-policy, stage): op index, unsigned magnitude (float64), signed flag, probability."""
    ops, mags, signed, probs = [], [], [], []
    for sub_policy in CIFAR10_POLICY:
        for name, p, bin_ in sub_policy:
            ops.append(_OP[name])
            mag = 0.0 if bin_ is None else float(_magnitude_bins(name, height, width)[bin_].item())
            mags.append(mag)
            signed.append(name in _SIGNED)
            probs.append(p)
    n = len(CIFAR10_POLICY)
    return {
        "op": torch.tensor(ops, dtype=torch.int64).view(n, 2),
        "magnitude": torch.tensor(mags, dtype=torch.float64).view(n, 2),
        "signed": torch.tensor(signed).view(n, 2),
        # float32 like torchvision's ``probs = torch.rand((2,))`` compared with ``probs[i] <= p``,
        # where the Python float p is converted to the tensor's dtype.
        "prob": torch.tensor(probs, dtype=torch.float32).view(n, 2),
    }


# --------------------------------------------------------------------------------------------
# Colour ops. ``img`` is (k, C, H, W) uint8, one row per image; factors are per image.
# --------------------------------------------------------------------------------------------


def _per_image(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def _blend(img1: Tensor, img2: Tensor, ratio: Tensor) -> Tensor:
    """torchvision ``_blend`` with one ratio per image.

    torchvision computes ``(ratio * img1 + (1.0 - ratio) * img2).clamp(0, 255).to(uint8)`` with a
    Python-float ratio, so ``1.0 - ratio`` is formed in float64 and both scalars enter the float32
    arithmetic rounded to float32; doing the same here makes the result bit-identical, including
    the truncating uint8 cast.
    """
    r1 = _per_image(ratio.to(torch.float32))
    r2 = _per_image((1.0 - ratio).to(torch.float32))
    return (r1 * img1 + r2 * img2).clamp(0, 255).to(torch.uint8)


def _grayscale(img: Tensor) -> Tensor:
    """torchvision ``rgb_to_grayscale`` (ITU-R 601-2 luma, truncated to uint8), (k, 1, H, W)."""
    if img.shape[1] == 1:
        return img.clone()
    r, g, b = img.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(img.dtype).unsqueeze(1)


def _brightness(img: Tensor, mag: Tensor) -> Tensor:
    """``F.adjust_brightness(img, 1 + m)``: blend with black."""
    return _blend(img, torch.zeros_like(img), 1.0 + mag)


def _color(img: Tensor, mag: Tensor) -> Tensor:
    """``F.adjust_saturation(img, 1 + m)``: blend with the grey image (identity for 1 channel)."""
    if img.shape[1] == 1:  # torchvision: "Match PIL behaviour"
        return img
    return _blend(img, _grayscale(img), 1.0 + mag)


def _contrast(img: Tensor, mag: Tensor) -> Tensor:
    """``F.adjust_contrast(img, 1 + m)``: blend with the mean grey level of each image.

    The mean is a float32 mean of integers; the sum is exact (< 2**24), so its value does not
    depend on the reduction order of a batched vs a per-image reduction.
    """
    mean = torch.mean(_grayscale(img).to(torch.float32), dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, 1.0 + mag)


def _sharpness(img: Tensor, mag: Tensor) -> Tensor:
    """``F.adjust_sharpness(img, 1 + m)``: blend with the 3x3 smoothed image, borders kept."""
    if img.shape[-1] <= 2 or img.shape[-2] <= 2:
        return img
    # torchvision ``_blurred_degenerate_image``: kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 as a
    # depthwise float32 conv, rounded back to uint8, on the interior only.
    kernel = torch.ones((3, 3), dtype=torch.float32, device=img.device)
    kernel[1, 1] = 5.0
    kernel /= kernel.sum()
    c = img.shape[1]
    kernel = kernel.expand(c, 1, 3, 3)
    blurred = F.conv2d(img.to(torch.float32), kernel, groups=c)
    degenerate = img.clone()
    degenerate[..., 1:-1, 1:-1] = torch.round(blurred).to(torch.uint8)
    return _blend(img, degenerate, 1.0 + mag)


def _posterize(img: Tensor, mag: Tensor) -> Tensor:
    """``F.posterize(img, int(m))``: keep the top ``bits`` bits (``img & -(2 ** (8 - bits))``)."""
    bits = mag.trunc().to(torch.int64)
    mask = (-(2 ** (8 - bits))) & 0xFF  # the uint8 pattern of torchvision's negative int mask
    return img & _per_image(mask.to(torch.uint8))


def _solarize(img: Tensor, mag: Tensor) -> Tensor:
    """``F.solarize(img, m)``: invert pixels ``>= m``; uint8 vs a float compares in float32."""
    threshold = _per_image(mag.to(torch.float32))
    return torch.where(img.to(torch.float32) >= threshold, 255 - img, img)


def _autocontrast(img: Tensor, mag: Tensor) -> Tensor:
    """``F.autocontrast``: stretch each channel of each image to [0, 255] (float32, truncated)."""
    minimum = img.amin(dim=(-2, -1), keepdim=True).to(torch.float32)
    maximum = img.amax(dim=(-2, -1), keepdim=True).to(torch.float32)
    scale = 255 / (maximum - minimum)
    constant = ~torch.isfinite(scale)  # flat channel: torchvision leaves it unchanged
    minimum = minimum.masked_fill(constant, 0.0)
    scale = scale.masked_fill(constant, 1.0)
    return ((img - minimum) * scale).clamp(0, 255).to(torch.uint8)


def _equalize(img: Tensor, mag: Tensor) -> Tensor:
    """``F.equalize``: torchvision ``_scale_channel`` for every channel of every image at once.

    Per channel, with ``hist`` the 256-bin histogram: ``step = sum(nonzero bins except the last
    nonzero one) // 255`` (= (pixels - count of the maximum value) // 255); if ``step == 0`` the
    channel is unchanged; else ``lut = (cumsum(hist) + step // 2) // step`` shifted right by one
    bin, clamped to [0, 255]. All integer arithmetic, so the batched result is exact.
    """
    k, c, h, w = img.shape
    flat = img.reshape(k * c, h * w).to(torch.int64)
    # Histograms of all channels of all images in one scatter (deterministic for integer counts).
    hist = torch.zeros(k * c, 256, dtype=torch.int64, device=img.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    count_of_max = hist.gather(1, flat.amax(dim=1, keepdim=True))
    step = torch.div(h * w - count_of_max, 255, rounding_mode="floor")
    safe_step = step.clamp(min=1)  # rows with step == 0 are discarded below
    lut = torch.div(
        torch.cumsum(hist, dim=1) + torch.div(safe_step, 2, rounding_mode="floor"),
        safe_step,
        rounding_mode="floor",
    )
    lut = F.pad(lut, [1, 0])[:, :-1].clamp(0, 255)
    out = torch.where(step == 0, flat, lut.gather(1, flat))
    return out.to(torch.uint8).view(k, c, h, w)


def _invert(img: Tensor, mag: Tensor) -> Tensor:
    """``F.invert``: ``255 - img``."""
    return 255 - img


# --------------------------------------------------------------------------------------------
# Geometric ops: one batched affine grid_sample for ShearX/Y, TranslateX/Y and Rotate.
# --------------------------------------------------------------------------------------------


def _inverse_affine_theta(op: Tensor, mag: Tensor, height: int, width: int) -> Tensor:
    """(k, 2, 3) float32 inverse affine matrices exactly as torchvision builds them for each op.

    Mirrors ``_apply_op`` -> ``F.affine`` / ``F.rotate`` -> ``_get_inverse_affine_matrix`` with
    tensors instead of Python floats: the arithmetic runs in float64 in torchvision's operation
    order (so the float32 matrix handed to ``_gen_affine_grid`` is the same), with per op:

    - ShearX/ShearY: ``shear = degrees(atan(m))`` on one axis, ``center=[0, 0]`` i.e. the
      *top-left corner*, which the tensor path stores as ``center_f = [-w/2, -h/2]``;
    - TranslateX/TranslateY: ``translate = int(m)`` (truncation), centre of the image;
    - Rotate: ``F.rotate`` negates the angle before building the matrix, centre of the image.
    """
    deg_to_rad = math.pi / 180.0  # math.radians' constant, not torch.deg2rad's literal
    rad_to_deg = 180.0 / math.pi  # math.degrees' constant
    zero = torch.zeros_like(mag)
    is_shear_x = op == _OP["ShearX"]
    is_shear_y = op == _OP["ShearY"]
    is_shear = is_shear_x | is_shear_y
    shear_deg = torch.atan(mag) * rad_to_deg
    angle = torch.where(op == _OP["Rotate"], -mag, zero)
    shear_x = torch.where(is_shear_x, shear_deg, zero)
    shear_y = torch.where(is_shear_y, shear_deg, zero)
    tx = torch.where(op == _OP["TranslateX"], mag.trunc(), zero)
    ty = torch.where(op == _OP["TranslateY"], mag.trunc(), zero)
    cx = torch.where(is_shear, zero - width * 0.5, zero)
    cy = torch.where(is_shear, zero - height * 0.5, zero)

    rot = angle * deg_to_rad
    sx = shear_x * deg_to_rad
    sy = shear_y * deg_to_rad
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    # Inverted rotation/shear matrix (det == 1, scale == 1), then RSS^-1 * C^-1 * T^-1, then C.
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = (zero + (m0 * (-cx - tx) + m1 * (-cy - ty))) + cx
    m5 = (zero + (m3 * (-cx - tx) + m4 * (-cy - ty))) + cy
    theta = torch.stack([m0, m1, m2, m3, m4, m5], dim=1)
    return theta.to(torch.float32).view(-1, 2, 3)


def _affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """torchvision ``_gen_affine_grid`` for a batch of matrices, output size = input size.

    Pixel centres at ``-size/2 + 0.5 ... size/2 - 0.5`` (centre of the image at 0), the matrix
    is applied in pixel units and only then divided by ``size/2`` -- unlike
    ``F.affine_grid``, which normalises first; using ``affine_grid`` would shift the nearest
    pixel choices.
    """
    d = 0.5
    base_grid = torch.empty(1, height, width, 3, dtype=theta.dtype, device=theta.device)
    x_grid = torch.linspace(-width * 0.5 + d, width * 0.5 + d - 1, steps=width, device=theta.device)
    base_grid[..., 0].copy_(x_grid)
    y_grid = torch.linspace(
        -height * 0.5 + d, height * 0.5 + d - 1, steps=height, device=theta.device
    ).unsqueeze_(-1)
    base_grid[..., 1].copy_(y_grid)
    base_grid[..., 2].fill_(1)
    scale = torch.tensor([0.5 * width, 0.5 * height], dtype=theta.dtype, device=theta.device)
    rescaled_theta = theta.transpose(1, 2) / scale
    k = theta.shape[0]
    grid = base_grid.view(1, height * width, 3).expand(k, -1, -1).bmm(rescaled_theta)
    return grid.view(k, height, width, 2)


def _geometric(img: Tensor, op: Tensor, mag: Tensor) -> Tensor:
    """ShearX/Y, TranslateX/Y, Rotate of each image by its own matrix in one ``grid_sample``.

    torchvision (tensor path, ``fill=None``): nearest sampling of the float32 image with zero
    padding and ``align_corners=False``, rounded back to uint8.
    """
    h, w = img.shape[-2:]
    grid = _affine_grid(_inverse_affine_theta(op, mag, h, w), h, w)
    out = F.grid_sample(
        img.to(torch.float32), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return torch.round(out).to(torch.uint8)


_COLOUR_FNS = {
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
}
# Groups processed together: 0 = Identity (skipped), 1 = all geometric ops (one grid_sample),
# then one group per colour op.
_GROUP_NAMES: tuple[str, ...] = ("Identity", "Geometric", *_COLOUR_FNS)
_OP_TO_GROUP = torch.tensor(
    [0 if n == "Identity" else 1 if n in _GEOMETRIC else _GROUP_NAMES.index(n) for n in OP_NAMES]
)


def apply_ops(img: Tensor, op: Tensor, magnitude: Tensor) -> Tensor:
    """Apply one AutoAugment op per image: image ``i`` gets ``OP_NAMES[op[i]]`` at ``magnitude[i]``.

    Batched equivalent of ``torchvision.transforms.autoaugment._apply_op(img[i], OP_NAMES[op[i]],
    magnitude[i], InterpolationMode.NEAREST, fill=None)`` for every i.

    Args:
        img: (N, C, H, W) uint8 images, C in {1, 3}; any device, any memory format.
        op: (N,) int64 indices into :data:`OP_NAMES` (0 = Identity).
        magnitude: (N,) float64 signed magnitudes, as ``_apply_op`` receives them.

    Returns:
        (N, C, H, W) uint8, a new tensor.

    Images are grouped by op kind with one sort; the only host synchronisation is reading the
    group sizes (one ``tolist``), so the cost is a handful of kernels per op kind present.
    """
    if img.dtype != torch.uint8 or img.dim() != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W) uint8 images, got {tuple(img.shape)} {img.dtype}")
    out = img.clone()
    op = op.to(img.device)
    magnitude = magnitude.to(device=img.device, dtype=torch.float64)
    group = _OP_TO_GROUP.to(img.device)[op]
    order = torch.argsort(group, stable=True)
    counts = torch.bincount(group, minlength=len(_GROUP_NAMES)).tolist()
    for name, idx in zip(_GROUP_NAMES, order.split(counts)):
        if name == "Identity" or idx.numel() == 0:
            continue
        sub, mag = img.index_select(0, idx), magnitude.index_select(0, idx)
        if name == "Geometric":
            sub = _geometric(sub, op.index_select(0, idx), mag)
        else:
            sub = _COLOUR_FNS[name](sub, mag)
        out.index_copy_(0, idx, sub)
    return out


# --------------------------------------------------------------------------------------------
# Crop and flip, as one gather.
# --------------------------------------------------------------------------------------------


def _source_index(pos: Tensor, size: int, pad_mode: str) -> tuple[Tensor, Tensor]:
    """Map coordinates of the padded image (already minus the padding) to source coordinates.

    Returns the clamped index and a validity mask (False where constant padding shows zeros).
    ``reflect`` mirrors without repeating the edge pixel, like ``torch.nn.functional.pad``.
    """
    if pad_mode == "reflect":
        pos = torch.where(pos < 0, -pos, pos)
        pos = torch.where(pos >= size, 2 * (size - 1) - pos, pos)
        return pos, torch.ones_like(pos, dtype=torch.bool)
    valid = (pos >= 0) & (pos < size)
    return pos.clamp(0, size - 1), valid


def crop_flip(
    img: Tensor,
    top: Tensor | None,
    left: Tensor | None,
    flip: Tensor | None,
    padding: int,
    pad_mode: str = "constant",
) -> Tensor:
    """``RandomCrop(H, padding)`` then ``RandomHorizontalFlip`` with given choices, as one gather.

    Per image this equals ``F.hflip(F.crop(F.pad(img, padding, padding_mode=pad_mode), top, left,
    H, W))`` (hflip only where ``flip``), without materialising the padded batch: every output
    pixel's source pixel is computed and fetched with one ``gather`` per batch.

    Args:
        img: (N, C, H, W) images (any dtype, any memory format).
        top, left: (N,) integer offsets into the padded image, in ``[0, 2 * padding]``; None: no
            crop (``padding`` is then ignored).
        flip: (N,) bool, or None for no flip.
        padding: pixels of padding on every side (at most H - 1 for "reflect").
        pad_mode: "constant" (zeros) or "reflect".

    Returns:
        (N, C, H, W), contiguous.
    """
    n, c, h, w = img.shape
    dev = img.device
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip is not None:
        # The flip acts on the cropped image: output column k shows cropped column w-1-k.
        cols = torch.where(flip.to(dev).view(n, 1), w - 1 - cols, cols)
    cropped = top is not None and left is not None and padding > 0
    if cropped:
        rows = rows + (top.to(dev).view(n, 1) - padding)
        cols = cols + (left.to(dev).view(n, 1) - padding)
    rows, row_ok = _source_index(rows, h, pad_mode)
    cols, col_ok = _source_index(cols, w, pad_mode)
    # A gather along the flattened pixel axis of a channel-major copy: several times faster on
    # CPU than advanced indexing x[batch, rows, cols] of an NHWC tensor (3-byte rows).
    source = (rows.view(n, h, 1) * w + cols.view(n, 1, w)).view(n, 1, h * w)
    out = img.reshape(n, c, h * w).gather(2, source.expand(n, c, h * w)).view(n, c, h, w)
    if cropped and pad_mode == "constant":
        ok = row_ok.view(n, 1, h, 1) & col_ok.view(n, 1, 1, w)
        out = out * ok.to(out.dtype)
    return out


# --------------------------------------------------------------------------------------------
# The pipeline.
# --------------------------------------------------------------------------------------------


class BatchAugment:
    """Random crop, flip, AutoAugment (CIFAR-10 policy) and normalisation of a uint8 batch.

    Order as in the authors' code: ``pad_to`` -> ``RandomCrop(H, padding=crop)`` ->
    ``RandomHorizontalFlip()`` -> ``AutoAugment(AutoAugmentPolicy.CIFAR10)`` -> ``ToTensor`` ->
    ``Normalize(mean, std)``. AutoAugment samples one of the 25 sub-policies per image, applies
    each of its two ops with the op's probability and, for signed ops, a random sign; nearest
    interpolation and zero fill, as torchvision's defaults.

    Args:
        mean, std: per-channel normalisation on the [0, 1] scale (``ToTensor`` then ``Normalize``).
        crop: padding of the random crop to the input size; None: no crop.
        pad_mode: "constant" (zeros) or "reflect" padding of the crop.
        flip: random horizontal flip with probability 0.5.
        autoaugment: AutoAugment with the CIFAR-10 policy.
        pad_to: zero-pad images (centred; odd remainders go right/bottom) to this square size first,
            in ``train`` and ``test`` alike (FashionMNIST 28 -> 32).
        channels_last: return the output in ``torch.channels_last`` memory format.

    Inputs are (N, H, W, C) uint8 (a (N, H, W) batch is read as C = 1) on any device; outputs are
    (N, C, H', W') float32 on the same device.
    """

    def __init__(
        self,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        crop: int | None = None,
        pad_mode: str = "constant",
        flip: bool = False,
        autoaugment: bool = False,
        pad_to: int | None = None,
        channels_last: bool = False,
    ) -> None:
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if crop is not None and crop < 0:
            raise ValueError(f"crop padding must be >= 0, got {crop}")
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.crop = crop
        self.pad_mode = pad_mode
        self.flip = flip
        self.autoaugment = autoaugment
        self.pad_to = pad_to
        self.channels_last = channels_last
        self._tables: dict[tuple[int, int], dict[str, Tensor]] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop={self.crop}, pad_mode={self.pad_mode!r}, flip={self.flip}, "
            f"autoaugment={self.autoaugment}, pad_to={self.pad_to}, "
            f"channels_last={self.channels_last}, mean={self.mean}, std={self.std})"
        )

    # -- helpers ------------------------------------------------------------------------------

    def _prepare(self, x: Tensor) -> Tensor:
        """Check the input, add the channel axis of a (N, H, W) batch, apply ``pad_to``."""
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 batch, got {x.dtype}")
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        if x.dim() != 4 or x.shape[-1] != len(self.mean):
            raise ValueError(
                f"expected (N, H, W, {len(self.mean)}) images, got {tuple(x.shape)}"
            )
        if self.pad_to is not None:
            h, w = x.shape[1:3]
            if self.pad_to < max(h, w):
                raise ValueError(f"pad_to={self.pad_to} is smaller than the images ({h}x{w})")
            top, left = (self.pad_to - h) // 2, (self.pad_to - w) // 2
            bottom, right = self.pad_to - h - top, self.pad_to - w - left
            x = F.pad(x, (0, 0, left, right, top, bottom))
        return x

    def _normalise(self, x_nchw: Tensor) -> Tensor:
        """``ToTensor`` (``/ 255``) then ``Normalize``: ``(x / 255 - mean) / std`` in float32."""
        c = x_nchw.shape[1]
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x_nchw.device).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x_nchw.device).view(1, c, 1, 1)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        # Change the layout while the data are still 1 byte per value; the element-wise float
        # ops below keep it. In-place steps avoid allocating a buffer per step.
        x = x_nchw.contiguous(memory_format=fmt).to(torch.float32)
        return x.div_(255.0).sub_(mean).div_(std)

    def tables(self, height: int, width: int | None = None) -> dict[str, Tensor]:
        """The CIFAR-10 policy as tensors for ``height x width`` images (translations scale with
        the size): ``op``, ``magnitude`` (unsigned, float64), ``signed``, ``prob``, each (25, 2)."""
        key = (height, height if width is None else width)
        if key not in self._tables:
            self._tables[key] = _policy_tables(*key)
        return self._tables[key]

    # -- randomness ---------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        height: int,
        generator: torch.Generator | None = None,
        *,
        width: int | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, Tensor]:
        """Draw every random choice for a batch of ``n`` images of size ``height`` (after pad_to).

        Draws come from ``generator`` (on its device; without one, from the default generator of
        ``device``, CPU by default), always in the same order, so a generator state fixes a batch.

        Keys (present only for enabled steps), each with first dimension ``n``:

        - ``crop_top``, ``crop_left`` (int64): crop offsets into the padded image, in
          ``[0, 2 * crop]`` (torchvision ``RandomCrop.get_params``);
        - ``flip`` (bool): flip this image (``torch.rand(1) < 0.5``);
        - ``policy`` (int64): sub-policy index in ``[0, 25)``;
        - ``apply`` (bool, (n, 2)): whether each stage's op runs (``rand <= p``);
        - ``sign`` (bool, (n, 2)): True for a positive magnitude (torchvision negates when its
          ``signs[i] == 0``; unsigned ops ignore it);
        - ``op`` (int64, (n, 2)) and ``magnitude`` (float64, (n, 2)): derived, not random -- the
          op index into :data:`OP_NAMES` and the signed magnitude each stage would use, as
          ``_apply_op`` receives them. :meth:`apply` uses these with ``apply``.
        """
        if generator is not None:
            device = generator.device
        device = torch.device("cpu" if device is None else device)
        kw = {"generator": generator, "device": device}
        params: dict[str, Tensor] = {}
        if self.crop is not None:
            params["crop_top"] = torch.randint(0, 2 * self.crop + 1, (n,), **kw)
            params["crop_left"] = torch.randint(0, 2 * self.crop + 1, (n,), **kw)
        if self.flip:
            params["flip"] = torch.rand(n, **kw) < 0.5
        if self.autoaugment:
            tables = {k: v.to(device) for k, v in self.tables(height, width).items()}
            policy = torch.randint(0, len(CIFAR10_POLICY), (n,), **kw)
            u = torch.rand(n, 2, **kw)
            sign = torch.randint(0, 2, (n, 2), **kw) == 1
            magnitude = tables["magnitude"][policy]
            negate = tables["signed"][policy] & ~sign
            params["policy"] = policy
            params["apply"] = u <= tables["prob"][policy]
            params["sign"] = sign
            params["op"] = tables["op"][policy]
            params["magnitude"] = torch.where(negate, -magnitude, magnitude)
        return params

    # -- work ---------------------------------------------------------------------------------

    def augment_uint8(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Crop, flip and AutoAugment with given choices; (N, C, H', W') uint8, no normalisation.

        The memory format of the result is unspecified (it follows the ops that ran).
        """
        x = self._prepare(x)
        img = x.permute(0, 3, 1, 2)
        if self.crop is not None or self.flip:
            img = crop_flip(
                img,
                params["crop_top"] if self.crop is not None else None,
                params["crop_left"] if self.crop is not None else None,
                params["flip"] if self.flip else None,
                self.crop or 0,
                self.pad_mode,
            )
        if self.autoaugment:
            op = params["op"].to(img.device)
            applied = params["apply"].to(img.device)
            magnitude = params["magnitude"].to(img.device)
            for stage in range(2):  # the two ops of a sub-policy, in order
                stage_op = torch.where(applied[:, stage], op[:, stage], 0)
                img = apply_ops(img, stage_op, magnitude[:, stage])
        return img

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Deterministic augmentation with the choices ``params`` (from :meth:`sample`), then
        normalisation; ``train(x, g) == apply(x, sample(len(x), H, g))``."""
        return self._normalise(self.augment_uint8(x, params))

    def train(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Random augmentation and normalisation of a training batch (N, H, W, C) uint8."""
        h, w = (self.pad_to, self.pad_to) if self.pad_to is not None else x.shape[1:3]
        params = self.sample(len(x), h, generator, width=w, device=x.device)
        return self.apply(x, params)

    def test(self, x: Tensor) -> Tensor:
        """Evaluation transform: ``pad_to`` and normalisation only."""
        return self._normalise(self._prepare(x).permute(0, 3, 1, 2))


def paper_augment(
    dataset: str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    pad_to: int | None = None,
    channels_last: bool = False,
) -> BatchAugment:
    """The paper's augmentation recipe for ``dataset`` (DESIGN.md section 2).

    - ``cifar10``: RandomCrop(32, padding=4, zeros) + horizontal flip + AutoAugment(CIFAR10),
      as in the authors' training code;
    - ``cifar100``: RandomCrop(32, padding=4, reflect) + horizontal flip;
    - ``fashionmnist``: no augmentation (only ``pad_to`` and normalisation).
    """
    key = dataset.lower().replace("-", "").replace("_", "")
    common = {"mean": mean, "std": std, "pad_to": pad_to, "channels_last": channels_last}
    if key == "cifar10":
        return BatchAugment(crop=4, flip=True, autoaugment=True, **common)
    if key == "cifar100":
        return BatchAugment(crop=4, pad_mode="reflect", flip=True, **common)
    if key == "fashionmnist":
        return BatchAugment(**common)
    raise ValueError(f"unknown dataset {dataset!r}; expected cifar10, cifar100 or fashionmnist")
