"""What a step declares, and what is derived from it: a requirement no earlier step provides is a
programming error when the machines are built (before the journal holds anything); the maintenance
window reads the declared ``window``/``kind``, never a step's name; the catalog is whatever modules
``services/catalog/`` holds; and the commands `upgrade plan` shows for a recorded step are the argv a
run issues, collected by a recording host from the run itself (real MariaDB for the schema
revisions the run reads around its commands)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from services import registry, releases
from services.infra import recording
from services.infra.settings import DBEndpoint, ServiceControl, ServiceSettings, Side
from services.releases import Jump
from statemachine.deps import DependencyError, cross_waits, needed, publish
from statemachine.machine import ServiceMachine
from statemachine.runner import Runner
from statemachine.step import Step
from tests.test_new_databases import lab  # noqa: F401 (the module's real MariaDB)
from tests.test_runner_parallel import journal  # noqa: F401 (a journal in tmp_path)
from tests.test_window import Ev
from upgrade import window


def _ok(ctx: Any) -> dict[str, Any]:
    return {"ok": True}


# ---------------------------------------------------------------------- requires / provides
def test_a_requirement_no_earlier_step_provides_fails_when_the_machine_is_built() -> None:
    steps = [Step("svc.backup", "backed_up", _ok, kind="backup", provides=("backup",)),
             Step("svc.restore", "restored", _ok, requires=("backup", "dump"))]
    with pytest.raises(DependencyError, match=r"step svc.restore requires 'dump', which no earlier step of svc "
                                              r"provides \(earlier steps provide: backup\)"):
        ServiceMachine("svc", steps)
    # provided, but only later: the same error (a revert would read it before it exists)
    with pytest.raises(DependencyError, match="requires 'backup'"):
        ServiceMachine("svc", [steps[1], steps[0]])
    ServiceMachine("svc", [*steps[:1], Step("svc.dump", "dumped", _ok, provides=("dump",)), steps[1]])


def test_a_cross_service_requirement_is_checked_before_the_runner_writes_anything(journal) -> None:  # noqa: F811
    keystone = ServiceMachine("keystone", [Step("keystone.verify", "verified", _ok, provides=("api",))])
    glance = ServiceMachine("glance", [Step("glance.verify", "verified", _ok, requires=("keystone:api",))])
    wrong = ServiceMachine("glance", [Step("glance.verify", "verified", _ok, requires=("keystone:token",))])
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    with pytest.raises(DependencyError, match="glance.verify requires 'keystone:token', which no step of keystone"):
        Runner(journal, run_id, [keystone, wrong], Ctx())
    with pytest.raises(DependencyError, match="requires 'keystone:api', but keystone runs after glance"):
        Runner(journal, run_id, [glance, keystone], Ctx())
    assert list(journal.events(run_id)) == []
    # a service not in the run is taken as serving already; one in it makes a wait
    assert cross_waits({"glance": glance.steps}) == {}
    assert cross_waits({"keystone": keystone.steps, "glance": glance.steps}) == {
        "glance.verify": frozenset({"keystone.verify"})}


class Ctx:
    """What the runner needs of a context: a place for results."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}


def test_results_are_read_by_declared_name_after_a_run_and_after_a_resume(journal) -> None:  # noqa: F811
    seen = []
    steps = [Step("svc.backup", "backed_up", lambda ctx: {"where": "vault"}, provides=("backup",)),
             Step("svc.restore", "restored", lambda ctx: seen.append(needed(ctx.results, "svc", "backup")) or {},
                  requires=("backup",))]
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    ctx = Ctx()
    Runner(journal, run_id, [ServiceMachine("svc", steps)], ctx).forward()
    assert seen[-1]["where"] == "vault"
    resumed = Ctx()  # a resume: the results come back from the journal, nothing runs again
    Runner(journal, run_id, [ServiceMachine("svc", steps)], resumed).forward()
    assert len(seen) == 1
    assert needed(resumed.results, "svc", "backup")["where"] == "vault"
    with pytest.raises(DependencyError, match="svc:dump is not available"):
        needed(resumed.results, "svc", "dump")
    publish(resumed.results, "svc", Step("svc.dump", "d", _ok, provides=("dump",)), {"n": 1})
    assert needed(resumed.results, "svc", "dump") == {"n": 1}


