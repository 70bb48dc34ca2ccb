"""Every relative link of the hand-written docs resolves: the file exists and a #fragment names one of its headings
(GitHub's anchors), so a renamed section or moved file fails here instead of in a reader's browser. The benchmark
result folders' generated tables have their own check (tests/test_accuracy_benchmark.py)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = (
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "benchmarks").glob("*.md")),
    *sorted((ROOT / "benchmarks" / "accuracy").glob("*.md")),
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (letters, digits, _ and - kept), spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code fences); a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        anchor = github_anchor(heading)
        found.add(anchor if anchor not in seen else f"{anchor}-{seen[anchor]}")
        seen[anchor] = seen.get(anchor, 0) + 1
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of `path` whose file is missing or whose #fragment names no heading of it."""
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file, _, fragment = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target} (no heading with that anchor in {destination.name})")
    return broken


def test_anchors_follow_github():
    assert github_anchor("How the defaults were chosen (single runs, seed 0, avdigits / postcards, same machine)") == (
        "how-the-defaults-were-chosen-single-runs-seed-0-avdigits--postcards-same-machine"
    )
    assert github_anchor("Larger data: 5,000 records") == "larger-data-5000-records"


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# A section\n\n```\n# not a heading\n```\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-section) [gone](missing.md) [renamed](other.md#not-a-heading) [web](https://x.org/#y)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md (no such file)",
        "other.md#not-a-heading (no heading with that anchor in other.md)",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    assert broken_links(doc) == []
