"""Every command, every bad input: exit code 2, one line on stderr naming the bad value, nothing
written or changed on disk.

Each command runs in-process (``mgiad.cli.main``) in a temporary working directory that holds
everything the commands may touch (tiny fake FashionMNIST, an untrained checkpoint with its
``config.json``, images, a file where a directory is expected, an empty results directory);
``HOME`` is another temporary directory. Both trees are snapshotted (paths, sizes, contents,
mtimes) before and after every command. No case trains: each bad input must fail before.
Cases already covered elsewhere are not repeated here (tests/test_cli_params.py,
tests/test_train.py, tests/test_sweep.py ``test_bad_input_is_one_clear_line``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import pytest
import torch
from test_train import TINY, write_fake_fmnist

from mgiad import cli
from mgiad.data import datasets as D
from mgiad.models.registry import create_model
from mgiad.training.checkpoint import save_checkpoint

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` grey pixels and holds none (a decompression bomb
    needs no more to get past a check that decodes first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def _snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` with its type, size, mtime and content hash."""
    out: dict[str, tuple] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            out[str(path)] = (path.is_dir(), st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny MGiaD saved as a run would save it (no training needed for bad input)."""
    torch.manual_seed(0)
    model = create_model("mgiad_3lvl", num_classes=10, in_chans=1, **TINY)
    file = tmp_path_factory.mktemp("ckpt") / "last.safetensors"
    header = {"model": "mgiad_3lvl", "model_kwargs": TINY, "num_classes": 10, "in_chans": 1,
              "dataset": "fashionmnist", "classes": FASHION_CLASSES, "mean": [0.2860],
              "std": [0.3530], "image_size": 28, "pad_to": None, "epoch": 1}
    save_checkpoint(file, header=header, model_state=model.state_dict())
    return file


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> Path:
    """The working directory: data/, run/ (checkpoint + config.json), images, a file, results/."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    home.mkdir()
    write_fake_fmnist(cwd / "data", n_train=40, n_test=20)
    (cwd / "run").mkdir()
    (cwd / "run" / "last.safetensors").write_bytes(checkpoint.read_bytes())
    (cwd / "run" / "config.json").write_text(json.dumps({"data_dir": str(cwd / "data")}))
    (cwd / "empty").mkdir()
    (cwd / "results").mkdir()
    (cwd / "afile").write_text("a file where a directory is expected\n")
    (cwd / "bomb.png").write_bytes(_png_header(20000, 20000))
    (cwd / "text.png").write_text("not an image\n")
    (cwd / "hp.json").write_text('{"c_K": 8}')  # a hyper-parameter outside model_kwargs
    from PIL import Image

    Image.new("L", (28, 28), 128).save(cwd / "ok.png")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(D.ENV_DATA_DIR, raising=False)
    monkeypatch.delenv("MGIAD_MAX_IMAGE_PIXELS", raising=False)
    return cwd


def check_bad_input(argv: list[str], fragments: list[str], capsys, work: Path) -> None:
    """Exit 2, stderr exactly one line ``mgiad CMD: error: ...`` holding every fragment, no
    stdout, and no file created, removed or changed in the working directory or HOME."""
    before = _snapshot(work, work.parent / "home")
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    assert len(err.splitlines()) == 1 and err.endswith("\n"), (argv, err)
    assert err.startswith(f"mgiad {argv[0]}: error: "), (argv, err)
    for fragment in fragments:
        assert fragment in err, (argv, fragment, err)
    assert out == "", (argv, out)
    assert _snapshot(work, work.parent / "home") == before, argv


# --------------------------------------------------------------------------------------
# one table per command


@pytest.mark.parametrize(("argv", "fragments"), [
    (["zzz"], ["no registered model matches 'zzz'"]),
    (["resnet2"], ["'resnet2'", "did you mean resnet20"]),
])
def test_list(argv, fragments, capsys, work) -> None:
    check_bad_input(["list", *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["mgiad", "--image-size", "0"], ["--image-size must be >= 1, got 0"]),
    (["mgiad", "--c_k=16"], ["'c_k'", "did you mean c_K"]),
    (["resnet20", "--g_s=4"], ["resnet20 has no hyper-parameter 'g_s'", "blocks", "widths"]),
    (["mgiad", "--widths=abc"], ["widths", "'abc'", "list of positive integers"]),
    (["mgiad", "--widths=[64,0,256,512]"], ["widths[1]", "got 0"]),
    (["mgiad", "c_K=16"], ["'c_K=16'", "--key=value"]),
    (["--paper", "mgiad"], ["--paper takes no MODEL", "'mgiad'"]),
    (["--paper", "--table", "XI"], ["'XI'", "I, II"]),
])
def test_params(argv, fragments, capsys, work) -> None:
    check_bad_input(["params", *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--data-dir", "/nonexistent"], ["data_dir='/nonexistent' does not exist", "--download"]),
    (["--data-dir", "empty"], ["data_dir='empty' holds no FashionMNIST", "t10k"]),
    (["--data-dir", "afile"], ["data_dir='afile' is not a directory"]),
    (["--epochs", "0"], ["epochs=0", ">= 1"]),
    (["--batch-size", "0"], ["batch_size=0", ">= 1"]),
    (["--subset_train=0"], ["subset_train=0", ">= 1"]),
    (["--subset_train=-1"], ["subset_train=-1"]),
    (["--subset_test=0"], ["subset_test=0"]),
    (["--threads=0"], ["threads=0"]),
    (["--eval_every=0"], ["eval_every=0"]),
    (["--max_steps_per_epoch=0"], ["max_steps_per_epoch=0"]),
    (["--c_k=16"], ["'c_k'", "did you mean c_K (a hyper-parameter of mgiad_3lvl)?"]),
    (["--model", "resnet20", "--g_s=4"], ["resnet20 has no hyper-parameter 'g_s'",
                                          "resnet20's hyper-parameters: blocks, maxpool, shortcut"]),
    (["--model_kwargs.c_k=4"], ["model_kwargs.c_k=4", "did you mean c_K?"]),
    (["--widths=abc"], ["widths", "'abc'", "list of positive integers"]),
    (["--g_s=3"], ["g_s=3", "divisor"]),
    (["--c_K"], ["--c_K", "needs a value"]),
    (["--config", "missing.toml"], ["missing.toml", "No such file"]),
    (["--config", "hp.json"], ["hp.json: unknown config key 'c_K'", "set it in model_kwargs"]),
    (["--out-dir", "afile"], ["afile"]),
    (["--out-dir", "afile/runs"], ["afile"]),
])
def test_train(argv, fragments, capsys, work) -> None:
    base = ["--dataset", "fashionmnist", "--model", "mgiad_3lvl", "--data-dir", "data",
            "--model_kwargs.c_K=8", "--model_kwargs.g_s=4", "--model_kwargs.widths=[8,16,32]",
            "--epochs", "1", "--tensorboard=false", "--threads=1"]
    check_bad_input(["train", *base, *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--subset-test", "0"], ["--subset-test must be >= 1, got 0"]),
    (["--subset-test", "-1"], ["--subset-test must be >= 1, got -1"]),
    (["--subset-test", "1000"], ["asked for 1000 test images", "has 20"]),
    (["--batch-size", "0"], ["--batch-size must be >= 1, got 0"]),
    (["--data-dir", "/nonexistent"], ["data_dir='/nonexistent' does not exist"]),
    (["--data_dir=/nonexistent"], ["data_dir='/nonexistent' does not exist"]),  # the hints' spelling
    (["--data-dir", "empty"], ["data_dir='empty' holds no FashionMNIST"]),
    (["--device", "gpu"], ["--device 'gpu'", "cpu"]),
])
def test_eval(argv, fragments, capsys, work) -> None:
    check_bad_input(["eval", "run", *argv], fragments, capsys, work)


