"""Inference in ONNX Runtime (CPU) against PyTorch eager, the same models side by side in one run.

    taskset -c 0 python benchmarks/onnx_runtime.py --threads 1 \\
        --out results/performance/onnx-runtime-<cpu>-1thread

Each model is exported with the package's own path (:func:`mgiad.models.export.export_model`, the
dynamo exporter; the file is loaded back in onnxruntime and checked against the model's logits
before it is kept) into a temporary folder, then timed at each ``--batch`` in

- ``eager``: PyTorch, as ``mgiad bench`` measures inference: the model in eval mode, weights and
  input channels_last, ``torch.no_grad()``, the package's fast paths (native grouped-convolution,
  fused BatchNorm+ReLU and pooling kernels) on for the multigrid networks, stock torchvision-style
  modules for the ResNets, ``torch.set_num_threads(--threads)``;
- ``ort``: ONNX Runtime's ``CPUExecutionProvider`` with ``intra_op_num_threads=--threads``,
  ``inter_op_num_threads=1``, sequential execution, ``ORT_ENABLE_ALL`` graph optimizations, the
  input a contiguous NCHW float32 array (the layout the exported graph takes).

Every model, runtime and batch is measured once per round, in interleaved rounds (model by model,
eager and ORT next to each other, their order swapped every round); a measurement is
``steps`` calls (chosen in the warm-up so that it lasts at least ``--min-time`` seconds), and the
figure is the median over rounds of the time per image. Ratios (baseline time / model time per
image: ``mgiad bench``'s inference ratio) are taken from figures of the same run: each MGiaD
against the nearest baseline listed before it (ResNet18, ResNet20).

After the timing, one profiled ORT call per model and batch 128 splits ORT's time by operator
kind (grouped and dense convolutions told apart by the optimized graph's ``group`` attribute),
and the eager and ORT logits of that batch are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from mgiad.models.export import export_model
from mgiad.models.registry import create_model
from mgiad.perf.allocator import keep_freed_memory
from mgiad.perf.bench import baselines_for, fast_paths, parse_spec

MODELS = ["resnet18", "mgiad:c_K=16,g_s=4", "mgiad", "resnet20", "mgiad_3lvl"]
BASELINES = ["resnet18", "resnet20"]
RUNTIMES = ("eager", "ort")


def cpu_info() -> dict[str, str]:
    """lscpu's model name, family/model and whether the CPU has AVX-512 (and AMX)."""
    fields: dict[str, str] = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    flags = set(fields.get("Flags", "").split())
    return {"model_name": fields.get("Model name", platform.processor()),
            "family": fields.get("CPU family", "?"), "model": fields.get("Model", "?"),
            "avx512": "yes" if "avx512f" in flags else "no",
            "amx": "yes" if "amx_tile" in flags else "no",
            "cpus": fields.get("CPU(s)", str(os.cpu_count())),
            "affinity": ",".join(map(str, sorted(os.sched_getaffinity(0))))}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uptime unavailable"


def build(spec: str, num_classes: int = 10, size: int = 32) -> tuple[torch.nn.Module, dict[str, Any]]:
    name, kwargs = parse_spec(spec)
    model = create_model(name, num_classes=num_classes, **kwargs).eval()
    config = {"model": name, "model_kwargs": kwargs, "num_classes": num_classes,
              "in_chans": model.in_chans, "input_size": size}
    return model, config


