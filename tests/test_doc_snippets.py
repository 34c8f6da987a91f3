"""The Python snippets of README.md, docs/timm.md, docs/transforms.md, docs/hub.md and
docs/library.md run as written (in a fresh interpreter, in an empty folder: what a user who pastes them gets)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/timm.md", "docs/transforms.md", "docs/hub.md", "docs/library.md"]


def snippets() -> list[tuple[str, int, str]]:
    found = []
    for name in DOCS:
        text = (REPO / name).read_text()
        for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
            found.append((name, text[: m.start()].count("\n") + 1, m.group(1)))
    return found


def test_every_document_has_its_snippet() -> None:
    assert {name for name, _, _ in snippets()} == set(DOCS)


@pytest.mark.parametrize("name,line,code", snippets(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_snippet_runs_as_written(name: str, line: int, code: str, tmp_path) -> None:
    pytest.importorskip("timm")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{name}:{line}: the snippet fails:\n{result.stderr[-3000:]}"
