"""Where one training step's time goes, by kind of operation (torch.profiler, CPU).

    python benchmarks/profile_step.py resnet18 mgiad mgiad:c_K=16,g_s=4 resnet20 mgiad_3lvl

Models are given as in ``mgiad bench``; SGD steps (mean of ``--steps``), batch 128, fp32, channels_last,
after two warm-up steps, with the allocator setting of the ``mgiad`` command. Convolutions
are split by their weight's shape: dense 3×3 (every input channel), grouped 3×3, 1×1
transfers, stride-2 depthwise (Π, R); the native kernels (``mgiad_native_*`` operators) by
what they compute.
"""

from __future__ import annotations

import argparse
import collections

import torch
from torch.profiler import ProfilerActivity, profile

ELEMENTWISE = {"aten::sub", "aten::add", "aten::add_", "aten::neg", "aten::clamp_min", "aten::clamp_min_",
               "aten::threshold_backward", "aten::relu", "aten::relu_", "aten::mul", "aten::addcmul_",
               "aten::addcmul", "aten::fill_", "aten::copy_", "aten::zero_"}


def conv_kind(weight_shape: list[int]) -> str:
    c_out, c_in_per_group, kh, _ = weight_shape
    if kh == 1:
        return "1x1 (MGiaD: P̂, R̂, Π̂; ResNet18: shortcuts)"
    if c_in_per_group == 1:
        return "depthwise stride-2 (Π, R)"
    stem = c_in_per_group in (1, 3)  # image channels
    return "3x3 grouped" if c_in_per_group < c_out // 2 and not stem else "3x3 dense"


#: native operator -> kind (mgiad/ops/native/*.cpp)
NATIVE_KINDS = {"forward": "native grouped 3x3 forward", "input_grad": "native grouped 3x3 backward",
                "weight_grad": "native grouped 3x3 backward", "bn_stats": "native BatchNorm+ReLU forward",
                "bn_relu_apply": "native BatchNorm+ReLU forward", "bn_relu_backward": "native BatchNorm+ReLU backward",
                "pool_forward": "native depthwise stride-2 (Π, R)", "pool_input_grad": "native depthwise stride-2 (Π, R)",
                "pool_weight_grad": "native depthwise stride-2 (Π, R)", "pair_sum": "native pair transfers (Π̂, R̂, P̂)",
                "pair_spread": "native pair transfers (Π̂, R̂, P̂)", "pair_dot": "native pair transfers (Π̂, R̂, P̂)"}


def native_kind(op: str) -> str:
    return NATIVE_KINDS.get(op, f"native {op}")


def profile_step(spec: str, batch: int, steps: int, inference: bool = False) -> tuple[dict[str, float], float]:
    from mgiad.perf.bench import _batch, _setup, train_step

    dev = torch.device("cpu")
    model, opt = _setup(spec, dev, True)
    x, y = _batch(model, batch, 32, dev, True)
    for _ in range(2):
        train_step(model, opt, x, y, dev, "fp32")
    def step() -> None:
        if inference:
            with torch.no_grad():
                model(x)
        else:
            train_step(model, opt, x, y, dev, "fp32")

    if inference:
        model.eval()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    kinds: dict[str, float] = collections.Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        ms = e.self_cpu_time_total / 1e3 / steps
        if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::convolution"):
            weight = e.input_shapes[2] if e.key == "aten::convolution_backward" else e.input_shapes[1]
            direction = "backward" if "backward" in e.key else "forward"
            kinds[f"conv {conv_kind(weight)} {direction}"] += ms
        elif e.key.startswith("mgiad_native_"):  # the native kernels (mgiad/ops/native/)
            kinds[native_kind(e.key.split("::")[-1])] += ms
        elif "batch_norm" in e.key:
            kinds["BatchNorm forward+backward"] += ms
        elif e.key in ELEMENTWISE or e.key.startswith("_PairProduct"):
            kinds["elementwise (ReLU, residuals, sums)"] += ms
        else:
            kinds["other (optimizer, autograd, allocation)"] += ms
    return dict(kinds), sum(kinds.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps, averaged")
    parser.add_argument("--inference", action="store_true", help="eval-mode forward passes instead")
    args = parser.parse_args()
    from mgiad.perf.allocator import keep_freed_memory
    from mgiad.perf.bench import machine

    keep_freed_memory()
    what = "inference forward (eval mode)" if args.inference else "training step"
    print(f"# {machine('cpu')}; {what}, mean of {args.steps}, batch {args.batch}, fp32, channels_last "
          "(profiler self time)")
    for spec in args.models:
        kinds, total = profile_step(spec, args.batch, args.steps, args.inference)
        print(f"\n## {spec}: {total:.0f} ms")
        for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"{kind:<44} {ms:8.1f} ms {ms / total * 100:5.1f} %")


if __name__ == "__main__":
    main()
