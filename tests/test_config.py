"""RunConfig: paper defaults, dataset defaults, overrides, files and error messages."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mgiad.training.config import RunConfig


def test_defaults_are_the_paper_recipe() -> None:
    cfg = RunConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (
        400, 128, 0.05, 0.9, 1e-4)
    assert cfg.resolved().schedule == "cosine"
    fm = RunConfig(dataset="fashionmnist").resolved()
    assert (fm.schedule, fm.step_size, fm.gamma) == ("step", 25, 0.1)
    # an alias resolves to its dataset's defaults
    assert RunConfig(dataset="fmnist").resolved().schedule == "step"


def test_user_settings_beat_dataset_defaults() -> None:
    cfg = RunConfig(dataset="fashionmnist", schedule="cosine").resolved()
    assert cfg.schedule == "cosine" and cfg.step_size is None
    cfg = RunConfig(dataset="fashionmnist", step_size=10).resolved()
    assert (cfg.schedule, cfg.step_size, cfg.gamma) == ("step", 10, 0.1)
    cfg = RunConfig(dataset="cifar10", schedule="step").resolved()
    assert (cfg.step_size, cfg.gamma) == (25, 0.1)


def test_cosine_schedule_matches_torch() -> None:
    cfg = RunConfig(epochs=20, lr=0.05)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0)
    for epoch in range(20):
        assert math.isclose(cfg.lr_at(epoch), opt.param_groups[0]["lr"], rel_tol=1e-9, abs_tol=1e-15)
        opt.step()
        sched.step()
    assert cfg.lr_at(0) == 0.05 and math.isclose(cfg.lr_at(10), 0.025)


def test_cosine_steps_schedule_matches_torch_stepped_per_step() -> None:
    cfg = RunConfig(epochs=3, lr=0.05, schedule="cosine-steps")
    steps = 7
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3 * steps, eta_min=0)
    for epoch in range(3):
        for step in range(steps):
            assert math.isclose(cfg.lr_at(epoch, step, steps), opt.param_groups[0]["lr"],
                                rel_tol=1e-9, abs_tol=1e-15)
            opt.step()
            sched.step()
    assert cfg.lr_per_step and not RunConfig(schedule="cosine").lr_per_step
    # at an epoch's first step both cosine schedules agree
    assert cfg.lr_at(1, 0, steps) == RunConfig(epochs=3, lr=0.05, schedule="cosine").lr_at(1)


def test_step_schedule() -> None:
    cfg = RunConfig(dataset="fashionmnist", lr=0.1, epochs=100)
    assert [cfg.lr_at(e) for e in (0, 24, 25, 49, 50)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_override_forms() -> None:
    cfg = RunConfig().with_overrides([
        "--lr=0.1", "--epochs", "3", "--download", "--batch-size=64", "--subset_train=none",
        "--model_kwargs.c_K=12", "--model_kwargs.widths=(8,16,32)", "--model_kwargs.lam=1.5",
        "--model_kwargs.transfer_norm=false", "--channels_last=false", "--time_budget_s=60",
    ])
    assert (cfg.lr, cfg.epochs, cfg.download, cfg.batch_size, cfg.subset_train) == (0.1, 3, True, 64, None)
    assert cfg.model_kwargs == {"c_K": 12, "widths": (8, 16, 32), "lam": 1.5, "transfer_norm": False}
    assert cfg.channels_last is False and cfg.time_budget_s == 60.0
    whole = RunConfig().with_overrides(['--model_kwargs={"g_s": 8}'])
    assert whole.model_kwargs == {"g_s": 8}
    # overrides return a new config; the original is untouched
    assert RunConfig().lr == 0.05


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        (["--lrr=0.1"], ["'lrr'", "did you mean lr"]),
        (["--c_k=16"], ["'c_k'", "did you mean c_K (a hyper-parameter of mgiad)?"]),
        (["--model=resnet20", "--c_K=16"], ["resnet20 has no hyper-parameter 'c_K'",
                                            "resnet20's hyper-parameters: blocks, maxpool, shortcut"]),
        (["--model_kwargs.c_k=16"], ["model_kwargs.c_k=16", "did you mean c_K?"]),
        (["--widths=abc"], ["widths", "'abc'", "list of positive integers"]),
        (["--c_K"], ["--c_K", "needs a value"]),
        (["--lr=abc"], ["lr", "'abc'", "a number"]),
        (["--epochs=1.5"], ["epochs", "'1.5'", "an integer"]),
        (["--download=maybe"], ["download", "true or false"]),
        (["--lr=-1"], ["lr=-1.0", "> 0"]),
        (["--lr=nan"], ["lr=nan", "finite"]),
        (["--epochs=0"], ["epochs=0", ">= 1"]),
        (["--momentum=1"], ["momentum=1.0", "[0, 1)"]),
        (["--schedule=linear"], ["schedule='linear'", "cosine", "step"]),
        (["--amp=fp16"], ["amp='fp16'", "bf16"]),
        (["--device=tpu"], ["device='tpu'", "auto"]),
        (["--gamma=2"], ["gamma=2.0", "(0, 1]"]),
        (["--run_name=a/b"], ["run_name='a/b'"]),
        (["--model=mgaid"], ["mgaid", "did you mean", "mgiad"]),
        (["--dataset=cifar1"], ["cifar1", "cifar10"]),
        (["--model_kwargs.num_classes=3"], ["num_classes", "dataset"]),
        (["--epochs"], ["epochs", "needs a value"]),
        (["lr=1"], ["'lr=1'", "--key=value"]),
    ],
)
def test_override_errors_name_key_value_and_allowed(override: list[str], fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        RunConfig().with_overrides(override)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_from_json_and_toml(tmp_path) -> None:
    j = tmp_path / "run.json"
    j.write_text(json.dumps({"model": "mgiad_3lvl", "lr": 1, "epochs": 5,
                             "model_kwargs": {"c_K": 8, "widths": [8, 16, 32]}}))
    cfg = RunConfig.from_file(j)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.model_kwargs["widths"] == [8, 16, 32]
    t = tmp_path / "run.toml"
    t.write_text('model = "resnet20"\ndataset = "fashionmnist"\nseed = 3\n\n[model_kwargs]\n')
    cfg = RunConfig.from_file(t)
    assert (cfg.model, cfg.dataset, cfg.seed) == ("resnet20", "fashionmnist", 3)
    # file then overrides
    assert RunConfig.from_file(t).with_overrides(["--seed=4"]).seed == 4


def test_file_errors_name_the_file(tmp_path) -> None:
    cases = {
        "unknown.json": ('{"lr": 0.1, "learning_rate": 0.1}', ["unknown.json", "learning_rate"]),
        "type.json": ('{"epochs": "ten"}', ["type.json", "epochs", "an integer"]),
        "syntax.toml": ("lr = = 1", ["syntax.toml", "not valid TOML"]),
        "list.json": ("[1, 2]", ["list.json", "mapping"]),
        "bad.yaml": ("lr: 1", ["bad.yaml", ".json or .toml"]),
    }
    for name, (text, fragments) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError) as info:
            RunConfig.from_file(tmp_path / name)
        for fragment in fragments:
            assert fragment in str(info.value), (name, str(info.value))
    with pytest.raises(ValueError, match="cannot read config file"):
        RunConfig.from_file(tmp_path / "missing.json")


def test_to_dict_round_trip() -> None:
    cfg = RunConfig(model="mgiad_3lvl", model_kwargs={"c_K": 8, "widths": [8, 16, 32]}, lr=0.1,
                    dataset="fashionmnist", subset_train=100)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert RunConfig.from_dict(d) == cfg
    assert set(d) == set(RunConfig.keys())


def test_model_hyperparameter_shorthand() -> None:
    """``--c_K=16`` sets a hyper-parameter of the chosen model, as in ``mgiad params``."""
    cfg = RunConfig().with_overrides(["--c_K=16", "--model=mgiad_3lvl", "--g_s=4"])
    assert cfg.model == "mgiad_3lvl" and cfg.model_kwargs == {"c_K": 16, "g_s": 4}
