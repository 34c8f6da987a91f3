"""Training augmentations, batched on the device that holds the batch.

The paper names no augmentation; its numbers come from the authors' code
(:mod:`mgiad.data.policies`, docs/paper-notes.md §5), whose CIFAR-10 pipeline is, per image on
the CPU::

    RandomCrop(32, padding=4, fill=128) -> RandomHorizontalFlip() -> CIFAR10Policy() -> ToTensor -> Normalize

CIFAR-100 uses the crop with reflect padding and the flip; FashionMNIST uses nothing. Running that
pipeline per image in Python costs more than a small model's training step, so this module does
the same work on a whole ``(N, H, W, C)`` uint8 batch at once, on whatever device it lives on,
with no Python loop over images (loops run over the 15 op kinds and the two AutoAugment stages).

torchvision's ``AutoAugment(CIFAR10)`` ops are in :mod:`mgiad.data.autoaugment`, equal to
torchvision's op by op; the authors' PIL policy is in :mod:`mgiad.data.autoaugment_authors`,
equal to Pillow's; this module adds crop and flip (one gather) and the pipeline, equal to
torchvision's as a whole (``tests/test_augment.py``, ``tests/test_augment_authors.py``).

Randomness is separated from work: :meth:`BatchAugment.sample` draws every random choice of a batch
from one generator, :meth:`BatchAugment.apply` is deterministic, and
``train(x, g) == apply(x, sample(len(x), H, g))``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .autoaugment import CIFAR10_POLICY, OP_NAMES, _policy_tables, apply_ops
from .autoaugment_authors import apply_authors_ops, authors_tables
from .policies import POLICIES, RECIPES, recipe_policy

__all__ = ["OP_NAMES", "CIFAR10_POLICY", "AUGMENT_POLICIES", "RECIPES", "BatchAugment",
           "augment_policy", "recipe_augment", "paper_augment", "apply_ops", "crop_flip"]

#: Named policies (``--augment=NAME``) and per-data-set recipes: :mod:`mgiad.data.policies`.
AUGMENT_POLICIES = POLICIES


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
    fill: int = 0,
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
        pad_mode: "constant" (the value ``fill``) or "reflect".
        fill: the constant padding value (torchvision ``RandomCrop(fill=...)``).

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
        out = out * ok.to(out.dtype) if fill == 0 else torch.where(ok, out, fill)
    return out


# --------------------------------------------------------------------------------------------
# The pipeline.
# --------------------------------------------------------------------------------------------


class BatchAugment:
    """Random crop, flip, AutoAugment (CIFAR-10 policy) and normalisation of a uint8 batch.

    Order as in the authors' code: ``pad_to`` -> ``RandomCrop(H, padding=crop, fill=crop_fill)``
    -> ``RandomHorizontalFlip()`` -> AutoAugment -> ``ToTensor`` -> ``Normalize(mean, std)``.
    AutoAugment samples one of the 25 sub-policies per image, applies each of its two ops with the
    op's probability and, for signed ops, a random sign. ``policy="torchvision"``:
    ``AutoAugment(AutoAugmentPolicy.CIFAR10)`` with nearest interpolation and zero fill
    (:mod:`mgiad.data.autoaugment`); ``policy="authors"``: the authors' PIL ``CIFAR10Policy``
    with grey fill (:mod:`mgiad.data.autoaugment_authors`).

    Args:
        mean, std: per-channel normalisation on the [0, 1] scale (``ToTensor`` then ``Normalize``).
        crop: padding of the random crop to the input size; None: no crop.
        pad_mode: "constant" or "reflect" padding of the crop.
        crop_fill: the value of constant crop padding (0: torchvision's default; 128: the
            authors').
        flip: random horizontal flip with probability 0.5.
        autoaugment: AutoAugment with a CIFAR-10 policy.
        policy: which CIFAR-10 policy: "torchvision" or "authors".
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
        crop_fill: int = 0,
        flip: bool = False,
        autoaugment: bool = False,
        policy: str = "torchvision",
        pad_to: int | None = None,
        channels_last: bool = False,
    ) -> None:
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if policy not in ("torchvision", "authors"):
            raise ValueError(f"policy must be 'torchvision' or 'authors', got {policy!r}")
        if not 0 <= crop_fill <= 255:
            raise ValueError(f"crop_fill must be a grey level in [0, 255], got {crop_fill}")
        if crop is not None and crop < 0:
            raise ValueError(f"crop padding must be >= 0, got {crop}")
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.crop = crop
        self.pad_mode = pad_mode
        self.crop_fill = int(crop_fill)
        self.flip = flip
        self.autoaugment = autoaugment
        self.policy = policy
        self.pad_to = pad_to
        self.channels_last = channels_last
        self._tables: dict[tuple[int, int], dict[str, Tensor]] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop={self.crop}, pad_mode={self.pad_mode!r}, "
            f"crop_fill={self.crop_fill}, flip={self.flip}, autoaugment={self.autoaugment}, "
            f"policy={self.policy!r}, pad_to={self.pad_to}, "
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
            build = authors_tables if self.policy == "authors" else _policy_tables
            self._tables[key] = build(*key)
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
        - ``apply`` (bool, (n, 2)): whether each stage's op runs (torchvision: ``rand <= p`` in
          float32; the authors: ``random.random() < p``, here float64);
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
            policy = torch.randint(0, len(tables["op"]), (n,), **kw)
            authors = self.policy == "authors"
            u = torch.rand(n, 2, dtype=torch.float64 if authors else torch.float32, **kw)
            sign = torch.randint(0, 2, (n, 2), **kw) == 1
            magnitude = tables["magnitude"][policy]
            negate = tables["signed"][policy] & ~sign
            params["policy"] = policy
            prob = tables["prob"][policy]
            params["apply"] = u < prob if authors else u <= prob
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
                self.crop_fill,
            )
        if self.autoaugment:
            op = params["op"].to(img.device)
            applied = params["apply"].to(img.device)
            magnitude = params["magnitude"].to(img.device)
            apply_op = apply_authors_ops if self.policy == "authors" else apply_ops
            for stage in range(2):  # the two ops of a sub-policy, in order
                stage_op = torch.where(applied[:, stage], op[:, stage], 0)
                img = apply_op(img, stage_op, magnitude[:, stage])
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


