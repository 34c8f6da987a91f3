"""``mgiad list`` and ``mgiad params``: the registered models and their weight counts."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mgiad.training.values import check_count, parse_literal

# The models, counting and the paper's tables load torch: imported in the commands that use
# them, so that `mgiad --help` does not (tests/test_startup.py).


def parse_overrides(extra: list[str]) -> dict[str, Any]:
    """``--key=value`` pairs to keyword arguments (values as :func:`config.parse_literal` reads them)."""
    kwargs: dict[str, Any] = {}
    for item in extra:
        if not item.startswith("--") or "=" not in item:
            raise ValueError(f"expected --key=value, got {item!r}")
        key, value = item[2:].split("=", 1)
        kwargs[key.replace("-", "_")] = parse_literal(value)
    return kwargs


def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    from mgiad.models.registry import list_models, model_doc

    names = list_models(args.pattern)
    if not names:
        import difflib

        close = difflib.get_close_matches(args.pattern, list_models(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"no registered model matches {args.pattern!r}{hint} (a shell pattern, "
                         "e.g. 'mgiad*'; `mgiad list` shows them all)")
    width = max((len(n) for n in names), default=0)
    for n in names:
        print(f"{n:<{width}}  {model_doc(n)}")
    return 0


def cmd_params(args: argparse.Namespace, extra: list[str]) -> int:
    from mgiad.experiments.paper import unused_transfer_weights
    from mgiad.models.counting import count_flops, count_weights
    from mgiad.models.registry import create_model, model_defaults

    if args.paper:
        if args.model or extra:
            raise ValueError(f"--paper takes no MODEL or --key=value, got "
                             f"{' '.join(([args.model] if args.model else []) + extra)!r}")
        return _paper(args)
    if not args.model:
        raise ValueError("give a MODEL (see `mgiad list`) or --paper")
    check_count("--image-size", args.image_size)
    kwargs = parse_overrides(extra)
    model = create_model(args.model, **kwargs)
    wc = count_weights(model)
    flops = count_flops(model, image_size=args.image_size)
    if args.json:
        print(json.dumps({"model": args.model, "kwargs": kwargs, "weights": wc.total,
                          "by_level": wc.by_level, "by_kind": wc.by_kind, "gflops": flops / 1e9}))
        return 0
    cfg = ", ".join(f"{k}={v}" for k, v in {**model_defaults(args.model), **kwargs}.items())
    print(f"{args.model}({cfg})")
    print(f"  weights        {wc.total:>12,}")
    unused = unused_transfer_weights(model)
    if unused:
        print(f"  authors' count {wc.total + unused:>12,}  (+{unused:,} unused level-1 Π/R they build)")
    print(f"  forward GFLOPs {flops / 1e9:>12.4f}  ({args.image_size}x{args.image_size} input, 2·MAC, as executed)")
    print("  per resolution level:")
    for level, n in wc.by_level.items():
        name = "stem + head" if level == 0 else f"level {level}"
        print(f"    {name:<12} {n:>12,}  {100 * n / wc.total:5.1f}%")
    print("  per kind of operator:")
    for kind, n in sorted(wc.by_kind.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:<12} {n:>12,}  {100 * n / wc.total:5.1f}%")
    return 0


def _paper(args: argparse.Namespace) -> int:
    from mgiad.experiments.paper import check_tables

    checks = check_tables(args.table)
    header = f"{'table':<5} {'model':<28} {'ours':>10} {'authors':>10} {'paper':>8} {'Δ (k)':>7}  status"
    print(header)
    print("-" * len(header))
    for c in checks:
        delta = round(c.authors / 1000) - c.row.weights_k
        print(f"{c.row.table:<5} {c.row.label:<28} {c.ours:>10,} {c.authors:>10,} "
              f"{c.row.weights_k:>7,}k {delta:>+7}  {c.status}")
        if c.reason:
            print(f"{'':<6}  ↳ {c.reason}")
    bad = [c for c in checks if not c.ok]
    counts: dict[str, int] = {}
    for c in checks:
        counts[c.status] = counts.get(c.status, 0) + 1
    print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" — {len(checks)} rows")
    print("ours = the model we build; authors = ours + the unused level-1 transfer their code "
          "counts; paper = the printed count (k = 1,000, rounded).")
    if bad:
        print(f"{len(bad)} row(s) differ without a stated reason")
        return 1
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("list", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'mgiad*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "params",
        help="weights (total, per level, per operator) and GFLOPs of a model",
        description="Weights and forward GFLOPs of MODEL with hyper-parameters --key=value "
        "(e.g. `mgiad params mgiad --c_K=16 --g_s=8`), or --paper for Tables I–IX.",
    )
    p.add_argument("model", nargs="?", help="registered model name (see `mgiad list`)")
    p.add_argument("--paper", action="store_true", help="check every row of the paper's Tables I–IX")
    p.add_argument("--table", action="append", help="with --paper: only this table (repeatable)")
    p.add_argument("--image-size", type=int, default=32, help="input size for GFLOPs (default 32)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_params, accepts_overrides=True)