def test_every_service_of_every_jump_builds_with_its_requirements_met() -> None:
    checked = 0
    for source in releases.NAMES:
        for target in releases.allowed_targets(source):
            jump = Jump(source, target)
            names = [n for n in registry.ORDER if registry.unsupported(n, jump) is None]
            built = {n: ServiceMachine(n, registry.steps_for(n, jump, registry.SERVICES[n].step_options)).steps
                     for n in names}
            waits = cross_waits(built)
            if "keystone" in names and "glance" in names:
                assert waits["glance.verify"] == frozenset({"keystone.verify"})
            checked += len(names)
    assert checked > 150


# ---------------------------------------------------------------------- the window reads declarations
def test_window_kinds_and_edges_come_from_the_declarations_not_the_names() -> None:
    declared = {s.name: s for s in (
        Step("svc.halt", "halted", _ok, kind="stop", window="opens"),
        Step("svc.pour", "poured", _ok, kind="dump"),
        Step("svc.stop_source", "x", _ok, kind="import"),      # named like a stop: declared an import
        Step("svc.ready", "ready", _ok, kind="verify", window="closes"),
        Step("svc.verify", "y", _ok))}                          # named like a verify: closes nothing
    events = []
    for t, name in enumerate(("svc.halt", "svc.pour", "svc.stop_source", "svc.verify", "svc.ready")):
        events += [Ev(10.0 * t, "svc", name, "intent"), Ev(10.0 * t + 4, "svc", name, "done")]
    w = window.measure(events, declared).service("svc")
    assert w is not None and (w.start, w.end, w.closed_by) == (0.0, 44.0, "verified")
    assert (w.phases["dump"], w.phases["import"], w.phases["verify"], w.phases["other"]) == (4.0, 4.0, 4.0, 8.0)
    # the catalog: every service with a database opens its window with its source stop and closes it
    # with its verify, and every step the window counts says so by its kind
    every = registry.every_step()
    for name, spec in registry.SERVICES.items():
        if spec.has_database:
            assert window.opens_window(f"{name}.stop_source") and window.closes_window(f"{name}.verify")
    assert {window.step_kind(n) for n in every if n.endswith((".upgrade_schema", ".api_db_sync"))} == {"schema"}
    assert window.step_kind("nova.cell_setup") == "other" and window.step_kind("compute.c0.restart") == "other"


