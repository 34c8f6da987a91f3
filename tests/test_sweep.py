"""`mgiad sweep` on a tiny experiment with real FashionMNIST: completes, is idempotent, resumes
after SIGKILL with every record exactly once, runs with --workers 2 and through submitit's local
executor, reuses finished runs of other experiments; bad input gives clear errors.

The experiment: 2 rows (a ~10k-weight MGiaD, a ~17k-weight ResNet20) × 2 seeds on 256 training
and 128 test images of the real FashionMNIST, 2 epochs of 3 steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from realdata import require_fashionmnist

from mgiad import cli
from mgiad.experiments.records import append_record, read_records
from mgiad.experiments.spec import BUILTIN, builtin_path, canonical_name, load_experiment
from mgiad.experiments.variant import NEUTRAL_KEYS, make_variant, plan
from mgiad.training.config import RunConfig
from mgiad.training.loop import RESUME_MUTABLE

FMNIST = "/usr/share/datasets/fashion-mnist"
REPO = Path(__file__).resolve().parents[1]

TINY = f"""
name = "tiny"
title = "Tiny test experiment"
dataset = "fashionmnist"
seeds = [0, 1]

[recipe]
epochs = {{epochs}}
batch_size = 32
subset_train = 256
subset_test = 128
max_steps_per_epoch = 3
data_dir = "{FMNIST}"
tensorboard = false
threads = 1

[[rows]]
label = "MGiaD tiny"
model = "mgiad"
kwargs = {{{{ levels = 3, widths = [8, 16, 32], c_K = 4, g_s = 4 }}}}

