"""A second, independent reference: MgNet and MGiaD as plain functions of their own tensors.

Written from the paper's equations and docs/paper-notes.md, not from the package: no module of
mgiad is imported or called. It knows the architecture only from the hyper-parameters (widths,
ν, share_B, g_s, c_K, η_pre, η_post, transfer_norm) and holds its parameters in a flat dict
under paper names. :func:`params_from_state_dict` is the documented mapping from a model's
``state_dict`` to these names; it demands exactly the tensors the equations use, so a weight
that the model un-shares (an extra ``B.1``) or a BatchNorm it adds or moves to another operator
(an extra or missing ``bn_*``) fails the mapping, and one moved in the computation only
changes the outputs.

Notation (σ = ReLU, BN in training mode: batch statistics, running statistics updated with
momentum 0.1 and the unbiased variance, as ``torch.nn.BatchNorm2d``; ``conv(x, W, g)`` a
bias-free convolution with g groups, padding 1 for 3×3, stride 2 for Π, R):

    stem        f₁ = σ(BN(conv(x, W_stem)))                 u₁ = 0
    smoothing   u ← u + σ(BN²(B σ(BN¹(f − A u))))            eq. (3), A, B shared over steps
    transfer    r = f − A_ℓ u
                u ← Π u,        f ← R σ(r) + A_{ℓ+1} u       eqs. (6)–(7), transfer_norm=False
                u ← σ(BN(Π u)), f ← σ(BN(R r)) + A_{ℓ+1} u   transfer_norm=True
    SiC (Alg. 2, in-channel level κ with c channels, groups c/g_s, dense at the coarsest K):
                η_pre smoothing steps with Â_κ, B̂_κ
                u_c⁰ = σ(BN(Π̂ u)),  f_c = σ(BN(R̂(f − Â_κ u))) + Â_{κ+1} u_c⁰
                û_c = SiC_{κ+1}(f_c, u_c⁰);  u ← u + P̂ û_c
                η_post smoothing steps
                options: channel_norm="prolongation": u_c⁰ = Π̂ u, f_c = R̂(f − Â_κ u) + Â u_c⁰,
                u ← u + BN(P̂ ·); coarse_correction="fas": P̂(û_c − u_c⁰) instead of P̂ û_c
                Π̂, R̂: 1×1, c → c/2, two channels per group; P̂: 1×1, c/2 → c, one to two
    head        logits = W_head · mean_{h,w}(u_L) + b

The in-channel levels halve c while the half is ≥ c_K (paper-notes #6).

Parameter names (reference ← model ``state_dict``):

    stem.W, stem.bn.*                    ← stem.0.weight, stem.1.*
    L{l}.A, L{l}.B[.{i}]                 ← levels.{l}.A.weight, levels.{l}.B.{i}.weight      (MgNet)
    L{l}.s{i}.bn1.*, L{l}.s{i}.bn2.*     ← levels.{l}.norms.{i}.0.*, levels.{l}.norms.{i}.1.*
    L{l}.k{k}.A, .B, .s{i}.bn1/bn2.*     ← levels.{l}.<coarse.>^k smoother.A/B.0/norms.{i}.0/1  (MGiaD)
    L{l}.k{k}.Pi, .R, .P                 ← levels.{l}.<coarse.>^k Pi_hat/R_hat/P_hat.weight
    L{l}.k{k}.bnPi.*, .bnR.* (or .bnP.*) ← levels.{l}.<coarse.>^k bn_Pi.*, bn_R.* (bn_P.*)
    T{l}.Pi, T{l}.R, T{l}.bnPi.*, .bnR.* ← transfers.{l}.Pi.weight, R.weight, bn_Pi.*, bn_R.*
    head.W, head.b                       ← head.2.weight, head.2.bias

where ``bn.*`` is ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Arch:
    """What the reference needs to know of a network: its hyper-parameters only."""

    kind: str  # "mgnet" or "mgiad"
    widths: tuple[int, ...]
    nu: int = 2  # MgNet smoothing steps per level
    share_B: bool = True  # MgNet
    g_s: int | None = None  # channels per group of A, B (MgNet: None = dense)
    c_K: int = 16  # MGiaD
    eta_pre: int = 1
    eta_post: int = 1
    transfer_norm: bool = False
    coarse_correction: str = "literal"  # or "fas"
    channel_norm: str = "restriction"  # or "prolongation"

    def hierarchy(self, c: int) -> list[int]:
        levels = [c]
        while levels[-1] // 2 >= self.c_K:
            levels.append(levels[-1] // 2)
        return levels


# -------------------------------------------------------------------------------- operators


def bn(p: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm in training mode, running statistics updated in place."""
    return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.weight"],
                        p[f"{name}.bias"], training=True, momentum=0.1, eps=1e-5)