def test_eval_missing_checkpoint(capsys, work) -> None:
    check_bad_input(["eval", "nowhere/last.safetensors"], ["no checkpoint at nowhere"], capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["ok.png", "--topk", "0"], ["--topk must be >= 1, got 0"]),
    (["ok.png", "--topk", "-2"], ["--topk must be >= 1, got -2"]),
    (["ok.png", "--max-pixels", "0"], ["--max-pixels must be >= 1, got 0"]),
    (["bomb.png"], ["image bomb.png is 20000x20000 = 400,000,000 pixels", "89,478,485",
                    "--max-pixels 400000000", "MGIAD_MAX_IMAGE_PIXELS"]),
    (["bomb.png", "--max-pixels", "1000"], ["bomb.png", "limit of 1,000"]),
    (["ok.png", "--batch", "0"], ["--batch must be >= 1, got 0"]),
    (["text.png"], ["cannot read image text.png"]),
    (["ok.png", "--device", "gpu"], ["--device 'gpu'"]),
])
def test_predict(argv, fragments, capsys, work) -> None:
    check_bad_input(["predict", "run", *argv], fragments, capsys, work)


def test_predict_names_each_unreadable_file_and_predicts_the_rest(capsys, work) -> None:
    """Issue 22: 2,000 good images and one empty file printed no prediction at all."""
    (work / "empty.png").write_bytes(b"")
    good = ["ok.png"] * 5
    capsys.readouterr()
    code = cli.main(["predict", "run", *good[:3], "empty.png", "bomb.png", *good[3:], "--batch", "2",
                     "--max-pixels", "1000"])
    out, err = capsys.readouterr()
    assert code == 1
    assert [ln.split(":")[0] for ln in out.splitlines()] == good  # every readable file, in order
    errors = [ln for ln in err.splitlines() if ln.startswith("mgiad predict: error: ")]
    assert len(errors) == 2 and "empty.png" in errors[0] and "bomb.png" in errors[1] and "limit of 1,000" in errors[1]
    assert "2 of 7 images could not be read" in err
    # the same predictions as one batch
    assert cli.main(["predict", "run", *good, "--batch", "64"]) == 0
    assert capsys.readouterr().out == out
    # none readable: exit 2, each named, then one summary
    assert cli.main(["predict", "run", "empty.png", "bomb.png", "--max-pixels", "1000"]) == 2
    err = capsys.readouterr().err
    assert "empty.png" in err and "bomb.png" in err and "none of the 2 images could be read" in err