[[rows]]
label = "ResNet20 tiny"
model = "resnet20"
kwargs = {{{{ widths = [4, 8, 16] }}}}
paper = {{{{ weights_k = 270, test = 93.02, std = 0.31, train = 100.0 }}}}
"""


def write_experiment(path: Path, epochs: int = 2, text: str = TINY) -> Path:
    path.write_text(text.format(epochs=epochs))
    return path


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process training sets torch's thread count; give other tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, Path]:
    """One completed sequential sweep: (experiment file, results dir)."""
    require_fashionmnist()
    tmp = tmp_path_factory.mktemp("sweep")
    exp = write_experiment(tmp / "tiny.toml")
    results = tmp / "results"
    n = torch.get_num_threads()
    assert cli.main(["sweep", str(exp), "--results-dir", str(results)]) == 0
    torch.set_num_threads(n)
    return exp, results


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["run_id"]: r for r in records}


def test_sweep_completes_with_one_full_record_per_run(swept) -> None:
    _, results = swept
    records = read_records(results / "tiny" / "records.jsonl")
    assert sorted(r["run_id"] for r in records) == [
        "mgiad-tiny-s0", "mgiad-tiny-s1", "resnet20-tiny-s0", "resnet20-tiny-s1"]
    for r in records:
        assert r["status"] == "completed" and r["reduced"] is False and r["overrides"] == []
        assert 0 <= r["final_test_acc"] <= 1 and 0 <= r["best_test_acc"] <= 1 and r["final_train_acc"] is not None
        assert r["weights"] > 0 and r["wall_time_s"] > 0 and r["hardware"] and r["git_rev"]
        assert r["config"]["seed"] == r["seed"] and r["config"]["subset_train"] == 256
        assert r["curve"]["epoch"] == [1, 2] and len(r["curve"]["test_acc"]) == 2
        assert (results / "tiny" / r["run_dir"] / "summary.json").is_file()
    assert by_id(records)["mgiad-tiny-s0"]["model_kwargs"]["transfer_norm"] is False  # FMNIST variant
    assert json.loads((results / "tiny" / "variant.json").read_text())["reduced"] is False


def test_second_sweep_runs_nothing(swept, capsys) -> None:
    exp, results = swept
    summaries = sorted((results / "tiny" / "runs").glob("*/summary.json"))
    before = [p.stat().st_mtime_ns for p in summaries]
    capsys.readouterr()
    assert cli.main(["sweep", str(exp), "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "4 already finished, 0 to run" in out and "4 done" in out
    assert [p.stat().st_mtime_ns for p in summaries] == before
    assert len(read_records(results / "tiny" / "records.jsonl")) == 4


def test_a_lost_record_is_written_again_without_training(swept, tmp_path, capsys) -> None:
    exp, results = swept
    copy = tmp_path / "results"
    subprocess.run(["cp", "-r", str(results), str(copy)], check=True)
    path = copy / "tiny" / "records.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")  # as if killed between summary and record
    assert cli.main(["sweep", str(exp), "--results-dir", str(copy), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("unrecorded") == 1
    assert cli.main(["sweep", str(exp), "--results-dir", str(copy)]) == 0
    records = read_records(path)
    assert len(records) == 4 and len({r["run_id"] for r in records}) == 4
    assert not append_record(path, records[0])  # never twice


def test_sigkill_mid_run_then_rerun_resumes_and_records_each_run_once(tmp_path) -> None:
    require_fashionmnist()
    exp = write_experiment(tmp_path / "tiny.toml", epochs=8)
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "mgiad", "sweep", str(exp), "--results-dir", str(results),
           "--rows", "mgiad-tiny"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt = results / "tiny" / "runs" / "mgiad-tiny-s0" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ckpt.parent / "summary.json").exists()
    assert read_records(results / "tiny" / "records.jsonl") == []

    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming after epoch" in out.stdout
    records = read_records(results / "tiny" / "records.jsonl")
    assert sorted(r["run_id"] for r in records) == ["mgiad-tiny-s0", "mgiad-tiny-s1"]
    for r in records:
        assert r["status"] == "completed" and r["curve"]["epoch"] == list(range(1, 9))


def test_workers_2_give_the_sequential_results(swept, tmp_path) -> None:
    exp, results = swept
    other = tmp_path / "results"
    assert cli.main(["sweep", str(exp), "--results-dir", str(other), "--workers", "2", "--no-reuse"]) == 0
    ours = by_id(read_records(other / "tiny" / "records.jsonl"))
    seq = by_id(read_records(results / "tiny" / "records.jsonl"))
    assert sorted(ours) == sorted(seq)
    for run_id, r in ours.items():  # same runs, same numbers: CPU training is deterministic
        assert r["final_test_acc"] == seq[run_id]["final_test_acc"]
        assert r["final_train_loss"] == pytest.approx(seq[run_id]["final_train_loss"], rel=1e-6)
        assert (other / "tiny" / "logs" / f"{run_id}.log").is_file()


def test_slurm_path_through_submitit_local_executor(swept, tmp_path) -> None:
    pytest.importorskip("submitit")
    exp, _ = swept
    results = tmp_path / "results"
    args = ["sweep", str(exp), "--results-dir", str(results), "--seeds", "0", "--slurm",
            "--slurm-cluster", "local", "--gpus-per-task", "0", "--cpus-per-task", "1", "--time", "10",
            "--wait", "--no-reuse"]
    assert cli.main(args) == 0
    records = read_records(results / "tiny" / "records.jsonl")
    assert sorted(r["run_id"] for r in records) == ["mgiad-tiny-s0", "resnet20-tiny-s0"]
    assert all(r["status"] == "completed" for r in records)
    assert any((results / "tiny" / "slurm").iterdir())  # submitit's logs and pickles
    assert cli.main(args) == 0  # nothing left to submit
    assert len(read_records(results / "tiny" / "records.jsonl")) == 2


def test_runs_finished_by_another_experiment_are_reused(swept, capsys) -> None:
    exp, results = swept
    text = TINY.split("[[rows]]")[0].replace('name = "tiny"', 'name = "tiny_resnet"') + \
        "[[rows]]" + TINY.split("[[rows]]")[2]
    other = write_experiment(exp.parent / "tiny_resnet.toml", text=text)
    capsys.readouterr()
    assert cli.main(["sweep", str(other), "--results-dir", str(results)]) == 0
    assert "2 reused" in capsys.readouterr().out
    records = read_records(results / "tiny_resnet" / "records.jsonl")
    assert sorted(r["reused_from"] for r in records) == ["tiny/resnet20-tiny-s0", "tiny/resnet20-tiny-s1"]
    assert not (results / "tiny_resnet" / "runs").exists()
    seq = by_id(read_records(results / "tiny" / "records.jsonl"))
    for r in records:
        assert r["final_test_acc"] == seq[r["run_id"]]["final_test_acc"]
        assert (results / "tiny_resnet" / r["run_dir"] / "summary.json").is_file()


def test_reduced_budget_variant_is_marked(swept, capsys) -> None:
    exp, results = swept
    args = ["sweep", str(exp), "--results-dir", str(results), "--epochs=1", "--subset=64",
            "--rows", "resnet20-*", "--seeds", "1", "--device=cpu"]
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "REDUCED budget" in capsys.readouterr().out
    dirs = sorted(p.name for p in results.glob("tiny-reduced-*"))
    assert len(dirs) == 1
    (record,) = read_records(results / dirs[0] / "records.jsonl")
    assert record["reduced"] is True and record["overrides"] == ["--epochs=1", "--subset_train=64"]
    assert record["run_id"] == "resnet20-tiny-s1" and record["epochs_done"] == 1
    # --device is not part of the identity: the same variant, already finished
    assert cli.main(args[:-1] + ["--threads=1"]) == 0
    assert sorted(p.name for p in results.glob("tiny-reduced-*")) == dirs


def test_dry_run_lists_states(swept, capsys) -> None:
    exp, results = swept
    assert cli.main(["sweep", str(exp), "--results-dir", str(results), "--dry-run", "--epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "REDUCED" in out and out.count("todo") == 4
    assert cli.main(["sweep", str(exp), "--results-dir", str(results), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done") == 4


def test_a_clone_without_run_directories_keeps_its_records(swept, tmp_path, capsys) -> None:
    """Run directories are not committed, records are: a fresh clone neither lists recorded runs
    as to do nor trains them again."""
    exp, results = swept
    clone = tmp_path / "results"
    (clone / "tiny").mkdir(parents=True)
    for name in ("records.jsonl", "variant.json"):
        (clone / "tiny" / name).write_bytes((results / "tiny" / name).read_bytes())
    assert cli.main(["sweep", str(exp), "--results-dir", str(clone), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("  done ") == 4
    assert cli.main(["sweep", str(exp), "--results-dir", str(clone)]) == 0
    assert "0 to run" in capsys.readouterr().out and not (clone / "tiny" / "runs").exists()


def test_an_edited_row_does_not_mix_with_its_old_runs(swept, tmp_path) -> None:
    exp, results = swept
    edited = write_experiment(tmp_path / "tiny.toml", text=TINY.replace("c_K = 4", "c_K = 8"))
    variant = make_variant(edited, (), results)
    with pytest.raises(ValueError, match="another configuration.*model_kwargs"):
        plan(variant)


def test_an_edited_row_is_refused_where_only_its_records_remain(swept, tmp_path, capsys) -> None:
    """A fresh clone has the records but no run directories: an edited row must not count its
    old record as done (the report would show the old run under the new configuration)."""
    exp, results = swept
    clone = tmp_path / "results"
    (clone / "tiny").mkdir(parents=True)
    for name in ("records.jsonl", "variant.json"):
        (clone / "tiny" / name).write_bytes((results / "tiny" / name).read_bytes())
    edited = write_experiment(tmp_path / "tiny.toml", text=TINY.replace("c_K = 4", "c_K = 8"))
    for extra in ([], ["--dry-run"]):
        assert cli.main(["sweep", str(edited), "--results-dir", str(clone), *extra]) == 2
        err = capsys.readouterr().err
        assert "2 recorded run(s) of tiny were trained with another configuration" in err
        assert "'c_K': 4" in err and "move" in err
    assert not (clone / "tiny" / "runs").exists()


def test_records_of_the_old_augment_name_still_match() -> None:
    """Records written when ``augment="paper"`` was hashed by that name (before 2026-12-07) match
    the same runs asked for as ``torchvision`` or by the policy name, and not the authors'."""
    from mgiad.experiments.records import record_key

    old = RunConfig(dataset="cifar10", augment="paper", epochs=3).resolved().to_dict()
    old["augment"] = "paper"  # as the old resolved() left it
    new = RunConfig(dataset="cifar10", augment="torchvision", epochs=3)
    assert record_key({"config": old, "config_key": "0" * 16}) == new.trajectory_hash()
    assert record_key({"config": old}) != RunConfig(dataset="cifar10", epochs=3).trajectory_hash()
    assert record_key({"config_key": "abc"}) == "abc"  # no config: the key it was written with


