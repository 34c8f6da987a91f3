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
import os
import sys
from pathlib import Path
from typing import Any

from mgiad.training.config import RunConfig
from mgiad.training.values import check_count, check_device

#: ``train`` flags declared explicitly (for ``--help``); each maps to a config key.
_TRAIN_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--model", "model", "registered model name (mgiad list)"),
    ("--dataset", "dataset", "cifar10, cifar100, fashionmnist, or your own data: imagefolder:DIR "
     "(a folder per class) or npz:FILE (arrays x, y)"),
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
        help="train a model (the paper's recipe, with the authors' augmentation, by default)",
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
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT", nargs="?")
    p.add_argument("--model", metavar="NAME", help="evaluate published weights (with --pretrained)")
    p.add_argument("--pretrained", action="store_true", help="use the published weights of --model")
    # --data_dir too: train's spelling (a RunConfig key), which data-not-found hints name
    p.add_argument("--data-dir", "--data_dir", dest="data_dir",
                   help="where the dataset lives (default: the run's, then search)")
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    _add_device_args(p)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--subset-test", type=int, default=None, metavar="N",
                   help="evaluate on a stratified subset of N test images")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify image files with a checkpoint or pretrained model",
                       description="Print the top-k classes of each image file, with a run's "
                       "checkpoint (predict RUN_DIR IMAGE...) or published weights (predict "
                       "--model NAME --pretrained IMAGE...). Images are read as for training "
                       "(EXIF orientation applied, 16-bit grey scaled) and prepared as evaluation "
                       "prepares the test split (timm's eval transform): the shorter side resized "
                       "to the model's input size (divided by crop_pct if the data set names one), "
                       "the centre cropped, normalised with the checkpoint's mean/std; one line on "
                       "stderr says what was done. A file that cannot be read is named on stderr "
                       "and the others are predicted: exit status 1 if some could not be read, 2 "
                       "if none.")
    p.add_argument("inputs", nargs="+", metavar="[RUN_DIR_OR_CHECKPOINT] IMAGE")
    p.add_argument("--model", metavar="NAME", help="a model with published weights (with --pretrained)")
    p.add_argument("--pretrained", action="store_true", help="use the published weights of --model")
    p.add_argument("--topk", type=int, default=3, help="classes per image (default 3)")
    p.add_argument("--batch", type=int, default=64, metavar="N",
                   help="images decoded and classified at a time (default 64; memory stays bounded)")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help=f"refuse images of more than N pixels (default: ${ENV_MAX_PIXELS} or "
                   f"{MAX_IMAGE_PIXELS:,})")
    _add_device_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_predict)


def _add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads`` of eval and predict, as train's."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: the cores free at start, as mgiad train)")


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
    """The run configuration from ``--config``/``--resume``, explicit flags and overrides;
    checked before torch is imported, so a bad value is reported at once (issue 22)."""
    flags = [f"--{k[4:]}={v}" for k, v in vars(args).items() if k.startswith("cfg_")]
    if args.resume is not None:
        if args.config is not None:
            raise ValueError("--config cannot be combined with --resume (the run has its config)")
        from mgiad.training.loop import load_run_config

        base = load_run_config(args.resume)
    elif args.config is not None:
        base = RunConfig.from_file(args.config)
    else:
        base = RunConfig()
    return base.with_overrides(flags + list(extra))


