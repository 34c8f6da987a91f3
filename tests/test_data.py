"""Tests for mgiad.data.datasets: real CIFAR-10/FashionMNIST and synthetic files in every on-disk format."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import FASHIONMNIST, require_cifar10, require_fashionmnist

from mgiad.data import datasets as D
from mgiad.data import download, spec
from mgiad.data.datasets import (
    DATASET_NAMES,
    CorruptDatasetError,
    DataError,
    DatasetNotFoundError,
    ImageData,
    load_dataset,
    subset,
)

FASHION_DIR = FASHIONMNIST


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env var, an empty home and cwd, and no standard places: only what a test writes."""
    monkeypatch.delenv(D.ENV_DATA_DIR, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(D, "_standard_places", lambda name: [tmp_path / "std"])
    root = tmp_path / "root"
    root.mkdir()
    return root


# --------------------------------------------------------------------------- writers of synthetic files

def _hwc_from_rows(rows: np.ndarray) -> np.ndarray:
    """Independent of the loader: pixel (n, h, w, c) is byte c*1024 + h*32 + w of row n."""
    n, h, w, c = np.meshgrid(np.arange(len(rows)), np.arange(32), np.arange(32), np.arange(3),
                             indexing="ij")
    return rows[n, c * 1024 + h * 32 + w]


def _write_cifar10(folder: Path, rng: np.random.Generator, per_batch: int = 6,
                   protocol: int = 2) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        batches[name] = (rows, labels)
        record = {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                  b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(record, protocol=protocol))
    meta = {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
            b"label_names": [n.encode() for n in spec._CIFAR10_CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return batches


def _write_cifar100(folder: Path, rng: np.random.Generator, n: int = 30) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("train", "test"):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        out[name] = (rows, fine)
        record = {b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
                  b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine], b"data": rows}
        (folder / name).write_bytes(pickle.dumps(record, protocol=2))
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def _tar_folder(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx(folder: Path, rng: np.random.Generator, gz: bool, n_train: int = 20,
               n_test: int = 10) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        arrays[prefix] = (images, labels)
        for stem, blob in ((f"{prefix}-images-idx3-ubyte", _idx(images, 2051)),
                           (f"{prefix}-labels-idx1-ubyte", _idx(labels, 2049))):
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / stem).write_bytes(blob)
    return arrays


def _write_npz(folder: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
               y_test: np.ndarray, **extra: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=x_train, y=y_train, **extra)
    np.savez(folder / "test.npz", x=x_test, y=y_test)


def _tiny_npz(folder: Path, n: int = 20, shape: tuple[int, ...] = (32, 32, 3),
              classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = np.arange(n) % classes
    _write_npz(folder, x, y, x[:5], y[:5])


# --------------------------------------------------------------------------- real data

def _class_counts(y: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(y, minlength=k).tolist()


def test_real_cifar10() -> None:
    folder = require_cifar10()
    data = load_dataset("CIFAR-10", folder)
    assert data.name == "cifar10" and data.classes[0] == "airplane" and data.num_classes == 10
    assert data.x_train.shape == (50000, 32, 32, 3) and data.x_test.shape == (10000, 32, 32, 3)
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert data.x_train.is_contiguous() and data.x_test.is_contiguous()
    assert (data.in_chans, data.image_size) == (3, 32)
    assert _class_counts(data.y_train, 10) == [5000] * 10
    assert _class_counts(data.y_test, 10) == [1000] * 10
    mean, std = spec._channel_stats(data.x_train.numpy())
    assert np.allclose(mean, (0.4914, 0.4822, 0.4465), atol=1e-3)
    assert np.allclose(std, (0.2470, 0.2435, 0.2616), atol=1e-3)
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2470, 0.2435, 0.2616)
    assert str(folder) in data.source


def test_real_fashionmnist(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_fashionmnist()
    # Found through the standard places alone, as a user with the Debian package would.
    monkeypatch.setattr(D, "_standard_places", lambda name: [FASHION_DIR])
    data = load_dataset("fmnist")
    assert data.name == "fashionmnist" and data.classes[9] == "Ankle boot"
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert data.x_train.dtype == torch.uint8 and data.y_test.dtype == torch.int64
    assert (data.in_chans, data.image_size, data.num_classes) == (1, 28, 10)
    assert _class_counts(data.y_train, 10) == [6000] * 10
    assert _class_counts(data.y_test, 10) == [1000] * 10
    mean, std = spec._channel_stats(data.x_train.numpy())
    assert abs(mean[0] - 0.2860) < 1e-3 and abs(std[0] - 0.3530) < 1e-3
    assert str(FASHION_DIR) in data.source


# --------------------------------------------------------------------------- synthetic formats

@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_official_round_trip(isolated: Path, protocol: int) -> None:
    batches = _write_cifar10(isolated / "cifar-10-batches-py", np.random.default_rng(1),
                             protocol=protocol)
    rows = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    for where in (isolated, isolated / "cifar-10-batches-py"):  # parent or the folder itself
        data = load_dataset("cifar10", where)
        assert data.x_train.shape == (30, 32, 32, 3) and data.x_train.is_contiguous()
        assert np.array_equal(data.x_train.numpy(), _hwc_from_rows(rows))
        assert data.y_train.tolist() == labels
        assert np.array_equal(data.x_test.numpy(), _hwc_from_rows(batches["test_batch"][0]))
        assert data.y_test.tolist() == batches["test_batch"][1]
        assert data.classes == list(spec._CIFAR10_CLASSES)
    # The layout spelled out for one pixel: row n holds R plane, G plane, B plane.
    assert data.x_test[2, 5, 7, 1] == batches["test_batch"][0][2, 1024 + 5 * 32 + 7]


def test_cifar100_official_and_tar(isolated: Path) -> None:
    written = _write_cifar100(isolated / "cifar-100-python", np.random.default_rng(2))
    data = load_dataset("CIFAR100", isolated)
    assert np.array_equal(data.x_train.numpy(), _hwc_from_rows(written["train"][0]))
    assert data.y_train.tolist() == written["train"][1]
    assert data.y_test.tolist() == written["test"][1]
    assert data.classes == [f"fine{i}" for i in range(100)] and data.num_classes == 100
    assert data.mean == (0.5071, 0.4865, 0.4409)

    tar_dir = isolated / "tar"
    tar_dir.mkdir()
    _tar_folder(isolated / "cifar-100-python", tar_dir / "cifar-100-python.tar.gz")
    from_tar = load_dataset("cifar-100", tar_dir)
    assert torch.equal(from_tar.x_train, data.x_train) and torch.equal(from_tar.y_test,
                                                                        data.y_test)
    assert from_tar.source.endswith("cifar-100-python.tar.gz")
    assert not (tar_dir / "cifar-100-python").exists()  # read in place, nothing extracted


def test_cifar10_tar_and_extracted_preference(isolated: Path) -> None:
    batches = _write_cifar10(isolated / "src" / "cifar-10-batches-py", np.random.default_rng(3))
    _tar_folder(isolated / "src" / "cifar-10-batches-py", isolated / "cifar-10-python.tar.gz")
    data = load_dataset("cifar_10", isolated)
    assert np.array_equal(data.x_test.numpy(), _hwc_from_rows(batches["test_batch"][0]))
    assert data.source.endswith("cifar-10-python.tar.gz")
    # Once extracted next to the archive (torchvision's layout), the folder is read instead.
    (isolated / "src" / "cifar-10-batches-py").rename(isolated / "cifar-10-batches-py")
    assert "cifar-10-batches-py" in load_dataset("cifar10", isolated).source


@pytest.mark.parametrize("gz", [False, True])
def test_fashionmnist_idx_torchvision_layout(isolated: Path, gz: bool) -> None:
    arrays = _write_idx(isolated / "FashionMNIST" / "raw", np.random.default_rng(4), gz=gz)
    for where in (isolated, isolated / "FashionMNIST", isolated / "FashionMNIST" / "raw"):
        data = load_dataset("fashion_mnist", where)
        assert data.x_train.shape == (20, 28, 28, 1) and data.x_test.shape == (10, 28, 28, 1)
        assert np.array_equal(data.x_train.numpy()[..., 0], arrays["train"][0])
        assert np.array_equal(data.y_test.numpy(), arrays["t10k"][1])
        assert data.y_train.dtype == torch.int64 and data.x_train.is_contiguous()
        assert data.mean == (0.2860,) and data.std == (0.3530,)


def test_npz_with_and_without_label_names(isolated: Path) -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    y = np.arange(12) % 100
    _write_npz(isolated / "cifar100", x, y, x[:4], y[:4])
    data = load_dataset("cifar100", isolated)
    assert data.classes == list(spec._CIFAR100_CLASSES) and len(data.classes) == 100
    assert torch.equal(data.x_train, torch.from_numpy(x))

    names = np.array([f"c{i}" for i in range(10)])
    _write_npz(isolated / "c10", x, y % 10, x[:4], y[:4] % 10, label_names=names)
    assert load_dataset("cifar10", isolated / "c10").classes == names.tolist()


def test_env_var_and_standard_places(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_npz(isolated / "cifar10")
    monkeypatch.setenv(D.ENV_DATA_DIR, str(isolated))
    assert load_dataset("cifar10").x_train.shape[0] == 20
    monkeypatch.delenv(D.ENV_DATA_DIR)
    monkeypatch.setattr(D, "_standard_places", lambda name: [isolated.parent / "no", isolated])
    assert str(isolated / "cifar10") in load_dataset("cifar10").source


def test_download_uses_own_reader(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """download=True fetches the archive (faked here: no internet) and reads it safely."""
    import torchvision.datasets.utils as tv_utils

    src = isolated / "src"
    written = _write_cifar100(src / "cifar-100-python", np.random.default_rng(6), n=8)
    calls = []

    def fake_download_url(url: str, root: Path, filename: str, md5: str | None = None) -> None:
        calls.append(url)
        _tar_folder(src / "cifar-100-python", Path(root) / filename)

    monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
    target = isolated / "dl"
    data = load_dataset("cifar100", target, download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"]
    assert (target / "cifar-100-python" / "meta").is_file()  # extracted
    assert data.y_train.tolist() == written["train"][1]


# --------------------------------------------------------------------------- errors

def test_missing_dataset_message(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100")
    message = str(info.value)
    assert str(isolated.parent / "std") in message and "does not exist" in message  # every place
    assert "--download" in message and D.ENV_DATA_DIR in message
    assert "cifar-100-python.tar.gz" in message


def test_explicit_data_dir_is_the_only_place(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data_dir without the data is an error naming it, even when the data is elsewhere."""
    _tiny_npz(isolated / "cifar10")
    monkeypatch.setenv(D.ENV_DATA_DIR, str(isolated))
    assert load_dataset("cifar10").source == f"{isolated / 'cifar10'} (train.npz, test.npz)"
    (isolated / "empty").mkdir()
    for where, problem in (("nowhere", "does not exist"), ("empty", "holds no CIFAR-10")):
        with pytest.raises(DatasetNotFoundError) as info:
            load_dataset("cifar10", isolated / where)
        message = str(info.value)
        assert message.startswith(f"data_dir='{isolated / where}' {problem}") and "\n" not in message
        assert "cifar-10-python.tar.gz" in message and "--download" in message
    relative = load_dataset("cifar10", "root/cifar10")  # recorded as the full path
    assert relative.source.startswith(str(isolated / "cifar10") + " ")


def test_missing_fashionmnist_mentions_debian_package(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashionmnist", isolated)


def test_folder_lacking_files_names_them(isolated: Path) -> None:
    _write_cifar10(isolated / "cifar-10-batches-py", np.random.default_rng(7))
    (isolated / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", isolated)
    (isolated / "cifar100").mkdir()
    np.savez(isolated / "cifar100" / "train.npz", x=np.zeros((1, 32, 32, 3), np.uint8),
             y=np.zeros(1, int))
    with pytest.raises(DatasetNotFoundError, match="test.npz"):
        load_dataset("cifar100", isolated)


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(DataError, match="cifar100"):
        load_dataset("cifar1000")
    with pytest.raises(DataError, match="fashionmnist"):
        load_dataset("fashionmnst")
    assert [D.canonical_name(n) for n in ("CIFAR10", "cifar-10", "Fashion_MNIST", "FMNIST")] \
        == ["cifar10", "cifar10", "fashionmnist", "fashionmnist"]
    assert set(DATASET_NAMES) == set(spec._SPECS)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx(isolated: Path, gz: bool) -> None:
    folder = isolated / "FashionMNIST" / "raw"
    _write_idx(folder, np.random.default_rng(8), gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    blob = (folder / name).read_bytes()
    (folder / name).write_bytes(blob[: len(blob) - 100])
    with pytest.raises(CorruptDatasetError, match=name) as info:
        load_dataset("fashionmnist", isolated)
    assert "download" in str(info.value)


def test_idx_wrong_magic(isolated: Path) -> None:
    folder = isolated / "fashion-mnist"
    _write_idx(folder, np.random.default_rng(9), gz=False)
    labels = (folder / "t10k-labels-idx1-ubyte").read_bytes()
    (folder / "t10k-labels-idx1-ubyte").write_bytes((2051).to_bytes(4, "big") + labels[4:])
    with pytest.raises(CorruptDatasetError, match="magic number is 2051, expected 2049"):
        load_dataset("fashionmnist", isolated)


@pytest.mark.parametrize(
    "case, match",
    [
        ("float_x", "dtype float32, expected uint8"),
        ("nchw_x", r"expected \(N, 32, 32, 3\)"),
        ("label_range", r"outside \[0, 10\)"),
        ("negative_label", r"outside \[0, 10\)"),
        ("length", "20 images but 19 labels"),
        ("float_y", "1-D integer"),
        ("no_y", "lacks array"),
        ("garbage", "not a readable .npz"),
        ("truncated", "npz"),
        ("names", "lists 3 class names"),
    ],
)
def test_bad_npz(isolated: Path, case: str, match: str) -> None:
    folder = isolated / "cifar10"
    _tiny_npz(folder)
    train = folder / "train.npz"
    x = np.zeros((20, 32, 32, 3), np.uint8)
    y = np.arange(20) % 10
    if case == "float_x":
        np.savez(train, x=x.astype(np.float32), y=y)
    elif case == "nchw_x":
        np.savez(train, x=x.transpose(0, 3, 1, 2).copy(), y=y)
    elif case == "label_range":
        np.savez(train, x=x, y=y + 1)
    elif case == "negative_label":
        np.savez(train, x=x, y=y - 1)
    elif case == "length":
        np.savez(train, x=x, y=y[:19])
    elif case == "float_y":
        np.savez(train, x=x, y=y.astype(np.float64))
    elif case == "no_y":
        np.savez(train, x=x)
    elif case == "garbage":
        train.write_bytes(b"this is not a zip file at all" * 10)
    elif case == "truncated":
        blob = train.read_bytes()
        train.write_bytes(blob[: len(blob) // 2])
    elif case == "names":
        np.savez(train, x=x, y=y, label_names=np.array(["a", "b", "c"]))
    with pytest.raises(CorruptDatasetError, match=match) as info:
        load_dataset("cifar10", isolated)
    assert "train.npz" in str(info.value) and "--download" in str(info.value)


def test_cifar10_npz_is_not_taken_for_cifar100(isolated: Path) -> None:
    names = np.array(list(spec._CIFAR10_CLASSES))
    x = np.zeros((10, 32, 32, 3), np.uint8)
    _write_npz(isolated, x, np.arange(10), x, np.arange(10), label_names=names)
    with pytest.raises(CorruptDatasetError, match="lists 10 class names but CIFAR-100 has 100"):
        load_dataset("cifar100", isolated)
    assert load_dataset("cifar10", isolated).num_classes == 10


class _Evil:
    """Unpickling this runs a shell command: exactly what the loader must never do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(isolated: Path) -> None:
    folder = isolated / "cifar-10-batches-py"
    _write_cifar10(folder, np.random.default_rng(10))
    marker = isolated / "pwned"
    evil = {b"data": np.zeros((6, 3072), np.uint8), b"labels": [0] * 6, b"x": _Evil(marker)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(CorruptDatasetError, match="refusing to load global") as info:
        load_dataset("cifar10", isolated)
    assert "data_batch_1" in str(info.value)
    assert not marker.exists()
    # Sanity check of the test itself: plain pickle would have run the command.
    pickle.loads(pickle.dumps(_Evil(marker)))
    assert marker.exists()


def test_malicious_pickle_refused_in_tar(isolated: Path) -> None:
    src = isolated / "src" / "cifar-10-batches-py"
    _write_cifar10(src, np.random.default_rng(11))
    marker = isolated / "pwned"
    (src / "batches.meta").write_bytes(pickle.dumps(_Evil(marker)))
    _tar_folder(src, isolated / "cifar-10-python.tar.gz")
    with pytest.raises(CorruptDatasetError, match="batches.meta"):
        load_dataset("cifar10", isolated)
    assert not marker.exists()


@pytest.mark.parametrize(
    "record, match",
    [
        ({b"data": np.zeros((6, 3072), np.uint8)}, "lacks key 'labels'"),
        ({b"labels": [0] * 6}, "lacks key 'data'"),
        ({b"data": np.zeros((6, 3071), np.uint8), b"labels": [0] * 6}, r"uint8 \(N, 3072\)"),
        ({b"data": np.zeros((6, 3072), np.int16), b"labels": [0] * 6}, r"uint8 \(N, 3072\)"),
        ({b"data": np.zeros((6, 3072), np.uint8), b"labels": [0] * 5}, "6 images but 5 labels"),
        ({b"data": np.zeros((6, 3072), np.uint8), b"labels": [10] * 6}, r"outside \[0, 10\)"),
        ([1, 2, 3], "holds a list, expected a dict"),
    ],
)
def test_bad_cifar_pickle(isolated: Path, record: object, match: str) -> None:
    folder = isolated / "cifar-10-batches-py"
    _write_cifar10(folder, np.random.default_rng(12))
    (folder / "data_batch_4").write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(CorruptDatasetError, match=match) as info:
        load_dataset("cifar10", isolated)
    assert "data_batch_4" in str(info.value)


def test_truncated_pickle(isolated: Path) -> None:
    folder = isolated / "cifar-10-batches-py"
    _write_cifar10(folder, np.random.default_rng(13))
    blob = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(blob[:1000])
    with pytest.raises(CorruptDatasetError, match="test_batch.*not a readable pickle"):
        load_dataset("cifar10", isolated)


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes = b"x",
                kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(payload) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    "name, kind, link",
    [
        ("../evil", tarfile.REGTYPE, ""),
        ("cifar-10-batches-py/../../evil", tarfile.REGTYPE, ""),
        ("/tmp/evil", tarfile.REGTYPE, ""),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc/passwd"),
    ],
)
def test_bad_tar_member(isolated: Path, name: str, kind: bytes, link: str) -> None:
    src = isolated / "src" / "cifar-10-batches-py"
    _write_cifar10(src, np.random.default_rng(14))
    archive = isolated / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=src.name)
        _add_member(tar, name, kind=kind, link=link)
    with pytest.raises(CorruptDatasetError, match="unsafe member|link or special") as info:
        load_dataset("cifar10", isolated)
    assert "cifar-10-python.tar.gz" in str(info.value)
    assert not (isolated / "evil").exists() and not (isolated.parent / "evil").exists()
    with pytest.raises(CorruptDatasetError):  # the download path's extraction refuses it too
        download._safe_extract(spec._SPECS["cifar10"], archive, isolated / "out")
    assert not (isolated / "out" / "cifar-10-batches-py").exists()


def test_truncated_tar(isolated: Path) -> None:
    src = isolated / "src" / "cifar-10-batches-py"
    _write_cifar10(src, np.random.default_rng(15))
    archive = isolated / "cifar-10-python.tar.gz"
    _tar_folder(src, archive)
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(CorruptDatasetError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", isolated)


# --------------------------------------------------------------------------- ImageData and subset

def _image_data(counts: list[int], n_test: int = 30, seed: int = 0) -> ImageData:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    x = np.zeros((len(y), 4, 4, 3), np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 2] = np.divmod(np.arange(len(y)), 256)  # an id per image
    x[:, 0, 0, 1] = y
    y_test = np.arange(n_test) % len(counts)
    x_test = np.zeros((n_test, 4, 4, 3), np.uint8)
    x_test[:, 0, 0, 1] = y_test
    return ImageData(name="cifar10", x_train=torch.from_numpy(x), y_train=torch.from_numpy(y),
                     x_test=torch.from_numpy(x_test), y_test=torch.from_numpy(y_test),
                     classes=[f"c{i}" for i in range(len(counts))], source="synthetic")


def test_image_data_properties_and_default_stats() -> None:
    data = _image_data([5] * 10)
    assert (data.num_classes, data.in_chans, data.image_size) == (10, 3, 4)
    assert data.mean == (0.4914, 0.4822, 0.4465)  # the dataset's constants by name
    assert "train=(50, 4, 4, 3)" in repr(data)
    other = ImageData(name="custom", x_train=torch.full((2, 2, 2, 1), 255, dtype=torch.uint8),
                      y_train=torch.zeros(2, dtype=torch.int64),
                      x_test=torch.zeros((1, 2, 2, 1), dtype=torch.uint8),
                      y_test=torch.zeros(1, dtype=torch.int64), classes=["a"])
    assert other.mean == (1.0,) and other.std == (0.0,)  # computed when there are no constants


def test_subset_stratified_and_deterministic() -> None:
    counts = [50, 30, 20, 10, 40, 25, 15, 35, 45, 5]  # imbalanced on purpose
    data = _image_data(counts)
    small = subset(data, train=57, test=10, seed=3)
    assert len(small.y_train) == 57 and len(small.y_test) == 10
    got = torch.bincount(small.y_train, minlength=10).numpy()
    exact = 57 * np.array(counts) / sum(counts)
    assert np.all(np.abs(got - exact) < 1)  # each class gets its proportional share
    assert torch.bincount(small.y_test, minlength=10).tolist() == [1] * 10
    assert torch.equal(small.x_train[:, 0, 0, 1].long(), small.y_train)  # pairs kept together
    ids = small.x_train[:, 0, 0, 0].long() * 256 + small.x_train[:, 0, 0, 2].long()
    assert len(set(ids.tolist())) == 57 and bool((ids[1:] > ids[:-1]).all())  # distinct, in order
    again = subset(data, train=57, test=10, seed=3)
    assert torch.equal(again.x_train, small.x_train) and torch.equal(again.y_test, small.y_test)
    other = subset(data, train=57, test=10, seed=4)
    assert not torch.equal(other.x_train, small.x_train)
    assert small.mean == data.mean and small.classes == data.classes and "seed=3" in small.source


def test_subset_none_keeps_and_errors() -> None:
    data = _image_data([5] * 10)
    same = subset(data, test=3)
    assert same.x_train is data.x_train and len(same.y_test) == 3
    assert len(subset(data, train=50).y_train) == 50
    with pytest.raises(DataError, match="asked for 51 train images but the train split has 50"):
        subset(data, train=51)
    with pytest.raises(DataError, match="test"):
        subset(data, test=31)
    with pytest.raises(DataError):
        subset(data, train=-1)
