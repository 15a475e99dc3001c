"""`upgrade plan PLAN`: every step of every machine a run drives, on which host, with the exact commands.

The machines are the run's own, in the run's order (``app.run_machines``): the services, the IP
switchover, the compute hosts, then the services after the computes (nova-unpin). A phase of the
run is whatever machines ``fleet.machines`` builds, so a new one shows up here without code of its
own. The commands come from the steps themselves (recorded from ``Step.acts``, else
``Step.commands``), built by the same argv helpers the steps run, so what is shown is what runs.
Nothing connects anywhere: the controllers are given name-only hosts, the other hosts are never
used. Secrets pass the redactor on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.filesize import decimal

from services.fleet import cloudcheck
from services.infra import recording
from services.infra.settings import ServiceSettings, Side
from services.registry import AFTER_COMPUTES
from statemachine import diagram
from statemachine.machine import ServiceMachine
from upgrade import app, estimate, tables, window
from upgrade.plan import Plan


class NamedHost:
    """A host known by its name only: `upgrade plan` shows commands, it never runs one."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        raise RuntimeError(f"`upgrade plan` never acts on a host (asked for {attr} on {self.name})")


@dataclass
class PlanContext:
    """What ``Step.commands`` may read: both controllers and the services' settings."""

    source: Side
    target: Side
    services: dict[str, ServiceSettings]
    from_release: str = ""
    to_release: str = ""


#: how `upgrade plan` marks the steps the runner takes out of the maintenance window
PHASE_NOTE = {"before": "   [before the window: every service's, before the first stop]",
              "after": "   [after the window: once every service is verified]"}


def machines(plan: Plan, log: list[recording.Recorded] | None = None) -> list[ServiceMachine]:
    """Every machine a run of *plan* drives, built as the run builds them, in the run's order; the hosts
    beyond the controllers (compute hosts, the switchover's check host) record into *log*, never run."""
    shared = [] if log is None else log
    return app.run_machines(plan, lambda spec, name: recording.RecordingHost(name, name, shared))[0]


def headings(plan: Plan, found: list[ServiceMachine]) -> dict[str, str]:
    """What `upgrade plan` says of each of the run's machines (*found*) beyond its name: when it runs, if not in
    the services' turn, and with how many others side by side."""
    _order, groups = app.run_machines(plan, lambda spec, name: recording.RecordingHost(name, name))
    side_by_side = {m: g for g in groups for m in g.machines if m not in plan.services}
    first_extra = next((i for i, m in enumerate(found) if m.name not in plan.services), None)
    out = {}
    for i, m in enumerate(found):
        notes = []
        if m.name == cloudcheck.MACHINE:
            notes.append("the run's last: after every machine above")
        elif m.name not in plan.services:
            notes.append("after every service above")
        elif plan.unpin_later and m.name in AFTER_COMPUTES:
            notes.append("not in `upgrade run`: left for `upgrade unpin PLAN`, once every compute runs the new "
                         "release")
        elif first_extra is not None and i > first_extra:
            notes.append("after the hosts above")
        if (g := side_by_side.get(m.name)) is not None and len(g.machines) > 1:
            notes.append(f"side by side with the other {len(g.machines) - 1} of its kind, at most {g.pool} at once")
        out[m.name] = f"   [{'; '.join(notes)}]" if notes else ""
    return out


def steps(plan: Plan) -> list[dict[str, Any]]:
    """One row per step of every machine (services, the IP switchover, compute hosts, nova-unpin): machine
    (``service``), number, step, state reached, host, phase (``before`` the window: preparation run before
    the first stop; ``after`` it: finishing steps run once every service is verified; else empty),
    description, commands (redacted)."""
    ctx = PlanContext(source=app.side(plan.source, NamedHost(plan.source.host)),
                      target=app.side(plan.target, NamedHost(plan.target.host)), services=plan.service_settings,
                      from_release=plan.from_release, to_release=plan.to_release)
    log: list[recording.Recorded] = []
    found = machines(plan, log)
    notes = headings(plan, found)
    red = app.redactor_for(plan)
    specs = {"source": plan.source, "target": plan.target}
    rows = []
    for m in found:
        for i, step in enumerate(m.steps, 1):
            spec = specs.get(step.host)
            rows.append({"service": m.name, "note": notes[m.name], "n": i, "step": step.name, "state": step.state,
                         "host": f"{step.host} ({spec.host})" if spec else step.host,
                         "phase": "before" if step.prepare else "after" if step.finish else "",
                         "describe": red.text(step.describe),
                         "commands": [red.text(c) for c in recording.command_lines(step, ctx, log)]})
    return rows