def ort_session(path: Path, threads: int, profile_prefix: str | None = None,
                optimized_path: Path | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Pair:
    """One model in both runtimes: ``run(runtime, batch)`` makes one inference call."""

    def __init__(self, spec: str, model: torch.nn.Module, config: dict[str, Any], onnx_path: Path,
                 threads: int, batches: list[int], seed: int = 0):
        self.spec, self.config = spec, config
        self.model = model.to(memory_format=torch.channels_last).eval()  # the exported weights
        self.onnx_path = onnx_path
        self.session = ort_session(onnx_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        g = torch.Generator().manual_seed(seed)
        shape = (self.config["in_chans"], self.config["input_size"], self.config["input_size"])
        self.x = {}
        for b in batches:
            x = torch.randn(b, *shape, generator=g)
            self.x[b] = (x.contiguous(memory_format=torch.channels_last), x.numpy().copy())

    def run(self, runtime: str, batch: int):
        if runtime == "eager":
            with torch.no_grad():  # as mgiad.perf.bench.bench times inference (fp32: no autocast)
                return self.model(self.x[batch][0])
        return self.session.run(None, {self.input_name: self.x[batch][1]})[0]

    def max_diff(self, batch: int) -> float:
        eager = self.run("eager", batch).float()
        return (eager - torch.from_numpy(self.run("ort", batch))).abs().max().item()


def timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - t0


def profile_ort(pair: Pair, threads: int, batch: int, tmp: Path) -> dict[str, Any]:
    """One profiled ORT call: time per operator kind; Conv split by group (1, depthwise, grouped)."""
    import onnx

    optimized = tmp / f"opt-{abs(hash(pair.spec))}.onnx"
    session = ort_session(pair.onnx_path, threads, str(tmp / "prof"), optimized)
    x = {session.get_inputs()[0].name: pair.x[batch][1]}
    session.run(None, x)  # warm (the profile keeps every call; the last is read)
    session.run(None, x)
    trace = json.loads(Path(session.end_profiling()).read_text())
    graph = onnx.load(str(optimized)).graph
    kind = {}
    for node in graph.node:
        k = node.op_type
        if "Conv" in k:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            weight = next((init for init in graph.initializer if init.name == node.input[1]), None)
            cin_per_group = weight.dims[1] if weight is not None and len(weight.dims) > 1 else None
            k = f"{k} dense" if group == 1 else (f"{k} depthwise" if cin_per_group == 1 else f"{k} grouped")
        kind[node.name] = k
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last_start = runs[-1]["ts"] if runs else 0
    per_kind: dict[str, float] = defaultdict(float)
    counts: Counter[str] = Counter(kind.values())
    for e in trace:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last_start:
            node = e["name"][: -len("_kernel_time")]
            per_kind[kind.get(node, e.get("args", {}).get("op_name", "?"))] += e["dur"] / 1e3
    total = sum(per_kind.values())
    return {"batch": batch, "total_ms": total, "ms": dict(per_kind), "nodes": dict(counts)}


def median_ms_per_image(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads and ORT intra-op threads")
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--batch", type=int, nargs="+", default=[128, 1])
    p.add_argument("--models", nargs="+", default=MODELS, help="model specs as in mgiad bench")
    p.add_argument("--baseline", nargs="+", default=BASELINES)
    p.add_argument("--min-time", type=float, default=0.4,
                   help="seconds one measurement lasts at least (steps chosen in the warm-up)")
    p.add_argument("--no-profile", action="store_true", help="skip the ORT per-operator profile")
    p.add_argument("--out", help="write OUT.txt and OUT.json (e.g. results/performance/onnx-runtime-X)")
    args = p.parse_args(argv)
    baselines = [b for b in args.baseline if b in args.models]

    keep_freed_memory()  # as the mgiad command does before mgiad bench
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # not the warning that an optimized graph is CPU-specific
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    cpu = cpu_info()
    load_before = uptime()
    say(f"# ONNX Runtime vs PyTorch eager inference; python benchmarks/onnx_runtime.py "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}")
    say(f"# CPU: {cpu['model_name']} (family {cpu['family']} model {cpu['model']}; AVX-512 "
        f"{cpu['avx512']}, AMX {cpu['amx']}; {cpu['cpus']} CPUs, this process on {cpu['affinity']})")
    say(f"# threads: torch {torch.get_num_threads()}, ORT intra-op {args.threads} inter-op 1; "
        f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), onnxruntime "
        f"{ort.__version__}, python {platform.python_version()}")
    say(f"# eager: {fast_paths()}; eval, channels_last, no_grad")
    say("# ort: CPUExecutionProvider, ORT_ENABLE_ALL, sequential, NCHW float32 input")
    say(f"# load before: {load_before}")

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        pairs: list[Pair] = []
        exports: dict[str, dict[str, Any]] = {}
        for i, spec in enumerate(args.models):
            model, config = build(spec)
            t0 = time.perf_counter()
            exported = export_model(model, tmp / f"model{i}.onnx", "onnx", config)
            exports[spec] = {"seconds": time.perf_counter() - t0, "max_abs_diff": exported.max_abs_diff,
                             "tolerance": exported.tolerance,
                             "bytes": exported.path.stat().st_size}
            pairs.append(Pair(spec, model, config, exported.path, args.threads, args.batch))
            print(f"exported {spec} in {exports[spec]['seconds']:.1f} s (check: max |diff| "
                  f"{exported.max_abs_diff:.2g} <= {exported.tolerance:.2g})", file=sys.stderr, flush=True)

        # warm-up and steps per measurement
        steps: dict[tuple[str, str, int], int] = {}
        for pair in pairs:
            for b in args.batch:
                for rt in RUNTIMES:
                    pair.run(rt, b)
                    once = timed(lambda: pair.run(rt, b), 1)  # noqa: B023 (called at once)
                    steps[pair.spec, rt, b] = max(1, round(args.min_time / max(once, 1e-6) + 0.5))
        times: dict[tuple[str, str, int], list[float]] = defaultdict(list)  # seconds per image
        t_start = time.perf_counter()
        for r in range(args.rounds):
            order = RUNTIMES if r % 2 == 0 else RUNTIMES[::-1]
            for b in args.batch:
                for pair in pairs:
                    for rt in order:
                        n = steps[pair.spec, rt, b]
                        times[pair.spec, rt, b].append(timed(lambda: pair.run(rt, b), n) / (n * b))  # noqa: B023
            print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - t_start:.0f} s)",
                  file=sys.stderr, flush=True)
        load_after = uptime()

        class _R:  # baselines_for wants objects with .name
            def __init__(self, name: str):
                self.name = name

        bases = [b.name for b in baselines_for([_R(p.spec) for p in pairs], baselines)]
        rows = []
        for b in args.batch:
            say()
            say(f"batch {b}: median over {args.rounds} interleaved rounds, ms per image "
                f"(× = baseline's time / model's time in the same runtime)")
            say(f"{'model':<24} {'weights':>11} {'eager ms':>9} {'×':>5} {'ORT ms':>9} {'×':>5} "
                f"{'ORT/eager':>9}  vs          steps e/o")
            for pair, base in zip(pairs, bases):
                e = median_ms_per_image(times[pair.spec, "eager", b])
                o = median_ms_per_image(times[pair.spec, "ort", b])
                be = median_ms_per_image(times[base, "eager", b])
                bo = median_ms_per_image(times[base, "ort", b])
                weights = sum(t.numel() for t in pair.model.parameters())
                row = {"model": pair.spec, "batch": b, "weights": weights, "baseline": base,
                       "eager_ms_per_image": e, "ort_ms_per_image": o,
                       "eager_ratio": be / e, "ort_ratio": bo / o, "ort_over_eager": o / e,
                       "eager_rounds_ms": [t * 1e3 for t in times[pair.spec, "eager", b]],
                       "ort_rounds_ms": [t * 1e3 for t in times[pair.spec, "ort", b]],
                       "steps": {rt: steps[pair.spec, rt, b] for rt in RUNTIMES}}
                rows.append(row)
                say(f"{pair.spec:<24} {weights:>11,} {e:>9.3f} {be / e:>5.2f} {o:>9.3f} {bo / o:>5.2f} "
                    f"{o / e:>9.2f}  {base:<11} {row['steps']['eager']}/{row['steps']['ort']}")

        say()
        say(f"eager vs ORT logits (batch {max(args.batch)}, max |diff|); export check per model "
            f"(batches of 4 and 3, NCHW, built-in kernels)")
        diffs = {}
        for pair in pairs:
            diffs[pair.spec] = pair.max_diff(max(args.batch))
            ex = exports[pair.spec]
            say(f"  {pair.spec:<24} {diffs[pair.spec]:.2g}   export check {ex['max_abs_diff']:.2g} "
                f"<= {ex['tolerance']:.2g}, {ex['bytes'] / 1e6:.1f} MB, exported in {ex['seconds']:.0f} s")

        profiles = {}
        if not args.no_profile:
            pb = max(args.batch)
            say()
            say(f"ORT time by operator kind, one profiled call at batch {pb} (ms; share; nodes in "
                f"the optimized graph)")
            for pair in pairs:
                prof = profile_ort(pair, args.threads, pb, tmp)
                profiles[pair.spec] = prof
                parts = sorted(prof["ms"].items(), key=lambda kv: -kv[1])
                text = ", ".join(f"{k} {v:.0f} ({100 * v / prof['total_ms']:.0f}%, {prof['nodes'].get(k, 0)})"
                                 for k, v in parts if v >= 0.01 * prof["total_ms"])
                say(f"  {pair.spec:<24} {prof['total_ms']:.0f} ms: {text}")
    say()
    say(f"# load after: {load_after}")
    say(f"# measuring took {time.perf_counter() - t_start:.0f} s")

    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        out.with_suffix(".json").write_text(json.dumps({
            "command": f"python benchmarks/onnx_runtime.py {' '.join(sys.argv[1:])}",
            "cpu": cpu, "threads": args.threads, "torch": torch.__version__,
            "onnxruntime": ort.__version__, "fast_paths": fast_paths(), "load_before": load_before,
            "load_after": load_after, "rounds": args.rounds, "batches": args.batch,
            "results": rows, "logit_max_diff": diffs, "exports": exports, "ort_profile": profiles,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
