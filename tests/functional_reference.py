"""A second, independent reference: ResNet, MgNet, MGiaD and MGIC as plain functions of their
own tensors.

Written from the papers' equations and docs/paper-notes.md, not from the package: no module of
mgiad is imported or called. It knows an architecture only from its hyper-parameters (widths,
λ, ν, share_B, g_s, c_K, η_pre, η_post, transfer_norm, blocks, shortcut, g) and holds its
parameters in a flat dict under paper names. :func:`params_from_state_dict` is the documented
mapping from a model's ``state_dict`` to these names; it demands exactly the tensors the
equations use, so a weight that the model un-shares (an extra ``B.1``) or a BatchNorm it adds
or moves to another operator (an extra or missing ``bn_*``) fails the mapping, and one moved in
the computation only changes the outputs.

Notation: σ = ReLU; ``conv(x, W, g)`` a bias-free convolution with g groups (3×3 with padding 1,
or 1×1; stride 2 for Π, R and where a stage halves the resolution). BN is BatchNorm (Ioffe &
Szegedy 2015) with ``torch.nn.BatchNorm2d``'s conventions, written out in :meth:`Net.bn`:
training mode normalises with the batch's mean and biased variance and moves the running
statistics with momentum 0.1 (the running variance unbiased, n/(n−1)); eval mode normalises
with the running statistics; ε = 1e-5.

MgNet and MGiaD (c_ℓ = λ·w_ℓ channels on resolution level ℓ; λ = 1 for MgNet):

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

The in-channel levels halve c while the half is ≥ c_K (paper-notes #6); λ multiplies every
resolution width (paper §IV and App. A: "multiplied to the initial number of channels";
paper-notes #12: [64,128,256,256]·λ, which the Table II/VII counts fit).

ResNet (He et al. 2016, "Deep residual learning", §3.2–3.3 and §4.2 for CIFAR):

    stem        u = σ(BN(conv(x, W_stem)))   [then a 3×3/2 max-pool with ``maxpool``]
    block       y = σ(F(x) + shortcut(x)),  F(x) = BN(conv(σ(BN(conv(x, W₁, stride))), W₂))
                — eq. (1) with "the second nonlinearity after the addition" (§3.2, Fig. 2),
                BN "right after each convolution and before activation" (§3.4)
    shortcut    identity when the shape is kept; otherwise
                option A (``shortcut="A"``): identity on the stride-2 subsampled x with zero
                  entries for the new channels, parameter-free — what He et al. use on CIFAR
                  (§4.2: "we use identity shortcuts in all cases (i.e., option A)"), and what
                  ResNet20's 269,722 weights (MGiaD paper, Table I: 270k) leave room for;
                option B (``shortcut="B"``): the projection W_s x of eq. (2), a 1×1 stride-2
                  convolution, with BN as after every convolution — ResNet18's (ImageNet-style,
                  torchvision's ``downsample``; 11,173,962 weights, paper-notes #13).
    stages      the first keeps the resolution, each later one halves it in its first block
    head        as above

He et al. do not say where option A's zero channels go; the reference puts half of them before
and half after x (⌊p/2⌋ before, the rest after), as the common CIFAR implementation does
(akamaster/pytorch_resnet_cifar10, ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p/2, p/2))``). The
placement does not change the weight count, but it does change the outputs.

MGIC (Eliasof et al. 2020, as read in docs/paper-notes.md #16 and DESIGN.md): the ResNet skeleton
with a channel V-cycle block on c channels, g channels per group (groups c/g):

    coarsest    c ≤ c_K (or c odd): the dense basic block x ← σ(x + F(x))
    otherwise   x_c = R̂ x                                  R̂: 1×1, c → c/2, grouped
                x ← x + BN(P̂(MGIC_{c/2}(x_c) − x_c))       FAS correction, P̂: 1×1, c/2 → c
                x ← σ(x + F_g(x))                           basic block with grouped 3×3 convs
    stages      stage s > 0 enters with u ← σ(BN(conv1×1(u, W_T, stride 2))), dense

Parameter names (reference ← model ``state_dict``):

    stem.W, stem.bn.*                    ← stem.0.weight, stem.1.*
    head.W, head.b                       ← head.2.weight, head.2.bias
  MgNet, MGiaD:
    L{l}.A, L{l}.B[.{i}]                 ← levels.{l}.A.weight, levels.{l}.B.{i}.weight      (MgNet)
    L{l}.s{i}.bn1.*, L{l}.s{i}.bn2.*     ← levels.{l}.norms.{i}.0.*, levels.{l}.norms.{i}.1.*
    L{l}.k{k}.A, .B, .s{i}.bn1/bn2.*     ← levels.{l}.<coarse.>^k smoother.A/B.0/norms.{i}.0/1  (MGiaD)
    L{l}.k{k}.Pi, .R, .P                 ← levels.{l}.<coarse.>^k Pi_hat/R_hat/P_hat.weight
    L{l}.k{k}.bnPi.*, .bnR.* (or .bnP.*) ← levels.{l}.<coarse.>^k bn_Pi.*, bn_R.* (bn_P.*)
    T{l}.Pi, T{l}.R, T{l}.bnPi.*, .bnR.* ← transfers.{l}.Pi.weight, R.weight, bn_Pi.*, bn_R.*
  ResNet (block i of stage s):
    S{s}.b{i}.W1, .bn1.*, .W2, .bn2.*    ← stages.{s}.{i}.conv1.weight, bn1.*, conv2.weight, bn2.*
    S{s}.b{i}.Ws, .bns.*                 ← stages.{s}.{i}.shortcut.0.weight, shortcut.1.*  (option B)
  MGIC (block i of stage s, j = i, or i + 3 after the stage's entry conv, BN, ReLU):
    S{s}.T.W, S{s}.T.bn.*                ← stages.{s}.0.weight, stages.{s}.1.*            (s > 0)
    S{s}.b{i}.k{k}.R, .P, .bnP.*         ← stages.{s}.{j}.<coarse.>^k R_hat.weight, P_hat.weight, bn_P_hat.*
    S{s}.b{i}.k{k}.W1, .bn1.*, .W2, .bn2.* ← … smooth.body.0.weight, body.1.*, body.3.weight, body.4.*
                                           (coarsest k: smooth.conv1.weight, bn1.*, conv2.weight, bn2.*)

where ``bn.*`` is ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
MOMENTUM, EPS = 0.1, 1e-5  # torch.nn.BatchNorm2d's defaults, which every model keeps
KINDS = ("mgnet", "mgiad", "resnet", "mgic")


@dataclass(frozen=True)
class Arch:
    """What the reference needs to know of a network: its hyper-parameters only."""

    kind: str  # one of KINDS
    widths: tuple[int, ...]  # before the channel scaling λ
    nu: int = 2  # MgNet smoothing steps per level
    share_B: bool = True  # MgNet
    g_s: int | None = None  # channels per group of A, B (MgNet: None = dense) or Â, B̂ (MGiaD)
    c_K: int = 16  # MGiaD: fewest channels of the coarsest in-channel level; MGIC: most
    lam: float = 1  # MGiaD's channel scaling λ
    eta_pre: int = 1
    eta_post: int = 1
    transfer_norm: bool = False
    coarse_correction: str = "literal"  # or "fas"
    channel_norm: str = "restriction"  # or "prolongation"
    blocks: int = 2  # ResNet, MGIC: blocks per stage
    shortcut: str = "B"  # ResNet: "A" (zero padding) or "B" (projection)
    maxpool: bool = False  # ResNet: 3×3/2 max-pool after the stem
    g: int = 8  # MGIC: channels per group

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def channels(self) -> tuple[int, ...]:
        """c_ℓ = λ·w_ℓ, the channels of every resolution level (stage)."""
        c = [w * self.lam for w in self.widths]
        if any(x != int(x) for x in c):
            raise ValueError(f"λ={self.lam} gives non-integer widths {c}")
        return tuple(int(x) for x in c)

    def hierarchy(self, c: int) -> list[int]:
        """The in-channel levels [c, c/2, …] of a grid (block) with c channels."""
        levels = [c]
        if self.kind == "mgic":  # down to a dense block of at most c_K channels (an odd c stops)
            while levels[-1] > self.c_K and levels[-1] % 2 == 0:
                levels.append(levels[-1] // 2)
        else:  # halve while the half is ≥ c_K (paper-notes #6)
            while levels[-1] // 2 >= self.c_K:
                levels.append(levels[-1] // 2)
        return levels


# -------------------------------------------------------------------------------- operators


class Net:
    """The reference's tensors ``p`` under paper names, run with BatchNorm in one mode."""

    def __init__(self, p: dict[str, torch.Tensor], arch: Arch, training: bool) -> None:
        self.p, self.arch, self.training = p, arch, training

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.p[name]

    def bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """γ (x − μ)/√(σ² + ε) + β per channel. Training: μ, σ² of the batch (over batch and
        pixels, σ² biased), the running statistics moved towards μ and the unbiased σ²; eval:
        the running statistics."""
        p = self.p
        mean, var = p[f"{name}.running_mean"], p[f"{name}.running_var"]
        if self.training:
            n = x.numel() // x.shape[1]  # samples per channel
            mu = x.mean(dim=(0, 2, 3))
            sigma2 = (x - mu.view(1, -1, 1, 1)).square().mean(dim=(0, 2, 3))
            with torch.no_grad():
                mean.mul_(1 - MOMENTUM).add_(MOMENTUM * mu)
                var.mul_(1 - MOMENTUM).add_(MOMENTUM * sigma2 * n / (n - 1))
                p[f"{name}.num_batches_tracked"] += 1
        else:
            mu, sigma2 = mean, var
        x_hat = (x - mu.view(1, -1, 1, 1)) / torch.sqrt(sigma2.view(1, -1, 1, 1) + EPS)
        return p[f"{name}.weight"].view(1, -1, 1, 1) * x_hat + p[f"{name}.bias"].view(1, -1, 1, 1)


