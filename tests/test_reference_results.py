"""The sample tables of README.md and docs/results.md are the committed reference sweep
(results/reference/compare_seeds.csv): a rerun of the sweep that is not copied into the docs, or a doc edited by
hand, fails here."""

from __future__ import annotations

import csv
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS_CSV = ROOT / "results" / "reference" / "compare_seeds.csv"
TRIMODAL = "text+image+audio"
# README: two fusions per row, "| `late` (default) | 0.803 ± 0.012 | `tensor` | 0.793 ± 0.013 |", "*" if significant
README_CELL = re.compile(r"\| `(\w+)`(?: \(default\))? \| (\d\.\d{3}) ± (\d\.\d{3})( \*)? ")
# docs/results.md: "| 2 | late | 0.803 ± 0.012 | [0.773, 0.833] | -0.001 [...] | n.s. | ..."
DOCS_ROW = re.compile(
    r"^\| (\d+) \| (\*?[\w ]+?\*?) \| \**(\d\.\d{3})\** ± (\d\.\d{3}) \| \[[^]]*\] \| [^|]* \| (\*|n\.s\.|) \|"
)


def _reference() -> dict[str, dict[str, str]]:
    """configuration name as the docs write it (fusion, or '*<modality> only*') -> its row of the seeds table."""
    rows = {}
    for row in csv.DictReader(SEEDS_CSV.open()):
        modality, fusion = row["configuration"].split(" · ")
        rows[fusion if modality == TRIMODAL else f"*{modality} only*"] = row
    return rows


def _figures(row: dict[str, str]) -> tuple[str, str, bool]:
    return f"{float(row['mean']):.3f}", f"{float(row['std']):.3f}", row["significant"] == "True"


def test_the_readme_table_is_the_reference_sweep():
    reference = _reference()
    cells = README_CELL.findall((ROOT / "README.md").read_text())
    fusions = {name: (mean, std, bool(star)) for name, mean, std, star in cells}
    expected = {name: _figures(row) for name, row in reference.items() if not name.startswith("*")}
    assert fusions == expected


def test_the_docs_table_is_the_reference_sweep_in_its_order():
    reference = _reference()
    lines = (ROOT / "docs" / "results.md").read_text().splitlines()
    rows = [m.groups() for m in map(DOCS_ROW.match, lines) if m]
    assert [(int(rank), name) for rank, name, *_ in rows] == [
        (int(row["rank"]), name) for name, row in sorted(reference.items(), key=lambda item: int(item[1]["rank"]))
    ]
    for _, name, mean, std, sig in rows:
        expected_mean, expected_std, significant = _figures(reference[name])
        assert (mean, std) == (expected_mean, expected_std), name
        assert sig == ("*" if significant else "n.s." if reference[name]["diff_vs_best"] else ""), name
