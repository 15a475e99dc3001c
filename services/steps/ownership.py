"""The service owner on the target's /etc/<service> and /var/lib/<service>."""

from __future__ import annotations

from services.infra.context import UpgradeContext
from services.infra.host import check, command_text
from services.steps.argv import chown_argv
from services.steps.databases import svc
from statemachine.step import Result, Step


# ---------------------------------------------------------------------- ownership
def ownership_step(name: str) -> Step:
    """chown -R the service owner on its target directories, the owners before kept for undo. Its
    commands are written out, not recorded: it chowns only the directories that exist and reads their
    owners first, which a recording host cannot answer."""
    def paths(ctx: UpgradeContext) -> list[str]:
        t = ctx.target
        return [p for p in (f"{t.etc}/{name}", f"{t.lib}/{name}") if t.host.exists(p)]

    def run(ctx: UpgradeContext) -> Result:
        owner = svc(ctx, name).owner
        t = ctx.target
        before = {}
        for p in paths(ctx):
            before[p] = check(t.host, ["stat", "-c", "%u:%g", p], f"reading the owner of {p}").stdout.strip()
        for p in before:
            check(t.host, chown_argv(owner, p), f"chown of {p}")
        return {"owner": owner, "before": before}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        # /etc/<name> comes back with its owners when install_config is undone; /var/lib needs this
        if not result:
            return
        for p, owner in result["before"].items():
            if p.startswith(f"{ctx.target.lib}/") and ctx.target.host.exists(p):
                check(ctx.target.host, chown_argv(owner, p), f"chown of {p}")

    def commands(ctx: UpgradeContext) -> list[str]:
        t, owner = ctx.target, svc(ctx, name).owner
        paths = (f"{t.etc}/{name}", f"{t.lib}/{name}")
        return [command_text(chown_argv(owner, p)) + "   # if it exists" for p in paths]

    return Step(f"{name}.fix_ownership", "ownership_fixed", run, undo, host="target", kind="ownership",
                describe=f"chown -R the service owner on /etc/{name} and /var/lib/{name} of the target",
                commands=commands)
