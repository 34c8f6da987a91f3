"""The ``mgiad`` command: :func:`main` parses and dispatches to one module per command group
(``params``: list/params, ``run``: train/eval/predict, ``bench``, ``sweep``:
experiments/sweep/report/plot, ``demo``, ``native``, ``export``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping
from typing import Any

from mgiad import __version__
from mgiad.perf.allocator import keep_freed_memory


def openmp_wait_policy(command: str, environ: MutableMapping[str, str] = os.environ, *,
                       torch_loaded: bool | None = None) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy: torch's waiting threads then
    sleep instead of spinning, so that a core taken by another process does not stall every step
    (docs/training.md, "Threads and progress"). libgomp reads it once, when torch loads, so this
    runs before that; ``mgiad bench`` keeps torch's default, which is what it measures."""
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if command != "bench" and not loaded:
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def warning_format(command: str) -> Any:
    """``warnings.formatwarning`` for the command line: a warning raised by mgiad's own code
    prints as one line, ``mgiad COMMAND: warning: ...``, not with the line of our source that
    raised it; other packages' warnings keep Python's format."""
    import warnings

    python_format = warnings.formatwarning
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

    def format_warning(message: Any, category: Any, filename: str, lineno: int,
                       line: str | None = None) -> str:
        if os.path.abspath(filename).startswith(package):
            text = str(message)  # library warnings say "mgiad: ..."; the command line says it once
            text = text[len("mgiad: "):] if text.startswith("mgiad: ") else text
            return f"mgiad {command}: warning: {text}\n"
        return python_format(message, category, filename, lineno, line)

    return format_warning


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mgiad", description="MGiaD: multigrid in all dimensions")
    parser.add_argument("--version", action="version", version=f"mgiad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import bench, demo, export, native, params, run, sweep  # noqa: I001  (loaded on use)

    params.add_commands(sub)
    run.add_commands(sub)
    bench.add_commands(sub)
    sweep.add_commands(sub)
    demo.add_commands(sub)
    native.add_commands(sub)
    export.add_commands(sub)
    args, extra = parser.parse_known_args(argv)
    openmp_wait_policy(args.command)  # before anything loads torch
    keep_freed_memory()  # faster CPU tensors (mgiad/perf/allocator.py); changes no number
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    import warnings

    python_format, warnings.formatwarning = warnings.formatwarning, warning_format(args.command)
    try:
        return int(args.func(args, extra) or 0)
    except ValueError as e:  # bad input: a clear message, no traceback
        print(f"mgiad {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mgiad ... | head`: the reader has gone, nothing left to say
        import os

        try:  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141  # 128 + SIGPIPE, as the shell reports a command killed by the pipe
    except OSError as e:  # read-only or full disk, no permission, a file in the way: one line
        import errno

        path = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        what, fix = {
            errno.ENOSPC: ("cannot write", "free space there or write elsewhere"),
            getattr(errno, "EDQUOT", errno.ENOSPC): ("cannot write", "free space there or "
                                                     "write elsewhere"),
            errno.EFBIG: ("cannot write", "write elsewhere"),
            errno.EROFS: ("cannot write", "choose a location you can write to"),
            errno.EACCES: ("cannot access", "check its permissions or choose another location"),
            errno.EPERM: ("cannot access", "check its permissions or choose another location"),
            errno.EEXIST: ("cannot create", "a file is in the way; remove it or choose another path"),
            errno.ENOTDIR: ("cannot use", "a part of the path is a file, not a directory"),
        }.get(e.errno, ("cannot use", ""))
        print(f"mgiad {args.command}: error: {what}{f' {path}' if path else ''}: "
              f"{e.strerror or e}{f'; {fix}' if fix else ''}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = python_format
