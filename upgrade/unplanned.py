"""Services the old controller runs that the plan does not name: found in `upgrade check`, refused by
`upgrade run` before it writes anything (see services/inventory.py for why and how they are found)."""

from __future__ import annotations

from services import inventory, registry
from services.registry import SERVICES
from upgrade import app
from upgrade.errors import UserError
from upgrade.plan import Plan


def findings(plan: Plan) -> list[inventory.Unplanned]:
    """What the source runs, in its keystone catalog or as daemons, that the plan neither upgrades nor ignores."""
    keystone = plan.service_settings.get("keystone")
    # the plan's units, else the spec's for the source release (cinder's include cinder-backup)
    units = [u for name, st in plan.service_settings.items()
             for u in (st.unit, *(st.options.get("units") or registry.spec(name).units_for(plan.from_release)))]
    return inventory.unplanned(app.side(plan.source), keystone.db_name if keystone else "keystone",
                               plan.services, units, plan.ignore)


def fix(plan: Plan, found: inventory.Unplanned) -> str:
    """How the operator resolves one finding: upgrade it with the rest, or ignore it with a reason."""
    ignore = f'[upgrade] ignore = {{{found.name} = "REASON"}} in {plan.path}'
    if found.name in SERVICES:
        return f"add \"{found.name}\" to upgrade.services, or say why it stays as it is: {ignore}"
    return (f"this tool does not upgrade {found.name}: move it to the new controller yourself (or stop it), "
            f"then say so: {ignore}")


def message(plan: Plan, found: list[inventory.Unplanned]) -> str:
    lines = [f"the old controller runs {len(found)} service(s) the plan does not name; they would keep running "
             "against the moved address and a database that is no longer written — nothing was changed:"]
    for f in found:
        lines.append(f"  {f.describe()} — {fix(plan, f)}")
    return "\n".join(lines)


def refuse(plan: Plan) -> None:
    """Before `upgrade run` writes anything: every service the source runs is upgraded or ignored (exit 2)."""
    if found := findings(plan):
        raise UserError(message(plan, found))
