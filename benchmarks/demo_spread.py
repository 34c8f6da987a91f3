"""How much `mgiad demo`'s accuracy depends on the thread count and the seed (issue 22, item 7).

Runs the demo once per (threads, seed) in its own process, exactly as `make demo` would (plus
`--threads=T --seed=S`), and prints one row per run with the final and best test accuracy, then
the spread. The accuracy depends on the thread count (float summation order) and the seed, not
on the machine's load, so the runs may share a core (`taskset -c 1 python benchmarks/...`):
only the minutes change.

    python benchmarks/demo_spread.py --threads 1,2 --seeds 0,1,2 \
        --out results/demo/spread-$(date +%F).txt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(threads: int, seed: int, out_dir: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "mgiad", "demo", f"--threads={threads}", f"--seed={seed}",
           "--out-dir", str(out_dir), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"threads": threads, "seed": seed, "final": 100 * summary["final_test_acc"],
            "best": 100 * summary["best_test_acc"], "best_epoch": summary["best_epoch"],
            "train_wall_s": summary["wall_time_s"], "process_s": time.perf_counter() - t0,
            "hardware": summary["hardware"], "load_1m_after": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("extra", nargs="*", help="further `mgiad demo` arguments (after --)")
    args = ap.parse_args()
    rows = []
    lines = [f"# {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}",
             f"# started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load {os.getloadavg()[0]:.2f}",
             f"{'threads':>7} {'seed':>4} {'final %':>8} {'best %':>7} {'best ep':>7} {'train min':>9} {'load':>5}"]
    print("\n".join(lines), flush=True)
    for threads in (int(t) for t in args.threads.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                r = run_demo(threads, seed, Path(tmp), args.extra)
            rows.append(r)
            line = (f"{threads:>7} {seed:>4} {r['final']:>8.2f} {r['best']:>7.2f} {r['best_epoch']:>7} "
                    f"{r['train_wall_s'] / 60:>9.1f} {r['load_1m_after']:>5.2f}")
            lines.append(line)
            print(line, flush=True)
    finals = [r["final"] for r in rows]
    mid = (max(finals) + min(finals)) / 2
    lines += [f"machine: {rows[0]['hardware'].split(' (')[0]}",
              f"final accuracy: min {min(finals):.2f}%, max {max(finals):.2f}%, mean "
              f"{sum(finals) / len(finals):.2f}%, spread {max(finals) - min(finals):.2f} points "
              f"(±{(max(finals) - min(finals)) / 2:.2f} around {mid:.2f}%)"]
    print("\n".join(lines[-2:]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
