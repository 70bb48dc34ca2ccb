"""Result tables: one per benchmark section, printed fixed-width on the terminal and as Markdown for RESULTS.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

MISSING = "n/a"


@dataclass
class Table:
    """A titled grid of already formatted cells, with notes printed under it (what was measured, caveats)."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        """Append one row; it must have one cell per column."""
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.title!r}: row has {len(cells)} cells, expected {len(self.columns)}")
        self.rows.append(cells)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [[cell_text(c) for c in row] for row in self.rows],
            "notes": list(self.notes),
        }


def cell_text(value: Any, digits: int = 3) -> str:
    """A cell as text: floats with `digits` significant digits (thousands kept whole), None as n/a."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return MISSING
        if abs(value) >= 10**digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def times(value: float | None) -> str:
    """A ratio as "3.2x" (n/a when missing)."""
    return MISSING if value is None else f"{cell_text(value)}x"


def percent(value: float | None) -> str:
    """A fraction as "87%" (n/a when missing)."""
    return MISSING if value is None else f"{value:.0%}"


def verdict(passed: bool | None) -> str:
    """An acceptance check as PASS / FAIL (n/a when it could not be measured)."""
    return MISSING if passed is None else ("PASS" if passed else "FAIL")


def format_text(table: Table) -> str:
    """Fixed-width text: title, header, rule, right-aligned rows (left-aligned first column), notes."""
    grid = [list(table.columns)] + [[cell_text(c) for c in row] for row in table.rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(table.columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        )

    out = [table.title, line(grid[0]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in grid[1:]]
    out += [f"  note: {note}" for note in table.notes]
    return "\n".join(out)


def format_markdown(table: Table, heading_level: int = 3) -> str:
    """A Markdown heading, pipe table (numbers right-aligned) and the notes as a bullet list."""

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    align = [":---" if i == 0 else "---:" for i in range(len(table.columns))]
    out = [f"{'#' * heading_level} {table.title}", "", row(table.columns), row(align)]
    out += [row([cell_text(c) for c in r]) for r in table.rows]
    if table.notes:
        out += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(out) + "\n"
