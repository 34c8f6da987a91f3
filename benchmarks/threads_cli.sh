#!/bin/bash
# `mgiad train` end to end, before and after the thread rule (mgiad/training/threads.py), interleaved,
# on the machine as found and with a `while 1: pass` process besides:
#   bash benchmarks/threads_cli.sh > results/threads/cli-before-after.txt
# before: torch's 2 threads with libgomp's default spinning waits (an empty OMP_WAIT_POLICY is
#         libgomp's default; it prints "Invalid value"); after: what `mgiad train` now does.
# Each run: mgiad_3lvl_fmnist, 1 epoch over 1,536 real FashionMNIST images (12 steps of 128).
set -u
PY=$(python -c 'import sys; print(sys.executable)')
OUT=$(mktemp -d)
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u '+%F %T') UTC"
run() {  # $1 label, $2 env option, $3 extra argument
  out=$(env $2 mgiad train $3 --dataset fashionmnist --model mgiad_3lvl_fmnist --epochs 1 \
        --subset_train=1536 --subset_test=500 --tensorboard=false --out_dir="$OUT" 2>&1 | cat)
  echo "$1 | $(echo "$out" | grep -o '[0-9]* img/s' | tail -1) | $(echo "$out" | grep -o 'threads: .*' | head -1)" \
       "| load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
for round in 1 2; do
  for cond in "as found" "+1 core busy"; do
    sp=""
    if [ "$cond" != "as found" ]; then "$PY" -c "while 1: pass" & sp=$!; sleep 1; fi
    run "round $round, $cond, before (2 threads, spinning waits)" OMP_WAIT_POLICY= --threads=2
    run "round $round, $cond, after (the rule)" "-u OMP_WAIT_POLICY" ""
    if [ -n "$sp" ]; then kill "$sp"; wait "$sp" 2>/dev/null; fi
  done
done
rm -rf "$OUT"
