#!/usr/bin/env bash
# timm's own training script trains an mgiad model on an image folder (issue 12).
#
#   bash benchmarks/timm_train.sh PATH/TO/timm/train.py [OUT_DIR]
#
# train.py is not in the timm wheel: take it from the timm repository at the installed version
# (git clone https://github.com/huggingface/pytorch-image-models; the script is train.py).
# The models are registered in timm when mgiad is imported, so train.py runs with mgiad imported
# first (runpy); everything after that is timm's code. Builds a 3-class image folder (train/ and
# val/) from 600 real CIFAR-10 test images, trains 3 epochs on the CPU, prints timm's summary.
set -euo pipefail
TRAIN_PY=${1:?usage: bash benchmarks/timm_train.sh PATH/TO/timm/train.py [OUT_DIR]}
OUT=${2:-$(mktemp -d)}
HERE=$(cd "$(dirname "$0")/.." && pwd)
python - "$HERE/../shared/data/cifar10/test.npz" "$OUT/folder" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
data = np.load(sys.argv[1])
for label, name in ((3, "cat"), (5, "dog"), (1, "car")):
    for k, i in enumerate(np.flatnonzero(data["y"] == label)[:200]):
        d = Path(sys.argv[2]) / ("val" if k % 5 == 0 else "train") / name
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data["x"][i]).save(d / f"{i}.png")
PY
python -c "import sys, runpy, mgiad; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')" \
  "$TRAIN_PY" --data-dir "$OUT/folder" --train-split train --val-split val \
  --model mgiad_3lvl --num-classes 3 --input-size 3 32 32 \
  --mean 0.4914 0.4822 0.4465 --std 0.2470 0.2435 0.2616 \
  --epochs 3 --warmup-epochs 0 -b 32 --lr 0.05 --workers 0 --no-prefetcher --device cpu --log-interval 5 \
  --output "$OUT/timm"
cat "$OUT"/timm/*/summary.csv