def test_predict_pixel_limit_from_the_environment(capsys, work, monkeypatch) -> None:
    monkeypatch.setenv("MGIAD_MAX_IMAGE_PIXELS", "100")
    check_bad_input(["predict", "run", "ok.png"], ["ok.png is 28x28 = 784 pixels", "limit of 100"],
                    capsys, work)
    monkeypatch.setenv("MGIAD_MAX_IMAGE_PIXELS", "lots")
    check_bad_input(["predict", "run", "ok.png"], ["$MGIAD_MAX_IMAGE_PIXELS='lots'"], capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--batch", "0"], ["--batch must be >= 1, got 0"]),
    (["--steps", "0"], ["--steps must be >= 1, got 0"]),
    (["--rounds", "0"], ["--rounds must be >= 1, got 0"]),
    (["--threads", "0"], ["--threads must be >= 1, got 0"]),
    (["--image-size", "-1"], ["--image-size must be >= 1, got -1"]),
    (["--device", "gpu"], ["--device 'gpu'"]),
    (["--json", "empty"], ["--json empty", "Is a directory"]),
    (["--json", "afile/out.json"], ["afile", "Not a directory"]),
    (["mgiad:c_k=16"], ["'mgiad:c_k=16'", "did you mean c_K"]),
    (["mgiad:g_s=5"], ["'mgiad:g_s=5'", "g_s=5"]),
    (["resnet2"], ["'resnet2'", "did you mean resnet20"]),
    (["--baseline", "resnet18"], ["baseline 'resnet18'"]),
])
def test_bench(argv, fragments, capsys, work) -> None:
    models = [] if any(not a.startswith("-") and ":" in a or a == "resnet2" for a in argv) \
        else ["resnet20"]
    check_bad_input(["bench", *models, "--no-memory", *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["tabel_IV"], ["'tabel_IV'", "did you mean table_IV"]),
    (["nope.toml"], ["experiment file nope.toml does not exist"]),
])
def test_experiments(argv, fragments, capsys, work) -> None:
    check_bad_input(["experiments", *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--time", "0"], ["--time must be >= 1, got 0"]),
    (["--gpus-per-task", "-1"], ["--gpus-per-task must be >= 0, got -1"]),
    (["--cpus-per-task", "-1"], ["--cpus-per-task must be >= 1, got -1"]),
    (["--mem-gb", "0"], ["--mem-gb must be >= 1, got 0"]),
    (["--array-parallelism", "0"], ["--array-parallelism must be >= 1, got 0"]),
    (["--subset", "0"], ["subset_train=0"]),
    (["--epochs=0"], ["epochs=0"]),
    (["--c_k=16"], ["table_IV row 'ResNet20'", "resnet20 has no hyper-parameter 'c_k'"]),
    (["--rows", "3", "--c_k=16"], ["row 'MGiaD c_K=16 g_s=4'", "did you mean c_K"]),
    (["--results-dir", "afile"], ["--results-dir afile/table_IV", "Not a directory"]),
    (["--data_dir=/nonexistent"], ["data_dir='/nonexistent' does not exist"]),
    (["--data_dir=empty", "--rows", "1"], ["data_dir='empty' holds no FashionMNIST"]),
])
def test_sweep(argv, fragments, capsys, work) -> None:
    check_bad_input(["sweep", "table_IV", *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--subset", "0"], ["subset_train=0"]),
    (["--epochs=-3"], ["epochs=-3"]),
    (["--lrr=0.1"], ["'lrr'", "did you mean lr"]),
    (["--out", "afile"], ["--out afile", "Not a directory"]),
])
def test_report(argv, fragments, capsys, work) -> None:
    check_bad_input(["report", "table_IV", *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["fig8"], ["'fig8'", "figure_7"]),
    (["fig7", "--subset", "-1"], ["subset_train=-1"]),
    (["fig7", "--c_k=16"], ["figure_7 row 'ResNet20'", "resnet20 has no hyper-parameter 'c_k'"]),
    (["fig7", "--out", "afile/plots"], ["--out afile/plots", "Not a directory"]),
])
def test_plot(argv, fragments, capsys, work) -> None:
    check_bad_input(["plot", *argv], fragments, capsys, work)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--epochs", "0"], ["--epochs must be >= 1, got 0"]),
    (["--data-dir", "/nonexistent"], ["--data-dir /nonexistent does not exist"]),
    (["--data_dir=/nonexistent"], ["--data-dir /nonexistent does not exist"]),  # train's spelling
    (["--data-dir", "empty"], ["--data-dir empty holds neither FashionMNIST nor CIFAR-10"]),
    (["--dataset", "fashionmnist", "--data-dir", "empty"], ["data_dir='empty' holds no FashionMNIST"]),
    (["--out-dir", "afile"], ["out_dir afile", "Not a directory"]),
    (["--dataset", "cifar1"], ["'cifar1'", "did you mean 'cifar10'"]),
    (["--lrr=0.1"], ["'lrr'", "did you mean lr"]),
    (["--c_k=16"], ["'c_k'", "did you mean c_K"]),
])
def test_demo(argv, fragments, capsys, work) -> None:
    check_bad_input(["demo", *argv], fragments, capsys, work)


