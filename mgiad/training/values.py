"""Values from the command line and from config files, checked against a field's annotation.

``parse_literal`` reads a model hyper-parameter (``--c_K=16``, ``--transfer_norm=false``,
``--widths=[16,32,64]``); ``_parse_text``/``_coerce`` read and type-check a value for a typed
:class:`~mgiad.training.config.RunConfig` field; ``_split_overrides`` splits ``--key=value``
arguments. ``check_count``, ``check_device`` and ``check_writable_dir`` check the values of
command-line flags before a command does any work.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import numbers
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any


def _base_type(typ: Any) -> Any:
    """``int | None`` -> ``int``; other annotations unchanged."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if typing.get_origin(typ) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return typing.get_origin(typ) or typ


def _optional(typ: Any) -> bool:
    return type(None) in typing.get_args(typ)


def _type_name(typ: Any) -> str:
    base = _base_type(typ)
    name = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            dict: "a mapping"}.get(base, str(base))
    return name + (" or none" if _optional(typ) else "")


def _coerce(name: str, value: Any, typ: Any, source: str) -> Any:
    """Type-check a parsed (JSON/TOML/Python) value for field ``name``."""
    base = _base_type(typ)
    if value is None and _optional(typ):
        return None
    ok = False
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif base is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif base is str:
        ok = isinstance(value, str)
    elif base is dict:
        ok = isinstance(value, dict)
        value = dict(value) if ok else value
    if not ok:
        raise ValueError(f"{source}: {name}={value!r} has the wrong type: {name} must be {_type_name(typ)}")
    return value


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null", "")


def _parse_text(name: str, text: str, typ: Any, where: str) -> Any:
    """Parse a command-line string for field ``name`` according to its annotation."""
    base = _base_type(typ)
    low = text.strip().lower()
    if _optional(typ) and low in _NONE:
        return None
    try:
        if base is bool:
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is str:
            return text
        if base is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
    except ValueError:
        pass
    raise ValueError(f"{where}: cannot read {text!r} as the value of {name}: {name} must be {_type_name(typ)}")


def parse_literal(text: str) -> Any:
    """A model hyper-parameter: true/false/none, a JSON or Python literal if it parses, else
    the string itself (shared by ``mgiad train``, ``mgiad params`` and ``mgiad bench``)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def check_count(flag: str, value: int | None, minimum: int = 1) -> None:
    """A command-line count (``--batch-size``, ``--steps``, ...) must be an integer >= ``minimum``;
    ``None`` (not given) passes."""
    if value is not None and value < minimum:
        raise ValueError(f"{flag} must be >= {minimum}, got {value}")


def valid_device(device: str) -> bool:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (availability is checked on use)."""
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    kind, _, index = device.partition(":")
    return kind == "cuda" and index.isdigit()


def check_device(flag: str, device: str) -> None:
    if not valid_device(device):
        raise ValueError(f"{flag} {device!r} is not allowed: {flag} must be auto, cpu, cuda, "
                         "cuda:N or mps")


def check_writable_dir(what: str, path: str | os.PathLike[str]) -> None:
    """Fail before any work if files cannot be created in directory ``path`` (``what`` names
    it, e.g. ``--out-dir``): it, or the nearest of its parents that exists, must be a writable
    directory. Nothing is left behind: a file is created there and removed at once, because
    ``os.access`` says yes to root everywhere, /proc and read-only mounts included."""
    target = Path(path).expanduser()
    probe = target
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link: creating the directory would fail
            break
        probe = probe.parent
    reason = None
    if not probe.is_dir():
        reason = os.strerror(errno.ENOTDIR)
    elif not os.access(probe, os.W_OK | os.X_OK):
        reason = os.strerror(errno.EROFS if _read_only(probe) else errno.EACCES)
    else:
        reason = _cannot_create_in(probe)
    if reason is not None:
        at = "" if probe == target else f" (at {probe})"
        raise ValueError(f"cannot write in {what} {target}: {reason}{at}")


def _cannot_create_in(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (tried), or None. The directory's times are
    put back, so that a refused command leaves it exactly as it was."""
    before = directory.stat()
    try:
        fd, name = tempfile.mkstemp(prefix=".mgiad-write-test-", dir=directory)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(name)
    with contextlib.suppress(OSError):
        os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns))
    return None


def check_writable_file(what: str, path: str | os.PathLike[str]) -> None:
    """Fail before any work if file ``path`` cannot be written (a directory in its place, or a
    directory it would go in that cannot be written). Nothing is created."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"cannot write {what} {target}: {os.strerror(errno.EISDIR)}; give a "
                         "file name")
    if target.exists() and not os.access(target, os.W_OK):
        reason = os.strerror(errno.EROFS if _read_only(target) else errno.EACCES)
        raise ValueError(f"cannot write {what} {target}: {reason}")
    check_writable_dir(f"the directory of {what}", target.parent)


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def _split_overrides(args: list[str]) -> list[tuple[str, str | None]]:
    """``["--a=1", "--b", "2", "--flag"]`` -> ``[("a", "1"), ("b", "2"), ("flag", None)]``."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ValueError(f"unexpected argument {arg!r}: overrides have the form --key=value")
        body = arg[2:]
        if "=" in body:
            key, text = body.split("=", 1)
            out.append((key, text))
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.append((body, args[i + 1]))
            i += 2
        else:
            out.append((body, None))
            i += 1
    return out
