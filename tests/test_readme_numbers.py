"""The README quotes only numbers that a committed record or document holds, and its links resolve.

Every number in README.md with a ``%``, ``×`` or ``x`` suffix (``94.62%``, ``28×``, and both
ends of a range such as ``84.56–85.46%``) and every number with thousands separators
(``391,626``) must occur in at least one file under ``results/`` or ``docs/`` that git tracks
(docs/results.md gives each with its command, machine, date and record). A decimal such as
``94.62`` counts as found where it stands as a number of its own (a report cell ``94.62 ± 0.10``
counts); an integer with a suffix must be found with that suffix (``28×``, ``28x``, ``10%``),
since a bare integer is found anywhere; ``391,626`` counts as found as ``391,626`` or as
``391626`` (a JSON record). The rows of the README's CPU-budget Table II must be the rows of
results/table_II_cpu/report.md, and every relative Markdown link in README.md and
docs/results.md must point to an existing path.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS_DOC = ROOT / "docs" / "results.md"

_NUM = r"\d+(?:\.\d+)?"
#: A number with a suffix, or a chain of them that shares one: 84.56–85.46%, 93.03 ± 0.04%,
#: 94.62 vs 95.58%.
_SUFFIXED = re.compile(
    rf"(?<![\w.,]){_NUM}(?:\s?(?:±|–|vs\.?|and|or|to)\s?[+−-]?{_NUM})*\s?(%|×|x)(?!\w)"
)
_THOUSANDS = re.compile(r"(?<![\w.,\[])\d{1,3}(?:,\d{3})+(?![\d,\]]|\.\d)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@lru_cache(maxsize=1)
def _corpus() -> str:
    """The text of every tracked file under results/ and docs/ (text files only)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "results", "docs"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        paths = [ROOT / p for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what is on disk
        paths = [p for d in ("results", "docs") for p in (ROOT / d).rglob("*") if p.is_file()]
    texts = []
    for path in paths:
        if path.suffix.lower() in {".png", ".safetensors", ".pt", ".bin"} or not path.is_file():
            continue
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return "\n".join(texts)


def readme_numbers(text: str) -> list[str]:
    """The README's numbers that must have a source, as written (``94.62%``, ``391,626``)."""
    found: list[str] = []
    for m in _SUFFIXED.finditer(text):
        found += [f"{num}{m.group(1)}" for num in re.findall(_NUM, m.group(0))]
    found += _THOUSANDS.findall(text)
    return list(dict.fromkeys(found))


def has_source(number: str, corpus: str) -> bool:
    if "," in number and number[-1].isdigit():
        plain = number.replace(",", "")
        return any(re.search(rf"(?<![\d.,]){re.escape(n)}(?!\d|,\d|\.\d)", corpus)
                   for n in (number, plain))
    value, suffix = number[:-1], number[-1]
    if "." in value:  # a decimal: as a number of its own
        return re.search(rf"(?<![\d.]){re.escape(value)}(?!\d|\.\d)", corpus) is not None
    suffixes = "%" if suffix == "%" else "×x"
    return re.search(rf"(?<![\d.]){value}\s?[{suffixes}]", corpus) is not None


def test_every_readme_number_has_a_committed_source() -> None:
    numbers = readme_numbers(README.read_text(encoding="utf-8"))
    assert len(numbers) > 20, numbers  # the extraction works at all
    missing = [n for n in numbers if not has_source(n, _corpus())]
    assert not missing, (
        "README.md numbers found in no tracked file under results/ or docs/ "
        f"(add the source line to docs/results.md, or fix the README): {missing}")


def test_the_extraction() -> None:
    text = ("94.62% and 84.56–85.46% with 28× fewer, 1.75x, 391,626 weights (11,174k); "
            "93.03 ± 0.04%, widths [64,128,256,256], 3×3 convolutions, 32x32 input, c_K=64")
    assert readme_numbers(text) == ["94.62%", "84.56%", "85.46%", "28×", "1.75x", "93.03%",
                                    "0.04%", "391,626", "11,174"]
    corpus = "test % 94.62 ± 0.10, 28.53×, \"weights\": 391626, 1.75 1.00"
    assert has_source("94.62%", corpus) and has_source("391,626", corpus)
    assert has_source("1.75x", corpus)
    assert not has_source("28×", corpus) and not has_source("4.62%", corpus)


def _table(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip().strip("*") for c in row.strip("|").split("|")] for row in rows[2:]]


def test_cpu_budget_table_matches_the_report() -> None:
    readme_rows = _table(README.read_text(encoding="utf-8"), "## Does the claim hold at a CPU budget?")
    report = (ROOT / "results" / "table_II_cpu" / "report.md").read_text(encoding="utf-8")
    report_rows: dict[str, set[str]] = {}
    for line in report.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            report_rows.setdefault(cells[0], set()).update(cells[1:])
    assert readme_rows
    for row in readme_rows:
        assert row[0] in report_rows, f"README row {row[0]!r} is not a row of the report"
        wrong = [c for c in row[1:] if c not in report_rows[row[0]]]
        assert not wrong, f"README row {row[0]!r}: {wrong} not in the report's row"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, punctuation dropped)."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_relative_links_resolve() -> None:
    broken = []
    for doc in (README, RESULTS_DOC):
        text = doc.read_text(encoding="utf-8")
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(
                    path.read_text(encoding="utf-8")):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, f"links to missing paths: {broken}"