# --------------------------------------------------------------------------------------
# file system errors anywhere in a command: one line, exit 2


def test_unwritable_out_dir_fails_before_the_data_are_read(capsys, work, monkeypatch) -> None:
    (work / "ro").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p).name != "ro"
                        and real_access(p, mode, **kw))
    monkeypatch.setattr(D, "load_dataset", lambda *a, **k: pytest.fail("data read"))
    check_bad_input(["demo", "--out-dir", "ro/runs"],
                    ["cannot write in out_dir ro/runs: Permission denied (at ro)"], capsys, work)
    check_bad_input(["report", "IV", "--out", "ro"], ["cannot write in --out ro"], capsys, work)


def test_a_directory_that_says_yes_but_refuses_files(capsys, work, monkeypatch) -> None:
    """os.access says yes to root everywhere (/proc, read-only mounts); export used to find out
    after its work. The check now creates a file there (and removes it)."""
    import tempfile
    (work / "ro").mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if Path(dir).name == "ro":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(D, "load_dataset", lambda *a, **k: pytest.fail("data read"))
    check_bad_input(["demo", "--out-dir", "ro/runs"],
                    ["cannot write in out_dir ro/runs: Read-only file system (at ro)"], capsys, work)
    assert list((work / "ro").iterdir()) == []
    monkeypatch.undo()
    from mgiad.training.values import check_writable_dir
    check_writable_dir("x", work / "ro")
    assert list((work / "ro").iterdir()) == []  # the test file is gone


