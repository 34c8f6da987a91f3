"""``mgiad.train(model_or_name, train_data, test_data=None, **recipe)``: the library's training
API on tensors, a TensorDataset, a map-style Dataset and a DataLoader; the command's loop
underneath (same weights as ``mgiad.training.train`` on the same data, resume, NaN guard); its
checks; and ``mgiad.train`` as both the function and the old module path.

Tiny data (64 images 8x8) and a ResNet20 of widths 4, 8, 16 (17k weights): each run is a
fraction of a second.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import mgiad
from mgiad.data.spec import ImageData
from mgiad.training.checkpoint import load_checkpoint
from mgiad.training.config import RunConfig
from mgiad.training.interrupts import TrainingDiverged

TINY = {"widths": (4, 8, 16)}


def fast(tmp_path, **kw):
    """The recipe of these tests: one epoch, batch 16, one thread, no TensorBoard."""
    return {"epochs": 1, "batch_size": 16, "threads": 1, "tensorboard": False,
            "out_dir": str(tmp_path), **kw}


@pytest.fixture(scope="module")
def tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """64 float images (3x8x8) of 4 classes; class c brightens channel c % 3."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 4
    x = torch.rand(64, 3, 8, 8, generator=g)
    x[torch.arange(64), y % 3] += 1.0
    return x, y


class Pairs(Dataset):
    """A map-style Dataset of (image tensor, int label), as a user writes one."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, noise: bool = False) -> None:
        self.x, self.y, self.noise = x, y, noise

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = self.x[i] + (torch.rand_like(self.x[i]) if self.noise else 0)
        return x, int(self.y[i])


def test_tensors_give_a_result_with_model_history_summary_and_run_dir(tensors, tmp_path, capsys) -> None:
    x, y = tensors
    result = mgiad.train("resnet20", (x, y), (x[:32], y[:32]), **fast(tmp_path, epochs=2),
                         **TINY)
    assert isinstance(result.model, nn.Module) and not result.model.training
    assert result.model.get_classifier().out_features == 4  # num_classes from the labels, and said so
    assert "4 classes (inferred from the labels 0..3" in capsys.readouterr().err
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.summary["status"] == "completed" and result.summary["epochs_done"] == 2
    assert result.summary["final_test_acc"] == result.history[-1]["test_acc"] is not None
    assert {"config.json", "metrics.jsonl", "last.safetensors", "summary.json"} <= {
        p.name for p in result.run_dir.iterdir()}
    assert result.run_dir.name.startswith("resnet20-user-tensors-s0-")
    # the returned model is the checkpoint's (the last epoch's) weights
    ckpt = load_checkpoint(result.run_dir)
    state = result.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ckpt.model_state.items())
    assert ckpt.header["num_classes"] == 4 and ckpt.header["in_chans"] == 3


def test_the_same_weights_as_the_commands_loop_on_imagedata(tmp_path) -> None:
    """uint8 tensors become ImageData: mgiad.train is the loop, bit for bit, augmentation and all."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 8, 8, 3), dtype=torch.uint8, generator=g)
    y = torch.arange(64) % 4
    api = mgiad.train("resnet20", (x, y), **fast(tmp_path / "a", augment="crop-flip"), **TINY)
    data = ImageData(name="user:tensors", x_train=x, y_train=y, x_test=None, y_test=None,
                     classes=[str(i) for i in range(4)])
    cfg = RunConfig(model="resnet20", model_kwargs=dict(TINY), dataset="user:tensors",
                    augment="crop-flip", **fast(tmp_path / "b"))
    loop = mgiad.training.train(cfg, data=data)
    theirs = load_checkpoint(loop["run_dir"]).model_state
    ours = api.model.state_dict()
    assert set(theirs) == set(ours) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_tensordataset_and_a_map_style_dataset(tensors, tmp_path) -> None:
    x, y = tensors
    a = mgiad.train("resnet20", TensorDataset(x, y), TensorDataset(x[:16], y[:16]),
                    **fast(tmp_path / "a"), **TINY)
    b = mgiad.train("resnet20", Pairs(x, y), Pairs(x[:16], y[:16]), **fast(tmp_path / "b"), **TINY)
    assert a.summary["status"] == b.summary["status"] == "completed"
    # the same images in the same order: the same run
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]


