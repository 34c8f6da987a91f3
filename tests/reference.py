"""A plain, literal implementation of Algorithms 1–3 over a model's own modules.

No shortcut of the library's fast path appears here: u₁ = 0 is a tensor of zeros, every
A u is computed where the algorithm writes it (also when the FAS restriction has just
computed the same product), every convolution goes through ``F.conv2d`` with the module's
weight, ReLU is never in place and nothing is recomputed. The tests compare the models
against it (outputs, gradients, BatchNorm statistics).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgiad.models import MgNet, MultigridNet
from mgiad.nn.layers import ResolutionTransfer, Smoother
from mgiad.nn.sic import SiC


def conv(m: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def smoothing_step(sm: Smoother, f: torch.Tensor, u: torch.Tensor, i: int) -> torch.Tensor:
    B = sm.B[i if len(sm.B) > 1 else 0]
    bn_r, bn_e = sm.norms[i]
    r = F.relu(bn_r(f - conv(sm.A, u)))
    return u + F.relu(bn_e(conv(B, r)))


def smoother(sm: Smoother, f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    for i in range(sm.steps):
        u = smoothing_step(sm, f, u, i)
    return u


def sic(s: SiC, f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    for i in range(s.eta_pre):
        u = smoothing_step(s.smoother, f, u, i)
    if s.coarse is not None:
        r = f - conv(s.smoother.A, u)
        u_c = F.relu(s.bn_Pi(conv(s.Pi_hat, u)))
        f_c = F.relu(s.bn_R(conv(s.R_hat, r))) + conv(s.coarse.smoother.A, u_c)
        u_c = sic(s.coarse, f_c, u_c)
        u = u + conv(s.P_hat, u_c)
    for i in range(s.eta_pre, s.eta_pre + s.eta_post):
        u = smoothing_step(s.smoother, f, u, i)
    return u


def transfer(t: ResolutionTransfer, f: torch.Tensor, u: torch.Tensor, A_fine: nn.Conv2d,
             A_coarse: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    r = f - conv(A_fine, u)
    if t.norm:
        u = F.relu(t.bn_Pi(conv(t.Pi, u)))
        f = F.relu(t.bn_R(conv(t.R, r))) + conv(A_coarse, u)
    else:
        u = conv(t.Pi, u)
        f = conv(t.R, F.relu(r)) + conv(A_coarse, u)
    return f, u


def forward(model: MultigridNet, x: torch.Tensor) -> torch.Tensor:
    stem_conv, stem_bn, _ = model.stem
    f = F.relu(stem_bn(conv(stem_conv, x)))
    u = torch.zeros_like(f)
    level = smoother if isinstance(model, MgNet) else sic
    for l, lvl in enumerate(model.levels):
        if l > 0:
            f, u = transfer(model.transfers[l - 1], f, u, model.levels[l - 1].A, lvl.A)
        u = level(lvl, f, u)
    return model.head(u)
