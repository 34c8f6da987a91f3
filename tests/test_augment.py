"""Batched augmentation (mgiad.data.augment) against torchvision's per-image implementation.

Tolerance: every comparison below is *exact* (uint8 images bit-identical, normalised floats
equal). This is deliberate, not lucky: the batched ops repeat torchvision's arithmetic step by
step (float64 affine matrices cast to float32, the same ``_gen_affine_grid`` pixel-centre
convention and nearest ``grid_sample``, float32 blends with truncating uint8 casts, integer
histograms), and the only order-dependent reductions (contrast mean, equalize histograms) sum
integers exactly. A failure here therefore means a semantic difference, not float noise.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.autoaugment import _apply_op

from mgiad.data.augment import (
    CIFAR10_POLICY,
    OP_NAMES,
    BatchAugment,
    apply_ops,
    crop_flip,
    recipe_augment,
)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
          "Contrast", "Sharpness"}


def _images(n: int, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """(n + 8, c, h, w) uint8: random images plus edge cases (constant, black, white, binary,
    narrow range, one bright pixel) that exercise the degenerate branches of autocontrast,
    equalize and the blends."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n + 8, c, h, w), dtype=torch.uint8, generator=g)
    x[n + 0] = 0
    x[n + 1] = 255
    x[n + 2] = 77
    x[n + 3] = torch.randint(0, 2, (c, h, w), generator=g).to(torch.uint8) * 255
    x[n + 4] = torch.randint(120, 123, (c, h, w), generator=g).to(torch.uint8)
    x[n + 5] = 0
    x[n + 5, :, h // 2, w // 2] = 255
    x[n + 6, 0] = 10  # one flat channel, others random
    x[n + 7] = torch.arange(h * w).view(1, h, w).remainder(256).to(torch.uint8)
    return x


def _magnitude_table(op: str, h: int, w: int) -> torch.Tensor:
    space = AutoAugment(AutoAugmentPolicy.CIFAR10)._augmentation_space(10, (h, w))
    mags, _ = space[op]
    return mags if mags.dim() else mags.expand(10)


def _reference(img: torch.Tensor, ops: list[str], mags: list[float]) -> torch.Tensor:
    """torchvision, one image at a time."""
    return torch.stack(
        [_apply_op(im, op, m, InterpolationMode.NEAREST, None) for im, op, m in zip(img, ops, mags)]
    )


# ---------------------------------------------------------------------------------------------
# The policy table
# ---------------------------------------------------------------------------------------------


def test_policy_is_torchvision_cifar10() -> None:
    assert [tuple(sp) for sp in CIFAR10_POLICY] == [
        tuple(sp) for sp in AutoAugment(AutoAugmentPolicy.CIFAR10).policies
    ]
    space = AutoAugment(AutoAugmentPolicy.CIFAR10)._augmentation_space(10, (32, 32))
    assert set(space) == set(OP_NAMES) - {"Identity"}
    assert {op for op, (_, signed) in space.items() if signed} == SIGNED


# ---------------------------------------------------------------------------------------------
# Single ops
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)], ids=["rgb32", "gray28"])
@pytest.mark.parametrize("op", OP_NAMES)
def test_op_matches_torchvision_all_bins(op: str, shape: tuple[int, int, int]) -> None:
    """Every magnitude bin (and both signs for signed ops) spread over one batch of 64 + 8."""
    c, h, w = shape
    x = _images(64, c, h, w, seed=OP_NAMES.index(op))
    n = len(x)
    if op == "Identity":
        mags = [0.0] * n
    else:
        table = _magnitude_table(op, h, w)
        mags = [float(table[i % 10].item()) for i in range(n)]
        if op in SIGNED:
            mags = [-m if (i // 10) % 2 else m for i, m in enumerate(mags)]
    ref = _reference(x, [op] * n, mags)
    out = apply_ops(x, torch.full((n,), OP_NAMES.index(op)), torch.tensor(mags, dtype=torch.float64))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, ref)


def test_mixed_ops_continuous_magnitudes() -> None:
    """One random op per image with continuous magnitudes (not only the table's): exercises the
    grouping by op kind and the general affine matrices (any shear, angle, translation)."""
    g = torch.Generator().manual_seed(5)
    x = _images(120, 3, 32, 32, seed=3)
    n = len(x)
    op = torch.randint(0, len(OP_NAMES), (n,), generator=g)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    ranges = {"ShearX": 0.5, "ShearY": 0.5, "TranslateX": 20.0, "TranslateY": 20.0, "Rotate": 45.0,
              "Brightness": 0.95, "Color": 0.95, "Contrast": 0.95, "Sharpness": 0.95}
    mags = []
    for i in range(n):
        name = OP_NAMES[int(op[i])]
        if name in ranges:
            mags.append((2 * float(u[i]) - 1) * ranges[name])
        elif name == "Solarize":
            mags.append(255 * float(u[i]))
        elif name == "Posterize":
            mags.append(float(int(9 * float(u[i]))))
        else:
            mags.append(0.0)
    ref = _reference(x, [OP_NAMES[int(o)] for o in op], mags)
    out = apply_ops(x, op, torch.tensor(mags, dtype=torch.float64))
    assert torch.equal(out, ref)


def test_apply_ops_accepts_channels_last_and_rejects_bad_input() -> None:
    x = _images(8)
    op = torch.arange(len(x)) % len(OP_NAMES)
    mag = torch.full((len(x),), 0.3, dtype=torch.float64)
    plain = apply_ops(x, op, mag)
    assert torch.equal(apply_ops(x.contiguous(memory_format=torch.channels_last), op, mag), plain)
    with pytest.raises(ValueError):
        apply_ops(x.float(), op, mag)
    with pytest.raises(ValueError):
        apply_ops(x[:, :2], op, mag)


# ---------------------------------------------------------------------------------------------
# Crop and flip
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_crop_flip_matches_torchvision(pad_mode: str) -> None:
    g = torch.Generator().manual_seed(11)
    x = _images(56, 3, 32, 32, seed=4)  # (N, C, H, W)
    n = len(x)
    top = torch.randint(0, 9, (n,), generator=g)
    left = torch.randint(0, 9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    top[:4] = torch.tensor([0, 8, 0, 8])  # the corners of the offset range
    left[:4] = torch.tensor([0, 0, 8, 8])
    ref = []
    for i in range(n):
        im = TF.crop(TF.pad(x[i], 4, padding_mode=pad_mode), int(top[i]), int(left[i]), 32, 32)
        ref.append(TF.hflip(im) if flip[i] else im)
    out = crop_flip(x, top, left, flip, 4, pad_mode)
    assert torch.equal(out, torch.stack(ref))
    # Same from an NHWC buffer (what BatchAugment passes: a permuted, channels-last view).
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    assert torch.equal(crop_flip(nhwc.permute(0, 3, 1, 2), top, left, flip, 4, pad_mode), out)
    # Flip alone and crop alone.
    assert torch.equal(
        crop_flip(x, None, None, flip, 0),
        torch.stack([TF.hflip(im) if f else im for im, f in zip(x, flip)]),
    )
    assert torch.equal(
        crop_flip(x, top, left, None, 4, pad_mode),
        torch.stack(
            [TF.crop(TF.pad(im, 4, padding_mode=pad_mode), int(t), int(l_), 32, 32)
             for im, t, l_ in zip(x, top, left)]
        ),
    )


# ---------------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------------


def _torchvision_pipeline(aug: BatchAugment, x_nhwc: torch.Tensor, params: dict) -> torch.Tensor:
    """Per image, with the choices in ``params`` but op names and magnitudes re-derived from
    torchvision's own policy table and magnitude space (not from ``params['op'/'magnitude']``)."""
    tv = AutoAugment(AutoAugmentPolicy.CIFAR10)
    out = []
    for i, im in enumerate(x_nhwc.permute(0, 3, 1, 2)):
        h, w = im.shape[-2:]
        if aug.crop is not None:
            im = TF.pad(im, aug.crop, padding_mode=aug.pad_mode)
            im = TF.crop(im, int(params["crop_top"][i]), int(params["crop_left"][i]), h, w)
        if aug.flip and params["flip"][i]:
            im = TF.hflip(im)
        if aug.autoaugment:
            space = tv._augmentation_space(10, (h, w))
            for stage, (name, _, bin_) in enumerate(tv.policies[int(params["policy"][i])]):
                if params["apply"][i, stage]:
                    mags, signed = space[name]
                    m = float(mags[bin_].item()) if bin_ is not None else 0.0
                    if signed and not params["sign"][i, stage]:
                        m *= -1.0
                    im = _apply_op(im, name, m, InterpolationMode.NEAREST, None)
        out.append(TF.normalize(im.float() / 255.0, list(aug.mean), list(aug.std)))
    return torch.stack(out)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cifar10_pipeline_matches_torchvision(channels_last: bool) -> None:
    aug = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD, channels_last=channels_last)
    x = _images(248, seed=8).permute(0, 2, 3, 1).contiguous()  # NHWC, like the data loader
    params = aug.sample(len(x), 32, torch.Generator().manual_seed(2))
    # Every sub-policy and both apply outcomes of each stage occur in this batch.
    assert len(params["policy"].unique()) == 25
    out = aug.apply(x, params)
    assert out.shape == (len(x), 3, 32, 32) and out.dtype == torch.float32
    assert out.is_contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    assert torch.equal(out, _torchvision_pipeline(aug, x, params))


def test_cifar100_pipeline_matches_torchvision() -> None:
    aug = recipe_augment("cifar100", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD)
    assert (aug.crop, aug.pad_mode, aug.flip, aug.autoaugment) == (4, "reflect", True, False)
    x = _images(56, seed=9).permute(0, 2, 3, 1).contiguous()
    params = aug.sample(len(x), 32, torch.Generator().manual_seed(4))
    assert set(params) == {"crop_top", "crop_left", "flip"}
    assert torch.equal(aug.apply(x, params), _torchvision_pipeline(aug, x, params))


def test_sampled_op_and_magnitude_follow_the_policy() -> None:
    aug = BatchAugment(mean=CIFAR_MEAN, std=CIFAR_STD, autoaugment=True)
    p = aug.sample(500, 32, torch.Generator().manual_seed(0))
    tv = AutoAugment(AutoAugmentPolicy.CIFAR10)
    space = tv._augmentation_space(10, (32, 32))
    for i in range(500):
        for stage, (name, _, bin_) in enumerate(tv.policies[int(p["policy"][i])]):
            assert OP_NAMES[int(p["op"][i, stage])] == name
            mags, signed = space[name]
            m = float(mags[bin_].item()) if bin_ is not None else 0.0
            if signed and not p["sign"][i, stage]:
                m = -m
            assert float(p["magnitude"][i, stage]) == m


def test_sampling_statistics() -> None:
    aug = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD)
    n = 50_000
    p = aug.sample(n, 32, torch.Generator().manual_seed(123))
    assert abs(p["flip"].float().mean().item() - 0.5) < 0.01
    assert abs(p["sign"].float().mean().item() - 0.5) < 0.01
    for key in ("crop_top", "crop_left"):
        counts = torch.bincount(p[key], minlength=9)
        assert len(counts) == 9 and p[key].min() == 0 and p[key].max() == 8
        assert (counts.float() / n - 1 / 9).abs().max() < 0.01
    counts = torch.bincount(p["policy"], minlength=25).float()
    assert len(counts) == 25
    chi2 = ((counts - n / 25) ** 2 / (n / 25)).sum().item()
    assert chi2 < 60  # 24 d.o.f.: P(chi2 > 60) ~ 6e-5 for a uniform sampler
    # Each stage runs with its sub-policy's probability.
    for k, sub_policy in enumerate(CIFAR10_POLICY):
        rows = p["apply"][p["policy"] == k].float()
        for stage, (_, prob, _) in enumerate(sub_policy):
            sd = math.sqrt(max(prob * (1 - prob), 1e-4) / len(rows))
            assert abs(rows[:, stage].mean().item() - prob) < 5 * sd + 1e-9