def test_bad_input_is_one_clear_line(swept, capsys) -> None:
    exp, results = swept
    cases = [
        (["sweep", "tabel_IV"], "unknown experiment 'tabel_IV'; did you mean table_IV"),
        (["sweep", "nope.toml"], "experiment file nope.toml does not exist"),
        (["sweep", str(exp), "--epochz=3"], "unknown config key 'epochz'; did you mean epochs"),
        (["sweep", str(exp), "--seed=1"], "seed is set by the sweep (use --seeds)"),
        (["sweep", str(exp), "--rows", "nothing"], "--rows 'nothing' matches no row of tiny"),
        (["sweep", str(exp), "--seeds", "a"], "--seeds='a'"),
        (["sweep", str(exp), "--workers", "0"], "--workers must be >= 1"),
        (["sweep", str(exp), "--model_kwargs.g_s=5", "--dry-run"], "g_s"),
        (["report", "figure_8"], "unknown experiment 'figure_8'"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        code = cli.main(argv + ["--results-dir", str(results)])
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert err.startswith(f"mgiad {argv[0]}: error: ") and message in err, (argv, err)
        assert "Traceback" not in err


def test_experiment_file_errors(tmp_path) -> None:
    bad = {
        "unknown row key 'kwarg'; did you mean 'kwargs'": TINY.replace("kwargs = {{ widths", "kwarg = {{ widths"),
        "have the same label": TINY.replace('"ResNet20 tiny"', '"MGiaD tiny"'),
        "table_I has no row 'ResNet21'; did you mean 'ResNet20'": TINY + '\n[[rows]]\nref = "table_I/ResNet21"\n',
        "recipe key 'seed' is set per row and seed": TINY.replace("[recipe]", "[recipe]\nseed = 3"),
        "seeds=[]": TINY.replace("seeds = [0, 1]", "seeds = []"),
        "not valid TOML": TINY + "\n[[rows]\n",
    }
    for message, text in bad.items():
        path = write_experiment(tmp_path / "bad.toml", text=text)
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_experiment(path)


def test_every_paper_table_and_figure_7_has_its_file() -> None:
    assert BUILTIN == tuple(f"table_{t}" for t in ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")) + ("figure_7",)
    rows = 0
    for name in BUILTIN:
        assert builtin_path(name).is_file()
        exp = load_experiment(name)
        assert exp.name == name and exp.seeds == (0, 1, 2) and exp.recipe["epochs"] == 400
        if name.startswith("table_"):
            rows += len(exp.rows)
            assert all(r.paper is not None and r.paper.test is not None for r in exp.rows)
        assert len(plan(make_variant(exp))) == 3 * len(exp.rows)  # every row makes a valid config
    assert rows == 79
    fig = load_experiment("fig7")
    assert {r.family for r in fig.rows} == {"ResNet", "MgNet", "MgNet grouped", "MGIC", "MGiaD g_s=4", "MGiaD g_s=8"}
    assert fig.row("ResNet20").paper == load_experiment("table_I").row("ResNet20").paper  # one source
    assert all(r.paper is None for r in fig.rows if r.family == "MGIC")
    for alias, name in [("IV", "table_IV"), ("table4", "table_IV"), ("Table_ix", "table_IX"),
                        ("fig7", "figure_7"), ("figure-7", "figure_7"), ("table_X", None)]:
        assert canonical_name(alias) == name


def test_one_run_identity_for_resume_and_sweeps() -> None:
    """Resume and sweeps share one set of neutral keys and one hash, and the hash is stable:
    the committed records (and the checkpoints they name) keep their identity, those written
    before augmentation recipes were resolved (``paper``) through ``matches_trajectory``."""
    assert NEUTRAL_KEYS is RESUME_MUTABLE
    records = REPO / "results" / "ablation_3level-reduced-640054a3" / "records.jsonl"
    recs = [json.loads(line) for line in records.read_text().splitlines()]
    assert recs and all(RunConfig.from_dict(r["config"]).matches_trajectory(r["config_key"])
                        for r in recs)
    cfg = RunConfig.from_dict(recs[0]["config"])
    same = dataclasses.replace(cfg, threads=7, device="cpu", out_dir="elsewhere", run_name="x")
    assert same.trajectory_hash() == cfg.trajectory_hash()
    assert dataclasses.replace(cfg, seed=cfg.seed + 1).trajectory_hash() != cfg.trajectory_hash()


def test_reproduction_script_commands_parse() -> None:
    """Every `mgiad sweep` line of benchmarks/reproduce_cpu.sh plans without error."""
    script = (REPO / "benchmarks" / "reproduce_cpu.sh").read_text()
    lines = [" ".join(line.split()) for line in script.replace("\\\n", " ").splitlines()]
    sweeps = [line for line in lines if line.startswith("mgiad sweep")]
    assert len(sweeps) == 2
    for line in sweeps:
        argv = [a.strip('"') for a in line.split()[1:]]
        argv = [a.replace("$HERE", str(REPO / "benchmarks")).replace("${HERE}", str(REPO / "benchmarks"))
                for a in argv]
        assert cli.main(argv + ["--dry-run", "--results-dir", "/nonexistent/results"]) == 0


def test_slurm_task_requeues_itself_on_timeout(swept) -> None:
    """submitit calls checkpoint() on time-out/pre-emption; the requeued task resumes the run."""
    submitit = pytest.importorskip("submitit")
    from mgiad.experiments.slurm import SweepTask

    exp, results = swept
    job = plan(make_variant(exp, (), results))[0]
    delayed = SweepTask().checkpoint(job)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, SweepTask) and delayed.args == (job,)
    assert delayed.function(job)["status"] == "done"  # finished and recorded: nothing to do


def test_a_run_another_process_trains_is_skipped_loudly(tmp_path, capsys) -> None:
    """A run whose lock another process holds is not trained twice, and the sweep says so (it
    used to move on without a word) and exits non-zero, since not every run is finished."""
    from mgiad.experiments.sweep import _flock

    require_fashionmnist()
    exp = write_experiment(tmp_path / "tiny.toml", epochs=1)
    results = tmp_path / "results"
    runs = results / "tiny" / "runs"
    runs.mkdir(parents=True)
    n = torch.get_num_threads()
    with _flock(runs / ".mgiad-tiny-s0.lock", blocking=False) as got:
        assert got
        code = cli.main(["sweep", str(exp), "--results-dir", str(results), "--rows", "1",
                         "--seeds", "0"])
    torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert "skipped: another process is training mgiad-tiny-s0" in out
    assert code != 0
    assert not (runs / "mgiad-tiny-s0").exists()
