"""Output of every listing verb (status, runs, journal show, check, plan) in one of three forms,
as OpenStack's client does (``-f table|json|value``): one renderer, so they all look alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

FORMATS = ("table", "json", "value")


def cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str, out: TextIO) -> None:
    """table: aligned columns under a header; json: a list of objects; value: the cells, space separated."""
    if fmt == "json":
        json.dump([{c: r.get(c) for c in columns} for r in rows], out, indent=2, default=str)
        out.write("\n")
        return
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    if fmt == "value":
        for line in cells:
            out.write(" ".join(line) + "\n")
        return
    widths = [max(len(c), *(len(line[i]) for line in cells)) if cells else len(c) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for line in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")
