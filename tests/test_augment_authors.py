"""The authors' augmentation (mgiad.data.autoaugment_authors) against Pillow, image for image.

The reference below is a plain PIL implementation of the policy the paper's authors trained with
(DeepVoltaire's ``CIFAR10Policy`` as copied into vanbetteray/Poly-MgNet ``utils/autoaugment.py``:
``fillcolor=(128, 128, 128)``, bicubic shears, nearest translations, rotation composited over
grey, ``ImageEnhance`` factors ``1 +- m``) driven by explicit choices instead of Python's
``random``. Every comparison is exact: the batched ops repeat Pillow's integer and floating-point
arithmetic, so a difference of one grey level is a bug.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageEnhance, ImageOps
from realdata import require_cifar10

from mgiad.data.augment import AUGMENT_POLICIES, BatchAugment, augment_policy, crop_flip
from mgiad.data.autoaugment_authors import (
    AUTHORS_CIFAR10_POLICY,
    AUTHORS_OP_NAMES,
    FILL,
    _magnitude,
    apply_authors_ops,
    authors_tables,
)

GREY = (FILL,) * 3
ENHANCE = ("Color", "Contrast", "Sharpness", "Brightness")
UNSIGNED = ("Rotate", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")


def _linspace_magnitude(op: str, bin_: int) -> float:
    """The authors' ``ranges`` table, written out again (translations as fractions of the size)."""
    table = {
        "ShearX": np.linspace(0, 0.3, 10), "ShearY": np.linspace(0, 0.3, 10),
        "TranslateX": np.linspace(0, 150 / 331, 10), "TranslateY": np.linspace(0, 150 / 331, 10),
        "Rotate": np.linspace(0, 30, 10), "Color": np.linspace(0.0, 0.9, 10),
        "Posterize": np.round(np.linspace(8, 4, 10), 0).astype(int),
        "Solarize": np.linspace(256, 0, 10), "Contrast": np.linspace(0.0, 0.9, 10),
        "Sharpness": np.linspace(0.0, 0.9, 10), "Brightness": np.linspace(0.0, 0.9, 10),
    }
    return table[op][bin_] if op in table else 0


def _pil_op(img: Image.Image, op: str, bin_: int, sign: int) -> Image.Image:
    """One op of the authors' policy on a PIL image, with the sign given instead of drawn."""
    m = _linspace_magnitude(op, bin_)
    if op == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, m * sign, 0, 0, 1, 0), Image.BICUBIC,
                             fillcolor=GREY)
    if op == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, m * sign, 1, 0), Image.BICUBIC,
                             fillcolor=GREY)
    if op == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, m * img.size[0] * sign, 0, 1, 0),
                             fillcolor=GREY)
    if op == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, m * img.size[1] * sign),
                             fillcolor=GREY)
    if op == "Rotate":
        rotated = img.convert("RGBA").rotate(m)
        grey = Image.new("RGBA", rotated.size, (FILL,) * 4)
        return Image.composite(rotated, grey, rotated).convert(img.mode)
    if op in ENHANCE:
        return getattr(ImageEnhance, op)(img).enhance(1 + m * sign)
    if op == "Posterize":
        return ImageOps.posterize(img, int(m))
    if op == "Solarize":
        return ImageOps.solarize(img, m)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    raise AssertionError(op)


def _to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(img.permute(1, 2, 0).numpy())