def augment_policy(
    name: str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    pad_to: int | None = None,
    channels_last: bool = False,
) -> BatchAugment:
    """The named augmentation policy (:data:`AUGMENT_POLICIES`) as a :class:`BatchAugment`."""
    if name not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation policy {name!r}; expected one of "
                         f"{', '.join(AUGMENT_POLICIES)} (or a per-data-set recipe: authors, torchvision)")
    return BatchAugment(mean=mean, std=std, pad_to=pad_to, channels_last=channels_last,
                        **AUGMENT_POLICIES[name])


def recipe_augment(dataset: str, recipe: str = "authors", **kwargs: Any) -> BatchAugment:
    """A per-data-set recipe (:data:`mgiad.data.policies.RECIPES`) for ``dataset``; keyword
    arguments (``mean``, ``std``, ``pad_to``, ``channels_last``) as :func:`augment_policy`.

    ``authors`` (the authors' code, which produced the paper's numbers; the paper itself names no
    augmentation):

    - ``cifar10``: RandomCrop(32, padding=4, fill=128) + horizontal flip + their PIL CIFAR10Policy;
    - ``cifar100``: RandomCrop(32, padding=4, reflect) + horizontal flip;
    - ``fashionmnist``: no augmentation (only ``pad_to`` and normalisation).

    ``torchvision``: the same with torchvision's AutoAugment(CIFAR10) and zero fill on CIFAR-10.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    name = recipe_policy(recipe, dataset)
    if name is None:
        raise ValueError(f"unknown dataset {dataset!r}; expected cifar10, cifar100 or fashionmnist")
    return augment_policy(name, **kwargs)


def paper_augment(dataset: str, **kwargs: Any) -> BatchAugment:
    """Deprecated: ``recipe_augment(dataset, "torchvision", ...)``, which this function always
    returned. The paper names no augmentation; the authors' recipe is :func:`recipe_augment`'s
    default."""
    warnings.warn("paper_augment() is deprecated: the paper names no augmentation. It returns "
                  "recipe_augment(dataset, 'torchvision') as before; the authors' recipe is "
                  "recipe_augment(dataset) (or 'authors')", DeprecationWarning, stacklevel=2)
    return recipe_augment(dataset, "torchvision", **kwargs)
