"""``mgiad export``: a checkpoint (or a registered model) as an ONNX, torch.export, TorchScript or
safetensors file, checked against eager execution before it is written (mgiad/models/export.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mgiad.training.values import check_count, check_writable_dir

FORMATS = ("onnx", "pt2", "torchscript", "safetensors")  # mirrors mgiad.models.export.FORMATS


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint or model (onnx, pt2, torchscript, safetensors)",
        description="Export a run's checkpoint, or a registered model by name, for other tools. "
        "The file is loaded back with the tool that runs it (onnxruntime, torch.export.load, "
        "torch.jit.load, a fresh model) and must give the model's logits on two batches; "
        "otherwise nothing is written. Files need only torch or an ONNX runtime to load.")
    p.add_argument("source", metavar="RUN_DIR_OR_CHECKPOINT_OR_MODEL", nargs="?")
    p.add_argument("--model", metavar="NAME",
                   help="a model by name, as in eval and predict (--model NAME --pretrained: its "
                   "published weights)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", metavar="PATH",
                   help="output file (a folder for safetensors); default: NAME.onnx, NAME.pt2, "
                   "NAME.pt or NAME/ in the current directory")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--keep-custom-ops", action="store_true",
                   help="keep the mgiad:: fast-path operators in pt2/torchscript files (they "
                   "then load only where mgiad is imported)")
    p.add_argument("--pretrained", action="store_true",
                   help="a model name with its published weights (e.g. mgiad_3lvl_fmnist.fashionmnist)")
    p.add_argument("--num-classes", type=int, metavar="N", help="for a model name (default 10)")
    p.add_argument("--in-chans", type=int, metavar="N", help="for a model name (default 3)")
    p.add_argument("--image-size", type=int, metavar="N", help="for a model name (default 32)")
    p.set_defaults(func=cmd_export)


def _config(header: dict[str, Any]) -> dict[str, Any]:
    """The export config (mgiad.models.export.CONFIG_KEYS) of a checkpoint or published-weights
    header."""
    return {"model": header["model"], "model_kwargs": header.get("model_kwargs") or {},
            "num_classes": header["num_classes"], "in_chans": header["in_chans"],
            "input_size": int(header.get("input_size") or header.get("image_size") or 32),
            "mean": header.get("mean"), "std": header.get("std"), "classes": header.get("classes")}


def _source(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str]:
    """(model, config, default output stem) from a checkpoint/run directory or a model name."""
    from mgiad.models.registry import create_model, list_models

    path = Path(args.source)
    if path.exists():
        from mgiad.training.checkpoint import load_model

        for flag in ("num_classes", "in_chans", "image_size"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} is for a model name; a checkpoint "
                                 "has its own")
        model, header = load_model(path, device="cpu")
        return model, _config(header), path.name if path.is_dir() else path.stem
    if args.pretrained:
        from mgiad.models.pretrained import pretrained_model

        if any(getattr(args, f) is not None for f in ("num_classes", "in_chans", "image_size")):
            raise ValueError("--pretrained exports the published weights as they are; drop "
                             "--num-classes/--in-chans/--image-size")
        model, header = pretrained_model(args.source)
        return model, _config(header), args.source
    if args.source.partition(".")[0] not in list_models():
        raise ValueError(f"{args.source!r} is neither a checkpoint, a run directory nor a model "
                         "name (see `mgiad list`)")
    if "." in args.source:
        raise ValueError(f"{args.source}: a tagged name means published weights; add --pretrained")
    sizes = {}
    for flag, default in (("num_classes", 10), ("in_chans", 3), ("image_size", 32)):
        value = getattr(args, flag)
        if value is not None:
            check_count(f"--{flag.replace('_', '-')}", value)
        sizes[flag] = default if value is None else value
    model = create_model(args.source, num_classes=sizes["num_classes"], in_chans=sizes["in_chans"])
    print(f"mgiad export: {args.source} with untrained weights (export a checkpoint for trained ones)")
    config = {"model": args.source, "model_kwargs": {}, "num_classes": sizes["num_classes"],
              "in_chans": sizes["in_chans"], "input_size": sizes["image_size"]}
    return model, config, args.source


def cmd_export(args: argparse.Namespace, extra: list[str]) -> int:
    from mgiad.models.export import SUFFIX, ExportMismatch, export_model

    if (args.source is None) == (args.model is None):
        raise ValueError("give one source: a run directory or checkpoint (mgiad export RUN_DIR), "
                         "or a model (mgiad export --model NAME [--pretrained])")
    if args.model is not None:
        if Path(args.model).exists():
            raise ValueError(f"--model takes a model name; for the checkpoint {args.model}, "
                             f"use `mgiad export {args.model}`")
        args.source = args.model
    model, config, stem = _source(args)
    out = Path(args.output) if args.output else Path(stem + SUFFIX[args.format])
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to replace it or -o to write elsewhere")
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent} is not a directory; create it or choose another -o")
    check_writable_dir("-o", out.parent)  # before the minutes of exporting, not after
    try:
        result = export_model(model, out, args.format, config, keep_custom_ops=args.keep_custom_ops)
    except ExportMismatch as e:
        raise ValueError(str(e)) from None
    size = sum(f.stat().st_size for f in out.rglob("*")) if out.is_dir() else out.stat().st_size
    print(f"wrote {out} ({args.format}, {size / 1e6:.2f} MB): largest difference to the eager "
          f"model {result.max_abs_diff:.2g} (tolerance {result.tolerance:.2g}) on batches of "
          f"{' and '.join(map(str, result.batches))} images of {config['in_chans']}x"
          f"{config['input_size']}x{config['input_size']}")
    return 0
