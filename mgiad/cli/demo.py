"""``mgiad demo``: the README's first command — a short real training run on the CPU.

It trains a small model of the paper, the 3-level MGiaD of Table IV (c_K=16, g_s=8,
37k weights), on real FashionMNIST (or CIFAR-10 when FashionMNIST is not on the machine)
for a few minutes, then prints test accuracy, weights and time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mgiad.training.config import RunConfig
from mgiad.training.values import check_count

#: The demo's run per dataset: model, and a budget of a few CPU minutes.
_DEMO = {
    "fashionmnist": {"model": "mgiad_3lvl_fmnist", "subset_train": 20000, "epochs": 2},
    "cifar10": {"model": "mgiad_3lvl", "subset_train": 10000, "epochs": 2},
}


def _find_data(dataset: str | None, data_dir: str | None, download: bool) -> Any:
    """The requested dataset, or the first of FashionMNIST, CIFAR-10 that is found."""
    from mgiad.data.datasets import DatasetNotFoundError, load_dataset  # loads torch

    if dataset is not None:
        return load_dataset(dataset, data_dir, download=download)
    errors = []
    for name in _DEMO:
        try:
            return load_dataset(name, data_dir, download=False)
        except DatasetNotFoundError as e:
            errors.append(str(e))
    if download:
        return load_dataset("fashionmnist", data_dir, download=True)
    if data_dir is not None:  # one line about the folder the user named
        where = Path(data_dir).expanduser()
        problem = ("does not exist" if not where.exists() else "is not a directory"
                   if not where.is_dir() else "holds neither FashionMNIST nor CIFAR-10")
        raise DatasetNotFoundError(
            f"--data-dir {where} {problem}; the demo reads FashionMNIST (IDX files, e.g. from the "
            "Debian package dataset-fashion-mnist) or CIFAR-10 (cifar-10-batches-py/ or its "
            ".tar.gz) from there: give the folder that holds one, add --download to fetch "
            "FashionMNIST into it, or leave --data-dir unset to search $MGIAD_DATA_DIR and the "
            "standard places")
    raise DatasetNotFoundError("the demo needs FashionMNIST or CIFAR-10:\n" + "\n".join(errors))


def _config(data_name: str, args: argparse.Namespace, extra: list[str]) -> RunConfig:
    recipe = _DEMO.get(data_name, _DEMO["cifar10"])
    return RunConfig(
        model=recipe["model"], dataset=data_name,
        epochs=args.epochs if args.epochs is not None else recipe["epochs"],
        subset_train=recipe["subset_train"], schedule="cosine-steps", out_dir=args.out_dir,
        run_name=f"demo-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}",
    ).with_overrides(extra)


def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from mgiad.data.datasets import canonical_name

    from .run import run_training

    check_count("--epochs", args.epochs)
    # Every input is checked before the data are read (seconds) and training starts (minutes).
    _config(canonical_name(args.dataset) if args.dataset else "fashionmnist", args, extra).check_out_dir()
    data = _find_data(args.dataset, args.data_dir, args.download)
    cfg = _config(data.name, args, extra)
    print(f"mgiad demo: {cfg.model} on {data.name} ({cfg.subset_train or len(data.y_train)} training "
          f"images, full test set), {cfg.epochs} epochs with a cosine lr set at every step — a few "
          "minutes on a CPU")
    code, s = run_training("demo", cfg, data=data)
    if s is None:
        return code
    print(
        f"\nresult: test accuracy {100 * s['final_test_acc']:.2f}% after the last epoch (best "
        f"{100 * s['best_test_acc']:.2f}% at epoch {s['best_epoch']}; chance 10%) with "
        f"{s['weights']:,} weights in {s['wall_time_s'] / 60:.1f} min ({s['mean_img_per_s']:.0f} img/s, "
        f"{s['hardware']})\nrun directory: {s['run_dir']}  (mgiad eval {s['run_dir']})"
    )
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("demo", help="train a small MGiaD on real data for a few CPU minutes",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--dataset", help="fashionmnist or cifar10 (default: the first one found)")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="where the dataset lives")
    p.add_argument("--download", action="store_true", help="download FashionMNIST if no data is found")
    p.add_argument("--epochs", type=int, help="override the demo's epochs")
    p.add_argument("--out-dir", default="runs", help="parent of the run directory (default: runs)")
    p.set_defaults(func=cmd_demo, accepts_overrides=True)
