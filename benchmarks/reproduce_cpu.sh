#!/usr/bin/env bash
# Reduced-budget reproduction on a CPU: Table IV (FashionMNIST) and its CIFAR-10 counterpart
# (benchmarks/cifar10_3level.toml), 3 seeds each, then the tables and figures.
#
# Budget, chosen to fit about 1 hour on 2 quiet cores (torch 2 threads; ResNet20 trains at
# about 500 img/s on FashionMNIST and 420 img/s on CIFAR-10 with AutoAugment there, the 3-level
# MgNet at about 0.75x that, 3-level MGiaD about as fast as ResNet20; evaluating the 10,000
# test images costs about 7 s):
#   Table IV:  5 rows x 3 seeds, 10,000 training images x 4 epochs (cosine lr over the 4):
#              15 runs x (40,000 images ~ 80-110 s + 4 evaluations ~ 30 s)  ~ 30-35 min
#   CIFAR-10:  4 rows x 3 seeds, 10,000 training images x 3 epochs:
#              12 runs x (30,000 images ~ 75-100 s + 3 evaluations ~ 25 s)  ~ 20-25 min
# Every sweep is idempotent: re-running this script skips finished runs and resumes an
# interrupted one from its last epoch. The results go to results/<experiment>-reduced-<hash>/
# and are marked reduced (they are far from the paper's 400-epoch numbers).
#
#   bash benchmarks/reproduce_cpu.sh            # all of it
#   RESULTS=/tmp/results bash benchmarks/reproduce_cpu.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RESULTS="${RESULTS:-results}"

# 1. Table IV on real FashionMNIST: ResNet20, MgNet (3 levels), MGiaD c_K=16 with g_s = 4, 8, 16.
mgiad sweep table_IV --subset=10000 --epochs=4 --schedule=cosine --threads=1 --workers 2 --results-dir "$RESULTS"

# 2. CIFAR-10 counterpart: ResNet20, MgNet_{A,B} (3 levels), MGiaD c_K=16 with g_s = 4, 8.
mgiad sweep "$HERE/cifar10_3level.toml" --subset=10000 --epochs=3 --threads=1 --workers 2 --results-dir "$RESULTS"

# 3. Tables (printed, and report.md / report.csv) and figures (PNG + SVG) next to the records.
mgiad report table_IV --subset=10000 --epochs=4 --schedule=cosine --results-dir "$RESULTS"
mgiad plot table_IV --subset=10000 --epochs=4 --schedule=cosine --results-dir "$RESULTS"
mgiad report "$HERE/cifar10_3level.toml" --subset=10000 --epochs=3 --results-dir "$RESULTS"
mgiad plot "$HERE/cifar10_3level.toml" --subset=10000 --epochs=3 --results-dir "$RESULTS"
