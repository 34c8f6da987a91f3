"""The ``mgiad`` command line."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .allocator import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mgiad", description="MGiaD: multigrid in all dimensions")
    parser.add_argument("--version", action="version", version=f"mgiad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import bench, demo, params_cli, run_cli, sweep_cli

    params_cli.add_commands(sub)
    run_cli.add_commands(sub)
    bench.add_commands(sub)
    sweep_cli.add_commands(sub)
    demo.add_commands(sub)
    args, extra = parser.parse_known_args(argv)
    keep_freed_memory()  # faster CPU tensors (mgiad/allocator.py); changes no number
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args, extra) or 0)
    except ValueError as e:  # bad input: a clear message, no traceback
        print(f"mgiad {args.command}: error: {e}", file=sys.stderr)
        return 2