def count_batch(p: dict[str, torch.Tensor], name: str) -> None:
    p[f"{name}.num_batches_tracked"] += 1


def conv3(x: torch.Tensor, W: torch.Tensor, groups: int, stride: int = 1) -> torch.Tensor:
    return F.conv2d(x, W, stride=stride, padding=1, groups=groups)


def relu(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(x, 0)


# -------------------------------------------------------------------------------- the networks


def smooth(p: dict, prefix: str, f: torch.Tensor, u: torch.Tensor, steps: range, groups: int,
           B_name) -> torch.Tensor:
    """Eq. (3): u ← u + σ(BN²(B σ(BN¹(f − A u)))) for each step i."""
    for i in steps:
        r = relu(bn(p, f"{prefix}.s{i}.bn1", f - conv3(u, p[f"{prefix}.A"], groups)))
        u = u + relu(bn(p, f"{prefix}.s{i}.bn2", conv3(r, p[B_name(i)], groups)))
        count_batch(p, f"{prefix}.s{i}.bn1")
        count_batch(p, f"{prefix}.s{i}.bn2")
    return u


def sic(p: dict, arch: Arch, prefix: str, hierarchy: list[int], f: torch.Tensor,
        u: torch.Tensor) -> torch.Tensor:
    """Algorithm 2 on the in-channel level ``hierarchy[0]`` (prefix ``L{l}.k{k}``)."""
    c = hierarchy[0]
    coarsest = len(hierarchy) == 1
    groups = 1 if coarsest else c // arch.g_s
    n = arch.eta_pre + arch.eta_post

    def B(i):
        return f"{prefix}.B"

    u = smooth(p, prefix, f, u, range(arch.eta_pre), groups, B)  # l.1–2
    if not coarsest:
        level, k = prefix.rsplit(".k", 1)
        coarse = f"{level}.k{int(k) + 1}"
        half, coarse_groups = c // 2, (1 if len(hierarchy) == 2 else c // 2 // arch.g_s)
        r = f - conv3(u, p[f"{prefix}.A"], groups)
        Pi_u = F.conv2d(u, p[f"{prefix}.Pi"], groups=half)
        R_r = F.conv2d(r, p[f"{prefix}.R"], groups=half)
        if arch.channel_norm == "restriction":
            u_c0 = relu(bn(p, f"{prefix}.bnPi", Pi_u))  # l.4
            f_c = relu(bn(p, f"{prefix}.bnR", R_r)) + conv3(u_c0, p[f"{coarse}.A"], coarse_groups)  # l.5
            count_batch(p, f"{prefix}.bnPi")
            count_batch(p, f"{prefix}.bnR")
        else:
            u_c0 = Pi_u
            f_c = R_r + conv3(u_c0, p[f"{coarse}.A"], coarse_groups)
        u_c = sic(p, arch, coarse, hierarchy[1:], f_c, u_c0)  # l.6
        e = F.conv2d(u_c - u_c0 if arch.coarse_correction == "fas" else u_c, p[f"{prefix}.P"], groups=half)
        if arch.channel_norm == "prolongation":
            e = bn(p, f"{prefix}.bnP", e)
            count_batch(p, f"{prefix}.bnP")
        u = u + e  # l.7
    return smooth(p, prefix, f, u, range(arch.eta_pre, n), groups, B)  # l.8–9


def forward(p: dict[str, torch.Tensor], arch: Arch, x: torch.Tensor) -> torch.Tensor:
    """The network (Algorithm 1 + FAS, or Algorithm 3) in training mode."""
    f = relu(bn(p, "stem.bn", conv3(x, p["stem.W"], 1)))
    count_batch(p, "stem.bn")
    u = torch.zeros_like(f)  # u₁ = 0
    for l, c in enumerate(arch.widths):
        if arch.kind == "mgnet":
            groups = 1 if arch.g_s is None else c // arch.g_s
            A = lambda l: f"L{l}.A"  # noqa: E731
            A_groups = lambda l: 1 if arch.g_s is None else arch.widths[l] // arch.g_s  # noqa: E731
        else:
            A = lambda l: f"L{l}.k0.A"  # noqa: E731
            A_groups = lambda l: (1 if len(arch.hierarchy(arch.widths[l])) == 1  # noqa: E731
                                  else arch.widths[l] // arch.g_s)
        if l > 0:  # eqs. (6)–(7) from level l−1
            t = f"T{l - 1}"
            r = f - conv3(u, p[A(l - 1)], A_groups(l - 1))
            c_prev = arch.widths[l - 1]
            if arch.transfer_norm:
                u = relu(bn(p, f"{t}.bnPi", conv3(u, p[f"{t}.Pi"], c_prev, stride=2)))
                f = relu(bn(p, f"{t}.bnR", conv3(r, p[f"{t}.R"], c_prev, stride=2))) \
                    + conv3(u, p[A(l)], A_groups(l))
                count_batch(p, f"{t}.bnPi")
                count_batch(p, f"{t}.bnR")
            else:
                u = conv3(u, p[f"{t}.Pi"], c_prev, stride=2)
                f = conv3(relu(r), p[f"{t}.R"], c_prev, stride=2) + conv3(u, p[A(l)], A_groups(l))
        if arch.kind == "mgnet":
            B = (lambda i, l=l: f"L{l}.B") if arch.share_B else (lambda i, l=l: f"L{l}.B.{i}")
            u = smooth(p, f"L{l}", f, u, range(arch.nu), groups, B)
        else:
            u = sic(p, arch, f"L{l}.k0", arch.hierarchy(c), f, u)
    return F.linear(u.mean(dim=(2, 3)), p["head.W"], p["head.b"])


# -------------------------------------------------------------------------------- the mapping


def name_map(arch: Arch) -> dict[str, str]:
    """Reference name -> the model's ``state_dict`` key, for every tensor the equations use."""
    m: dict[str, str] = {"stem.W": "stem.0.weight", "head.W": "head.2.weight", "head.b": "head.2.bias"}

    def bn_map(ref: str, model: str) -> None:
        for k in BN_KEYS:
            m[f"{ref}.{k}"] = f"{model}.{k}"

    bn_map("stem.bn", "stem.1")
    for l, c in enumerate(arch.widths):
        if arch.kind == "mgnet":
            m[f"L{l}.A"] = f"levels.{l}.A.weight"
            if arch.share_B:
                m[f"L{l}.B"] = f"levels.{l}.B.0.weight"
            for i in range(arch.nu):
                if not arch.share_B:
                    m[f"L{l}.B.{i}"] = f"levels.{l}.B.{i}.weight"
                bn_map(f"L{l}.s{i}.bn1", f"levels.{l}.norms.{i}.0")
                bn_map(f"L{l}.s{i}.bn2", f"levels.{l}.norms.{i}.1")
        else:
            path = f"levels.{l}"
            hierarchy = arch.hierarchy(c)
            for k in range(len(hierarchy)):
                ref = f"L{l}.k{k}"
                m[f"{ref}.A"] = f"{path}.smoother.A.weight"
                m[f"{ref}.B"] = f"{path}.smoother.B.0.weight"
                for i in range(arch.eta_pre + arch.eta_post):
                    bn_map(f"{ref}.s{i}.bn1", f"{path}.smoother.norms.{i}.0")
                    bn_map(f"{ref}.s{i}.bn2", f"{path}.smoother.norms.{i}.1")
                if k + 1 < len(hierarchy):
                    for op, key in (("Pi", "Pi_hat"), ("R", "R_hat"), ("P", "P_hat")):
                        m[f"{ref}.{op}"] = f"{path}.{key}.weight"
                    if arch.channel_norm == "restriction":
                        bn_map(f"{ref}.bnPi", f"{path}.bn_Pi")
                        bn_map(f"{ref}.bnR", f"{path}.bn_R")
                    else:
                        bn_map(f"{ref}.bnP", f"{path}.bn_P")
                path += ".coarse"
        if l > 0:
            t, model = f"T{l - 1}", f"transfers.{l - 1}"
            m[f"{t}.Pi"], m[f"{t}.R"] = f"{model}.Pi.weight", f"{model}.R.weight"
            if arch.transfer_norm:
                bn_map(f"{t}.bnPi", f"{model}.bn_Pi")
                bn_map(f"{t}.bnR", f"{model}.bn_R")
    return m


def params_from_state_dict(state: dict[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
    """The reference's own copies of a model's tensors (weights require grad).

    Raises ``KeyError`` when the state dict holds other tensors than the equations use."""
    m = name_map(arch)
    missing = sorted(set(m.values()) - set(state))
    extra = sorted(set(state) - set(m.values()))
    if missing or extra:
        raise KeyError(f"state dict does not fit the equations: missing {missing}, extra {extra}")
    p = {}
    for ref, key in m.items():
        t = state[key].detach().clone()
        if key.endswith(("weight", "bias")) and not key.endswith("num_batches_tracked"):
            t.requires_grad_(True)
        p[ref] = t
    return p
