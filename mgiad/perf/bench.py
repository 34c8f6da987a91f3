"""``mgiad bench``: speed and memory of models measured side by side in one process.

Timings on a shared machine are noisy, so models are measured in interleaved rounds
(A B C A B C ...) and each figure is the median over rounds; ratios to a named baseline
are computed from figures taken in the same run. Peak memory is measured in a fresh
subprocess per model (see ``_peak_memory_child``) so that one model's allocations cannot
hide another's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgiad.models.counting import count_flops, count_weights
from mgiad.models.registry import create_model
from mgiad.training.values import parse_literal

from .targets import DEFAULT_BASELINES, DEFAULT_MODELS  # noqa: F401  (defined without torch)


@dataclass
class BenchResult:
    name: str
    kwargs: dict[str, Any]
    weights: int
    gflops: float
    train_img_s: float = 0.0
    infer_img_s: float = 0.0
    peak_mem_mb: float = 0.0
    train_rounds: list[float] = field(default_factory=list)
    infer_rounds: list[float] = field(default_factory=list)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name[:key=value,key=value]`` → (name, kwargs), e.g. ``mgiad:c_K=16,g_s=4``."""
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, _split_top_level(rest)):
        if "=" not in item:
            raise ValueError(f"bad model spec {spec!r}: expected name:key=value,key=value")
        k, v = item.split("=", 1)
        kwargs[k] = parse_literal(v)
    return name, kwargs


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, so that ``widths=(8,16,32),c_K=4`` is two items."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _setup(spec: str, device: torch.device, channels_last: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    name, kwargs = parse_spec(spec)
    model = create_model(name, **kwargs).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    return model, opt


def _batch(model: nn.Module, batch: int, size: int, device: torch.device, channels_last: bool):
    x = torch.randn(batch, model.in_chans, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    return x, y


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model, opt, x, y, device, precision) -> None:
    with _autocast(device, precision):
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _time(fn, steps: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def bench(
    specs: list[str],
    *,
    batch: int = 128,
    image_size: int = 32,
    steps: int = 5,
    rounds: int = 5,
    warmup: int = 2,
    device: str = "auto",
    precision: str = "fp32",
    channels_last: bool = True,
    memory: bool = True,
) -> list[BenchResult]:
    """Measure every model in ``specs`` in interleaved rounds; see the module docstring."""
    dev = _device(device)
    models = []
    results = []
    for spec in specs:
        model, opt = _setup(spec, dev, channels_last)
        x, y = _batch(model, batch, image_size, dev, channels_last)
        name, kwargs = parse_spec(spec)
        results.append(BenchResult(spec, kwargs, count_weights(model).total,
                                   count_flops(create_model(name, **kwargs), image_size) / 1e9))
        models.append((model, opt, x, y))
        for _ in range(warmup):
            train_step(model, opt, x, y, dev, precision)
            with torch.no_grad(), _autocast(dev, precision):
                model.eval()
                model(x)
                model.train()
    for _ in range(rounds):
        for (model, opt, x, y), res in zip(models, results):
            model.train()
            t = _time(partial(train_step, model, opt, x, y, dev, precision), steps, dev)
            res.train_rounds.append(steps * batch / t)
            model.eval()
            with torch.no_grad(), _autocast(dev, precision):
                t = _time(partial(model, x), steps, dev)
            res.infer_rounds.append(steps * batch / t)
    for res in results:
        res.train_img_s = statistics.median(res.train_rounds)
        res.infer_img_s = statistics.median(res.infer_rounds)
        if memory:
            res.peak_mem_mb = peak_memory(res.name, batch=batch, image_size=image_size, device=str(dev),
                                          precision=precision, channels_last=channels_last)
    return results


def peak_memory(spec: str, *, batch: int, image_size: int, device: str, precision: str,
                channels_last: bool) -> float:
    """Peak training memory (MB) of ``spec``, measured in a fresh subprocess."""
    args = json.dumps({"spec": spec, "batch": batch, "image_size": image_size, "device": device,
                       "precision": precision, "channels_last": channels_last})
    out = subprocess.run([sys.executable, "-m", "mgiad.perf.bench", args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement of {spec} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def _peak_memory_child(args: dict[str, Any]) -> float:
    """Peak memory (MB) of one training step, weights, gradients and optimizer state included.

    CUDA: the caching allocator's peak. CPU, which keeps no such statistic: the peak of the
    bytes PyTorch's CPU allocator holds during the step, from the profiler's memory events
    (activations kept for backward, recomputed ones, gradients, temporaries), plus the weights
    and momentum that exist before it. A process's RSS would add the allocator's caching and
    the interpreter, which no model decides.
    """
    dev = torch.device(args["device"])
    model, opt = _setup(args["spec"], dev, args["channels_last"])
    x, y = _batch(model, args["batch"], args["image_size"], dev, args["channels_last"])
    train_step(model, opt, x, y, dev, args["precision"])  # creates gradients and momentum
    opt.zero_grad(set_to_none=True)  # the step allocates its gradients anew, inside the window
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, opt, x, y, dev, args["precision"])
        return torch.cuda.max_memory_allocated() / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_step(model, opt, x, y, dev, args["precision"])
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    held = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    state = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers(), x])
    state += sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                 if isinstance(v, torch.Tensor))
    return (max(held, default=0) + state) / 2**20


