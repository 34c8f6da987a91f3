"""Whole training steps and inference with the native kernels on and off, in one process.

    python benchmarks/native_models.py > results/performance/native-models-CPU.txt
    python benchmarks/native_models.py --profile mgiad:c_K=16,g_s=4   # operators of a step
    python benchmarks/native_models.py --switch fused_bn   # only the fused BatchNorm + ReLU

For each model (fp32, channels_last, batch 128, 32×32): a training step (forward, backward, SGD)
and an inference forward, with ``MGIAD_NATIVE`` unset (native kernels) and ``=0`` (built-in
convolutions, BatchNorm and ReLU) — or, with ``--switch fused_bn``, the native convolutions in
both and ``MGIAD_FUSED_BN`` unset and ``=0`` (the fused BatchNorm + ReLU against the built-in
ones) — switched per measurement in interleaved rounds (on off on off ...), so the ratio
holds on a machine that others use too; each figure is the median over rounds, and the fastest
round beside it (on a shared machine the least disturbed one). ``mgiad bench`` gives the same
models' ratios to ResNet18/20, one process per setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from mgiad.nn import bnrelu
from mgiad.ops import native
from mgiad.perf.allocator import keep_freed_memory
from mgiad.perf.bench import _batch, _setup, train_step

sys.path.insert(0, os.path.dirname(__file__))
from native_kernels import cpu_model, load_average  # noqa: E402

MODELS = ["mgiad", "mgiad:c_K=16,g_s=4", "mgiad_3lvl"]


def _native(on: bool, switch: str = "native") -> None:
    """Turn the fast paths of ``switch`` on or off: ``native`` all of them, ``fused_bn`` the fused
    BatchNorm + ReLU only (the native convolutions stay on)."""
    env = native.ENV if switch == "native" else bnrelu.ENV
    for name in (native.ENV, bnrelu.ENV):
        os.environ.pop(name, None)
    if not on:
        os.environ[env] = "0"
    native._reset()
    assert (native.kernels() is not None) == (on or switch != "native"), native.status()
    assert bnrelu.enabled() == (on or switch != "fused_bn")


def profile_step(spec: str, steps: int, batch: int) -> None:
    """The operators of a training step with the native kernels, by profiler self time."""
    from torch.profiler import ProfilerActivity, profile

    dev = torch.device("cpu")
    model, opt = _setup(spec, dev, True)
    x, y = _batch(model, batch, 32, dev, True)
    for _ in range(2):
        train_step(model, opt, x, y, dev, "fp32")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(model, opt, x, y, dev, "fp32")
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"# {spec}: {total / steps / 1e3:.0f} ms per step (profiler self time, mean of {steps})")
    for e in events[:16]:
        print(f"{e.key[:52]:<52} {e.self_cpu_time_total / steps / 1e3:8.1f} ms "
              f"{100 * e.self_cpu_time_total / total:5.1f} %  {e.count // steps:>4} calls")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--profile", metavar="MODEL", help="only profile a training step of MODEL")
    ap.add_argument("--switch", choices=("native", "fused_bn"), default="native",
                    help="what is switched on and off (default: every native kernel)")
    args = ap.parse_args()
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        _native(True)
        print(f"# {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; native "
              f"build {native.status()['isa']}; batch {args.batch}; load average {load_average()}")
        profile_step(args.profile, args.steps, args.batch)
        return
    dev = torch.device("cpu")
    _native(True)
    isa = native.status()["isa"]
    print(f"# {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; native "
          f"build {isa}; batch {args.batch}, 32x32, fp32, channels_last; median of {args.rounds} "
          f"interleaved rounds of {args.steps} steps")
    print(f"# command: python benchmarks/native_models.py {' '.join(sys.argv[1:])}")
    print(f"# load average before: {load_average()}")
    if args.switch == "fused_bn":
        print("# on: native convolutions and fused BatchNorm + ReLU; off (built-in): MGIAD_FUSED_BN=0")
    print(f"{'model':<24} {'train ms/step':>14} {'(built-in)':>11} {'×':>5} "
          f"{'infer ms/batch':>15} {'(built-in)':>11} {'×':>5}   fastest round: train × infer ×")
    for spec in args.models:
        model, opt = _setup(spec, dev, True)
        x, y = _batch(model, args.batch, 32, dev, True)
        times: dict[tuple[bool, str], list[float]] = {}
        for on in (True, False):  # warm-up
            _native(on, args.switch)
            train_step(model, opt, x, y, dev, "fp32")
        for _ in range(args.rounds):
            for on in (True, False):
                _native(on, args.switch)
                model.train()
                t = time.perf_counter()
                for _ in range(args.steps):
                    train_step(model, opt, x, y, dev, "fp32")
                times.setdefault((on, "train"), []).append((time.perf_counter() - t) / args.steps * 1e3)
                model.eval()
                with torch.no_grad():
                    t = time.perf_counter()
                    for _ in range(args.steps):
                        model(x)
                times.setdefault((on, "infer"), []).append((time.perf_counter() - t) / args.steps * 1e3)
        m = {k: statistics.median(v) for k, v in times.items()}
        b = {k: min(v) for k, v in times.items()}
        print(f"{spec:<24} {m[(True, 'train')]:>14.0f} {m[(False, 'train')]:>11.0f} "
              f"{m[(False, 'train')] / m[(True, 'train')]:>5.2f} {m[(True, 'infer')]:>15.0f} "
              f"{m[(False, 'infer')]:>11.0f} {m[(False, 'infer')] / m[(True, 'infer')]:>5.2f}   "
              f"{b[(True, 'train')]:.0f}/{b[(False, 'train')]:.0f} "
              f"{b[(False, 'train')] / b[(True, 'train')]:.2f}  {b[(True, 'infer')]:.0f}/"
              f"{b[(False, 'infer')]:.0f} {b[(False, 'infer')] / b[(True, 'infer')]:.2f}", flush=True)
    _native(True)
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
