"""DistributedDataParallel on CPU (gloo): same global batches as one process, same result.

Two checks:

- exact sampling and gradients: a BatchNorm-free model, 2 processes vs 1, with the paper's
  CIFAR-10 augmentation (crop, flip, AutoAugment) and an uneven last batch; the parameters
  agree to float32 round-off (gradients are averaged in another summation order);
- the real entry point: ``torchrun --nproc-per-node 2 -m mgiad train`` with a BatchNorm
  model. Each process normalises with the statistics of its half-batch, so the runs are close,
  not equal; the test bounds the difference of the epoch losses.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import TINY_ARGS, subprocess_env, tiny_config, write_fake_fmnist

from mgiad.training.checkpoint import load_checkpoint
from mgiad.training.config import RunConfig
from mgiad.training.distributed import shard
from mgiad.training.loop import train

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")

WORKER = r"""
import sys
import torch
import torch.nn as nn
from mgiad.training.config import RunConfig
from mgiad.data.datasets import ImageData
from mgiad.models.registry import register_model
from mgiad.training.loop import train


class NoBN(nn.Module):
    def __init__(self, *, num_classes=10, in_chans=3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.net(x)


register_model("nobn_test", NoBN, "BatchNorm-free test network")
g = torch.Generator().manual_seed(0)
x = torch.randint(0, 256, (71, 32, 32, 3), dtype=torch.uint8, generator=g)  # last batch: 7 = 4 + 3
y = torch.randint(0, 10, (71,), generator=g)
data = ImageData(name="cifar10", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20],
                 classes=[str(i) for i in range(10)])
cfg = RunConfig(model="nobn_test", dataset="cifar10", epochs=2, batch_size=16, lr=0.1, threads=1,
                out_dir=sys.argv[1], tensorboard=False)
train(cfg, data=data)
"""


#: seconds a DDP process may take: its work is seconds, but on a loaded 2-core machine two
#: processes and their gloo rendezvous can wait minutes for a core (a 300 s limit timed out once)
DDP_TIMEOUT = 1200

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # only rank 0 created a run directory
    return runs[0]


def test_shards_cover_the_batch() -> None:
    for n in (1, 7, 16, 17):
        for world in (1, 2, 3):
            bounds = [shard(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert sizes == [len(t) for t in torch.tensor_split(torch.arange(n), world)]


def test_ddp_matches_single_process_without_bn(tmp_path) -> None:
    env = subprocess_env()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single")], env=env,
                            capture_output=True, text=True, timeout=DDP_TIMEOUT)
    assert single.returncode == 0, single.stderr
    port = str(_free_port())
    procs = []
    for rank in range(2):
        penv = dict(env, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                    MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "ddp")],
                                      env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    for p in procs:
        out, err = p.communicate(timeout=DDP_TIMEOUT)
        assert p.returncode == 0, err
    a = load_checkpoint(_single_run(tmp_path / "single"))
    b = load_checkpoint(_single_run(tmp_path / "ddp"))
    assert b.header["epoch"] == 2
    for name, ta in a.model_state.items():
        torch.testing.assert_close(b.model_state[name], ta, rtol=1e-4, atol=1e-5, msg=name)
    # same sampling streams consumed: the generators end in the same state
    assert torch.equal(a.rng["shuffle"], b.rng["shuffle"])
    assert torch.equal(a.rng["augment"], b.rng["augment"])
    rows = [json.loads(r) for r in (_single_run(tmp_path / "ddp") / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(r) for r in (_single_run(tmp_path / "single") / "metrics.jsonl").read_text().splitlines()]
    for r, s in zip(rows, ref):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-4)
        assert r["train_acc"] == s["train_acc"] and r["test_acc"] == s["test_acc"]


#: What libstdc++ prints when gloo's teardown destroys a thread that still runs (SIGABRT).
GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_cli_with_batchnorm(tmp_path) -> None:
    data_dir = write_fake_fmnist(tmp_path / "data")
    ref = train(tiny_config(data_dir, tmp_path / "single", epochs=2, run_name=None))
    def torchrun(out_dir: Path) -> subprocess.CompletedProcess[str]:
        cmd = ["torchrun", "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
               str(_free_port()), "-m", "mgiad", "train", f"--data_dir={data_dir}",
               "--dataset=fashionmnist", *TINY_ARGS, "--epochs=2", "--batch_size=32", "--threads=1",
               "--tensorboard=false", f"--out_dir={out_dir}"]
        return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=DDP_TIMEOUT)

    out_dir = tmp_path / "ddp"
    res = torchrun(out_dir)
    if res.returncode != 0 and GLOO_TEARDOWN_ABORT in res.stderr:
        # gloo's teardown race (mgiad/training/loop.py, train(): the barrier before
        # destroy_process_group made it rare; it came back once, in a full test run on a 2-core
        # CPU at load 3.5). One more try; a second abort, or any other failure, fails the test.
        print(f"torchrun: a process aborted in gloo's teardown; running once more:\n{res.stderr[-1500:]}")
        out_dir = tmp_path / "ddp-again"
        res = torchrun(out_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = _single_run(out_dir)
    assert json.loads((run_dir / "run.json").read_text())["world_size"] == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_done"] == 2
    cfg = RunConfig.from_file(run_dir / "config.json")
    assert cfg.batch_size == 32  # the global batch, split 16 + 16
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(r) for r in (Path(ref["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    # First epoch: same images, same init; only BN's half-batch statistics differ.
    assert rows[0]["train_loss"] == pytest.approx(ref_rows[0]["train_loss"], rel=0.05)
    # And it learns as a single process does.
    assert rows[-1]["train_loss"] == pytest.approx(ref_rows[-1]["train_loss"], rel=0.1)
    assert abs(summary["final_test_acc"] - ref["final_test_acc"]) < 0.15