def _from_pil(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def _cifar10_images(n: int) -> torch.Tensor:
    """The first ``n`` real CIFAR-10 test images (the shared data folder; required, see
    tests/test_data.py), (n, 3, 32, 32) uint8."""
    path = require_cifar10() / "test.npz"
    return torch.from_numpy(np.load(path)["x"][:n]).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Real photographs, smooth random images, noise and edge cases (flat, two-level, narrow
    range, one bright pixel) that reach every branch of the blends, autocontrast and equalize."""
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(
        torch.randint(0, 256, (6, 3, 5, 5), generator=g).float(), size=(32, 32), mode="bilinear"
    ).round().to(torch.uint8)
    edge = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    edge[0] = 0
    edge[1] = 255
    edge[2] = 77
    edge[3] = torch.randint(0, 2, (3, 32, 32), generator=g).to(torch.uint8) * 255
    edge[4] = torch.randint(120, 123, (3, 32, 32), generator=g).to(torch.uint8)
    edge[5] = 0
    edge[5, :, 16, 16] = 255
    edge[6, 0] = 10
    edge[7] = torch.arange(32 * 32).view(1, 32, 32).remainder(256).to(torch.uint8)
    return torch.cat([_cifar10_images(10), smooth, edge])


@pytest.mark.parametrize("op", AUTHORS_OP_NAMES[1:])
def test_each_op_equals_pillow(images: torch.Tensor, op: str) -> None:
    """Every op at every magnitude bin and sign: the batch equals Pillow image for image."""
    code = AUTHORS_OP_NAMES.index(op)
    for bin_ in range(10):
        for sign in (1, -1) if op not in UNSIGNED else (1,):
            mag = _magnitude(op, bin_, 32, 32) * sign
            out = apply_authors_ops(images, torch.full((len(images),), code),
                                    torch.full((len(images),), mag, dtype=torch.float64))
            for i, img in enumerate(images):
                expected = _from_pil(_pil_op(_to_pil(img), op, bin_, sign))
                assert torch.equal(out[i], expected), (op, bin_, sign, i)


def test_policy_table_is_the_authors() -> None:
    """Spot checks of the transcription: sub-policies 0, 1 and 14 and the magnitudes they use."""
    assert AUTHORS_CIFAR10_POLICY[0] == (("Invert", 0.1, 7), ("Contrast", 0.2, 6))
    assert AUTHORS_CIFAR10_POLICY[1] == (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9))
    assert AUTHORS_CIFAR10_POLICY[14] == (("Solarize", 0.5, 2), ("Invert", 0.0, 3))
    t = authors_tables(32, 32)
    assert t["magnitude"][1, 0].item() == pytest.approx(30 * 2 / 9)  # rotate bin 2
    assert t["magnitude"][1, 1].item() == pytest.approx(150 / 331 * 32)  # translate bin 9
    assert t["magnitude"][14, 0].item() == pytest.approx(256 - 2 * 256 / 9)  # solarize bin 2
    assert not t["signed"][1, 0] and t["signed"][1, 1]  # rotation has no random sign


def test_crop_fill() -> None:
    """Constant crop padding with grey equals torchvision's ``pad(fill=128)`` then crop."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    top = torch.randint(0, 9, (16,), generator=g)
    left = torch.randint(0, 9, (16,), generator=g)
    out = crop_flip(x, top, left, None, 4, "constant", FILL)
    for i in range(16):
        padded = TF.pad(x[i], [4], fill=FILL)
        assert torch.equal(out[i], padded[:, top[i]:top[i] + 32, left[i]:left[i] + 32])


def test_pipeline_equals_pillow_with_the_same_choices() -> None:
    """``--augment=autoaugment-cifar10-authors`` on real images: the crop (grey), flip and policy
    from :meth:`BatchAugment.sample` replayed in PIL give the same uint8 images."""
    aug = augment_policy("autoaugment-cifar10-authors", mean=(0.5,) * 3, std=(0.25,) * 3)
    x = _cifar10_images(96).permute(0, 2, 3, 1).contiguous()  # (N, H, W, C), as the loader stores
    params = aug.sample(len(x), 32, torch.Generator().manual_seed(3))
    out = aug.augment_uint8(x, params)
    tables = authors_tables(32, 32)
    ran = 0
    for i in range(len(x)):
        img = TF.pad(_to_pil(x[i].permute(2, 0, 1)), [4], fill=GREY)
        top, left = int(params["crop_top"][i]), int(params["crop_left"][i])
        img = img.crop((left, top, left + 32, top + 32))
        if params["flip"][i]:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        sub_policy = AUTHORS_CIFAR10_POLICY[int(params["policy"][i])]
        for stage, (op, _, bin_) in enumerate(sub_policy):
            if params["apply"][i, stage]:
                ran += 1
                sign = 1 if params["sign"][i, stage] or not tables["signed"][
                    params["policy"][i], stage] else -1
                img = _pil_op(img, op, bin_, sign)
        assert torch.equal(out[i], _from_pil(img)), i
    assert ran > 40  # the ops did run (about 0.5 per stage)
    # normalisation on top: (x / 255 - mean) / std of those bytes
    expected = (out.float() / 255 - 0.5) / 0.25
    assert torch.allclose(aug.apply(x, params), expected, atol=1e-6)


def test_sampling_follows_the_authors_rules() -> None:
    """An op runs when ``u < p`` (p = 0 never runs), the rotation never gets a negative angle,
    sub-policies are uniform."""
    aug = BatchAugment(mean=(0.5,) * 3, std=(0.5,) * 3, autoaugment=True, policy="authors")
    p = aug.sample(50_000, 32, torch.Generator().manual_seed(0))
    never = p["policy"] == 14  # ("Invert", 0.0) as its second stage
    assert never.any() and not p["apply"][never, 1].any()
    rotate = (p["op"] == AUTHORS_OP_NAMES.index("Rotate"))
    assert rotate.any() and (p["magnitude"][rotate] > 0).all()
    shear = (p["op"] == AUTHORS_OP_NAMES.index("ShearY"))
    assert (p["magnitude"][shear] < 0).any() and (p["magnitude"][shear] > 0).any()
    counts = torch.bincount(p["policy"], minlength=25).float()
    assert counts.min() > 0.8 * counts.mean()
    rate = p["apply"][p["policy"] == 1, 0].float().mean().item()  # Rotate with p = 0.7
    assert abs(rate - 0.7) < 0.03


def test_named_policies_and_bad_names() -> None:
    from mgiad.training.config import AUGMENT_MODES

    assert set(AUGMENT_MODES) == {"authors", "torchvision", "paper", *AUGMENT_POLICIES}
    assert set(AUGMENT_POLICIES) >= {"none", "crop-flip", "autoaugment-cifar10",
                                     "autoaugment-cifar10-authors"}
    with pytest.raises(ValueError, match="unknown augmentation policy 'bogus'.*crop-flip"):
        augment_policy("bogus", mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="policy must be"):
        BatchAugment(mean=(0.5,), std=(0.5,), policy="pil")
    with pytest.raises(ValueError, match="crop_fill"):
        BatchAugment(mean=(0.5,), std=(0.5,), crop=4, crop_fill=300)
