"""The models against an independent reference written from the paper's equations.

tests/functional_reference.py imports nothing of mgiad; it has its own parameter tensors,
mapped from the model's ``state_dict`` by a documented name table. In float64 the model and the
reference agree on the logits, on the gradient of every weight and on every BatchNorm running
statistic after a training step, for MgNet and MGiaD (3 and 4 levels, several c_K, g_s, η).
"""

from __future__ import annotations

import copy

import functional_reference as ref  # tests/functional_reference.py
import pytest
import torch

import mgiad

W3, W4 = (8, 16, 32), (16, 32, 64, 64)
CASES = [
    # (registered model, model kwargs, the reference's view of the same hyper-parameters)
    ("mgnet_ab_3lvl", {"widths": W3}, ref.Arch("mgnet", W3, nu=3)),
    ("mgnet_a_3lvl", {"widths": W3, "nu": 2}, ref.Arch("mgnet", W3, nu=2, share_B=False)),
    ("mgnet_ab", {"widths": W4, "g_s": 8}, ref.Arch("mgnet", W4, nu=2, g_s=8)),
    ("mgiad_3lvl", {"widths": W3, "c_K": 4, "g_s": 2}, ref.Arch("mgiad", W3, c_K=4, g_s=2, transfer_norm=True)),
    ("mgiad_3lvl_fmnist", {"widths": W3, "c_K": 8, "g_s": 4, "in_chans": 3},
     ref.Arch("mgiad", W3, c_K=8, g_s=4)),
    ("mgiad", {"widths": W4, "c_K": 16, "g_s": 4}, ref.Arch("mgiad", W4, c_K=16, g_s=4, transfer_norm=True)),
    ("mgiad", {"widths": W4, "c_K": 8, "g_s": 8, "eta_pre": 0, "eta_post": 2},
     ref.Arch("mgiad", W4, c_K=8, g_s=8, eta_pre=0, eta_post=2, transfer_norm=True)),
    ("mgiad", {"widths": W3, "levels": 3, "c_K": 4, "g_s": 4, "eta_pre": 2, "eta_post": 1},
     ref.Arch("mgiad", W3, c_K=4, g_s=4, eta_pre=2, eta_post=1, transfer_norm=True)),
    # the open choices of docs/paper-notes.md §5 as options
    ("mgiad_3lvl", {"widths": W3, "c_K": 4, "g_s": 2, "coarse_correction": "fas"},
     ref.Arch("mgiad", W3, c_K=4, g_s=2, transfer_norm=True, coarse_correction="fas")),
    ("mgiad_3lvl", {"widths": W3, "c_K": 4, "g_s": 2, "channel_norm": "prolongation"},
     ref.Arch("mgiad", W3, c_K=4, g_s=2, transfer_norm=True, channel_norm="prolongation")),
    ("mgiad", {"widths": W4, "c_K": 8, "g_s": 4, "channel_norm": "prolongation", "coarse_correction": "fas"},
     ref.Arch("mgiad", W4, c_K=8, g_s=4, transfer_norm=True, channel_norm="prolongation",
              coarse_correction="fas")),
]


def _step(name: str, kwargs: dict, arch: ref.Arch) -> tuple:
    torch.manual_seed(0)
    model = mgiad.create_model(name, num_classes=10, **kwargs).double()
    params = ref.params_from_state_dict(model.state_dict(), arch)
    x = torch.randn(4, model.in_chans, 16, 16, dtype=torch.float64)
    target = torch.randn(4, 10, dtype=torch.float64)
    model.train()
    out_model = model(x)
    out_ref = ref.forward(params, arch, x)
    (out_model * target).sum().backward()
    (out_ref * target).sum().backward()
    return model, params, out_model, out_ref


@pytest.mark.parametrize("name,kwargs,arch", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_model_equals_the_equations(name, kwargs, arch) -> None:
    model, params, out_model, out_ref = _step(name, kwargs, arch)
    torch.testing.assert_close(out_model, out_ref, rtol=1e-10, atol=1e-10)
    state = model.state_dict(keep_vars=True)
    for ref_name, key in ref.name_map(arch).items():
        mine, theirs = state[key], params[ref_name]
        if theirs.requires_grad:  # weights: the same gradient (shared ones summed over uses)
            torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-8, atol=1e-12, msg=ref_name)
        else:  # running statistics and batch counts after the step
            torch.testing.assert_close(mine.detach(), theirs, rtol=1e-10, atol=1e-12, msg=ref_name)