def test_train_is_reproducible_and_equals_apply_of_sample() -> None:
    aug = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD)
    x = _images(56, seed=1).permute(0, 2, 3, 1).contiguous()
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    a = aug.train(x, g)
    b = aug.train(x, g)  # the generator advanced: a different batch
    assert not torch.equal(a, b)
    g2 = torch.Generator()
    g2.set_state(state)
    assert torch.equal(aug.train(x, g2), a)
    g2.set_state(state)
    assert torch.equal(aug.apply(x, aug.sample(len(x), 32, g2)), a)
    # Without a generator: the global RNG of the batch's device, reproducible via manual_seed.
    torch.manual_seed(0)
    c = aug.train(x)
    torch.manual_seed(0)
    assert torch.equal(aug.train(x), c)


def test_channels_last_output() -> None:
    x = _images(24, seed=2).permute(0, 2, 3, 1).contiguous()
    plain = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD)
    cl = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD, channels_last=True)
    params = plain.sample(len(x), 32, torch.Generator().manual_seed(0))
    a, b = plain.apply(x, params), cl.apply(x, params)
    assert a.is_contiguous() and b.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)
    assert cl.test(x).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl.test(x), plain.test(x))


def test_test_is_normalise_only() -> None:
    aug = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD)
    x = _images(16, seed=6).permute(0, 2, 3, 1).contiguous()
    ref = torch.stack(
        [TF.normalize(TF.to_tensor(im.numpy()), list(CIFAR_MEAN), list(CIFAR_STD)) for im in x]
    )
    assert torch.equal(aug.test(x), ref)
    # An augmenter with nothing enabled trains like it tests.
    none = BatchAugment(mean=CIFAR_MEAN, std=CIFAR_STD)
    assert none.sample(len(x), 32) == {}
    assert torch.equal(none.train(x, torch.Generator()), ref)