def machine(device: str = "auto") -> str:
    """The hardware the figures came from (``train.hardware_string``) and the torch version."""
    from mgiad.training.machine import hardware_string

    return f"{hardware_string(_device(device))}, torch {torch.__version__}"


def fast_paths() -> str:
    """Which fast paths the multigrid networks ran; the baselines run stock PyTorch modules."""
    from mgiad.nn import bnrelu
    from mgiad.ops import native

    isa = native.status()["isa"]
    kernels = f"native {isa} kernels" if isa else "no native kernels (built-in convolution)"
    fused = "fused BatchNorm+ReLU" if isa and bnrelu.enabled() else "PyTorch's BatchNorm"
    return (f"MGiaD/MgNet: {kernels}, {fused}; ResNet and MGIC baselines: stock PyTorch modules "
            f"(no mgiad fast path)")


def check_specs(specs: list[str]) -> None:
    """Every ``name[:key=value,...]`` names a registered model that builds with its keys (built
    on the meta device: no memory, a few ms), so that a typo fails before minutes of measuring."""
    for spec in specs:
        name, kwargs = parse_spec(spec)
        try:
            with torch.device("meta"):
                create_model(name, **kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model {spec!r}: {e}") from None


def check_baselines(specs: list[str], baselines: list[str] | None) -> None:
    """Every baseline must be one of the measured models."""
    for b in baselines or []:
        if b not in specs:
            raise ValueError(f"baseline {b!r} is not one of the measured models {specs}; "
                             f"list it among the models too")


def baselines_for(results: list[BenchResult], baselines: list[str] | None) -> list[BenchResult]:
    """The baseline of each result: the nearest of ``baselines`` listed at or before it.

    ``--baseline resnet18 --baseline resnet20`` with models ``resnet18 mgiad resnet20
    mgiad_3lvl`` compares mgiad with ResNet18 and the 3-level MGiaD with ResNet20.
    """
    names = [r.name for r in results]
    check_baselines(names, baselines)
    chosen = [r for r in results if r.name in (baselines or [names[0]])]
    out, current = [], chosen[0]
    for r in results:
        current = r if r in chosen else current
        out.append(current)
    return out


def flop_ratio(r: BenchResult, b: BenchResult) -> float:
    """The baseline's forward FLOPs over the model's: the speed-up equal per-FLOP efficiency
    would give (issue 10: 'the achieved fraction of it' = speed ratio / this)."""
    return b.gflops / r.gflops if r.gflops else float("nan")


def format_table(results: list[BenchResult], baselines: list[str] | None = None) -> str:
    """One row per model; × = ratio to its baseline (``vs``); FLOP× = the baseline's FLOPs over the
    model's; %FLOP = the training and inference speed ratios as a percentage of FLOP×."""
    bases = baselines_for(results, baselines)
    lines = [f"{'model':<42} {'weights':>11} {'GFLOPs':>7} {'train img/s':>11} {'×':>5} "
             f"{'infer img/s':>11} {'×':>5} {'peak MB':>8} {'×':>5} {'FLOP×':>6} "
             f"{'%FLOP train/infer':>17}  vs"]
    for r, b in zip(results, bases):
        mem_ratio = f"{r.peak_mem_mb / b.peak_mem_mb:5.2f}" if b.peak_mem_mb else "    -"
        train, infer, flops = r.train_img_s / b.train_img_s, r.infer_img_s / b.infer_img_s, flop_ratio(r, b)
        lines.append(
            f"{r.name:<42} {r.weights:>11,} {r.gflops:>7.3f} {r.train_img_s:>11.1f} "
            f"{train:>5.2f} {r.infer_img_s:>11.1f} {infer:>5.2f} {r.peak_mem_mb:>8.0f} {mem_ratio} "
            f"{flops:>6.2f} {f'{100 * train / flops:.0f}% / {100 * infer / flops:.0f}%':>17}  {b.name}"
        )
    return "\n".join(lines)


def to_json(results: list[BenchResult], settings: dict[str, Any], baselines: list[str] | None = None) -> str:
    rows = []
    for r, b in zip(results, baselines_for(results, baselines)):
        row = asdict(r)
        row["baseline"] = b.name
        row["train_ratio"] = r.train_img_s / b.train_img_s
        row["infer_ratio"] = r.infer_img_s / b.infer_img_s
        row["memory_ratio"] = r.peak_mem_mb / b.peak_mem_mb if b.peak_mem_mb else None
        row["flop_ratio"] = flop_ratio(r, b)
        row["train_flop_fraction"] = row["train_ratio"] / row["flop_ratio"]
        row["infer_flop_fraction"] = row["infer_ratio"] / row["flop_ratio"]
        rows.append(row)
    return json.dumps({"machine": machine(settings.get("device", "auto")), "settings": settings,
                       "fast_paths": fast_paths(), "results": rows}, indent=2)



if __name__ == "__main__":  # child process of peak_memory()
    print(_peak_memory_child(json.loads(sys.argv[1])))
