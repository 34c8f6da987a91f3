"""Prebuilds the native kernels (mgiad/ops/native/*.cpp) when the package is built or installed.

Everything else is in pyproject.toml. Both instruction-set builds (AVX2 and AVX-512) are
compiled with torch's ``BuildExtension`` into ``mgiad/ops/_native_<isa>*.so``, and
``mgiad/ops/_native_build.json`` records the torch version and the sources they were built
from; at run time :mod:`mgiad.ops.native` loads the build the CPU runs, and compiles one itself
only when no prebuilt library fits (another torch, edited sources, none built).

The build needs torch importable where setuptools runs: ``pip install --no-build-isolation``
(``make setup`` does), or ``pip wheel --no-build-isolation .`` for a wheel that needs no
compiler on the target. Without torch, without a compiler, on a CPU architecture other than
x86-64, or with ``MGIAD_BUILD_NATIVE=0``, the package installs without prebuilt kernels and says
so; nothing else changes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_mgiad_native_build", ROOT / "mgiad/ops/native_build.py")
nb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nb)  # torch-free: the same flags as a run-time build


def _say(message: str) -> None:
    print(f"mgiad setup: {message}", file=sys.stderr, flush=True)


def _native() -> tuple[list, dict]:
    """(ext_modules, cmdclass) for the two builds, or ([], {}) with the reason said."""
    if os.environ.get("MGIAD_BUILD_NATIVE", "1").strip().lower() in {"0", "off", "false", "no"}:
        _say("MGIAD_BUILD_NATIVE=0: native kernels not prebuilt (compiled at first use instead)")
        return [], {}
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        _say(f"no native kernels for {platform.machine()} (they need x86-64 with AVX2)")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        _say("torch is not importable in this build environment, so the native kernels are not "
             "prebuilt (they compile at first use); to prebuild them install torch first and use "
             "pip install --no-build-isolation")
        return [], {}

    sources = [nb.SOURCE_DIR / name for name in nb.SOURCE_NAMES]
    rel = [str(s.relative_to(ROOT)) for s in sources]
    ext_modules = [CppExtension(nb.PREBUILT_MODULE.format(isa=isa), rel,
                                extra_compile_args=[*nb.cflags(isa), "-g0"],  # -g0: no debug info (8 MB less per library)
                                extra_link_args=nb.LDFLAGS)
                   for isa in nb.ISA_FLAGS]

    class BuildNative(BuildExtension):
        """BuildExtension that records what it built, and lets a failed build fall back."""

        def run(self) -> None:
            self.built: dict[str, str] = {}
            super().run()
            info = {"torch": torch.__version__, "sources_sha256": nb.sources_digest(sources),
                    "builds": self.built}
            out = Path(self.get_ext_fullpath(ext_modules[0].name)).parent / nb.PREBUILT_INFO
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(info, indent=1) + "\n")
            _say(f"prebuilt native kernels {sorted(self.built) or 'none'} for torch "
                 f"{torch.__version__} ({out.name})")

        def build_extension(self, ext) -> None:
            isa = ext.name.rsplit("_", 1)[-1]
            try:
                super().build_extension(ext)
            except Exception as e:  # noqa: BLE001  (no compiler, compile error: fall back)
                _say(f"building the {isa} kernels failed ({str(e).strip().splitlines()[-1][:200]}); "
                     "they compile at first use instead")
                return
            self.built[isa] = Path(self.get_ext_fullpath(ext.name)).name

        def get_outputs(self) -> list[str]:  # only what was built goes into the wheel
            return [self.get_ext_fullpath(e.name) for e in self.extensions
                    if os.path.exists(self.get_ext_fullpath(e.name))]

    return ext_modules, {"build_ext": BuildNative}


ext_modules, cmdclass = _native()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
