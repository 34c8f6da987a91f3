#!/usr/bin/env bash
# The issue-5 comparison on a CUDA card, fp32 and bf16, for a lent device machine:
#   bash benchmarks/gpu_bench.sh            # writes results/performance/cuda-{fp32,bf16}.{txt,json}
# Needs torch with CUDA and this package installed (pip install -e .); about 2 minutes on a
# recent card. The card's name is printed in each file's first line.
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/performance
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
for precision in fp32 bf16; do
  python -m mgiad bench --device cuda --precision "$precision" --rounds 7 --steps 10 \
    --json "$out/cuda-$precision.json" | tee "$out/cuda-$precision.txt"
done
