"""``--download``: fetch a data set with torchvision's URLs and checksums, unpack it safely."""

from __future__ import annotations

import tarfile
from pathlib import Path

from .formats import _check_member
from .spec import DataError, _Spec


def _download(spec: _Spec, root: Path) -> None:
    """Fetch ``spec`` into ``root`` with torchvision's URLs and MD5 checks, then unpack safely.

    torchvision's own dataset classes are not used to read the files: they call plain
    ``pickle.load`` on CIFAR, and their tar extraction has no path filter.
    """
    from torchvision import datasets as tv_datasets  # lazy: slow import, needed only here
    from torchvision.datasets import utils as tv_utils

    tv_class = getattr(tv_datasets, spec.tv_class)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if spec.archive:
            tv_utils.download_url(tv_class.url, root, filename=tv_class.filename,
                                  md5=tv_class.tgz_md5)
            _safe_extract(spec, root / tv_class.filename, root)
        else:
            raw = root / "FashionMNIST" / "raw"  # torchvision's layout
            for filename, md5 in tv_class.resources:
                errors = []
                for mirror in tv_class.mirrors:
                    try:
                        tv_utils.download_url(f"{mirror}{filename}", raw, filename=filename,
                                              md5=md5)
                        break
                    except Exception as e:  # noqa: BLE001 - try the next mirror
                        errors.append(f"{mirror}: {e}")
                else:
                    raise RuntimeError("; ".join(errors))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - network and disk errors alike need the same advice
        raise DataError(
            f"downloading {spec.title} into {root} failed ({type(e).__name__}: {e}). Without "
            f"internet access, fetch {spec.url} on another machine and copy it into {root}."
        ) from e


def _safe_extract(spec: _Spec, archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            _check_member(spec, archive, member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python < 3.11.4; every member was checked above
            tar.extractall(dest)
