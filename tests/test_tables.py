"""The one table renderer (upgrade/tables.py): the exact text every listing verb, the demo and the
benches print, so a change of layout is a deliberate one."""

from __future__ import annotations

import io
import json

from upgrade import tables

ROWS = [{"service": "keystone", "state": "verified", "seconds": 12.5, "last_error": None},
        {"service": "glance", "state": "stopped", "seconds": 3, "last_error": "dump failed"}]
COLUMNS = ("service", "state", "seconds", "last_error")


def _render(fmt: str, rows=ROWS) -> str:
    out = io.StringIO()
    tables.render(rows, COLUMNS, fmt, out)
    return out.getvalue()


def test_table_aligns_columns_under_a_header_and_a_rule():
    assert _render("table") == (
        "service   state     seconds  last_error\n"
        "--------  --------  -------  -----------\n"
        "keystone  verified  12.5     -\n"
        "glance    stopped   3        dump failed\n")
    assert _render("table", []) == "service  state  seconds  last_error\n-------  -----  -------  ----------\n"


def test_value_and_json_keep_every_cell():
    assert _render("value") == "keystone verified 12.5 -\nglance stopped 3 dump failed\n"
    assert json.loads(_render("json")) == [{c: r.get(c) for c in COLUMNS} for r in ROWS]


def test_a_cell_of_several_lines_makes_blocks_and_wide_characters_keep_the_columns():
    lines = tables.text(("check", "detail"), [("vault key", "missing\nremedy: upgrade keygen"), ("日本", "ok")])
    assert lines == ["check      detail",
                     "---------  ----------------------",
                     "vault key  missing",
                     "           remedy: upgrade keygen",
                     "",
                     "日本       ok"]


def test_markdown_marks_the_right_aligned_columns():
    assert tables.markdown(("host", "seconds"), [("a", "1.0"), ("b", "22.5")], right=(1,)) == [
        "| host | seconds |", "|---|---:|", "| a | 1.0 |", "| b | 22.5 |"]
