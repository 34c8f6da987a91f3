"""``mgiad train``, ``mgiad eval`` and ``mgiad predict``.

Examples::

    mgiad train --dataset fashionmnist --model mgiad_3lvl_fmnist --epochs 2 --subset_train=2000
    mgiad train --config experiments/cifar10.toml --seed=1 --model_kwargs.g_s=8
    mgiad train --resume runs/mgiad-cifar10-s0-20260101-120000
    torchrun --nproc-per-node 2 -m mgiad train --dataset cifar10 --amp=bf16
    mgiad eval runs/mgiad-cifar10-s0-20260101-120000
    mgiad predict runs/mgiad-cifar10-s0-20260101-120000/last.safetensors cat.png dog.jpg --topk 3

Every ``RunConfig`` key can be given as ``--key=value`` after ``train`` (unknown keys are
errors with suggestions); the explicit flags below are the common ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mgiad.training.config import RunConfig

#: ``train`` flags declared explicitly (for ``--help``); each maps to a config key.
_TRAIN_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--model", "model", "registered model name (mgiad list)"),
    ("--dataset", "dataset", "cifar10, cifar100 or fashionmnist"),
    ("--data-dir", "data_dir", "where the dataset lives"),
    ("--epochs", "epochs", "training epochs (paper: 400)"),
    ("--batch-size", "batch_size", "global batch size (paper: 128)"),
    ("--lr", "lr", "initial learning rate (paper: 0.05)"),
    ("--seed", "seed", "random seed"),
    ("--device", "device", "auto, cpu, cuda, cuda:N"),
    ("--out-dir", "out_dir", "parent directory of run directories (default: runs)"),
    ("--run-name", "run_name", "run directory name (default: model-dataset-seed-time)"),
)


def add_commands(sub: Any) -> None:
    """Register ``train``, ``eval`` and ``predict`` on an argparse subparsers object."""
    defaults = RunConfig()
    keys = "\n".join(
        f"  --{k}={_show(getattr(defaults, k))}" for k in RunConfig.keys() if k != "model_kwargs"
    )
    p = sub.add_parser(
        "train",
        help="train a model (the paper's recipe by default)",
        description="Train a model and write a run directory (config, metrics, checkpoint, summary).",
        epilog=(
            "Any config key can be set as --key=value (defaults shown; none = dataset default):\n"
            f"{keys}\n  --model_kwargs.NAME=VALUE   a model hyper-parameter, e.g. "
            "--model_kwargs.c_K=16\n\nUnder torchrun (--nproc-per-node N -m mgiad train ...) "
            "the global batch is split over the processes."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of config keys")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    for flag, key, text in _TRAIN_FLAGS:
        p.add_argument(flag, dest=f"cfg_{key}", metavar="VALUE", default=argparse.SUPPRESS, help=text)
    p.add_argument("--download", dest="cfg_download", action="store_const", const="true",
                   default=argparse.SUPPRESS, help="download the dataset if it is missing")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as JSON and exit")
    p.set_defaults(func=cmd_train, accepts_overrides=True)

    p = sub.add_parser("eval", help="test accuracy (and per class) of a run or checkpoint",
                       description="Evaluate a checkpoint on its dataset's test split.")
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--data-dir", help="where the dataset lives (default: the run's, then search)")
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--subset-test", type=int, default=None, metavar="N",
                   help="evaluate on a stratified subset of N test images")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify image files with a checkpoint",
                       description="Print the top-k classes of each image file.")
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=3, help="classes per image (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_predict)


def _show(value: Any) -> str:
    """A default as it would be typed on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# --------------------------------------------------------------------------------------
# train


