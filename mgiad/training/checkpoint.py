"""Checkpoints: one self-describing safetensors file per checkpoint, written atomically.

Layout of a checkpoint file (``RUN_DIR/last.safetensors``):

- tensors ``model/<name>``: the model's ``state_dict`` (contiguous, CPU);
- tensors ``optim/<param index>/<key>`` and ``rng/<name>``: optimizer state and random
  generator states, present in training checkpoints only;
- the safetensors JSON metadata (``__metadata__``, string values) holds
  ``format = "mgiad-checkpoint"``, ``version``, ``header`` (JSON: model name and
  hyper-parameters, dataset, classes, normalisation, ... — enough to rebuild the model
  from the file alone), ``optim`` (JSON: parameter groups and non-tensor state),
  ``train`` (JSON: epoch, metrics history, ...), ``aliases``, ``sha256`` (over every tensor's
  name, dtype, shape and bytes) and, from version 2, ``meta_sha256`` (over every other metadata
  key and value, ``sha256`` included).

Why this format: safetensors cannot execute code on load (``torch.load`` of a pickle
can, and ``weights_only`` still parses a pickle), one file makes a checkpoint atomic with
a single ``os.replace``, and the two SHA-256 digests cover every byte that is read: a flipped
or truncated byte in the data *or* in the header (mean/std, classes, the optimizer's parameter
groups, the training history) is refused, where safetensors' own checks see only the layout
(``tests/test_checkpoint.py`` flips every header byte). Version-1 files (no ``meta_sha256``)
still load, with their tensors checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn as nn

FORMAT = "mgiad-checkpoint"
VERSION = 2  # 2: meta_sha256 over the metadata
#: File name of the checkpoint a run directory keeps (rewritten after every epoch).
LAST = "last.safetensors"
#: Header keys every checkpoint must carry to rebuild its model.
REQUIRED_HEADER_KEYS = ("model", "model_kwargs", "num_classes", "in_chans")

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, foreign or does not fit the model it names."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file.

    Attributes:
        path: the file it was read from.
        header: model name, ``model_kwargs``, ``num_classes``, ``in_chans`` and whatever the
            writer added (dataset, classes, mean, std, image_size, pad_to, epoch, ...).
        model_state: the model's ``state_dict``.
        optimizer_state: an ``Optimizer.state_dict()`` or ``None`` (weights-only file).
        rng: random generator states by name (uint8 tensors).
        train_state: JSON training state (epoch, metrics history, elapsed time, ...).
    """

    path: Path
    header: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    train_state: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# atomic files


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    The bytes go to a temporary file in the same directory (same file system, so the
    rename is atomic), are fsync'ed, then ``os.replace`` moves them over ``path`` and the
    directory is fsync'ed so the rename itself survives a power cut. On any error the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # O_EXCL: never follow or clobber someone else's file; mode 0o666 minus the umask,
    # the permissions a plain open() would give (mkstemp's 0o600 would hide checkpoints
    # from collaborators).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # e.g. ENOSPC from write(): name the file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete temporary files a killed writer of ``path`` left behind; return them."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# writing


