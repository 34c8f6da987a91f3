"""Side-by-side training on real data (issue: "Evidence on real data").

Trains ResNet20, MgNet_{A,B} (3 levels) and MGiaD (3 levels, c_K=16, g_s=8) with the same
short budget and seeds on real FashionMNIST and CIFAR-10, one run after another with the
models interleaved (so that load on a shared machine affects all of them alike), appends one
record per run to ``OUT/records.jsonl`` (re-running skips finished runs) and writes the table
``OUT/README.md``.

    python benchmarks/real_data.py --epochs 3 --subset-train 20000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from mgiad.data.datasets import load_dataset
from mgiad.training.config import RunConfig
from mgiad.training.loop import train

MODELS = {  # dataset -> [(label, registered model)]; FashionMNIST uses MGiaD's FashionMNIST variant
    "fashionmnist": [("ResNet20", "resnet20"), ("MgNet_{A,B} 3 levels", "mgnet_ab_3lvl"),
                     ("MGiaD c_K=16 g_s=8 (3 levels)", "mgiad_3lvl_fmnist")],
    "cifar10": [("ResNet20", "resnet20"), ("MgNet_{A,B} 3 levels", "mgnet_ab_3lvl"),
                ("MGiaD c_K=16 g_s=8 (3 levels)", "mgiad_3lvl")],
}
PAPER = {  # Table IV (FashionMNIST) and Tables I/II (CIFAR-10): weights k, test %, 400 epochs
    ("fashionmnist", "resnet20"): (270, 93.02), ("fashionmnist", "mgnet_ab_3lvl"): (101, 93.29),
    ("fashionmnist", "mgiad_3lvl_fmnist"): (37, 93.35),
    ("cifar10", "resnet20"): (270, 92.44), ("cifar10", "mgnet_ab_3lvl"): (101, 90.58),
    ("cifar10", "mgiad_3lvl"): (240, None),  # no 3-level MGiaD on CIFAR-10 in the paper
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["fashionmnist", "cifar10"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--subset-train", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="results/real_data")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    records = [json.loads(line) for line in records_path.open()] if records_path.exists() else []
    done = {(r["dataset"], r["model"], r["seed"]) for r in records}
    command = "python benchmarks/real_data.py " + shlex.join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as runs:
        for dataset in args.datasets:
            data = load_dataset(dataset)
            for seed in args.seeds:
                for label, model in MODELS[dataset]:
                    if (dataset, model, seed) in done:
                        continue
                    cfg = RunConfig(model=model, dataset=dataset, epochs=args.epochs, seed=seed,
                                    schedule="cosine", subset_train=args.subset_train,
                                    threads=args.threads, out_dir=runs, tensorboard=False)
                    s = train(cfg, data=data)
                    rec = {"dataset": dataset, "model": model, "label": label, "seed": seed,
                           "epochs": args.epochs, "subset_train": args.subset_train,
                           "weights": s["weights"], "test_acc": s["final_test_acc"],
                           "train_acc": s["final_train_acc"], "img_per_s": s["mean_img_per_s"],
                           "wall_time_s": s["wall_time_s"], "hardware": s["hardware"],
                           "command": command}
                    with records_path.open("a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                    records.append(rec)
    (out / "README.md").write_text(table(records, command))
    print(table(records, command))
    return 0


def _mean_std(xs: list[float]) -> str:
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):.2f} ± {100 * std:.2f}"


def table(records: list[dict], command: str) -> str:
    lines = ["# Real-data benchmark: short budget, side by side", "",
             f"Command: `{command}`", ""]
    hw = sorted({r["hardware"] for r in records})
    lines += [f"Machine: {', '.join(hw)}.", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rs = [r for r in records if r["dataset"] == dataset]
        r0 = rs[0]
        lines += [f"## {dataset}: {r0['epochs']} epochs (cosine lr 0.05 → 0), "
                  f"{r0['subset_train']} training images, full test set, seeds "
                  f"{sorted({r['seed'] for r in rs})}", "",
                  "| model | weights | test acc % (mean ± std) | train acc % | img/s | wall time / run | paper (400 epochs) |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for model in dict.fromkeys(r["model"] for r in rs):
            m = [r for r in rs if r["model"] == model]
            k, acc = PAPER.get((dataset, model), (None, None))
            paper = f"{k}k, {acc:.2f}%" if acc is not None else "—"
            lines.append(
                f"| {m[0]['label']} | {m[0]['weights']:,} | {_mean_std([r['test_acc'] for r in m])} "
                f"| {100 * statistics.mean(r['train_acc'] for r in m):.2f} "
                f"| {statistics.mean(r['img_per_s'] for r in m):.0f} "
                f"| {statistics.mean(r['wall_time_s'] for r in m) / 60:.1f} min | {paper} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