@pytest.mark.parametrize(("error", "line"), [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/x/last.safetensors"),
     "cannot write runs/x/last.safetensors: No space left on device; free space there"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "runs"),
     "cannot write runs: Read-only file system; choose a location you can write to"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/root/x"),
     "cannot access /root/x: Permission denied; check its permissions"),
    (FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), "runs"),
     "cannot create runs: File exists; a file is in the way"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "cannot write: No space left on device"),
    (OSError(errno.EXDEV, os.strerror(errno.EXDEV), "a", None, "b"), "cannot use a -> b: "),
])
def test_os_errors_are_one_line(error, line, capsys, work, monkeypatch) -> None:
    def fail(args, extra):
        raise error

    monkeypatch.setattr(cli.params, "cmd_list", fail)
    check_bad_input(["list"], [line], capsys, work)


def test_broken_pipe_and_interrupt(capsys, work, monkeypatch) -> None:
    def pipe(args, extra):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def interrupt(args, extra):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.params, "cmd_list", pipe)
    assert cli.main(["list"]) == 141
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cli.params, "cmd_list", interrupt)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not an error message
        cli.main(["list"])


# --------------------------------------------------------------------------------------
# no silent wrong result: where the data came from, what a report lacks


def test_eval_says_which_data(capsys, work, monkeypatch) -> None:
    assert cli.main(["eval", "run", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data_source"] == f"{work / 'data'} (IDX files)" and result["test_images"] == 20
    # The run's data moved: said on stderr, and the data found instead are named.
    write_fake_fmnist(work / "other", n_train=30, n_test=10)
    (work / "run" / "config.json").write_text(json.dumps({"data_dir": str(work / "moved")}))
    monkeypatch.setenv(D.ENV_DATA_DIR, str(work / "other"))
    monkeypatch.setattr(D, "_standard_places", lambda name: [])
    assert cli.main(["eval", "run"]) == 0
    out, err = capsys.readouterr()
    assert f"the run's data_dir {work / 'moved'} no longer holds its data" in err
    assert f"data: {work / 'other'} (IDX files)" in out and "on 10 fashionmnist test images" in out


def test_report_and_plot_without_records_write_nothing(capsys, work) -> None:
    before = _snapshot(work)
    assert cli.main(["report", "table_IV"]) == 0
    out, err = capsys.readouterr()
    assert "92.85 ± 0.06" in out and "runs: 0/15 completed" in out  # the paper's numbers
    assert err == ("mgiad report: no records yet in results/table_IV/records.jsonl; `mgiad sweep "
                   "table_IV` makes them. Showing the paper's numbers only; nothing written "
                   "(--out DIR writes the files anyway)\n")
    assert cli.main(["plot", "IV", "--epochs=2"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "`mgiad sweep IV --epochs=2` makes them. No plot drawn" in err
    assert _snapshot(work) == before