@pytest.mark.parametrize("with_channel_axis", [True, False])
def test_fashionmnist_pad_to_32(with_channel_axis: bool) -> None:
    aug = recipe_augment("fashionmnist", "torchvision", mean=(0.2860,), std=(0.3530,), pad_to=32)
    x = torch.randint(1, 256, (10, 28, 28), dtype=torch.uint8)
    inp = x.unsqueeze(-1) if with_channel_axis else x
    out = aug.test(inp)
    assert out.shape == (10, 1, 32, 32)
    zero = (0.0 - 0.2860) / 0.3530
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.allclose(out[:, 0][:, border], torch.full_like(out[:, 0][:, border], zero))
    ref = TF.normalize(TF.pad(x.unsqueeze(1), 2).float() / 255.0, [0.2860], [0.3530])
    assert torch.equal(out, ref)
    # No random augmentation for FashionMNIST: train == test.
    assert torch.equal(aug.train(inp, torch.Generator().manual_seed(0)), out)
    # pad_to also works together with augmentation (crop after padding to 32).
    aa = BatchAugment(mean=(0.5,), std=(0.5,), pad_to=32, crop=4, flip=True, autoaugment=True)
    assert aa.train(inp, torch.Generator().manual_seed(0)).shape == (10, 1, 32, 32)


