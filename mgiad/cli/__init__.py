"""The ``mgiad`` command: :func:`main` parses and dispatches to one module per command group
(``params``: list/params, ``run``: train/eval/predict, ``bench``, ``sweep``:
experiments/sweep/report/plot, ``demo``)."""

from __future__ import annotations

import argparse
import sys

from mgiad import __version__
from mgiad.perf.allocator import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mgiad", description="MGiaD: multigrid in all dimensions")
    parser.add_argument("--version", action="version", version=f"mgiad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import bench, demo, params, run, sweep  # noqa: I001  (loaded on use)

    params.add_commands(sub)
    run.add_commands(sub)
    bench.add_commands(sub)
    sweep.add_commands(sub)
    demo.add_commands(sub)
    args, extra = parser.parse_known_args(argv)
    keep_freed_memory()  # faster CPU tensors (mgiad/perf/allocator.py); changes no number
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args, extra) or 0)
    except ValueError as e:  # bad input: a clear message, no traceback
        print(f"mgiad {args.command}: error: {e}", file=sys.stderr)
        return 2
