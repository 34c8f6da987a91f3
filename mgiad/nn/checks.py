"""Validation helpers: every bad hyper-parameter is a ``ValueError`` that names the
parameter, the bad value and what is allowed."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.fx


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_scale(name: str, value: Any) -> float:
    """A positive real scale factor (the paper's channel scaling λ)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def scaled_widths(widths: tuple[int, ...], lam: float) -> tuple[int, ...]:
    """Multiply every width by λ; each product must be a whole number of channels."""
    lam = check_scale("lam", lam)
    out = []
    for w in widths:
        c = w * lam
        if abs(c - round(c)) > 1e-9 or round(c) < 1:
            raise ValueError(
                f"lam={lam:g} gives a non-integer width {w}*{lam:g}={c:g}; "
                f"choose lam so that every width in {tuple(widths)} times lam is a whole number"
            )
        out.append(int(round(c)))
    return tuple(out)


def check_widths(widths: Any) -> tuple[int, ...]:
    """A non-empty sequence of positive channel counts, one per resolution level."""
    wrong = (f"widths must be a list of positive integers, one per resolution level, e.g. "
             f"[64,128,256,512]; got {widths!r}")
    if isinstance(widths, (str, bytes)):  # tuple("abc") would be three "widths"
        raise ValueError(wrong)
    try:
        widths = tuple(widths)
    except TypeError:
        raise ValueError(wrong) from None
    if not widths:
        raise ValueError("widths must hold at least one resolution level, got ()")
    for i, w in enumerate(widths):
        check_int(f"widths[{i}]", w)
    return widths


def check_blocks(blocks: Any, widths: tuple[int, ...]) -> tuple[int, ...]:
    """Blocks per stage: one positive count for all stages, or one per stage of ``widths``."""
    blocks = (blocks,) * len(widths) if isinstance(blocks, numbers.Integral) else tuple(blocks)
    if len(blocks) != len(widths):
        raise ValueError(f"blocks={blocks} must give one count per stage of widths={widths}")
    for i, b in enumerate(blocks):
        check_int(f"blocks[{i}]", b)
    return blocks


def check_divides(name: str, g: int, width: int, where: str) -> None:
    """Group size ``g`` (channels per group) must divide the channel count it groups."""
    if width % g:
        divisors = [d for d in range(1, width + 1) if width % d == 0]
        raise ValueError(
            f"{name}={g} does not divide the {width} channels of {where}; "
            f"{name} must be a divisor of {width}: {divisors}"
        )


def check_input(x: torch.Tensor, in_chans: int) -> None:
    """Forward-time check: a 4-D batch with the model's number of input channels.

    Skipped while ``torch.fx`` traces symbolically: an ``fx.Proxy`` has no shape to test (and
    the test, a Python branch, would stop the trace); the traced graph runs the layers, which
    refuse a wrong input themselves. Shapes are known to every other tracer and transform.
    """
    if isinstance(x, torch.fx.Proxy):
        return
    if x.dim() != 4:
        raise ValueError(
            f"expected a 4-D input batch (N, C, H, W), got a tensor of shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            f"input has {x.shape[1]} channels but the model was built with in_chans={in_chans}; "
            f"rebuild it with in_chans={x.shape[1]} or feed {in_chans}-channel images"
        )


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else a ``ValueError`` listing them."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(repr(a) for a in allowed)}")
    return value  # type: ignore[return-value]
