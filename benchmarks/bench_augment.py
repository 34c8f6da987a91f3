"""Throughput of the CIFAR-10 training augmentation: batched mgiad vs torchvision per image.

Runs, side by side on the same 128 CIFAR-10 images (the real training set if present, else
random images), one training batch of:

- ``mgiad``: ``paper_augment("cifar10").train(batch)`` on the (N, H, W, C) uint8 batch;
- ``torchvision-PIL``: the authors' pipeline per PIL image (RandomCrop(32, 4), RandomHorizontalFlip,
  AutoAugment(CIFAR10), ToTensor, Normalize) plus stacking into a batch;
- ``torchvision-tensor``: the same transforms per uint8 CHW tensor.

Usage: ``python benchmarks/bench_augment.py [--batch 128] [--repeats 20] [--threads N]
[--device cpu|cuda]``. Prints images/s and the speed-up; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from mgiad.data.augment import paper_augment

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CIFAR_TRAIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10" / "train.npz"


def _load(batch: int) -> np.ndarray:
    if CIFAR_TRAIN.exists():
        return np.load(CIFAR_TRAIN)["x"][:batch]
    return np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)


def _time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median seconds per call after two warm-up calls."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="device of the batched run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    images = _load(args.batch)
    batch = torch.from_numpy(images).to(device)
    aug = paper_augment("cifar10", mean=MEAN, std=STD, channels_last=True)
    gen = torch.Generator(device=device).manual_seed(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    tv = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
          T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)]
    pil_pipeline = T.Compose([*tv, T.ToTensor(), T.Normalize(MEAN, STD)])
    tensor_pipeline = T.Compose([*tv, T.ConvertImageDtype(torch.float32), T.Normalize(MEAN, STD)])
    pil_images = [Image.fromarray(im) for im in images]
    chw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    runs = {
        f"mgiad batched ({device.type})": (lambda: aug.train(batch, gen), sync),
        "torchvision per image, PIL": (
            lambda: torch.stack([pil_pipeline(im) for im in pil_images]), lambda: None),
        "torchvision per image, tensor": (
            lambda: torch.stack([tensor_pipeline(im) for im in chw]), lambda: None),
    }
    print(f"batch {args.batch}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"data: {'CIFAR-10 train' if CIFAR_TRAIN.exists() else 'random'}")
    rates = {}
    for name, (fn, sync_fn) in runs.items():
        seconds = _time(fn, args.repeats, sync_fn)
        rates[name] = args.batch / seconds
        print(f"{name:34s} {seconds * 1e3:8.2f} ms/batch {rates[name]:10.0f} img/s")
    ours = next(iter(rates.values()))
    for name, rate in list(rates.items())[1:]:
        print(f"speed-up vs {name}: {ours / rate:.1f}x")


if __name__ == "__main__":
    main()