def test_recipe_augment_recipes_and_errors() -> None:
    c10 = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD)
    assert (c10.crop, c10.pad_mode, c10.flip, c10.autoaugment) == (4, "constant", True, True)
    fm = recipe_augment("FashionMNIST", "torchvision", mean=(0.5,), std=(0.5,))
    assert (fm.crop, fm.flip, fm.autoaugment, fm.pad_to) == (None, False, False, None)
    with pytest.raises(ValueError):
        recipe_augment("imagenet", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD)
    with pytest.raises(ValueError):
        BatchAugment(mean=CIFAR_MEAN, std=CIFAR_STD, crop=4, pad_mode="edge")
    x = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(TypeError):
        c10.train(x.float())
    with pytest.raises(ValueError):
        c10.test(x[..., :1])  # one channel for a three-channel normalisation
    with pytest.raises(ValueError):
        BatchAugment(mean=CIFAR_MEAN, std=CIFAR_STD, pad_to=16).test(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    """On CUDA (torchvision would use histc there; we use the same integer histograms), with
    the randomness drawn by a CUDA generator."""
    aug = recipe_augment("cifar10", "torchvision", mean=CIFAR_MEAN, std=CIFAR_STD, channels_last=True)
    x = _images(1000, seed=12).permute(0, 2, 3, 1).contiguous()
    g = torch.Generator(device="cuda").manual_seed(0)
    params = aug.sample(len(x), 32, g)
    assert params["policy"].is_cuda
    out = aug.apply(x.cuda(), params)
    assert out.is_cuda
    cpu_params = {k: v.cpu() for k, v in params.items()}
    torch.testing.assert_close(out.cpu(), aug.apply(x, cpu_params), rtol=0, atol=0)
    g.manual_seed(0)
    assert torch.equal(aug.train(x.cuda(), g), out)