def test_a_dataloader_is_used_as_given(tensors, tmp_path) -> None:
    x, y = tensors
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    result = mgiad.train("resnet20", loader, DataLoader(TensorDataset(x[:16], y[:16]), batch_size=5),
                         **{k: v for k, v in fast(tmp_path).items() if k != "batch_size"}, **TINY)
    assert result.history[0]["steps"] == len(loader) == 8  # its batches, not batch_size 128
    assert json.loads((result.run_dir / "config.json").read_text())["batch_size"] == 8
    with pytest.raises(ValueError, match="batch_size=16 but the DataLoader's batch_size is 8: the "
                                         "DataLoader is used as given"):
        mgiad.train("resnet20", loader, **fast(tmp_path), **TINY)
    # a label beyond num_classes in a later batch is caught as it arrives, with the fix
    bad = y.clone()
    bad[-1] = 9
    with pytest.raises(ValueError, match="batch 7 has the label 9, but there are 4 classes"):
        mgiad.train("resnet20", DataLoader(Pairs(x, bad), batch_size=8), num_classes=4,
                    **{k: v for k, v in fast(tmp_path / "c").items() if k != "batch_size"}, **TINY)


def test_your_own_module_is_trained_in_place(tensors, tmp_path) -> None:
    x, y = tensors
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 4))
    before = net[0].weight.detach().clone()
    result = mgiad.train(net, (x, y), **fast(tmp_path))
    assert result.model is net and not torch.equal(before, net[0].weight)
    with pytest.raises(ValueError, match="the module fails on two training images of shape "
                                         r"\(2, 1, 8, 8\).*check its in_chans \(1 channels here\)"):
        mgiad.train(net, (x[:, :1], y), **fast(tmp_path))
    with pytest.raises(ValueError, match="the module has 4 outputs but there are 6 classes"):
        mgiad.train(net, (x, y), num_classes=6, **fast(tmp_path))
    with pytest.raises(ValueError, match="hyper-parameters are the module's own"):
        mgiad.train(net, (x, y), model_kwargs={"widths": (4, 8, 16)}, **fast(tmp_path))


def test_resume_continues_bit_for_bit(tensors, tmp_path) -> None:
    x, y = tensors
    full = mgiad.train("resnet20", (x, y), **fast(tmp_path / "a", epochs=2), **TINY)
    part = mgiad.train("resnet20", (x, y), **fast(tmp_path / "b", epochs=2, time_budget_s=1e-3), **TINY)
    assert part.summary["status"] == "time_budget" and len(part.history) == 1
    done = mgiad.train("resnet20", (x, y), resume=part.run_dir, **fast(tmp_path / "b", epochs=2),
                       **TINY)
    assert done.summary["status"] == "completed" and len(done.history) == 2
    a, b = full.model.state_dict(), done.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_loss_stops_the_run(tensors, tmp_path) -> None:
    class Nan(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 4)

        def forward(self, x):
            return self.fc(x.flatten(1)) * float("nan")

    with pytest.raises(TrainingDiverged, match="loss became NaN/inf at epoch 1, step 1"):
        mgiad.train(Nan(), tensors, **fast(tmp_path))


BAD = [
    ((torch.zeros(8, 3, 8, 8, dtype=torch.int64), torch.zeros(8, dtype=torch.int64)),
     "images of dtype torch.int64; images must be uint8 .* x.float()"),
    ((torch.zeros(8, 8, 8, 3), torch.zeros(8, dtype=torch.int64)),
     r"look channels-last; torch models take \(N, C, H, W\): x.permute\(0, 3, 1, 2\)"),
    ((torch.zeros(8, 3, 8, 8), torch.zeros(8)), "labels of dtype torch.float32; .* y.long()"),
    ((torch.zeros(8, 3, 8, 8), torch.zeros(8, 4, dtype=torch.int64)), r"one-hot .* y.argmax\(1\)"),
    ((torch.zeros(8, 3, 8, 8), -torch.ones(8, dtype=torch.int64)), "the negative label -1"),
    ((torch.zeros(8, 3, 8, 8), torch.zeros(7, dtype=torch.int64)), "8 images but 7 labels"),
    ((torch.full((8, 3, 8, 8), float("nan")), torch.zeros(8, dtype=torch.int64)), "NaN or inf"),
    ((torch.zeros(8, 3, 8, 8), torch.zeros(8, dtype=torch.int64)), "only 1 class"),
    ("cifar10", "expected a torch Dataset, a DataLoader or an \\(x, y\\) pair of tensors, got str"),
]