# ---------------------------------------------------------------------- the catalog is its modules
def test_the_registry_finds_a_service_by_its_module_alone(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "extra_catalog"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "demo.py").write_text(textwrap.dedent('''
        from services.releases import Era
        from services.spec import ServiceSpec
        from statemachine.step import Step

        def steps(jump, options):
            return [Step("demo.verify", "verified", lambda ctx: {}, kind="verify", window="closes")]

        SPEC = ServiceSpec(name="demo", order=5, steps=steps, tool="demo-manage",
                           units=(Era("havana", None, ("demo-api",)),))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import extra_catalog

    found = registry.discover(extra_catalog)
    assert list(found) == ["demo"] and found["demo"].units_for("2026.1") == ("demo-api",)
    assert not found["demo"].has_database
    assert [s.name for s in found["demo"].steps(releases.DEFAULT_JUMP, {})] == ["demo.verify"]
    # the real catalog: the runbook's order (keystone first, placement before nova), nova-unpin last, after
    # the computes
    order = registry.ORDER
    assert order[0] == "keystone" and order.index("placement") < order.index("nova") and order[-1] == "nova-unpin"
    assert registry.AFTER_COMPUTES == ("nova-unpin",) and {"horizon", "nova-unpin"} <= set(registry.NO_DATABASE)


# ---------------------------------------------------------------------- plan = run, by a recording host
@dataclass
class RunCtx:
    source: Side
    target: Side
    services: dict[str, ServiceSettings]
    to_release: str


JUMPS = [("2025.2", "2026.1"), ("2025.1", "2026.1"), ("newton", "ocata"), ("havana", "icehouse")]


def test_plan_commands_are_the_argv_a_run_issues_to_a_recording_host(lab) -> None:  # noqa: F811
    """For several services and jumps, every recorded step is run for real (its schema revisions read
    from a real MariaDB) with recording hosts, and what it issued is what `upgrade plan` shows."""
    compared: dict[str, int] = {}
    for src, dst in JUMPS:
        jump = Jump(src, dst)
        names = [n for n in ("keystone", "glance", "placement", "nova", "neutron", "cinder")
                 if registry.unsupported(n, jump) is None]

        def side(role: str, ep: DBEndpoint) -> Side:
            return Side(role=role, host=recording.RecordingHost(role, role), etc=f"/srv/{role}/etc",
                        lib=f"/srv/{role}/lib", bin=f"/opt/{role}/bin", db=ep, control=ServiceControl("systemd"))

        ctx = RunCtx(side("source", DBEndpoint("192.0.2.1", 3306, "root", "pw")), side("target", lab.ep),
                     {n: ServiceSettings(name=n, unit=f"openstack-{n}", db_name=f"plan_{n}", owner=f"{n}:{n}",
                                         options={}) for n in names}, dst)
        for name in names:
            for step in registry.steps_for(name, jump):
                if step.acts is None:
                    continue
                shown = recording.command_lines(step, ctx)
                log: list[recording.Recorded] = []
                run_ctx = replace(ctx, **{r: replace(getattr(ctx, r), host=recording.RecordingHost(r, r, log))
                                          for r in ("source", "target")})
                try:
                    step.run(run_ctx)
                except RuntimeError as exc:  # the run reads a file (nova's cell setup reads nova.conf)
                    assert "only records commands" in str(exc)
                    continue
                assert shown, step.name
                assert [(f"{r.role}: " if r.role != step.host else "") + r.text() for r in log] == shown, step.name
                compared[step.kind] = compared.get(step.kind, 0) + 1
    assert compared["schema"] >= 15 and compared["status"] >= 8 and compared["start"] >= 15
    assert compared["migrate"] >= 4


def test_the_fleet_machines_commands_in_the_plan_are_the_argv_their_run_issues(tmp_path, monkeypatch) -> None:
    """The machines beyond the services (compute hosts: their restart and verify), built as `upgrade plan`
    builds them (each host a recording host), run for real: what they issue on their hosts is what the
    plan shows for them."""
    from journal import vault
    from tests.conftest import TARGET_DB_PASSWORD, TARGET_PW_ENV
    from tests.test_planview import FLEET
    from upgrade import app, planview
    from upgrade import plan as plan_mod
    from upgrade.planview import NamedHost, PlanContext

    p = tmp_path / "plan.toml"
    p.write_text(FLEET)
    vault.generate_key_file(tmp_path / "dump.key")
    monkeypatch.setenv(TARGET_PW_ENV, TARGET_DB_PASSWORD)
    plan = plan_mod.load(p)
    log: list[recording.Recorded] = []
    ctx = PlanContext(source=app.side(plan.source, NamedHost("source")), target=app.side(plan.target, NamedHost("t")),
                      services=plan.service_settings, from_release=plan.from_release, to_release=plan.to_release)
    compared = 0
    for m in planview.machines(plan, log):
        if m.name in plan.services:
            continue
        for step in m.steps:
            if step.acts is None:
                continue
            shown = recording.command_lines(step, ctx, log)
            log.clear()
            step.run(replace(ctx, **{r: replace(getattr(ctx, r), host=recording.RecordingHost(r, r, log))
                                     for r in ("source", "target")}))
            assert shown and [(f"{r.role}: " if r.role != step.host else "") + r.text() for r in log] == shown
            compared += 1
    assert compared >= 4  # at least the restart and verify of both compute hosts
