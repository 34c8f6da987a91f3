"""The real training loop's images/s against ``mgiad bench``'s for the same model and threads
(issue 19, item 4: within 10%).

    taskset -c 0 python benchmarks/loop_vs_bench.py --threads 1 --data_dir ../shared/data/cifar10 \\
        --out results/performance/loop-vs-bench-CPU-1thread

For each model, alternately (``--rounds`` times each): ``mgiad bench MODEL --no-memory`` (train
img/s of repeated steps on one fixed batch) and ``mgiad train`` for one epoch of
``--images`` CIFAR-10 images with the default recipe (the authors' AutoAugment, shuffling,
progress lines, a checkpoint; evaluation on 1,000 test images after the epoch, outside the
img/s the loop reports). Medians and their ratio; each run in its own process, as users run them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = {"resnet20": ("resnet20", []), "mgiad:c_K=32,g_s=8": ("mgiad", ["--model_kwargs.c_K=32", "--model_kwargs.g_s=8"]),
          "mgiad:c_K=16,g_s=4": ("mgiad", ["--model_kwargs.c_K=16", "--model_kwargs.g_s=4"])}


def bench(spec: str, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b.json"
        subprocess.run([sys.executable, "-m", "mgiad", "bench", spec, "--threads", str(threads), "--steps", "3",
                        "--rounds", "3", "--no-memory", "--json", str(out)], check=True, capture_output=True)
        (row,) = json.loads(out.read_text())["results"]  # the one model asked for
        return float(row["train_img_s"])


def loop(spec: str, threads: int, images: int, data_dir: str) -> float:
    name, kwargs = MODELS[spec]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "mgiad", "train", f"--model={name}", *kwargs, "--dataset=cifar10",
                        f"--data_dir={data_dir}", f"--subset_train={images}", "--subset_test=1000",
                        "--epochs=1", f"--threads={threads}", f"--out_dir={tmp}", "--run_name=r",
                        "--tensorboard=false"], check=True, capture_output=True)
        (row,) = [json.loads(line) for line in (Path(tmp) / "r" / "metrics.jsonl").read_text().splitlines()]
        return float(row["img_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data_dir", default="../shared/data/cifar10")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--out")
    args = ap.parse_args()
    from switched import finish

    from mgiad.training.machine import cpu_string

    lines = [f"# {cpu_string()}, {args.threads} thread(s); loop: one epoch of {args.images} CIFAR-10 images, "
             f"default recipe; bench: mgiad bench --steps 3 --rounds 3; {args.rounds} alternating rounds; "
             f"load before {os.getloadavg()[0]:.2f}",
             f"{'model':<22} {'bench img/s':>11} {'loop img/s':>10} {'loop / bench':>12}   (each round: bench, loop)"]
    for spec in args.models:
        b, lp = [], []
        for _ in range(args.rounds):
            b.append(bench(spec, args.threads))
            lp.append(loop(spec, args.threads, args.images, args.data_dir))
        mb, ml = statistics.median(b), statistics.median(lp)
        lines.append(f"{spec:<22} {mb:>11.1f} {ml:>10.1f} {ml / mb:>12.3f}   "
                     + "; ".join(f"{x:.1f}, {y:.1f}" for x, y in zip(b, lp)))
        print(lines[-1], flush=True)
    finish(lines, args.out)


if __name__ == "__main__":
    main()