@pytest.mark.parametrize("data,message", BAD, ids=range(len(BAD)))
def test_bad_data_is_named_with_its_fix(data, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        mgiad.train("resnet20", data, **fast(tmp_path), **TINY)
    assert not any(tmp_path.iterdir())  # refused before a run directory is made


def test_labels_beyond_num_classes_and_random_transforms(tensors, tmp_path) -> None:
    x, y = tensors
    with pytest.raises(ValueError, match="the label 3 but 2 classes .* pass num_classes=4"):
        mgiad.train("resnet20", (x, y), num_classes=2, **fast(tmp_path), **TINY)
    with pytest.raises(ValueError, match=r"Pairs\[0\] differs between two reads .* DataLoader"):
        mgiad.train("resnet20", Pairs(x, y, noise=True), **fast(tmp_path), **TINY)
    with pytest.raises(ValueError, match="test_data images have 1 channels, train_data images 3"):
        mgiad.train("resnet20", (x, y), (x[:, :1], y), **fast(tmp_path), **TINY)


def test_the_recipe_is_checked_as_the_command_checks_it(tensors, tmp_path) -> None:
    x, y = tensors
    with pytest.raises(ValueError, match=r"unknown keyword lr_max=0.1 of mgiad.train; the recipe "
                                         r"keywords are model_kwargs, epochs, batch_size, lr, .*; or a "
                                         r"hyper-parameter of resnet20: "):
        mgiad.train("resnet20", (x, y), lr_max=0.1)
    with pytest.raises(ValueError, match=r"lr=-1.0 is not allowed: lr must be a finite number > 0"):
        mgiad.train("resnet20", (x, y), lr=-1)
    with pytest.raises(ValueError, match="epochs='3' has the wrong type"):
        mgiad.train("resnet20", (x, y), epochs="3")
    with pytest.raises(ValueError, match="dataset=: not a keyword of mgiad.train"):
        mgiad.train("resnet20", (x, y), dataset="cifar10")
    with pytest.raises(ValueError, match="augment='authors' is a per-data-set recipe"):
        mgiad.train("resnet20", (x, y), augment="authors")
    with pytest.raises(ValueError, match="augment='autoaugment-cifar10' needs uint8 images"):
        mgiad.train("resnet20", (x, y), augment="autoaugment-cifar10", **fast(tmp_path))
    with pytest.raises(ValueError, match="model='resnet2' is not a registered model; did you mean"):
        mgiad.train("resnet2", (x, y))
    with pytest.raises(ValueError, match="resnet20 has no hyper-parameter 'c_K'"):
        mgiad.train("resnet20", (x, y), model_kwargs={"c_K": 8})
    assert not any(tmp_path.iterdir())


def test_mgiad_train_is_the_function_and_the_old_module_path() -> None:
    from mgiad.training.api import train as api_train
    from mgiad.training.loop import train as loop_train

    assert callable(mgiad.train) and sys.modules["mgiad.train"] is mgiad.train
    assert inspect.signature(mgiad.train) == inspect.signature(api_train)
    import mgiad.train as old  # the import machinery sets the package attribute: the same object

    assert old is mgiad.train and callable(mgiad.train)
    with pytest.warns(FutureWarning, match="mgiad.training.loop"):
        from mgiad.train import train as old_train
    assert old_train is loop_train  # old code keeps the function it imported
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mgiad.train is mgiad.__dict__["train"]  # no warning for the new use


def test_import_mgiad_train_loads_no_torch() -> None:
    code = ("import sys, mgiad, mgiad.train; assert callable(mgiad.train); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