def build_config(args: argparse.Namespace, extra: list[str]) -> RunConfig:
    """The run configuration from ``--config``/``--resume``, explicit flags and overrides."""
    from mgiad.training.loop import load_run_config

    flags = [f"--{k[4:]}={v}" for k, v in vars(args).items() if k.startswith("cfg_")]
    if args.resume is not None:
        if args.config is not None:
            raise ValueError("--config cannot be combined with --resume (the run has its config)")
        base = load_run_config(args.resume)
    elif args.config is not None:
        base = RunConfig.from_file(args.config)
    else:
        base = RunConfig()
    return base.with_overrides(flags + list(extra))


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    """``mgiad train``: 0 on success, 3 if training diverged, 130/143 if interrupted (SIGINT/SIGTERM)."""
    from mgiad.training.loop import TrainingDiverged, TrainingInterrupted, train

    cfg = build_config(args, extra)
    if args.print_config:
        print(json.dumps(cfg.resolved().to_dict(), indent=2))
        return 0
    try:
        train(cfg, resume=args.resume)
    except TrainingDiverged as e:
        print(f"mgiad train: error: {e}", file=sys.stderr)
        return 3
    except TrainingInterrupted as e:  # Ctrl-C or SIGTERM: what is kept, how to continue
        print(f"mgiad train: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # before train() took over (imports, config)
        print("mgiad train: interrupted before training started; nothing was written",
              file=sys.stderr)
        return 130
    return 0


# --------------------------------------------------------------------------------------
# eval and predict


def _device(name: str) -> Any:
    from mgiad.training.machine import resolve_device as resolve

    return resolve(name)


def cmd_eval(args: argparse.Namespace, extra: list[str]) -> int:
    """``mgiad eval``: print test accuracy and per-class accuracy of a checkpoint."""
    import torch

    from mgiad.data.augment import BatchAugment
    from mgiad.data.datasets import load_dataset, subset
    from mgiad.training.checkpoint import checkpoint_path, load_model
    from mgiad.training.evaluate import evaluate

    device = _device(args.device)
    file = checkpoint_path(args.checkpoint)
    model, header = load_model(file, device=device)
    data_dir = args.data_dir
    config = file.parent / "config.json"
    if data_dir is None and config.is_file():  # the run's own data location, if it set one
        try:
            data_dir = json.loads(config.read_text()).get("data_dir")
        except (OSError, json.JSONDecodeError):
            data_dir = None
    data = load_dataset(header.get("dataset", ""), data_dir, download=args.download)
    if data.num_classes != header["num_classes"] or data.in_chans != header["in_chans"]:
        raise ValueError(
            f"{file} was trained for {header['num_classes']} classes, {header['in_chans']} channels; "
            f"dataset {data.name} has {data.num_classes} classes, {data.in_chans} channels"
        )
    if args.subset_test is not None:
        data = subset(data, test=args.subset_test)
    mean, std = _normalisation(header, file)
    # NHWC model and input, as in training: the faster layout on CPU and GPU.
    model = model.to(memory_format=torch.channels_last)
    transform = BatchAugment(mean=mean, std=std, pad_to=header.get("pad_to"), channels_last=True).test
    acc, per_class = evaluate(model, (data.x_test, data.y_test), transform=transform,
                              batch_size=args.batch_size, num_classes=header["num_classes"])
    classes = list(header.get("classes") or data.classes)
    result = {
        "checkpoint": str(file), "model": header["model"], "epoch": header.get("epoch"),
        "dataset": data.name, "test_images": len(data.y_test), "test_acc": acc,
        "per_class": dict(zip(classes, per_class)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{file}: {header['model']}, epoch {header.get('epoch', '?')}")
    print(f"test accuracy {100 * acc:.2f}% on {len(data.y_test)} {data.name} test images")
    width = max(len(c) for c in classes)
    for name, a in zip(classes, per_class):
        print(f"  {name:<{width}}  {'-' if a is None else f'{100 * a:6.2f}%'}")
    return 0


def _normalisation(header: dict[str, Any], file: Any) -> tuple[list[float], list[float]]:
    from mgiad.training.checkpoint import CheckpointError

    if "mean" not in header or "std" not in header:
        raise CheckpointError(f"{file} has no normalisation constants (mean/std) in its header")
    return list(header["mean"]), list(header["std"])


def load_image(path: str | Path, *, size: int, channels: int) -> Any:
    """An image file as a (size, size, channels) uint8 tensor (grey or RGB, bilinear resize)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array)


def cmd_predict(args: argparse.Namespace, extra: list[str]) -> int:
    """``mgiad predict``: top-k classes of image files."""
    import torch

    from mgiad.data.augment import BatchAugment
    from mgiad.training.checkpoint import load_model

    if args.topk < 1:
        raise ValueError(f"--topk must be >= 1, got {args.topk}")
    device = _device(args.device)
    model, header = load_model(args.checkpoint, device=device)
    size, channels = int(header.get("image_size", 32)), int(header["in_chans"])
    classes = list(header.get("classes") or [str(i) for i in range(header["num_classes"])])
    mean, std = _normalisation(header, args.checkpoint)
    transform = BatchAugment(mean=mean, std=std, pad_to=header.get("pad_to")).test
    x = torch.stack([load_image(p, size=size, channels=channels) for p in args.images])
    with torch.no_grad():
        probs = torch.softmax(model(transform(x.to(device))).float(), dim=1).cpu()
    k = min(args.topk, len(classes))
    top_p, top_i = probs.topk(k, dim=1)
    results = [
        {"image": str(path), "top": [{"class": classes[i], "prob": p}
                                     for p, i in zip(ps.tolist(), ids.tolist())]}
        for path, ps, ids in zip(args.images, top_p, top_i)
    ]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in r["top"]))
    return 0