def run_training(command: str, cfg: RunConfig | None, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
    """``train(cfg, **kwargs)`` for a command: (0, summary), or the exit code after one line on
    stderr — 3 if training diverged, 130/143 if Ctrl-C/SIGTERM interrupted it."""
    from mgiad.training.loop import TrainingDiverged, TrainingInterrupted, train

    try:
        return 0, train(cfg, **kwargs)
    except TrainingDiverged as e:
        print(f"mgiad {command}: error: {e}", file=sys.stderr)
        return 3, None
    except TrainingInterrupted as e:  # Ctrl-C or SIGTERM: what is kept, how to continue
        print(f"mgiad {command}: {e}", file=sys.stderr)
        return e.exit_code, None


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    """``mgiad train``: 0 on success, 3 if training diverged, 130/143 if interrupted (SIGINT/SIGTERM)."""
    cfg = build_config(args, extra)
    if args.print_config:
        print(json.dumps(cfg.resolved().to_dict(), indent=2))
        return 0
    try:
        return run_training("train", cfg, resume=args.resume)[0]
    except KeyboardInterrupt:  # before train() took over (imports, config)
        print("mgiad train: interrupted before training started; nothing was written",
              file=sys.stderr)
        return 130
    return 0


# --------------------------------------------------------------------------------------
# eval and predict


def _device(args: argparse.Namespace) -> Any:
    """The device of ``--device``, with torch's CPU threads set by ``--threads`` (or the rule of
    mgiad/training/threads.py: never more threads than free cores)."""
    from mgiad.training.machine import resolve_device as resolve
    from mgiad.training.threads import configure_threads

    check_device("--device", args.device)
    check_count("--threads", args.threads)
    configure_threads(args.threads)
    return resolve(args.device)


def cmd_eval(args: argparse.Namespace, extra: list[str]) -> int:
    """``mgiad eval``: print test accuracy and per-class accuracy of a checkpoint."""
    import torch

    from mgiad.data.augment import BatchAugment
    from mgiad.data.datasets import subset
    from mgiad.training.checkpoint import checkpoint_path, load_model
    from mgiad.training.evaluation import evaluate

    check_count("--batch-size", args.batch_size)
    check_count("--subset-test", args.subset_test)
    device = _device(args)
    if (args.model is not None or args.pretrained) and args.checkpoint is not None:
        raise ValueError("evaluate either a checkpoint (mgiad eval RUN_DIR) or published weights "
                         "(mgiad eval --model NAME --pretrained)")
    published = _published_model(args, device)
    if published is not None:
        from mgiad.data.datasets import load_dataset

        model, header, file = published
        data = load_dataset(header["dataset"], args.data_dir, download=args.download)
    else:
        if args.checkpoint is None:
            raise ValueError("give a run directory or checkpoint (or --model NAME --pretrained)")
        file = checkpoint_path(args.checkpoint)
        model, header = load_model(file, device=device)
        data = _eval_data(header.get("dataset", ""), args.data_dir, file, args.download)
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
        "dataset": data.name, "data_source": data.source, "test_images": len(data.y_test),
        "test_acc": acc, "per_class": dict(zip(classes, per_class)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{file}: {header['model']}, epoch {header.get('epoch', '?')}")
    print(f"data: {data.source}")
    print(f"test accuracy {100 * acc:.2f}% on {len(data.y_test)} {data.name} test images")
    width = max(len(c) for c in classes)
    for name, a in zip(classes, per_class):
        print(f"  {name:<{width}}  {'-' if a is None else f'{100 * a:6.2f}%'}")
    return 0


def _eval_data(dataset: str, data_dir: str | None, file: Path, download: bool) -> Any:
    """The test data: from ``--data-dir`` (only there), else from where the run read it, else
    from ``$MGIAD_DATA_DIR`` and the standard places (saying so on stderr)."""
    from mgiad.data.datasets import DatasetNotFoundError, load_dataset

    if data_dir is not None:
        return load_dataset(dataset, data_dir, download=download)
    config = file.parent / "config.json"
    try:  # the run's own data location, if it set one
        run_dir = json.loads(config.read_text()).get("data_dir") if config.is_file() else None
    except (OSError, json.JSONDecodeError, AttributeError):
        run_dir = None
    if run_dir is not None:
        try:
            return load_dataset(dataset, run_dir)
        except DatasetNotFoundError:
            print(f"mgiad eval: the run's data_dir {run_dir} no longer holds its data; searching "
                  "$MGIAD_DATA_DIR and the standard places (--data-dir DIR to choose)",
                  file=sys.stderr)
    return load_dataset(dataset, None, download=download)


def _published_model(args: argparse.Namespace, device: Any) -> tuple[Any, dict[str, Any], str] | None:
    """(model, header, source) for ``--model NAME --pretrained`` (eval, predict); None without
    either flag."""
    if args.model is None and not args.pretrained:
        return None
    if not (args.model and args.pretrained):
        raise ValueError("--model NAME and --pretrained go together (untrained weights predict "
                         "nothing); or give a run directory or checkpoint")
    from mgiad.models.pretrained import pretrained_model

    model, header = pretrained_model(args.model, device=device)
    return model, header, f"{args.model} (published weights)"


def _normalisation(header: dict[str, Any], file: Any) -> tuple[list[float], list[float]]:
    from mgiad.training.checkpoint import CheckpointError

    if "mean" not in header or "std" not in header:
        raise CheckpointError(f"{file} has no normalisation constants (mean/std) in its header")
    return list(header["mean"]), list(header["std"])


#: The largest image ``predict`` decodes, in pixels: PIL's own guard against decompression bombs
#: (about 9459 x 9459), which a small file claiming a huge size would otherwise defeat by filling
#: the memory. ``--max-pixels N`` or ``$MGIAD_MAX_IMAGE_PIXELS`` raises it for trusted files.
MAX_IMAGE_PIXELS = 89_478_485
ENV_MAX_PIXELS = "MGIAD_MAX_IMAGE_PIXELS"


def max_image_pixels(flag: int | None = None) -> int:
    """The pixel limit: ``--max-pixels``, else ``$MGIAD_MAX_IMAGE_PIXELS``, else the default."""
    if flag is not None:
        check_count("--max-pixels", flag)
        return flag
    text = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${ENV_MAX_PIXELS}={text!r} is not allowed: it must be a number of "
                         "pixels >= 1 (or unset for the default)")
    return value


def load_image(path: str | Path, *, size: int, channels: int,
               max_pixels: int = MAX_IMAGE_PIXELS, resize: Any = None) -> Any:
    """An image file as a (size, size, channels) uint8 tensor (grey or RGB), decoded as the
    image-folder loader decodes it (:mod:`mgiad.data.images`: EXIF orientation applied, 16-bit
    grey scaled, multi-frame files refused), then resized and centre-cropped as evaluation does:
    ``resize`` (a :class:`mgiad.data.images.CentreCrop` of ``size``; default
    ``CentreCrop(size)``: shorter side to ``size``, bilinear, the centre ``size x size``; an image
    of that size is left as it is).

    An image of more than ``max_pixels`` pixels is refused before it is decoded.
    """
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from mgiad.data.images import CentreCrop, open_image

    resize = resize if resize is not None else CentreCrop(int(size))
    if resize.size != size:
        raise ValueError(f"resize to {resize.size} but size={size}")

    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our limit below replaces PIL's (a traceback without a fix)
    try:
        with Image.open(path) as img:
            w, h = img.size  # from the header: nothing is decoded yet
        if w * h > max_pixels:
            raise ValueError(
                f"image {path} is {w}x{h} = {w * h:,} pixels, more than the limit of "
                f"{max_pixels:,}; if you trust the file, raise the limit with --max-pixels "
                f"{w * h} or ${ENV_MAX_PIXELS}={w * h}")
        img = resize(open_image(path).convert("L" if channels == 1 else "RGB"))
        array = np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array)


