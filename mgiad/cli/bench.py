"""``mgiad bench``: the command line of :mod:`mgiad.perf.bench`."""

from __future__ import annotations

import sys
from typing import Any

from mgiad.perf.targets import DEFAULT_BASELINES, DEFAULT_MODELS
from mgiad.training.values import check_count, check_device, check_writable_file


def cmd_bench(args: Any, extra: list[str]) -> int:
    import torch

    from mgiad.perf.bench import (
        bench,
        check_baselines,
        check_specs,
        fast_paths,
        format_table,
        machine,
        to_json,
    )
    from mgiad.training.machine import resolve_device

    # Every input is checked before the minutes of measuring.
    for flag in ("batch", "image_size", "steps", "rounds", "threads"):
        check_count(f"--{flag.replace('_', '-')}", getattr(args, flag))
    check_device("--device", args.device)
    resolve_device(args.device)  # available here?
    if args.json:
        check_writable_file("--json", args.json)
    specs = args.models or DEFAULT_MODELS
    if not args.models and not args.baseline:
        args.baseline = DEFAULT_BASELINES
    check_specs(specs)
    if args.threads:
        from mgiad.training.threads import cap_threads

        torch.set_num_threads(cap_threads(args.threads, "--threads").threads)
    settings = {k: getattr(args, k) for k in ("batch", "image_size", "steps", "rounds", "device",
                                              "precision", "channels_last")}
    check_baselines(specs, args.baseline)
    print(f"mgiad bench: {len(specs)} models, {args.rounds} interleaved rounds of {args.steps} steps, "
          f"batch {args.batch}{'' if args.no_memory else ', then peak memory'} ...", file=sys.stderr, flush=True)
    results = bench(specs, batch=args.batch, image_size=args.image_size, steps=args.steps,
                    rounds=args.rounds, device=args.device, precision=args.precision,
                    channels_last=args.channels_last, memory=not args.no_memory)
    print(f"# {machine(args.device)}; batch {args.batch}, {args.precision}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}, median of {args.rounds} interleaved rounds")
    print(f"# {fast_paths()}")
    print(format_table(results, args.baseline))
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(to_json(results, settings, args.baseline))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench", help="training/inference speed and memory, side by side",
                       description="Measure models in interleaved rounds in one process and print "
                       "ratios to a baseline. MODEL is name[:key=value,...], e.g. mgiad:c_K=16,g_s=4.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"default: {' '.join(DEFAULT_MODELS)} (baselines resnet18, resnet20)")
    p.add_argument("--baseline", action="append", metavar="MODEL",
                   help="model the ratios (×) refer to (default: the first); repeat it for several, "
                   "each model then compares with the nearest baseline listed before it")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="steps per round and model")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--nchw", dest="channels_last", action="store_false", help="NCHW instead of channels_last")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench)