def test_the_reference_catches_a_moved_batchnorm(monkeypatch) -> None:
    """The BN of Π̂ u applied to the coarse correction instead (same tensors, same weight
    count): the mapping still fits, the outputs differ."""
    import mgiad.nn.sic as sic

    real = sic.SiC.forward

    def moved(self, f, u, Au=None):
        if self.coarse is None:
            return real(self, f, u, Au)
        for i in range(self.eta_pre):
            u, Au = self.smoother.step(f, u, i, Au), None
        r = self.smoother.residual(f, u, Au)
        u_c = torch.relu(self.Pi_hat(u))  # BN moved from here ...
        Au_c = self.coarse.A(u_c)
        f_c = torch.relu(self.bn_R(self.R_hat(r))) + Au_c
        u_c = self.coarse(f_c, u_c, Au_c)
        u = u + self.P_hat(self.bn_Pi(u_c))  # ... to the coarse correction
        for i in range(self.eta_pre, self.eta_pre + self.eta_post):
            u = self.smoother.step(f, u, i, None)
        return u

    monkeypatch.setattr(sic.SiC, "forward", moved)
    name, kwargs, arch = CASES[3]
    _, _, out_model, out_ref = _step(name, kwargs, arch)
    assert (out_model - out_ref).abs().max() > 1e-3


def test_the_reference_catches_an_unshared_weight() -> None:
    """MGiaD with one B̂ per step (B̂ not shared) has tensors the equations do not have."""
    name, kwargs, arch = CASES[3]
    model = mgiad.create_model(name, num_classes=10, **kwargs)
    smoother = model.levels[0].smoother
    smoother.B.append(copy.deepcopy(smoother.B[0]))  # B̂ of step 2 unshared
    with pytest.raises(KeyError, match=r"extra \['levels.0.smoother.B.1.weight'\]"):
        ref.params_from_state_dict(model.state_dict(), arch)


def test_the_reference_catches_a_dropped_batchnorm() -> None:
    """Without the BNs after Π̂ the state dict lacks tensors the equations use."""
    name, kwargs, arch = CASES[3]
    model = mgiad.create_model(name, num_classes=10, **kwargs)
    del model.levels[0].bn_Pi
    with pytest.raises(KeyError, match="missing"):
        ref.params_from_state_dict(model.state_dict(), arch)


def test_the_options_keep_the_weight_count_and_change_the_network() -> None:
    """BN after P̂ holds as many weights as the BNs after Π̂ and R̂: the counts cannot choose."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    outs, counts = [], []
    for kwargs in ({}, {"channel_norm": "prolongation"}, {"coarse_correction": "fas"},
                   {"init": "kaiming_fan_out"}):
        torch.manual_seed(0)
        model = mgiad.create_model("mgiad_3lvl", **kwargs).eval()
        counts.append(sum(p.numel() for p in model.parameters()))
        outs.append(model(x))
    assert len(set(counts)) == 1
    for a in outs[1:]:
        assert (a - outs[0]).abs().max() > 1e-4


def test_kaiming_fan_out_initialisation() -> None:
    torch.manual_seed(0)
    model = mgiad.create_model("mgnet_ab", init="kaiming_fan_out")
    w = model.levels[2].A.weight  # 256 -> 256, 3x3: fan_out = 256 * 9
    assert abs(w.std().item() / (2 / (256 * 9)) ** 0.5 - 1) < 0.05
    with pytest.raises(ValueError, match="init='xavier' is not one of 'torch', 'kaiming_fan_out'"):
        mgiad.create_model("mgiad", init="xavier")


def test_fas_correction_leaves_the_channel_restriction_without_gradient() -> None:
    """Every smoothing step sees u only through f − Â u, and f_c = (…) + Â u_c⁰; so the FAS
    difference û_c − u_c⁰ does not depend on u_c⁰ = Π̂ u at all: with coarse_correction="fas"
    Π̂ (and its BN) get exactly zero gradient — FAS with these smoothers is the plain
    correction scheme (docs/paper-notes.md §5)."""
    name, kwargs, arch = CASES[8]
    model, _, _, _ = _step(name, kwargs, arch)
    grads = {n: p.grad.abs().max().item() for n, p in model.named_parameters()}
    pi = [g for n, g in grads.items() if n.startswith("levels.") and ("Pi_hat" in n or "bn_Pi" in n)]
    assert pi and max(pi) < 1e-12
    assert min(g for n, g in grads.items() if "R_hat" in n) > 1e-6  # R̂ still learns
    assert grads["transfers.0.Pi.weight"] > 1e-6  # the resolution transfer Π is not affected