def render(plan: Plan, out: TextIO) -> None:
    out.write(f"plan {plan.path}: {', '.join(plan.services)} {plan.from_release} -> {plan.to_release}\n"
              f"journal {plan.journal_dir}; vault {plan.artifact_dir or plan.journal_dir / 'artifacts'}\n")
    for spec in (plan.source, plan.target):
        out.write(f"{spec.role}: host {spec.host}, etc {spec.etc}, lib {spec.lib}, bin {spec.bin or '(PATH)'}, "
                  f"DB {spec.db.address}:{spec.db.port} as {spec.db.admin_user}\n")
        if spec.group is not None:
            vip = spec.group.vip
            members = ", ".join(f"{m.name} {m.host.url} ({', '.join(m.roles)})" for m in spec.group.members)
            out.write(f"  group: {members}; VIP {vip.address} on {vip.device} held by {vip.owner}"
                      f"{f' resource {vip.resource}' if vip.resource else ''} (HA: checked, not run yet)\n")
    service = None
    for row in steps(plan):
        if row["service"] != service:
            service = row["service"]
            out.write(f"\n{service}{row['note']}\n")
        phase = PHASE_NOTE.get(row["phase"], "")
        out.write(f"  {row['n']:>2}. {row['step']}  on {row['host']}  -> {row['state']}{phase}\n"
                  f"      {row['describe']}\n")
        for c in row["commands"]:
            out.write(f"      $ {c}\n")
    out.write("\nrevert undoes the committed steps backwards (`upgrade plan --graph FILE.svg` draws both ways)\n")
    render_estimate(plan, out)


def render_estimate(plan: Plan, out: TextIO) -> None:
    """The estimated maintenance window, or why there is none: the plan is shown offline too, so an
    unreachable source DB is a line of output, never a failure."""
    red = app.redactor_for(plan)
    out.write("\nestimated maintenance window (first stop on the old controller -> verification on the new):\n")
    try:
        cutover = any(s.window == window.CUTOVER for m in machines(plan) for s in m.steps)
        est = estimate.estimate(plan, cutover)
    except estimate.EstimateUnavailable as exc:
        out.write(red.text(f"estimate unavailable: {exc}") + "\n")
        return
    if not est.services:
        out.write("no service of this plan is stopped on the old controller: no window\n")
        return
    rows = [{"service": s.service, "databases": ", ".join(s.databases), "size": decimal(s.bytes), "rows": s.rows,
             "dump": window.human(s.dump), "import": window.human(s.import_), "fixed": window.human(s.fixed),
             "fixed from": s.fixed_from, "window": window.human(s.seconds)} for s in est.services]
    rows.append({"service": "total", "size": decimal(sum(s.bytes for s in est.services)),
                 "rows": sum(s.rows for s in est.services), "dump": window.human(sum(s.dump for s in est.services)),
                 "import": window.human(sum(s.import_ for s in est.services)),
                 "fixed": window.human(sum(s.fixed for s in est.services)), "window": window.human(est.seconds)})
    tables.render(rows, ("service", "databases", "size", "rows", "dump", "import", "fixed", "fixed from", "window"),
                  "table", out)
    r = est.rates
    lines = [f"rates: dump {r.dump_mbps:.1f} MB/s, import {r.import_mbps:.1f} MB/s — {r.rates_from}",
             f"fixed: schema upgrade, status check, start, verify and the other steps of a service; measured by "
             f"run {r.fixed_from} where shown, else {window.human(estimate.DEFAULT_FIXED_SECONDS)} (default)"
             if r.fixed_from else
             f"fixed: schema upgrade, status check, start, verify and the other steps of a service: "
             f"{window.human(estimate.DEFAULT_FIXED_SECONDS)} each (default)",
             "size: data_length + index_length of the source's tables (information_schema), rows estimated; "
             "services one after another"]
    if any(s.service == window.CUTOVER for s in est.services):
        lines.append("cutover: after the services, the steps the clients still wait for (the management address or "
                     "the VIP moved, the other HA members started) until it answers from the new side; "
                     f"{window.human(estimate.DEFAULT_CUTOVER_SECONDS)} when no run measured it")
    if est.history_note:
        lines.append(f"no measurements: {est.history_note}")
    missing = [f"{d} ({s.service})" for s in est.services for d in s.missing]
    if missing:
        lines.append(f"not on the source (counted as empty; `upgrade check` fails on it): {', '.join(missing)}")
    out.write("".join(red.text(line) + "\n" for line in lines))


def graph(plan: Plan, path: str | Path) -> Path:
    """Draw the plan's machines to *path*; a DiagramError (a user error) says what is missing."""
    return diagram.write(machines(plan), path)
