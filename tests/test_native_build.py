"""Where the native kernels come from (mgiad/ops/native.py, native_build.py, setup.py).

Prebuilt at install and used without a compiler; refused (with the reason said) when built for
another torch or from other sources; otherwise compiled at run time into a directory keyed by
the sources, torch version, flags and instruction set, which two installations of the same
sources share; a compile always announces itself; and a wheel built from the source tree
carries both builds and runs them in a fresh environment with no compiler on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mgiad.ops import native
from mgiad.ops import native_build as nb

ROOT = Path(__file__).resolve().parents[1]
ISAS = native.cpu_isas()
needs_avx2 = pytest.mark.skipif(not ISAS, reason="this CPU runs no native build (needs AVX2)")

_CHILD = textwrap.dedent("""
    import json, warnings
    from pathlib import Path
    import torch
    from mgiad.ops import native
    {setup}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = native.status()
    print(json.dumps({{"status": status, "warnings": [str(w.message) for w in caught
                      if issubclass(w.category, native.NativeWarning)]}}))
""")


def _child(setup: str = "", python: str = sys.executable, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> tuple[dict, str]:
    """(status and warnings of a fresh process, its stderr)."""
    out = subprocess.run([python, "-c", _CHILD.format(setup=setup)], capture_output=True, text=True,
                         env=env, cwd=cwd, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), **extra}


# --------------------------------------------------------------------------- which library fits


def _package(tmp_path: Path, info: dict | str | None, library: bytes | None = b"") -> Path:
    """A stand-in for the installed package folder: the build record and one library file."""
    folder = tmp_path / "pkg"
    folder.mkdir()
    if info is not None:
        (folder / nb.PREBUILT_INFO).write_text(info if isinstance(info, str) else json.dumps(info))
    if library is not None:
        (folder / "_native_avx2.so").write_bytes(library)
    return folder


def _info(**changes) -> dict:
    return {"torch": torch.__version__, "sources_sha256": nb.sources_digest(native.SOURCES),
            "builds": {"avx2": "_native_avx2.so"}, **changes}


@pytest.mark.parametrize("info,why", [
    (None, "no prebuilt kernels were installed"),
    ("{not json", "is unreadable"),
    (_info(torch="2.5.0"), f"the prebuilt kernels are for torch 2.5.0, this is torch {torch.__version__}"),
    (_info(sources_sha256="0" * 64), "the kernel sources changed since the kernels were prebuilt"),
    (_info(builds={}), "no prebuilt avx2 library (its build failed at install)"),
], ids=["none", "unreadable", "other-torch", "other-sources", "build-failed"])
def test_a_prebuilt_library_is_used_only_for_this_torch_and_these_sources(
        tmp_path, monkeypatch, info, why) -> None:
    monkeypatch.setattr(native, "_PACKAGE_DIR", _package(tmp_path, info))
    monkeypatch.delenv(native.PREBUILT_ENV, raising=False)
    library, reason = native.prebuilt("avx2")
    assert library is None and why in reason, reason


def test_a_fitting_prebuilt_library_is_found_and_mgiad_native_prebuilt_0_ignores_it(
        tmp_path, monkeypatch) -> None:
    folder = _package(tmp_path, _info())
    monkeypatch.setattr(native, "_PACKAGE_DIR", folder)
    monkeypatch.delenv(native.PREBUILT_ENV, raising=False)
    assert native.prebuilt("avx2") == (folder / "_native_avx2.so", "")
    monkeypatch.setenv(native.PREBUILT_ENV, "0")
    assert native.prebuilt("avx2") == (None, "MGIAD_NATIVE_PREBUILT=0")


def test_the_build_key_names_isa_torch_flags_and_sources() -> None:
    key = nb.build_key("avx2", "2.14.1+cpu", "ab" * 32)
    assert key.startswith("mgiad_native_avx2-torch2.14.1_cpu-") and key.endswith("-" + "ab" * 6)
    assert len({key, nb.build_key("avx512", "2.14.1+cpu", "ab" * 32),
                nb.build_key("avx2", "2.14.0+cpu", "ab" * 32), nb.build_key("avx2", "2.14.1+cpu", "cd" * 32)}) == 4
    # the digest covers names and contents, not where the files lie
    assert nb.sources_digest(native.SOURCES) == nb.sources_digest(list(native.SOURCES))


# --------------------------------------------------------------------------- in fresh processes


@needs_avx2
def test_the_installed_prebuilt_kernels_run_without_a_compiler(tmp_path) -> None:
    """What ``make setup`` installs (setup.py prebuilds both builds): active with no compiler and
    nothing compiled. (An installation without torch in its build environment has none.)"""
    library, why = native.prebuilt("avx2")
    if library is None:  # the wheel test below builds its own and fails where this cannot run
        pytest.skip(f"no fitting prebuilt kernels in this installation ({why}); make setup "
                    "prebuilds them")
    got, err = _child(env=_env(tmp_path, CXX=str(tmp_path / "no-such-compiler"), MGIAD_NATIVE="avx2"))
    status = got["status"]
    assert status["active"] and status["isa"] == "avx2" and got["warnings"] == [], got
    assert status["build"].startswith("prebuilt ") and status["build_seconds"] == 0
    assert "compiling" not in err and not (tmp_path / "ext").exists()


@needs_avx2
def test_a_runtime_build_announces_itself_and_two_installs_share_it(tmp_path) -> None:
    """No prebuilt library fits (here: one that does not load): the kernels are compiled once,
    saying why; a second installation of the same sources elsewhere loads that build."""
    installs = []
    for name in ("clone", "wheel"):  # two copies of the same sources, as two installations
        copy = tmp_path / name
        copy.mkdir()
        for source in native.SOURCES:
            shutil.copy(source, copy / source.name)
        installs.append(copy)
    folder = _package(tmp_path, _info(), library=b"not a shared library")
    setup = (f"native._PACKAGE_DIR = Path({str(folder)!r})\n"
             "native.SOURCES = tuple(Path({dir!r}) / p.name for p in native.SOURCES)")
    env = _env(tmp_path, MGIAD_NATIVE="avx2")
    first, err = _child(setup.format(dir=str(installs[0])), env=env)
    assert first["status"]["active"] and first["warnings"] == [], first
    assert first["status"]["build"].startswith("compiled at run time into ")
    assert "does not load" in first["status"]["build"]
    assert "mgiad: compiling the native avx2 kernels" in err and "does not load" in err, err
    assert "mgiad: compiled the native avx2 kernels in " in err and first["status"]["build_seconds"] > 0
    second, err = _child(setup.format(dir=str(installs[1])), env=env)
    assert second["status"]["build"].startswith("cached run-time build "), second
    assert "compiling" not in err and second["status"]["build_seconds"] == 0
    builds = [p.name for p in (tmp_path / "ext").iterdir()]
    assert builds == [nb.build_key("avx2", torch.__version__, nb.sources_digest(native.SOURCES))]


@needs_avx2
@pytest.mark.skipif(shutil.which("c++") is None, reason="building a wheel needs a C++ compiler")
def test_a_wheel_carries_both_builds_and_runs_them_without_a_compiler(tmp_path) -> None:
    """``pip wheel --no-build-isolation``, installed into a fresh venv outside the source tree
    and run with nothing but the venv on PATH: the prebuilt kernels are active."""
    src = tmp_path / "src"
    for rel in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, src / rel)
    shutil.copytree(ROOT / "mgiad", src / "mgiad", ignore=shutil.ignore_patterns(
        "__pycache__", "*.so", nb.PREBUILT_INFO))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation",
                            "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mgiad-*.whl")
    assert "linux_x86_64" in wheel.name  # a platform wheel: it holds compiled code
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # torch and the other dependencies from this interpreter (a plain path: its .pth files, among
    # them the editable mgiad of this checkout, are not read)
    (Path(site) / "deps.pth").write_text(str(Path(torch.__file__).parents[1]) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300, capture_output=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path / "home"),
           "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    for isa in ISAS:
        got, err = _child(python=python, cwd=outside, env={**env, "MGIAD_NATIVE": isa})
        status = got["status"]
        assert status["active"] and status["isa"] == isa and got["warnings"] == [], (got, err)
        assert status["build"].startswith(f"prebuilt {site}/mgiad/ops/_native_{isa}"), status["build"]
    assert "compiling" not in err and not (tmp_path / "ext").exists()
    command = subprocess.run([str(venv / "bin" / "mgiad"), "native"], capture_output=True, text=True,
                             cwd=outside, env=env, timeout=300)
    assert command.returncode == 0 and f"from: prebuilt {site}/mgiad/ops/" in command.stdout, command


# --------------------------------------------------------------------------- training's clock


def test_a_kernel_build_is_not_counted_in_the_training_metrics(tmp_path, monkeypatch) -> None:
    """``mgiad train`` decides the kernels before its clock starts: a build of 4 s (stood in
    for by a pause in the first decision) is in no epoch's time nor in the run's elapsed time."""
    from test_train import tiny_config, write_fake_fmnist

    from mgiad.training.loop import train

    decide, pauses = native.kernels, []

    def slow_first_decision():
        if not pauses:
            pauses.append(1)
            import time

            time.sleep(4.0)
        return decide()

    monkeypatch.setattr(native, "kernels", slow_first_decision)
    monkeypatch.setattr(native._state, "decided", False)
    cfg = tiny_config(write_fake_fmnist(tmp_path / "data", n_train=64, n_test=32), tmp_path / "out",
                      epochs=1)
    summary = train(cfg)
    assert pauses == [1]
    rows = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["epoch_time_s"] < 4.0 and rows[0]["elapsed_s"] < 4.0, rows[0]


@pytest.mark.parametrize("name,uses", [("mgiad_3lvl", True), ("mgnet_a_3lvl", True), ("resnet20", False),
                                       ("mgic_3lvl", False)])
def test_only_models_with_native_paths_decide_the_kernels_before_training(name: str, uses: bool) -> None:
    """The set-up decides (and may compile) the kernels only for a model that can run them: a
    baseline run on a machine without a fitting prebuilt library compiles nothing it never uses."""
    import mgiad
    from mgiad.nn.layers import uses_native_kernels

    assert uses_native_kernels(mgiad.create_model(name)) is uses
