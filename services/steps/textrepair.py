"""``<service>.repair_text``: the repair of text an earlier bad conversion double-encoded, on the
target right after the import, only where the plan asks for it (``repair_double_encoded``).

``upgrade check`` finds such columns (``CafÃ©`` stored for ``Café``) and names them; the operator
lists the ones to repair. The rows are found on the source, which is only ever read, so the run
and its undo always find the same rows: the run writes each one's repaired text, the undo its
stored text, each in one transaction (a kill leaves all or nothing; doing it twice is doing it once).
"""

from __future__ import annotations

from typing import Any

from services.infra import charset
from services.releases import Jump
from services.steps.specs import db_specs
from statemachine.deps import needed
from statemachine.step import Result, Step, StepError

OPTION = "repair_double_encoded"


def _plans(ctx: Any, spec: Any, jump: Jump) -> dict[str, list[dict[str, Any]]]:
    """Per database of the service: the double-encoded rows of the columns the plan names."""
    name = spec.name
    st = ctx.services[name]
    names = [d.db_name(st) for d in db_specs(spec, jump)]
    try:
        targets = charset.parse_targets(st.options.get(OPTION) or [], names)
    except ValueError as exc:
        raise StepError(f"services.{name}.{exc}") from None
    imported = needed(ctx.results, name, "imported").get("databases", {})
    out = {}
    for db in names:
        mine = [(t, c) for d, t, c in targets if d == db]
        if mine:
            cols = imported.get(db, {}).get("columns", {})
            kinds = {f"{t}.{c}": k for t, cc in cols.items() for c, k in cc.items()}
            out[db] = charset.repair_rows(ctx.source.db, db, mine, kinds)
    return out


def repair_step(spec: Any, jump: Jump) -> Step:
    name = spec.name

    def run(ctx: Any) -> Result:
        out: dict[str, Any] = {"databases": {}}
        for db, plan in _plans(ctx, spec, jump).items():
            sets = charset.column_charsets(ctx.target.db, db)
            for col in plan:
                where = f"{col['table']}.{col['column']}"
                wide = [charset.key_text(col["keys"], tuple(r["key"])) for r in col["rows"]
                        if charset.has_4byte(r["repaired"])]
                if wide and sets.get(where) != "utf8mb4":
                    raise StepError(f"{db}.{where} is {sets.get(where)} on the target: the repaired text of row(s) "
                                    f"{', '.join(wide[:charset.SHOWN])} holds 4-byte characters it cannot store — "
                                    f"leave {db}.{where} out of {OPTION}, or fix those rows by hand",
                                    host=ctx.target.host.name)
            ctx.failpoint(f"{name}.repair_text:inside")
            charset.apply_repair(ctx.target.db, db, plan, "repaired")
            out["databases"][db] = {
                f"{c['table']}.{c['column']}": {
                    "rows": len(c["rows"]),
                    "keys": [charset.key_text(c["keys"], tuple(r["key"])) for r in c["rows"][:charset.SHOWN]]}
                for c in plan}
        return out

    def undo(ctx: Any, result: Result | None) -> None:
        for db, plan in _plans(ctx, spec, jump).items():
            charset.apply_repair(ctx.target.db, db, plan, "stored")

    def commands(ctx: Any) -> list[str]:
        entries = ", ".join(ctx.services[name].options.get(OPTION) or [])
        return [f"SQL: on the source, the rows of {entries} whose text is double-encoded (its latin1 bytes are UTF-8)",
                "SQL: on the target, in one transaction: UPDATE T SET C = CONVERT(CAST(CONVERT(C USING latin1) AS "
                "BINARY) USING utf8mb4) for each of those rows, by key   # undo: the stored text back"]

    return Step(f"{name}.repair_text", "text_repaired", run, undo, host="target", commands=commands,
                kind="fixup", requires=("imported",),
                describe=f"repair the {name} text an earlier conversion double-encoded (the plan's {OPTION})")


def with_repair(spec: Any, jump: Jump, steps: list[Step]) -> list[Step]:
    """*steps* with the repair right after the import (the schema upgrade then sees the repaired text)."""
    name = spec.name
    at = next(i for i, s in enumerate(steps) if s.name == f"{name}.import_db") + 1
    return [*steps[:at], repair_step(spec, jump), *steps[at:]]