def _predict_preparation(header: dict[str, Any], size: int, published: bool) -> tuple[Any, str]:
    """The resize and crop of ``mgiad predict`` (as evaluation prepared the checkpoint's data:
    :func:`mgiad.data.custom.predict_resize`) and the line that says what is done to a file."""
    from mgiad.data.custom import predict_resize

    resize = predict_resize(str(header.get("dataset", "")), size)
    pad = header.get("pad_to")
    padded = f", zero-padded to {pad}x{pad}" if pad and int(pad) != size else ""
    whose = "the published weights'" if published else "the checkpoint's"
    return resize, f"{resize.describe()}{padded}, normalised with {whose} mean/std"


def cmd_predict(args: argparse.Namespace, extra: list[str]) -> int:
    """``mgiad predict``: top-k classes of image files."""
    import torch

    from mgiad.data.augment import BatchAugment
    from mgiad.training.checkpoint import load_model

    check_count("--topk", args.topk)
    check_count("--batch", args.batch)
    max_pixels = max_image_pixels(args.max_pixels)
    device = _device(args)
    published = _published_model(args, device)
    if published is not None:
        model, header, source = published
        images = args.inputs
    else:
        source, images = args.inputs[0], args.inputs[1:]
        if not images:
            raise ValueError(f"no image files after the checkpoint {source}: mgiad predict "
                             "RUN_DIR_OR_CHECKPOINT IMAGE...")
        model, header = load_model(source, device=device)
    size, channels = int(header.get("image_size", 32)), int(header["in_chans"])
    classes = list(header.get("classes") or [str(i) for i in range(header["num_classes"])])
    mean, std = _normalisation(header, source)
    transform = BatchAugment(mean=mean, std=std, pad_to=header.get("pad_to")).test
    resize, how = _predict_preparation(header, size, published is not None)
    k = min(args.topk, len(classes))
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    # In batches of --batch images: memory stays bounded however many files are given, and each
    # batch's lines are printed as soon as it is done.
    for start in range(0, len(images), args.batch):
        loaded = []
        for path in images[start:start + args.batch]:
            try:
                loaded.append((path, load_image(path, size=size, channels=channels,
                                                max_pixels=max_pixels, resize=resize)))
            except ValueError as e:  # one line per file that cannot be read; the others go on
                errors.append(str(e))
                if len(images) > 1:
                    print(f"mgiad predict: error: {e}", file=sys.stderr, flush=True)
        if not loaded:
            continue
        if how:  # once, when something is predicted (an input error stays one line)
            print(f"mgiad predict: {how}", file=sys.stderr, flush=True)
            how = ""
        with torch.no_grad():
            x = torch.stack([t for _, t in loaded]).to(device)
            top_p, top_i = torch.softmax(model(transform(x)).float(), dim=1).cpu().topk(k, dim=1)
        for (path, _), ps, ids in zip(loaded, top_p, top_i):
            r = {"image": str(path), "top": [{"class": classes[i], "prob": p}
                                             for p, i in zip(ps.tolist(), ids.tolist())]}
            if args.json:
                results.append(r)
            else:
                print(f"{r['image']}: " + ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in r["top"]),
                      flush=True)
    if len(errors) == len(images):  # nothing to predict: an input error (exit 2)
        raise ValueError(errors[0] if len(errors) == 1 else
                         f"none of the {len(images)} images could be read (each is named above)")
    if args.json:
        print(json.dumps(results, indent=2))
    if errors:
        print(f"mgiad predict: {len(errors)} of {len(images)} images could not be read (named above); "
              f"the others were predicted", file=sys.stderr)
        return 1
    return 0
