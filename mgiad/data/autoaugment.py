"""AutoAugment (the CIFAR-10 policy) on a uint8 batch, op for op as torchvision computes it.

Every op reproduces torchvision's tensor implementation (``torchvision/transforms/autoaugment.py``
``_apply_op`` and ``torchvision/transforms/_functional_tensor.py``) on uint8 images, including its
float32 arithmetic, truncating casts and affine-grid convention, so that a batch augmented here
equals the images torchvision would produce with the same random choices (``tests/test_augment.py``
checks this op by op). :func:`apply_ops` applies one op per image with no Python loop over images
(loops run over the 15 op kinds).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CIFAR10_POLICY", "OP_NAMES", "apply_ops"]

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


def policy_tensors(policy: tuple, op_index: dict[str, int], magnitude: Callable[[str, int | None], float],
                   signed: frozenset[str], prob_dtype: torch.dtype) -> dict[str, Tensor]:
    """A sub-policy list as (n, 2) tensors: ``op`` (index), unsigned ``magnitude`` (float64),
    ``signed``, ``prob`` (in ``prob_dtype``, the precision the policy compares in)."""
    stages = [stage for sub_policy in policy for stage in sub_policy]
    n = len(policy)
    return {
        "op": torch.tensor([op_index[name] for name, _, _ in stages], dtype=torch.int64).view(n, 2),
        "magnitude": torch.tensor([magnitude(name, bin_) for name, _, bin_ in stages],
                                  dtype=torch.float64).view(n, 2),
        "signed": torch.tensor([name in signed for name, _, _ in stages]).view(n, 2),
        "prob": torch.tensor([p for _, p, _ in stages], dtype=prob_dtype).view(n, 2),
    }


def _policy_tables(height: int, width: int) -> dict[str, Tensor]:
    """Per (sub-policy, stage): op index, unsigned magnitude (float64), signed flag, probability
    -- in float32, as torchvision compares ``torch.rand((2,))`` with ``probs[i] <= p``."""
    def magnitude(name: str, bin_: int | None) -> float:
        return 0.0 if bin_ is None else float(_magnitude_bins(name, height, width)[bin_].item())

    return policy_tensors(CIFAR10_POLICY, _OP, magnitude, _SIGNED, torch.float32)


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