def conv3(x: torch.Tensor, W: torch.Tensor, groups: int = 1, stride: int = 1) -> torch.Tensor:
    return F.conv2d(x, W, stride=stride, padding=1, groups=groups)


def conv1(x: torch.Tensor, W: torch.Tensor, groups: int = 1, stride: int = 1) -> torch.Tensor:
    return F.conv2d(x, W, stride=stride, groups=groups)


def relu(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(x, 0)


def stem(net: Net, x: torch.Tensor) -> torch.Tensor:
    return relu(net.bn("stem.bn", conv3(x, net["stem.W"])))


# -------------------------------------------------------------------------------- MgNet, MGiaD


def smooth(net: Net, prefix: str, f: torch.Tensor, u: torch.Tensor, steps: range, groups: int,
           B_name) -> torch.Tensor:
    """Eq. (3): u ← u + σ(BN²(B σ(BN¹(f − A u)))) for each step i."""
    for i in steps:
        r = relu(net.bn(f"{prefix}.s{i}.bn1", f - conv3(u, net[f"{prefix}.A"], groups)))
        u = u + relu(net.bn(f"{prefix}.s{i}.bn2", conv3(r, net[B_name(i)], groups)))
    return u


def sic(net: Net, prefix: str, hierarchy: list[int], f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Algorithm 2 on the in-channel level ``hierarchy[0]`` (prefix ``L{l}.k{k}``)."""
    arch = net.arch
    c = hierarchy[0]
    coarsest = len(hierarchy) == 1
    groups = 1 if coarsest else c // arch.g_s
    n = arch.eta_pre + arch.eta_post

    def B(i):
        return f"{prefix}.B"  # B̂ shared over the steps

    u = smooth(net, prefix, f, u, range(arch.eta_pre), groups, B)  # l.1–2
    if not coarsest:
        level, k = prefix.rsplit(".k", 1)
        coarse = f"{level}.k{int(k) + 1}"
        half, coarse_groups = c // 2, (1 if len(hierarchy) == 2 else c // 2 // arch.g_s)
        r = f - conv3(u, net[f"{prefix}.A"], groups)
        Pi_u = conv1(u, net[f"{prefix}.Pi"], groups=half)
        R_r = conv1(r, net[f"{prefix}.R"], groups=half)
        if arch.channel_norm == "restriction":
            u_c0 = relu(net.bn(f"{prefix}.bnPi", Pi_u))  # l.4
            f_c = relu(net.bn(f"{prefix}.bnR", R_r)) + conv3(u_c0, net[f"{coarse}.A"], coarse_groups)  # l.5
        else:
            u_c0 = Pi_u
            f_c = R_r + conv3(u_c0, net[f"{coarse}.A"], coarse_groups)
        u_c = sic(net, coarse, hierarchy[1:], f_c, u_c0)  # l.6
        e = conv1(u_c - u_c0 if arch.coarse_correction == "fas" else u_c, net[f"{prefix}.P"], groups=half)
        if arch.channel_norm == "prolongation":
            e = net.bn(f"{prefix}.bnP", e)
        u = u + e  # l.7
    return smooth(net, prefix, f, u, range(arch.eta_pre, n), groups, B)  # l.8–9


def level_A(arch: Arch, l: int) -> tuple[str, int]:
    """A_ℓ of eqs. (6)–(7) — MgNet's A_ℓ, MGiaD's finest in-channel Â_{ℓ,1} — and its groups."""
    c = arch.channels[l]
    if arch.kind == "mgnet":
        return f"L{l}.A", 1 if arch.g_s is None else c // arch.g_s
    return f"L{l}.k0.A", 1 if len(arch.hierarchy(c)) == 1 else c // arch.g_s


def transfer(net: Net, l: int, f: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. (6)–(7) from level ℓ to ℓ+1: Π, R depthwise 3×3/2 (groups c_ℓ)."""
    t, c = f"T{l}", net.arch.channels[l]
    (A, groups), (A_next, groups_next) = level_A(net.arch, l), level_A(net.arch, l + 1)
    r = f - conv3(u, net[A], groups)
    if net.arch.transfer_norm:
        u = relu(net.bn(f"{t}.bnPi", conv3(u, net[f"{t}.Pi"], c, stride=2)))
        f = relu(net.bn(f"{t}.bnR", conv3(r, net[f"{t}.R"], c, stride=2))) + conv3(u, net[A_next], groups_next)
    else:
        u = conv3(u, net[f"{t}.Pi"], c, stride=2)
        f = conv3(relu(r), net[f"{t}.R"], c, stride=2) + conv3(u, net[A_next], groups_next)
    return f, u


def multigrid(net: Net, x: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 with the FAS transfer (MgNet) or Algorithm 3 (MGiaD): the features u_L."""
    arch = net.arch
    f = stem(net, x)
    u = torch.zeros_like(f)  # u₁ = 0
    for l, c in enumerate(arch.channels):
        if l > 0:
            f, u = transfer(net, l - 1, f, u)
        if arch.kind == "mgnet":
            B = (lambda i, l=l: f"L{l}.B") if arch.share_B else (lambda i, l=l: f"L{l}.B.{i}")
            u = smooth(net, f"L{l}", f, u, range(arch.nu), level_A(arch, l)[1], B)
        else:
            u = sic(net, f"L{l}.k0", arch.hierarchy(c), f, u)
    return u


# -------------------------------------------------------------------------------- ResNet, MGIC


def shortcut(net: Net, name: str, x: torch.Tensor, c_out: int, stride: int) -> torch.Tensor:
    """He et al. 2016: identity (eq. (1)) where the shape is kept, else option A or B."""
    c_in = x.shape[1]
    if stride == 1 and c_in == c_out:
        return x
    if net.arch.shortcut == "B":  # eq. (2): the projection W_s x, 1×1 with BN
        return net.bn(f"{name}.bns", conv1(x, net[f"{name}.Ws"], stride=stride))
    x = x[:, :, ::stride, ::stride]  # option A: identity at stride 2 ...
    p = c_out - c_in  # ... with zero entries for the new channels, half before and half after

    def zeros(k: int) -> torch.Tensor:
        return x.new_zeros(x.shape[0], k, *x.shape[2:])

    return torch.cat([zeros(p // 2), x, zeros(p - p // 2)], dim=1)


def basic_block(net: Net, name: str, x: torch.Tensor, c_out: int, stride: int = 1,
                groups: int = 1) -> torch.Tensor:
    """He et al. 2016, eq. (1) and Fig. 2: σ(F(x) + shortcut(x)), F(x) = BN(W₂ σ(BN(W₁ x)));
    the final σ comes after the addition. ``groups``: MGIC's grouped block."""
    h = relu(net.bn(f"{name}.bn1", conv3(x, net[f"{name}.W1"], groups, stride)))
    h = net.bn(f"{name}.bn2", conv3(h, net[f"{name}.W2"], groups))
    return relu(h + shortcut(net, name, x, c_out, stride))


def resnet(net: Net, x: torch.Tensor) -> torch.Tensor:
    """He et al. 2016 (CIFAR form, §4.2): stem, stages of basic blocks; features before pooling."""
    u = stem(net, x)
    if net.arch.maxpool:
        u = F.max_pool2d(u, 3, stride=2, padding=1)
    for s, c in enumerate(net.arch.channels):
        for i in range(net.arch.blocks):
            u = basic_block(net, f"S{s}.b{i}", u, c, stride=2 if s > 0 and i == 0 else 1)
    return u


def mgic_block(net: Net, prefix: str, hierarchy: list[int], x: torch.Tensor) -> torch.Tensor:
    """MGIC's channel V-cycle on ``hierarchy[0]`` channels (prefix ``S{s}.b{i}.k{k}``)."""
    c = hierarchy[0]
    if len(hierarchy) == 1:  # coarsest: the dense basic block
        return basic_block(net, prefix, x, c)
    groups = c // net.arch.g
    block, k = prefix.rsplit(".k", 1)
    x_c = conv1(x, net[f"{prefix}.R"], groups)  # R̂: c → c/2
    x_c_new = mgic_block(net, f"{block}.k{int(k) + 1}", hierarchy[1:], x_c)
    x = x + net.bn(f"{prefix}.bnP", conv1(x_c_new - x_c, net[f"{prefix}.P"], groups))  # FAS correction
    return basic_block(net, prefix, x, c, groups=groups)


def mgic(net: Net, x: torch.Tensor) -> torch.Tensor:
    """MGIC (Eliasof et al. 2020) on the ResNet skeleton; features before pooling."""
    u = stem(net, x)
    for s, c in enumerate(net.arch.channels):
        if s > 0:  # a dense 1×1/2 convolution enters the stage
            u = relu(net.bn(f"S{s}.T.bn", conv1(u, net[f"S{s}.T.W"], stride=2)))
        for i in range(net.arch.blocks):
            u = mgic_block(net, f"S{s}.b{i}.k0", net.arch.hierarchy(c), u)
    return u


def forward(p: dict[str, torch.Tensor], arch: Arch, x: torch.Tensor, *, training: bool = True) -> torch.Tensor:
    """The logits; BatchNorm in training mode (``training=True``: batch statistics, running
    statistics in ``p`` updated in place) or eval mode (running statistics)."""
    net = Net(p, arch, training)
    u = {"mgnet": multigrid, "mgiad": multigrid, "resnet": resnet, "mgic": mgic}[arch.kind](net, x)
    return F.linear(u.mean(dim=(2, 3)), p["head.W"], p["head.b"])


# -------------------------------------------------------------------------------- the mapping


def name_map(arch: Arch) -> dict[str, str]:
    """Reference name -> the model's ``state_dict`` key, for every tensor the equations use."""
    m: dict[str, str] = {"stem.W": "stem.0.weight", "head.W": "head.2.weight", "head.b": "head.2.bias"}

    def bn_map(ref: str, model: str) -> None:
        for k in BN_KEYS:
            m[f"{ref}.{k}"] = f"{model}.{k}"

    def block_map(ref: str, model: str, grouped: bool) -> None:  # a (grouped) basic block
        if grouped:  # MGIC's Sequential(conv, BN, ReLU, conv, BN)
            m[f"{ref}.W1"], m[f"{ref}.W2"] = f"{model}.body.0.weight", f"{model}.body.3.weight"
            bn_map(f"{ref}.bn1", f"{model}.body.1")
            bn_map(f"{ref}.bn2", f"{model}.body.4")
        else:
            m[f"{ref}.W1"], m[f"{ref}.W2"] = f"{model}.conv1.weight", f"{model}.conv2.weight"
            bn_map(f"{ref}.bn1", f"{model}.bn1")
            bn_map(f"{ref}.bn2", f"{model}.bn2")

    bn_map("stem.bn", "stem.1")
    channels = arch.channels
    if arch.kind == "resnet":
        c_in = channels[0]
        for s, c in enumerate(channels):
            for i in range(arch.blocks):
                ref, model = f"S{s}.b{i}", f"stages.{s}.{i}"
                block_map(ref, model, grouped=False)
                if arch.shortcut == "B" and (c_in != c or (s > 0 and i == 0)):
                    m[f"{ref}.Ws"] = f"{model}.shortcut.0.weight"
                    bn_map(f"{ref}.bns", f"{model}.shortcut.1")
                c_in = c
        return m
    if arch.kind == "mgic":
        for s, c in enumerate(channels):
            if s > 0:
                m[f"S{s}.T.W"] = f"stages.{s}.0.weight"
                bn_map(f"S{s}.T.bn", f"stages.{s}.1")
            hierarchy = arch.hierarchy(c)
            for i in range(arch.blocks):
                path = f"stages.{s}.{i + (3 if s > 0 else 0)}"
                for k in range(len(hierarchy)):
                    ref = f"S{s}.b{i}.k{k}"
                    if k + 1 < len(hierarchy):
                        m[f"{ref}.R"], m[f"{ref}.P"] = f"{path}.R_hat.weight", f"{path}.P_hat.weight"
                        bn_map(f"{ref}.bnP", f"{path}.bn_P_hat")
                    block_map(ref, f"{path}.smooth", grouped=k + 1 < len(hierarchy))
                    path += ".coarse"
        return m
    for l, c in enumerate(channels):
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


def params_from_state_dict(state: dict[str, torch.Tensor], arch: Arch,
                           dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The reference's own copies of a model's tensors (weights require grad); ``dtype``
    converts the floating ones (float64: hold a float32 model to the equations).

    Raises ``KeyError`` when the state dict holds other tensors than the equations use."""
    m = name_map(arch)
    missing = sorted(set(m.values()) - set(state))
    extra = sorted(set(state) - set(m.values()))
    if missing or extra:
        raise KeyError(f"state dict does not fit the equations: missing {missing}, extra {extra}")
    p = {}
    for ref, key in m.items():
        t = state[key].detach().clone().contiguous()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        if key.endswith(("weight", "bias")):
            t.requires_grad_(True)
        p[ref] = t
    return p