def save_checkpoint(
    path: str | Path,
    *,
    header: dict[str, Any],
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint file and return its path.

    ``header`` must hold :data:`REQUIRED_HEADER_KEYS` and be JSON-serialisable; so must
    ``train_state`` and the non-tensor parts of ``optimizer_state``.
    """
    missing = [k for k in REQUIRED_HEADER_KEYS if k not in header]
    if missing:
        raise ValueError(f"checkpoint header lacks {missing}; it could not rebuild the model")
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model_state.items():
        tensors[f"model/{name}"] = t
    optim_json: dict[str, Any] | None = None
    if optimizer_state is not None:
        optim_json = {"param_groups": optimizer_state["param_groups"], "state": {}}
        for idx, state in optimizer_state["state"].items():
            plain: dict[str, Any] = {}
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{idx}/{key}"] = value
                else:
                    plain[key] = value
            optim_json["state"][str(idx)] = plain
    for name, t in (rng or {}).items():
        tensors[f"rng/{name}"] = t
    tensors, aliases = _prepare(tensors)
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "header": json.dumps(header, sort_keys=True),
        "train": json.dumps(train_state or {}, sort_keys=True),
        "aliases": json.dumps(aliases, sort_keys=True),
        "sha256": _digest(tensors),
    }
    if optim_json is not None:
        metadata["optim"] = json.dumps(optim_json, sort_keys=True)
    metadata[META_DIGEST] = _meta_digest(metadata)
    path = Path(path)
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata))
    return path


def _prepare(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Detach, copy to contiguous CPU memory and de-duplicate tensors.

    safetensors refuses tensors that share memory. Exact aliases (two names for one
    tensor, e.g. tied weights) are stored once and recorded in ``aliases`` (name ->
    stored name); every stored tensor is a fresh copy, so partial overlaps cannot occur.
    The copy also normalises channels_last weights to the standard layout.
    """
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name in sorted(tensors):
        t = tensors[name].detach()
        key = (t.device, t.dtype, t.data_ptr(), tuple(t.shape), tuple(t.stride())) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        out[name] = t.to("cpu", memory_format=torch.contiguous_format, copy=True)
    return out, aliases


META_DIGEST = "meta_sha256"


def _meta_digest(meta: dict[str, str]) -> str:
    """SHA-256 over every metadata key and value but its own, in key order."""
    h = hashlib.sha256()
    for key in sorted(meta):
        if key != META_DIGEST:
            h.update(json.dumps([key, meta[key]]).encode())
            h.update(b"\n")
    return h.hexdigest()


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of all tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# reading


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file for ``path``: the file itself, or ``RUN_DIR/last.safetensors``."""
    path = Path(path)
    if path.is_dir():
        file = path / LAST
        if not file.exists():
            status = ""
            with contextlib.suppress(OSError, ValueError, AttributeError):
                status = str(json.loads((path / "summary.json").read_text()).get("status") or "")
            if status in ("diverged", "interrupted"):
                raise CheckpointError(
                    f"{path} has no checkpoint ({LAST}): the run {status} before its first epoch "
                    f"finished (see {path / 'summary.json'}), so there are no weights to use")
            raise CheckpointError(
                f"{path} is a directory without a checkpoint ({LAST}); the run has not "
                "finished its first epoch, or this is not a run directory"
            )
        return file
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: no such file or directory")
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a checkpoint, read without loading any tensor."""
    file = checkpoint_path(path)
    with open(file, "rb") as f:
        head = f.read(8)
        size = _header_size(file, head, file.stat().st_size)
        raw = f.read(size)
    meta = _parse_metadata(file, raw, size)
    return _header(file, meta)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint file (or a run directory's last checkpoint).

    Never executes code from the file. Raises :class:`CheckpointError` naming the file
    and the problem for missing, truncated, corrupted, foreign and future-version files.
    """
    file = checkpoint_path(path)
    try:
        data = file.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {file}: {e.strerror or e}") from None
    size = _header_size(file, data[:8], len(data))
    meta = _parse_metadata(file, data[8 : 8 + size], size)
    header = _header(file, meta)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own SafetensorError for bad layouts
        raise CheckpointError(f"checkpoint {file} is corrupt: {e}") from None
    if meta.get("sha256") != _digest(tensors):
        raise CheckpointError(
            f"checkpoint {file} is corrupt: its tensor data does not match the stored SHA-256 "
            "(damaged or modified after it was written)"
        )
    aliases = _json(file, meta, "aliases", {})
    for name, target in aliases.items():
        if target not in tensors:
            raise CheckpointError(f"checkpoint {file} is corrupt: alias {name} -> missing {target}")
        tensors[name] = tensors[target]
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    if not model_state:
        raise CheckpointError(f"checkpoint {file} holds no model weights")
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng/")}
    optimizer_state = None
    if "optim" in meta:
        optim = _json(file, meta, "optim", {})
        state: dict[int, dict[str, Any]] = {}
        try:
            for idx, plain in optim["state"].items():
                state[int(idx)] = dict(plain)
            for k, v in tensors.items():
                if k.startswith("optim/"):
                    _, idx, key = k.split("/", 2)
                    state.setdefault(int(idx), {})[key] = v
            optimizer_state = {"state": state, "param_groups": optim["param_groups"]}
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"checkpoint {file} has a malformed optimizer state: {e!r}") from None
    return Checkpoint(
        path=file, header=header, model_state=model_state, optimizer_state=optimizer_state,
        rng=rng, train_state=_json(file, meta, "train", {}),
    )


def _header_size(file: Path, head: bytes, total: int) -> int:
    if len(head) < 8:
        raise CheckpointError(f"checkpoint {file} is truncated or empty ({total} bytes)")
    (size,) = struct.unpack("<Q", head)
    if size > _MAX_HEADER_BYTES or 8 + size > total:
        # Only now look for other formats: a valid header length may start with any byte.
        if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
            raise CheckpointError(
                f"{file} is a torch.save/pickle file, not an mgiad checkpoint; mgiad reads only "
                "safetensors checkpoints because unpickling can execute code"
            )
        raise CheckpointError(
            f"{file} is not a valid checkpoint: its header claims {size} bytes but the file has "
            f"{total} (truncated, or not a safetensors file)"
        )
    return size


def _parse_metadata(file: Path, raw: bytes, size: int) -> dict[str, str]:
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(
            f"{file} is not a valid checkpoint: its {size}-byte header is not JSON "
            "(corrupt, or not a safetensors file)"
        ) from None
    if not isinstance(parsed, dict):
        raise CheckpointError(f"{file} is not a valid checkpoint: malformed safetensors header")
    meta = parsed.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is a safetensors file but not an mgiad checkpoint (its metadata has no "
            f"format={FORMAT!r}); mgiad cannot tell which model its tensors belong to"
        )
    try:
        version = int(meta.get("version", ""))
    except ValueError:
        raise CheckpointError(f"checkpoint {file} has an unreadable version {meta.get('version')!r}") from None
    if version > VERSION:
        raise CheckpointError(
            f"checkpoint {file} has format version {version}; this mgiad reads up to {VERSION} "
            "(upgrade mgiad)"
        )
    # From version 2 the metadata carries its digest; wherever it is present it must match (a
    # flipped version byte cannot switch the check off).
    if META_DIGEST in meta or version >= 2:
        if meta.get(META_DIGEST) != _meta_digest(meta):
            raise CheckpointError(
                f"checkpoint {file} is corrupt: its metadata (model header, optimizer settings, "
                "training history) does not match the stored SHA-256 (damaged or modified after "
                "it was written)"
            )
    return meta


def _json(file: Path, meta: dict[str, str], key: str, default: Any) -> Any:
    if key not in meta:
        return default
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {file} is corrupt: its {key!r} entry is not JSON") from None


def _header(file: Path, meta: dict[str, str]) -> dict[str, Any]:
    if "header" not in meta:
        raise CheckpointError(f"checkpoint {file} has no header: cannot tell which model it holds")
    header = _json(file, meta, "header", None)
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {file} has a malformed header")
    missing = [k for k in REQUIRED_HEADER_KEYS if k not in header]
    if missing:
        raise CheckpointError(f"checkpoint {file} header lacks {missing}: cannot rebuild the model")
    return header


# --------------------------------------------------------------------------------------
# models


def model_from_header(header: dict[str, Any], *, path: str | Path = "checkpoint") -> nn.Module:
    """Build (untrained) the model a checkpoint header describes."""
    from mgiad.models.registry import create_model

    kwargs = dict(header.get("model_kwargs") or {})
    try:
        return create_model(
            header["model"], num_classes=int(header["num_classes"]), in_chans=int(header["in_chans"]),
            **kwargs,
        )
    except (ValueError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {path} describes model {header.get('model')!r} with {kwargs} that this "
            f"mgiad cannot build: {e}"
        ) from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], *, path: str | Path = "checkpoint") -> None:
    """``model.load_state_dict(state)`` with a clear :class:`CheckpointError` on mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})")
        raise CheckpointError(
            f"the weights in {path} do not fit {type(model).__name__}: {', '.join(parts)} "
            "(a checkpoint of another architecture or other hyper-parameters)"
        )
    model.load_state_dict(state, strict=True)


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a checkpoint's model with its weights, in eval mode; return it and the header.

    The model's ``pretrained_cfg`` describes the data it was trained on (input size, mean, std,
    class names from the header), so that timm's data pipeline, ``save_pretrained`` and export
    see the normalisation it needs, not the defaults of a fresh model."""
    ckpt = load_checkpoint(path)
    model = model_from_header(ckpt.header, path=ckpt.path)
    load_weights(model, ckpt.model_state, path=ckpt.path)
    if hasattr(type(model), "pretrained_cfg"):
        model.pretrained_cfg = trained_data_cfg(model.pretrained_cfg, ckpt.header)
    return model.to(device).eval(), ckpt.header


def trained_data_cfg(cfg: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the input size, normalisation and class names of a checkpoint's data.

    Images a run took as given (floating-point tensors of ``mgiad.train``: no mean/std in the
    header) are described as mean 0, std 1: no normalisation."""
    cfg = dict(cfg)
    channels = int(header["in_chans"])
    size = header.get("image_size")  # the images' size (padding to pad_to is the run's own step)
    if size:
        cfg["input_size"] = (channels, int(size), int(size))
    mean, std = header.get("mean") or [], header.get("std") or []
    if len(mean) == len(std) == channels:
        cfg["mean"], cfg["std"] = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    elif not mean and not std:
        cfg["mean"], cfg["std"] = (0.0,) * channels, (1.0,) * channels
    if header.get("classes"):
        cfg["label_names"] = tuple(str(c) for c in header["classes"])
    cfg["num_classes"] = int(header["num_classes"])
    return cfg
