"""Every registered model: forward/backward, gradients, structure of the multigrid networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import mgiad
from mgiad.models import MGiaD, MgNet
from mgiad.models.counting import count_flops, count_weights
from mgiad.nn.sic import SiC, channel_hierarchy


@pytest.mark.parametrize("name", mgiad.list_models())
def test_forward_backward_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = mgiad.create_model(name, num_classes=7)
    x = torch.randn(2, model.in_chans, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", ["mgiad_fmnist", "mgiad_3lvl_fmnist", "resnet20", "mgnet_ab_3lvl"])
def test_fashionmnist_28x28_input(name: str) -> None:
    model = mgiad.create_model(name, in_chans=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_create_model_num_classes_100_prints() -> None:
    model = mgiad.create_model("mgiad", num_classes=100)
    assert model.head[-1].out_features == 100
    text = repr(model)
    assert "SiC" in text and "ResolutionTransfer" in text


def test_weight_sharing_is_the_same_tensor() -> None:
    """Â and B̂ of a channel level are one module used by every smoothing step."""
    model = mgiad.create_model("mgiad", eta_pre=1, eta_post=2)
    sic: SiC = model.levels[1]
    assert len(sic.smoother.B) == 1  # one B̂ shared by all 3 steps
    assert len(sic.smoother.norms) == 3  # but one BN pair per step
    # The FAS transfer uses the same Â objects as the smoothers (no copies).
    calls: list[int] = []
    handle = sic.A.register_forward_hook(lambda m, i, o: calls.append(id(m)))
    model(torch.randn(1, 3, 32, 32))
    handle.remove()
    # Â_{2,1}: transfer 1→2 (A_{ℓ+1} u, which the first step reuses) + residual before the
    # channel restriction + 2 post-smoothing steps + residual before transfer 2→3 = 5
    # applications, all of one module.
    assert calls == [id(sic.A)] * 5
    assert sic.coarse is not None and sic.coarse.A is sic.coarse.smoother.A
    # parameters() de-duplicates: the weight count is that of distinct tensors.
    ids = [id(p) for p in model.parameters()]
    assert len(ids) == len(set(ids))


def test_mgnet_a_has_one_B_per_step_and_shared_A() -> None:
    a = mgiad.create_model("mgnet_a")
    ab = mgiad.create_model("mgnet_ab")
    assert all(len(level.B) == a.nu for level in a.levels)
    assert all(len(level.B) == 1 for level in ab.levels)
    extra = sum(9 * c * c * (a.nu - 1) for c in a.widths)
    assert count_weights(a).total - count_weights(ab).total == extra


def test_channel_hierarchy() -> None:
    assert channel_hierarchy(256, 64) == [256, 128, 64]
    assert channel_hierarchy(64, 4) == [64, 32, 16, 8, 4]
    assert channel_hierarchy(192, 64) == [192, 96]  # λ = 3: coarsest 96
    assert channel_hierarchy(16, 16) == [16]
    model = MGiaD(c_K=16, g_s=4)
    assert model.channel_hierarchies() == [[64, 32, 16], [128, 64, 32, 16], [256, 128, 64, 32, 16]] + [
        [256, 128, 64, 32, 16]
    ]
    # grouped below the coarsest level, dense at it
    sic = model.levels[0]
    convs = []
    while sic is not None:
        convs.append((sic.A.in_channels, sic.A.groups))
        sic = sic.coarse
    assert convs == [(64, 16), (32, 8), (16, 1)]


def _weights(model: nn.Module) -> int:
    return count_weights(model).total


def test_linear_weight_scaling_with_width() -> None:
    """Doubling every width of MGiaD at fixed c_K, g_s multiplies the weights by < 2.3;
    MgNet and ResNet grow about 4× (quadratic in the channels)."""
    for c_K, g_s in [(16, 4), (16, 8), (32, 8)]:
        small = _weights(MGiaD(c_K=c_K, g_s=g_s, lam=1))
        big = _weights(MGiaD(c_K=c_K, g_s=g_s, lam=2))
        assert big / small < 2.3, (c_K, g_s, big / small)
    mg1 = _weights(MgNet(widths=(64, 128, 256, 256)))
    mg2 = _weights(MgNet(widths=(128, 256, 512, 512)))
    assert 3.8 < mg2 / mg1 < 4.1
    rn1 = _weights(mgiad.create_model("resnet18"))
    rn2 = _weights(mgiad.create_model("resnet18", widths=(128, 256, 512, 1024)))
    assert 3.8 < rn2 / rn1 < 4.1


def test_closed_form_weight_count() -> None:
    """DESIGN.md §1 closed form of the CIFAR variant against the built model (authors' counting)."""
    from mgiad.experiments.paper import unused_transfer_weights

    for c_K, g_s, lam, eta_post, n_cls in [(64, 4, 1, 1, 10), (16, 8, 1, 2, 10), (64, 8, 3, 1, 100)]:
        model = MGiaD(c_K=c_K, g_s=g_s, lam=lam, eta_post=eta_post, num_classes=n_cls)
        widths = model.widths
        total = 9 * 3 * widths[0] + 2 * widths[0] + (widths[-1] + 1) * n_cls + sum(22 * c for c in widths)
        for c in widths:
            levels = channel_hierarchy(c, c_K)
            for k, ck in enumerate(levels):
                g = ck if k == len(levels) - 1 else g_s
                total += 18 * ck * g + 4 * (1 + eta_post) * ck
                if k < len(levels) - 1:
                    total += 5 * ck
        assert _weights(model) + unused_transfer_weights(model) == total


def test_flops_count_grouped_and_shared_convolutions() -> None:
    conv = nn.Conv2d(64, 64, 3, padding=1, groups=16, bias=False)

    class Twice(nn.Module):
        in_chans = 64

        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x))

    # 32·32 outputs × 64 channels × (64/16)·9 MACs, applied twice, 2 FLOPs per MAC
    assert count_flops(Twice(), image_size=32) == 2 * 2 * 32 * 32 * 64 * 4 * 9
    resnet18 = mgiad.create_model("resnet18")
    assert abs(count_flops(resnet18) / 1e9 - 1.11) < 0.01  # 0.556 GMAC, the known figure
    assert count_flops(mgiad.create_model("mgiad")) < count_flops(resnet18) / 2


def test_count_by_level_and_kind_sum_to_total() -> None:
    wc = count_weights(mgiad.create_model("mgiad"))
    assert sum(wc.by_level.values()) == wc.total == sum(wc.by_kind.values())
    assert set(wc.by_level) == {0, 1, 2, 3, 4}
    assert wc.by_kind["A"] == wc.by_kind["B"]
    assert {"Π", "R", "Π̂", "R̂", "P̂", "BN", "stem", "head"} <= set(wc.by_kind)


def test_option_a_shortcut_refuses_shrinking_widths() -> None:
    import mgiad

    with pytest.raises(ValueError, match="shortcut='A' pads channels with zeros, so widths must not shrink"):
        mgiad.create_model("resnet20", widths=(16, 8, 32))
