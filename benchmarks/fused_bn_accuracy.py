"""Float32 round-off of a training step with and without the fused BatchNorm + ReLU, against float64.

    python benchmarks/fused_bn_accuracy.py

One training step (batch 16, 32×32, one thread, channels_last, loss Σ y²) of MGiaD c_K=16 and the
3-level MGiaD from the same initial weights: the float64 model with the built-in BatchNorm is
the reference; the float32 model runs once with ``MGIAD_FUSED_BN`` on and once off (the native
convolutions on in both). Prints the largest output difference and the largest parameter-gradient
error relative to that parameter's largest float64 gradient.
"""

from __future__ import annotations

import copy
import os

import torch

import mgiad


def step(model: torch.nn.Module, x: torch.Tensor, fused: bool):
    os.environ["MGIAD_FUSED_BN"] = "1" if fused else "0"
    y = model(x)
    y.square().sum().backward()
    return y, [p.grad for p in model.parameters()]


def main() -> None:
    torch.set_num_threads(1)
    for name, kwargs in [("mgiad", dict(c_K=16, g_s=4)), ("mgiad_3lvl", {})]:
        torch.manual_seed(0)
        model = mgiad.create_model(name, **kwargs).to(memory_format=torch.channels_last).train()
        x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y_ref, g_ref = step(copy.deepcopy(model).double(), x.double(), False)
        names = [n for n, _ in model.named_parameters()]
        for fused in (True, False):
            y, g = step(copy.deepcopy(model), x, fused)
            errs = [((a - b.float()).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(g, g_ref)]
            worst = max(range(len(errs)), key=errs.__getitem__)
            print(f"{name:<12} {'fused BN ' if fused else 'PyTorch BN'}  output {(y - y_ref).abs().max().item():.1e}  "
                  f"gradient {errs[worst]:.1e} ({names[worst]})")


if __name__ == "__main__":
    main()
