"""Export a network for other tools, checked against eager execution before the file is kept.

Formats: ``onnx`` (the dynamo exporter, dynamic batch), ``pt2`` (``torch.export``, dynamic
batch), ``torchscript`` (``torch.jit.trace``) and ``safetensors`` (a Hugging Face style folder:
``model.safetensors`` with the plain state dict + ``config.json``, written by
:func:`~mgiad.models.hub.save_pretrained`, read back by :func:`~mgiad.models.hub.from_pretrained`).
Every export is written to a temporary file, loaded back with the tool that will run it
(onnxruntime, ``torch.export.load``, ``torch.jit.load``, a fresh model) and run on two batches of
different sizes; only when its logits equal eager execution's within the tolerance is it moved
into place. Otherwise nothing is written and :class:`ExportMismatch` says
by how much it differed.

The files need only torch (or an ONNX runtime): the fast paths give way to the built-in
convolutions while exporting (:func:`mgiad.ops.export.builtin_kernels`), unless
``keep_custom_ops`` keeps the ``mgiad::`` operators (the file then loads only where mgiad is
imported).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mgiad.ops.export import builtin_kernels

# the Hugging Face folder (config.json + model.safetensors), here for the older import path
from .hub import from_pretrained, save_pretrained

__all__ = ["FORMATS", "ExportMismatch", "Exported", "export_model", "file_config", "from_pretrained",
           "save_pretrained"]

FORMATS = ("onnx", "pt2", "torchscript", "safetensors")
SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt", "safetensors": ""}
CONFIG_KEYS = ("model", "model_kwargs", "num_classes", "in_chans", "input_size", "mean", "std",
               "classes")


class ExportMismatch(ValueError):
    """The exported file does not compute what the model computes; nothing was written."""


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    max_abs_diff: float  # largest |exported - eager| over the check batches
    tolerance: float
    batches: tuple[int, ...]


def _check_inputs(config: dict[str, Any]) -> list[torch.Tensor]:
    """Two seeded batches of different sizes (so a batch size baked into the file shows)."""
    g = torch.Generator().manual_seed(0)
    shape = (config["in_chans"], config["input_size"], config["input_size"])
    return [torch.randn(n, *shape, generator=g) for n in (4, 3)]


# -- writers and readers, one pair per format ------------------------------------------------


#: Where each format carries the model's description (:func:`file_config` reads it back): what a
#: deployment needs beside the graph (normalisation, class names, input size).
CONFIG_ENTRY = "mgiad_config.json"


def _description(config: dict[str, Any]) -> str:
    from mgiad import __version__

    return json.dumps({**{k: config[k] for k in CONFIG_KEYS if k in config},
                       "mgiad_version": __version__}, sort_keys=True)


def _write_onnx(model: nn.Module, x: torch.Tensor, path: Path, config: dict[str, Any]) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["images"],
                      output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False,
                      external_data=False)  # one self-contained file (the models are small)
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {CONFIG_ENTRY: _description(config)})
    onnx.save(proto, str(path))


def file_config(path: str | Path) -> dict[str, Any]:
    """The description (model, mean, std, classes, input size, ...) an exported ``.onnx``,
    ``.pt2`` or TorchScript file carries; ``{}`` for a file without one."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        text = props.get(CONFIG_ENTRY)
    elif path.suffix == ".pt2":
        files = {CONFIG_ENTRY: ""}
        torch.export.load(str(path), extra_files=files)
        text = files[CONFIG_ENTRY]
    else:
        files = {CONFIG_ENTRY: ""}
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        text = files[CONFIG_ENTRY]
    return json.loads(text) if text else {}


def _run_onnx(path: Path, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("checking an ONNX export needs onnxruntime: pip install 'mgiad[export]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [torch.from_numpy(session.run(None, {name: x.numpy()})[0]) for x in inputs]


def _write_pt2(model: nn.Module, x: torch.Tensor, path: Path, config: dict[str, Any]) -> None:
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path), extra_files={CONFIG_ENTRY: _description(config)})


def _run_pt2(path: Path, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        return [module(x) for x in inputs]


def _write_torchscript(model: nn.Module, x: torch.Tensor, path: Path, config: dict[str, Any]) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, (x,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={CONFIG_ENTRY: _description(config)})


def _run_torchscript(path: Path, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return [module(x) for x in inputs]


def _run_safetensors(path: Path, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    model = from_pretrained(path)
    with torch.no_grad():
        return [model(x) for x in inputs]


_WRITE = {"onnx": _write_onnx, "pt2": _write_pt2, "torchscript": _write_torchscript}
_RUN = {"onnx": _run_onnx, "pt2": _run_pt2, "torchscript": _run_torchscript,
        "safetensors": _run_safetensors}


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    config: dict[str, Any],
    *,
    keep_custom_ops: bool = False,
    rtol: float = 1e-4,
) -> Exported:
    """Export ``model`` (put in eval mode, on the CPU) as ``fmt`` to ``path`` after checking it.

    ``config`` describes the model (keys :data:`CONFIG_KEYS`; ``in_chans`` and ``input_size``
    size the check batches). The tolerance is ``rtol * max(1, max |logit|)``. Raises
    :class:`ExportMismatch` (nothing written) when the export computes something else.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(path)
    model = model.cpu().eval()
    inputs = _check_inputs(config)
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    tolerance = rtol * max(1.0, max(e.abs().max().item() for e in expected))
    remove_stale_temporaries(path)
    tmp = path.with_name(f"{_TMP}{os.getpid()}-{path.name}")  # same suffix: torch.export wants .pt2
    _remove(tmp)
    try:
        with contextlib.nullcontext() if keep_custom_ops else builtin_kernels():
            if fmt == "safetensors":
                save_pretrained(model, tmp, config)
            else:
                _WRITE[fmt](model, inputs[0], tmp, config)
        got = _RUN[fmt](tmp, inputs)
        diff = max(_max_diff(g, e) for g, e in zip(got, expected))
        if not diff <= tolerance:  # also catches NaN
            raise ExportMismatch(
                f"the {fmt} export computes other logits than the model (largest difference "
                f"{diff:.3g} > tolerance {tolerance:.3g} on batches of {len(inputs[0])} and "
                f"{len(inputs[1])}); nothing was written to {path}")
        _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return Exported(path, fmt, diff, tolerance, tuple(len(x) for x in inputs))


_TMP = ".tmp-"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove what an export of ``path`` killed before its end left: ``.tmp-PID-NAME`` files (or
    folders) whose process is gone; say so on stderr. Those of a running export stay."""
    removed = []
    for tmp in path.parent.glob(f"{_TMP}*-{path.name}"):
        pid = tmp.name[len(_TMP):-len(path.name) - 1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            _remove(tmp)
            removed.append(tmp)
            print(f"mgiad: removed {tmp}, left by an export (process {pid}) that was killed",
                  file=sys.stderr)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _max_diff(got: torch.Tensor, expected: torch.Tensor) -> float:
    if got.shape != expected.shape:
        return float("inf")
    return (got.float() - expected.float()).abs().max().item()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
