"""Cold-start times of a fresh process: the native build, the first training step, ``--help``.

    python benchmarks/cold_start.py [--model mgiad:c_K=16,g_s=4] [--threads 1] [--repeats 3]

Each figure comes from a new interpreter. "cold": the native kernels are built from nothing (an
empty ``TORCH_EXTENSIONS_DIR``; both builds, AVX-512 and AVX2, where the CPU runs both); "cached":
the build found in that directory. The first training step (batch 128, 32×32, channels_last,
SGD) is timed apart from the second, so the cost of the first step (kernel decision, allocator
warm-up, oneDNN's primitive creation) is visible. Prints the CPU and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_STEP = r"""
import json, time
t0 = time.perf_counter()
import torch, mgiad
from mgiad.ops import native
from mgiad.perf.bench import parse_spec
torch.set_num_threads({threads})
t_import = time.perf_counter() - t0
t0 = time.perf_counter(); status = native.status(); t_native = time.perf_counter() - t0
name, kwargs = parse_spec({model!r})
model = mgiad.create_model(name, **kwargs).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (128,))
steps = []
for _ in range(2):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    steps.append(time.perf_counter() - t0)
print(json.dumps({{"import_s": t_import, "native_s": t_native, "isa": status["isa"],
                  "first_step_s": steps[0], "second_step_s": steps[1]}}))
"""


def _child(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mgiad:c_K=16,g_s=4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    from mgiad.ops import native
    from mgiad.training.machine import hardware_string

    print(f"# {hardware_string(torch.device('cpu'))}, torch {torch.__version__}; load average "
          f"{os.getloadavg()[0]:.2f} before; {args.threads} torch thread(s) per child")
    with tempfile.TemporaryDirectory() as ext:
        env = {**os.environ, "TORCH_EXTENSIONS_DIR": ext}
        env.pop("MGIAD_NATIVE", None)
        for isa in reversed(native.cpu_isas()):  # the widest first: the one `auto` uses
            t0 = time.perf_counter()
            got = _child("from mgiad.ops import native; import json; "
                         "print(json.dumps({'isa': native.status()['isa']}))", {**env, "MGIAD_NATIVE": isa})
            print(f"cold build of the {got['isa']} kernels (fresh process, import included): "
                  f"{time.perf_counter() - t0:.1f} s")
        code = _STEP.format(model=args.model, threads=args.threads)
        for i in range(args.repeats):
            got = _child(code, env)
            print(f"cached, run {i + 1}: import {got['import_s']:.2f} s, kernels ({got['isa']}) "
                  f"{got['native_s']:.2f} s, {args.model} first training step {got['first_step_s']:.2f} s, "
                  f"second {got['second_step_s']:.2f} s")
    for cmd in (["mgiad", "--help"], ["mgiad", "train", "--help"], [sys.executable, "-c", "import torch"]):
        times = sorted(_wall(cmd) for _ in range(args.repeats))
        print(f"{' '.join(cmd[-2:] if cmd[0] == sys.executable else cmd)}: "
              f"{times[0]:.2f}-{times[-1]:.2f} s wall over {args.repeats} runs")
    print(f"# load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
