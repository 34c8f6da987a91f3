"""Pretrained weights shipped with the package: ``create_model(name, pretrained=True)``.

Each entry names a file under ``mgiad/models/weights/`` (a plain safetensors state dict), its
SHA-256, the data set, and the ``mgiad train`` command and records that produced it. A file
whose hash does not match is refused; a name without weights is an error that lists what is
published.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Weights:
    file: str  # under WEIGHTS_DIR
    sha256: str
    dataset: str
    num_classes: int
    in_chans: int
    test_acc: float  # %, measured by `mgiad eval`
    command: str  # the `mgiad train` command that made it
    # What predicting with them needs (the training checkpoint's header fields):
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    image_size: int = 32
    pad_to: int | None = None
    # How they were made (README table): weight count, epochs, wall hours, the machine
    weights: int = 0
    epochs: int = 0
    train_hours: float = 0.0
    hardware: str = ""


#: What predicting on each data set needs (the training checkpoints' header fields).
_DATA: dict[str, dict[str, Any]] = {
    "fashionmnist": dict(
        num_classes=10, in_chans=1, image_size=28, pad_to=None, mean=(0.286,), std=(0.353,),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")),
    "cifar10": dict(
        num_classes=10, in_chans=3, image_size=32, pad_to=None,
        mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.2435, 0.2616),
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")),
}


def _trained_on(dataset: str, **made: Any) -> Weights:
    return Weights(dataset=dataset, **_DATA[dataset], **made)


#: The 12-epoch Table IV run that made both FashionMNIST weights (README, reproduction).
_TABLE_IV = ("mgiad sweep table_IV --rows 1,4 --seeds 0,1 --epochs=12 --step_size=4 --threads=1 "
             "({row}, SGD lr 0.05 x 0.1 every 4 epochs, batch 128, full 60k training images)")


#: ``model.tag`` (timm's naming: the tag names the training data) -> its published weights.
#: Written by ``python benchmarks/publish_weights.py RUN_DIR MODEL.TAG``; the run's records and
#: curve are in ``results/pretrained/MODEL.TAG/``.
PUBLISHED: dict[str, Weights] = {
    # Table IV's 3-level MGiaD (no BN in Pi/R on FashionMNIST), seed 0 of the 12-epoch run.
    "mgiad_3lvl_fmnist.fashionmnist": _trained_on(
        "fashionmnist",
        file="mgiad_3lvl_fmnist-fashionmnist.safetensors",
        sha256="ca87e0a8ba8a37c6cd3d5e5b8f6f0ad43cc420be2179d31e60367037c0a8e938",
        test_acc=92.27,
        command=_TABLE_IV.format(row="row 4, seed 0: mgiad(levels=3, c_K=16, g_s=8, "
                                          "transfer_norm=False)"),
        weights=36858, epochs=12, train_hours=0.62, hardware="AMD EPYC (Zen 4), 1 torch thread",
    ),
    # ResNet20 beside it: row 1 of the same run, the same recipe and budget, seed 0.
    "resnet20.fashionmnist": _trained_on(
        "fashionmnist",
        file="resnet20-fashionmnist.safetensors",
        sha256="6ab88de51e2912f88e50ed2f22caeaa59f23afb181396d98caf8577cb5c262b5",
        test_acc=93.05,
        command=_TABLE_IV.format(row="row 1, seed 0: resnet20"),
        weights=269434, epochs=12, train_hours=0.61, hardware="AMD EPYC (Zen 4), 1 torch thread",
    ),
    # The 3-level MGiaD on CIFAR-10, the paper's recipe (cosine from lr 0.05) for 60 epochs, with
    # torchvision's AutoAugment (the default then, misnamed "paper"; the paper names none).
    "mgiad_3lvl.cifar10": _trained_on(
        "cifar10",
        file="mgiad_3lvl-cifar10.safetensors",
        sha256="14d00f73c9ead0d6bb3b50235fb50e9ab0a2c792282cc899a091d78e173d15c1",
        test_acc=83.16,
        command="mgiad train --model mgiad_3lvl --dataset cifar10 --epochs 60 --schedule cosine "
                "--augment torchvision --threads 1 (SGD lr 0.05, batch 128, torchvision's "
                "AutoAugment, the default when it ran; "
                "run: results/pretrained-runs/mgiad_3lvl.cifar10-e60)",
        weights=37530, epochs=60, train_hours=2.66, hardware="AMD EPYC (Zen 4), 1 torch thread",
    ),
    # Issue 23's CPU-budget Table II (benchmarks/table_II_cpu.toml), row ResNet20, seed 0.
    "resnet20.cifar10": _trained_on(
        "cifar10",
        file="resnet20-cifar10.safetensors",
        sha256="8acbdf4732ae21ea281a5c46846cf36ee4b712c6fbc9575f326dcc39df2dbb31",
        test_acc=83.57,
        command="mgiad sweep benchmarks/table_II_cpu.toml --rows 1,2 --threads 1 "
                "--data_dir ../shared/data/cifar10 (row ResNet20, seed 0: 10 cosine epochs from lr "
                "0.05, batch 128, the authors' augmentation; its records: results/pretrained/resnet20.cifar10)",
        weights=269722, epochs=10, train_hours=0.32,
        hardware="AMD EPYC (Zen 5, family 26 model 2), 1 torch thread",
    ),
    # The paper's headline model: MGiaD c_K=64, g_s=4 (4 levels; `mgiad`'s defaults), row 4 of the
    # same table, seed 0, same recipe. A first run gave the same curve to the last digit on
    # 2026-12-03; its checkpoint was lost with that machine, and this one repeats it.
    "mgiad.cifar10": _trained_on(
        "cifar10",
        file="mgiad-cifar10.safetensors",
        sha256="0b296835c755a5b9164c9df81e62e1e393f2d48373b8c72ebd2bec98041129b2",
        test_acc=77.58,
        command="mgiad sweep benchmarks/table_II_cpu.toml --rows 4 --threads 1 "
                "--data_dir ../shared/data/cifar10 (row MGiaD c_K=64 g_s=4, seed 0: 10 cosine epochs "
                "from lr 0.05, batch 128, the authors' augmentation; its records: "
                "results/pretrained/mgiad.cifar10)",
        weights=391626, epochs=10, train_hours=1.79,
        hardware="AMD EPYC (Zen 5, family 26 model 2), 1 torch thread, the other core busy",
    ),
    # The same table's MGiaD at ResNet20's weight count (c_K=32, g_s=8, 4 levels), seed 0, same recipe.
    "mgiad_ck32_gs8.cifar10": _trained_on(
        "cifar10",
        file="mgiad_ck32_gs8-cifar10.safetensors",
        sha256="cf5f17d6d740a80223a97143f08f18d355900d322e597813d6031eb1e48a3c4a",
        test_acc=76.86,
        command="mgiad sweep benchmarks/table_II_cpu.toml --rows 1,2 --threads 1 "
                "--data_dir ../shared/data/cifar10 (row MGiaD c_K=32 g_s=8, seed 0: 10 cosine epochs "
                "from lr 0.05, batch 128, the authors' augmentation; its records: "
                "results/pretrained/mgiad_ck32_gs8.cifar10)",
        weights=274122, epochs=10, train_hours=1.52,
        hardware="AMD EPYC (Zen 5, family 26 model 2), 1 torch thread, the other core busy",
    ),
}


def published_key(name: str, tag: str | None = None) -> str:
    """The PUBLISHED key of ``name`` with ``tag`` (or its first published tag), or a ValueError
    that lists what is published."""
    if tag:
        if f"{name}.{tag}" in PUBLISHED:
            return f"{name}.{tag}"
    else:
        for key in PUBLISHED:
            if key.partition(".")[0] == name:
                return key
    available = ", ".join(sorted(PUBLISHED)) or "none in this release"
    asked = f"{name}.{tag}" if tag else name
    raise ValueError(f"no pretrained weights for {asked!r} (available: {available}); train "
                     f"them with `mgiad train --model {name}` and load the checkpoint instead")


def published_in_chans(name: str, tag: str | None = None) -> int | None:
    """The input channels of the published weights (None: none published; loading then fails
    with the message of :func:`published_key`)."""
    try:
        return PUBLISHED[published_key(name, tag)].in_chans
    except ValueError:
        return None


def load_pretrained(model: nn.Module, name: str, *, num_classes: int | None, in_chans: int | None,
                    tag: str | None = None) -> dict[str, Any]:
    """Load the published weights of ``name`` (``tag``: which; default the first) into ``model``,
    hash checked; returns its cfg."""
    key = published_key(name, tag)
    w = PUBLISHED[key]
    if in_chans not in (None, w.in_chans):
        raise ValueError(f"the pretrained {key} takes {w.in_chans} input channels, not {in_chans}")
    path = WEIGHTS_DIR / w.file
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != w.sha256:
        raise ValueError(f"{path}: SHA-256 {digest} does not match the published {w.sha256}; "
                         "the file is damaged or not the published one")
    import safetensors.torch

    state = safetensors.torch.load(data)
    if num_classes not in (None, w.num_classes):  # a new classifier, as timm does
        state = {k: v for k, v in state.items() if not k.startswith("head.2.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("head.2.")]:
        raise ValueError(f"{path} does not fit {name}: missing {missing}, unexpected {unexpected}")
    return {"dataset": w.dataset, "test_acc": w.test_acc, "file": str(path), "sha256": w.sha256,
            "tag": key.partition(".")[2], "num_classes": w.num_classes, "mean": tuple(w.mean),
            "std": tuple(w.std), "input_size": (w.in_chans, w.pad_to or w.image_size,
                                                 w.pad_to or w.image_size)}


def pretrained_model(name: str, *, device: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """``name`` (``model`` or ``model.tag``) with its published weights (hash checked), in eval
    mode, and a checkpoint-like header (classes, normalisation, input size) for
    ``mgiad predict --model NAME --pretrained``."""
    from .registry import create_model

    arch, _, tag = name.partition(".")
    w = PUBLISHED[published_key(arch, tag or None)]
    model = create_model(name, pretrained=True)
    header = {"model": arch, "num_classes": w.num_classes, "in_chans": w.in_chans,
              "image_size": w.image_size, "pad_to": w.pad_to,
              "input_size": w.pad_to or w.image_size, "mean": list(w.mean),
              "std": list(w.std), "classes": list(w.classes), "dataset": w.dataset}
    return model.to(device).eval(), header
