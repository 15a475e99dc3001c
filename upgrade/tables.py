"""The one text-table renderer: every listing verb (status, runs, journal show, check, plan), the
demo and the benches print through it, in one of the forms of OpenStack's client
(``-f table|json|value``), so they all look alike.

table: a header, a rule of dashes, then the rows; columns left-aligned, two spaces apart, trailing
spaces trimmed (so the output stays easy to read with ``cut``, ``awk`` or ``partition("  ")``). A cell
may hold several lines; the rows are then set apart by an empty line, so each reads as a block.
Widths are counted in terminal cells (``rich.cells``), so a wide character does not shift a column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from rich.cells import cell_len

FORMATS = ("table", "json", "value")


def cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a plain text table of *rows* (cells are strings; ``\\n`` starts a cell's next line)."""
    split = [[c.split("\n") for c in row] for row in rows]
    widths = [max([cell_len(h), *(cell_len(line) for r in split for line in r[i])]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c + " " * (w - cell_len(c)) for c, w in zip(cells, widths, strict=True)).rstrip()

    tall = any(len(c) > 1 for r in split for c in r)
    out = [line(headers), "  ".join("-" * w for w in widths)]
    for i, r in enumerate(split):
        if tall and i:
            out.append("")
        out += [line([c[n] if n < len(c) else "" for c in r]) for n in range(max(len(c) for c in r))]
    return out


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """The lines of a Markdown table (for generated documents); columns numbered in *right* align right."""
    rule = "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"
    return ["| " + " | ".join(headers) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)]


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str, out: TextIO) -> None:
    """table: aligned columns under a header; json: a list of objects; value: the cells, space separated."""
    if fmt == "json":
        json.dump([{c: r.get(c) for c in columns} for r in rows], out, indent=2, default=str)
        out.write("\n")
        return
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    if fmt == "value":
        for values in cells:
            out.write(" ".join(values) + "\n")
        return
    out.write("".join(line + "\n" for line in text(columns, cells)))
