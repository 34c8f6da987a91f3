"""``mgiad native``: say which native kernels are active and where they come from, building them if needed.

The kernels (mgiad/ops/native) are prebuilt when the package is installed with torch in the
build environment (setup.py); where no prebuilt library fits this torch and these sources they
are compiled on first use, which pauses the first step for half a minute or more.
``mgiad native`` does that beforehand (for example in a job's setup, or once per node before a
sweep), for every instruction set this CPU runs with ``--all``. Exit status 1 when no native
kernel is active (the built-in convolution runs then).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

# mgiad.ops.native loads torch: imported in the command, so that `mgiad --help` does not.


def cmd_native(args: argparse.Namespace, extra: list[str]) -> int:
    from mgiad.ops import native

    builds: dict[str, str] = {}
    wanted = native.cpu_isas() if args.all else [native.requested()[0]] if args.verbose else []
    for isa in wanted:
        if isa is not None:
            try:
                native.load(isa, verbose=args.verbose)
                builds[isa] = native.origin(isa)
            except native.NativeUnavailable as e:
                builds[isa] = str(e)
    status = native.status()
    if args.json:
        print(json.dumps({**status, "builds": builds}, indent=2))
        return 0 if status["active"] else 1
    print(f"CPU capability (torch): {status['cpu_capability']}; builds it runs: "
          f"{', '.join(status['cpu_isas']) or 'none (needs AVX2)'}")
    for isa, result in builds.items():
        print(f"  {isa}: {result}")
    if status["active"]:
        print(f"active: {status['isa']} build ({status['reason']})")
        print(f"  from: {status['build']}")
        for k in status["kernels"]:
            print(f"  {k}")
        from mgiad.nn import bnrelu

        print(f"fused BatchNorm + ReLU: {'on' if bnrelu.enabled() else 'off'} ({bnrelu.ENV}="
              f"{os.environ.get(bnrelu.ENV, '')!r}; 0 turns it off)")
        print("other convolutions, other dtypes, NCHW inputs and autocast run the built-in kernels")
        return 0
    print(f"inactive: {status['reason']}; the built-in convolution runs")
    return 1


def add_commands(sub: Any) -> None:
    p = sub.add_parser("native", help="show which native kernels are active (building them if needed)",
                       description="Say which native kernels are active and where they come from, building them "
                       "if needed. MGIAD_NATIVE=0 turns "
                       "them off, MGIAD_NATIVE=avx2 or avx512 chooses a build, "
                       "MGIAD_NATIVE_PREBUILT=0 ignores the prebuilt ones.")
    p.add_argument("--all", action="store_true", help="build every instruction set this CPU runs")
    p.add_argument("--json", action="store_true", help="the status as JSON")
    p.add_argument("--verbose", action="store_true", help="show the compiler's output")
    p.set_defaults(func=cmd_native)
