"""Parallel groups in the runner: real threads, a real SQLite journal, steps that really sleep and fail.

Journal writes stay on the runner's thread: the hash chain verifies, every machine's events are
in order, and resume retries only the machines that did not finish.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from journal.store import Journal
from journal.vault import Key
from statemachine.machine import ServiceMachine
from statemachine.replay import replay
from statemachine.runner import ParallelGroup, RunFailed, Runner
from statemachine.step import Step, StepError


@dataclass
class Ctx:
    results: dict[str, Any] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _work(step: str, host: str, seconds: float):
    """A step's run: it records its call, sleeps (a real thread, really waiting), fails if broken."""
    def run(ctx: Ctx) -> dict:
        with ctx.lock:
            ctx.calls.append(step)
        time.sleep(seconds)
        if step in ctx.broken:
            raise StepError(f"{step} broke on purpose", host=host)
        return {"thread": threading.current_thread().name}
    return run


def _machine(name: str, seconds: float = 0.2) -> ServiceMachine:
    return ServiceMachine(name, [Step(f"{name}.restart", "restarted", _work(f"{name}.restart", name, seconds),
                                      host=name),
                                 Step(f"{name}.verify", "reported_in", _work(f"{name}.verify", name, seconds),
                                      host=name)])


def _runner(journal: Journal, run_id: str, ctx: Ctx, n: int, pool: int) -> Runner:
    head = ServiceMachine("keystone", [Step("keystone.only", "done_", lambda c: {"x": 1})])
    computes = [_machine(f"compute.c{i}") for i in range(n)]
    return Runner(journal, run_id, [head, *computes], ctx,
                  groups=[ParallelGroup(frozenset(m.name for m in computes), pool)])


def _intervals(journal: Journal, run_id: str, suffix: str) -> list[tuple[float, float]]:
    ev = journal.events(run_id)
    start = {e.step: e.ts for e in ev if e.kind == "intent" and e.step.endswith(suffix)}
    return [(start[e.step], e.ts) for e in ev if e.kind == "done" and e.step.endswith(suffix)]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


@pytest.fixture
def journal(tmp_path) -> Journal:
    j = Journal(tmp_path / "journal", key=Key.from_bytes(bytes(32)))
    yield j
    j.close()


def test_group_runs_in_parallel_bounded_by_the_pool(journal):
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    ctx = Ctx()
    _runner(journal, run_id, ctx, n=12, pool=4).forward()
    # side by side (restarts overlap), never more than the pool: read from the journal, not a stopwatch
    overlap = _max_overlap(_intervals(journal, run_id, ".restart"))
    assert 2 <= overlap <= 4
    assert journal.verify_chain() is None
    view = replay(journal.events(run_id))
    assert all(len(view.machine(f"compute.c{i}").committed) == 2 for i in range(12))
    assert journal.run(run_id)["status"] == "completed"


def test_a_failing_machine_fails_alone_and_resume_retries_only_it(journal):
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    ctx = Ctx(broken={"compute.c3.restart", "compute.c5.verify"})
    with pytest.raises(RunFailed) as err:
        _runner(journal, run_id, ctx, n=8, pool=3).forward()
    assert err.value.machine == "compute.c3" and "1 more failed too: compute.c5 (compute.c5.verify)" in str(err.value)
    assert journal.run(run_id)["status"] == "failed"
    view = replay(journal.events(run_id))
    for i in range(8):
        committed = set(view.machine(f"compute.c{i}").committed)
        want = {3: set(), 5: {"compute.c5.restart"}}.get(i, {f"compute.c{i}.restart", f"compute.c{i}.verify"})
        assert committed == want, i
    # fixed: resume runs exactly the two unfinished machines' remaining steps
    ctx2 = Ctx()
    _runner(journal, run_id, ctx2, n=8, pool=3).forward()
    assert sorted(ctx2.calls) == ["compute.c3.restart", "compute.c3.verify", "compute.c5.verify"]
    assert journal.run(run_id)["status"] == "completed"
    assert journal.verify_chain() is None
    dones = [e.step for e in journal.events(run_id) if e.kind == "done"]
    assert len(dones) == len(set(dones)) == 1 + 16


def test_revert_undoes_group_machines(journal):
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    _runner(journal, run_id, Ctx(), n=3, pool=3).forward()
    _runner(journal, run_id, Ctx(), n=3, pool=3).revert()
    view = replay(journal.events(run_id))
    assert all(not view.machine(m).committed for m in ("keystone", "compute.c0", "compute.c1", "compute.c2"))
    assert journal.run(run_id)["status"] == "reverted"


# ---------------------------------------------------------------------- services that overlap
SERVICE_ORDER = ("keystone", "glance", "placement", "nova", "neutron", "cinder")
#: the step names of the real services whose declared cross-service requires make waits, in their real order
SERVICE_STEPS = {"nova": ("stop_source", "upgrade_schema", "status_check", "start_target", "verify"),
                 "cinder": ("stop_source", "upgrade_schema", "rewrite_iscsi", "start_target", "verify")}


def _service_machine(name: str, seconds: float = 0.1) -> ServiceMachine:
    names = SERVICE_STEPS.get(name, ("stop_source", "upgrade_schema", "start_target", "verify"))
    return ServiceMachine(name, [Step(f"{name}.{n}", n, _work(f"{name}.{n}", name, seconds)) for n in names])


def _service_runner(journal: Journal, run_id: str, ctx: Ctx, pool: int = 2) -> Runner:
    from services.registry import overlap_group, steps_for

    group = overlap_group({s: steps_for(s) for s in SERVICE_ORDER}, pool)
    assert group is not None
    return Runner(journal, run_id, [_service_machine(s) for s in SERVICE_ORDER], ctx, groups=[group])


def _span(journal: Journal, run_id: str, machine: str) -> tuple[float, float]:
    ev = [e for e in journal.events(run_id) if e.machine == machine]
    return (min(e.ts for e in ev if e.kind == "intent"), max(e.ts for e in ev if e.kind == "done"))


def _at(journal: Journal, run_id: str, step: str, kind: str) -> float:
    return next(e.ts for e in journal.events(run_id) if e.step == step and e.kind == kind)


def test_services_overlap_and_each_step_waits_only_for_what_it_needs(journal):
    """A service's machine does not wait for the whole of the services before it: only the steps
    whose declared ``requires`` name another service wait (every API's verify for keystone's, nova's status check
    and start for placement's verify, cinder's iSCSI rewrite of nova's rows for nova's migration)."""
    from services.registry import steps_for, waits

    WAITS = waits({s: steps_for(s) for s in SERVICE_ORDER})

    run_id = journal.create_run({}, "x", None, "a", "b", None)
    _service_runner(journal, run_id, Ctx()).forward()
    span = {s: _span(journal, run_id, s) for s in SERVICE_ORDER}
    checked = 0
    for step, needs in WAITS.items():
        if step.split(".")[0] not in SERVICE_ORDER or not any(
                e.step == step for e in journal.events(run_id)):
            continue
        for need in needs:
            assert _at(journal, run_id, step, "intent") >= _at(journal, run_id, need, "done"), (step, need)
            checked += 1
    assert checked >= 8
    # glance stopped and migrated while keystone was still being upgraded: only its verify waited
    assert span["glance"][0] < span["keystone"][1]
    steps = [iv for suffix in ("stop_source", "upgrade_schema", "status_check", "rewrite_iscsi", "start_target",
                               "verify") for iv in _intervals(journal, run_id, suffix)]
    assert _max_overlap(steps) == 2  # side by side, never more steps running than the pool
    assert journal.verify_chain() is None
    view = replay(journal.events(run_id))
    assert all(len(view.machine(s).committed) == len(m.steps)
               for s, m in zip(SERVICE_ORDER, _service_runner(journal, run_id, Ctx()).machines, strict=True))


def test_the_heaviest_start_first_each_after_what_it_waits_for(journal):
    """``ParallelGroup.weight`` (the bytes of each service's databases, upgrade/app.database_bytes): nova, the
    heaviest, starts first, and right after it keystone and placement, which its steps wait for (every verify
    waits for keystone's, nova's status check and start for placement's); then neutron, then the rest by
    weight. With a pool of one the order shows whole: nova parks at its status check, giving its only slot
    to keystone and placement, and goes on once placement is verified, before any other service starts."""
    from services.registry import overlap_group, steps_for

    group = overlap_group({s: steps_for(s) for s in SERVICE_ORDER}, 2)
    assert group is not None
    asked: list[int] = []
    group = replace(group, pool=1, weight=lambda: asked.append(1) or {"nova": 100, "neutron": 50, "glance": 1})
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    ctx = Ctx()
    Runner(journal, run_id, [_service_machine(s) for s in SERVICE_ORDER], ctx, groups=[group]).forward()
    assert journal.run(run_id)["status"] == "completed" and asked == [1]
    firsts = [c.split(".")[0] for c in ctx.calls if c.endswith(".stop_source")]
    assert firsts == ["nova", "keystone", "placement", "neutron", "glance", "cinder"]
    resumed = ctx.calls.index("nova.status_check")
    assert ctx.calls[resumed - 1] == "placement.verify" and ctx.calls[resumed:resumed + 3] == [
        "nova.status_check", "nova.start_target", "nova.verify"]  # parked, then first when it may go on
    assert ctx.calls.index("nova.verify") < ctx.calls.index("neutron.stop_source")
    assert _max_overlap(_intervals(journal, run_id, "")) == 1  # never two steps at once


def test_a_parked_machine_gives_its_slot_back(journal):
    """Only running steps hold a slot: b's first step waits for a's second, so b parks at once, and c starts
    beside a instead of after it (a pool of two: a and c run, b waits without a slot)."""
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    names = ("a", "b", "c")
    machines = [ServiceMachine(n, [Step(f"{n}.s{i}", f"s{i}", _work(f"{n}.s{i}", n, 0.2)) for i in (1, 2)])
                for n in names]
    group = ParallelGroup(frozenset(names), 2, waits={"b.s1": frozenset({"a.s2"})})
    Runner(journal, run_id, machines, Ctx(), groups=[group]).forward()
    assert _at(journal, run_id, "c.s1", "intent") < _at(journal, run_id, "a.s1", "done")
    assert _at(journal, run_id, "b.s1", "intent") >= _at(journal, run_id, "a.s2", "done")
    assert _max_overlap(_intervals(journal, run_id, "")) == 2
    assert journal.run(run_id)["status"] == "completed"


def test_a_failed_service_stops_what_waits_for_it_and_resume_finishes(journal):
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    ctx = Ctx(broken={"placement.verify"})
    with pytest.raises(RunFailed) as err:
        _service_runner(journal, run_id, ctx).forward()
    assert "stopped before a step that waits for a failed machine: nova (nova.status_check waits for " \
           "placement.verify)" in str(err.value)
    assert "nova.status_check" not in ctx.calls and "nova.upgrade_schema" in ctx.calls
    assert {"glance.verify", "keystone.verify"} <= set(ctx.calls)  # the independent ones ran on
    view = replay(journal.events(run_id))
    assert set(view.machine("nova").committed) == {"nova.stop_source", "nova.upgrade_schema"}
    ctx.broken.clear()
    ctx.calls.clear()
    _service_runner(journal, run_id, ctx).forward()
    assert "placement.verify" in ctx.calls and "nova.status_check" in ctx.calls
    assert not {"nova.stop_source", "nova.upgrade_schema", "glance.verify"} & set(ctx.calls)  # done before
    view = replay(journal.events(run_id))
    assert all(len(view.machine(s).committed) == len(SERVICE_STEPS.get(s, "1234")) for s in SERVICE_ORDER)
    assert journal.run(run_id)["status"] == "completed"


def test_a_step_waiting_for_a_later_machine_is_an_error_not_a_hang(journal):
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    group = ParallelGroup(frozenset({"keystone", "glance"}), 2,
                          waits={"keystone.verify": frozenset({"glance.verify"}),
                                 "glance.verify": frozenset({"keystone.verify"})})
    runner = Runner(journal, run_id, [_service_machine("keystone"), _service_machine("glance")], Ctx(),
                    groups=[group])
    with pytest.raises(RuntimeError, match="keystone.verify waits for glance.verify"):
        runner.forward()


def test_finishing_steps_run_after_every_machines_other_steps(journal):
    """``Step.finish``: online data migrations run once every service is verified (outside the
    window), machine by machine; a resume after the window goes on with them alone."""
    def machine(name: str) -> ServiceMachine:
        return ServiceMachine(name, [Step(f"{name}.stop_source", "s", _work(f"{name}.stop_source", name, 0)),
                                     Step(f"{name}.verify", "v", _work(f"{name}.verify", name, 0)),
                                     Step(f"{name}.online_migrations", "o", _work(f"{name}.online_migrations", name, 0),
                                          finish=True)])

    run_id = journal.create_run({}, "x", None, "a", "b", None)
    ctx = Ctx(broken={"cinder.online_migrations"})
    with pytest.raises(RunFailed):
        Runner(journal, run_id, [machine("nova"), machine("cinder")], ctx).forward()
    assert ctx.calls == ["nova.stop_source", "nova.verify", "cinder.stop_source", "cinder.verify",
                         "nova.online_migrations", "cinder.online_migrations"]
    ctx.calls.clear()
    ctx.broken.clear()
    Runner(journal, run_id, [machine("nova"), machine("cinder")], ctx).forward()
    assert ctx.calls == ["cinder.online_migrations"]
    assert journal.run(run_id)["status"] == "completed"
    ctx.calls.clear()
    Runner(journal, run_id, [machine("nova"), machine("cinder")], ctx).revert()
    view = replay(journal.events(run_id))
    assert not view.machine("nova").committed and not view.machine("cinder").committed


def test_preparation_steps_of_every_machine_run_before_any_other_step(journal):
    """``Step.prepare``: every machine's leading preparation steps first (the target prepared for
    all services before the first source stops), then the machines in order; resume keeps it."""
    def machine(name: str) -> ServiceMachine:
        return ServiceMachine(name, [Step(f"{name}.stop_target", "t", _work(f"{name}.stop_target", name, 0),
                                          prepare=True),
                                     Step(f"{name}.backup_target", "b", _work(f"{name}.backup_target", name, 0),
                                          prepare=True),
                                     Step(f"{name}.stop_source", "s", _work(f"{name}.stop_source", name, 0)),
                                     Step(f"{name}.verify", "v", _work(f"{name}.verify", name, 0))])

    run_id = journal.create_run({}, "x", None, "a", "b", None)
    ctx = Ctx(broken={"glance.backup_target"})
    with pytest.raises(RunFailed):
        Runner(journal, run_id, [machine("keystone"), machine("glance")], ctx).forward()
    assert ctx.calls == ["keystone.stop_target", "keystone.backup_target", "glance.stop_target",
                         "glance.backup_target"]  # no source stopped while a preparation failed
    ctx.calls.clear()
    ctx.broken.clear()
    Runner(journal, run_id, [machine("keystone"), machine("glance")], ctx).forward()
    assert ctx.calls == ["glance.backup_target", "keystone.stop_source", "keystone.verify", "glance.stop_source",
                         "glance.verify"]


# ---------------------------------------------------------------------- the revert of a group
def _undoing(step: str, seconds: float):
    """A step's undo: it records its call, sleeps (a real thread, really waiting), fails if broken."""
    def undo(ctx: Ctx, result: Any) -> None:
        with ctx.lock:
            ctx.calls.append(f"undo {step}")
        time.sleep(seconds)
        if f"undo {step}" in ctx.broken:
            raise StepError(f"undo of {step} broke on purpose", host="target")
    return undo


def _undoable(m: ServiceMachine, seconds: float = 0.15, host: str = "source") -> ServiceMachine:
    """*m* with an undo on every step (acting on *host*)."""
    return ServiceMachine(m.name, [replace(s, undo=_undoing(s.name, seconds), host=host) for s in m.steps])


def _undo_intervals(journal: Journal, run_id: str) -> dict[str, tuple[float, float]]:
    ev = journal.events(run_id)
    start = {e.step: e.ts for e in ev if e.kind == "undo_intent"}
    return {e.step: (start[e.step], e.ts) for e in ev if e.kind == "undone"}


def test_a_groups_machines_are_undone_side_by_side_bounded_by_the_pool(journal):
    """The revert of machines the run drove side by side runs side by side too (the outage an operator chose
    to end is as short as the run's order allows), never more than the pool; each machine's steps last first."""
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    computes = [_undoable(_machine(f"compute.c{i}")) for i in range(8)]
    group = ParallelGroup(frozenset(m.name for m in computes), 3)
    Runner(journal, run_id, computes, Ctx(), groups=[group]).forward()
    ctx = Ctx()
    Runner(journal, run_id, computes, ctx, groups=[group]).revert()
    spans = _undo_intervals(journal, run_id)
    assert len(spans) == 16 and 2 <= _max_overlap(list(spans.values())) <= 3
    for i in range(8):  # within a machine: verify's undo before restart's
        assert spans[f"compute.c{i}.verify"][1] <= spans[f"compute.c{i}.restart"][0]
    assert journal.run(run_id)["status"] == "reverted" and journal.verify_chain() is None
    view = replay(journal.events(run_id))
    assert not any(view.machine(m.name).committed for m in computes)
    assert len(ctx.calls) == 16


def test_the_revert_of_overlapping_services_keeps_the_runs_waits_reversed(journal):
    """Each undo waits for the undo of every step that waited for it in the run (nova's status check waited
    for placement's verify: placement's verify is undone after nova's status check), and a machine's undo
    starts only once the machines that came after it are undone; independent services are undone together."""
    from services.registry import overlap_group, steps_for

    run_id = journal.create_run({}, "x", None, "a", "b", None)
    group = overlap_group({s: steps_for(s) for s in SERVICE_ORDER}, 3)
    assert group is not None and group.waits
    machines = [_undoable(_service_machine(s)) for s in SERVICE_ORDER]
    Runner(journal, run_id, machines, Ctx(), groups=[group]).forward()
    Runner(journal, run_id, machines, Ctx(), groups=[group]).revert()
    spans = _undo_intervals(journal, run_id)
    known = {s.name for m in machines for s in m.steps}
    checked = 0
    for step, awaited in group.waits.items():
        for a in awaited & known:
            if step in known:
                assert spans[step][1] <= spans[a][0], (step, a)
                checked += 1
    assert checked
    assert _max_overlap(list(spans.values())) >= 2
    assert journal.run(run_id)["status"] == "reverted" and journal.verify_chain() is None


def test_a_machine_that_came_after_another_is_undone_before_it(journal):
    """``after`` reversed: b ran only once a was complete, so a's undo starts only once b is undone; c, free of
    both, is undone beside them."""
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    names = ("a", "b", "c")
    machines = [_undoable(ServiceMachine(n, [Step(f"{n}.s{i}", f"s{i}", _work(f"{n}.s{i}", n, 0.05))
                                             for i in (1, 2)])) for n in names]
    group = ParallelGroup(frozenset(names), 3, after={"b": frozenset({"a"})})
    Runner(journal, run_id, machines, Ctx(), groups=[group]).forward()
    Runner(journal, run_id, machines, Ctx(), groups=[group]).revert()
    spans = _undo_intervals(journal, run_id)
    assert max(spans["b.s1"][1], spans["b.s2"][1]) <= min(spans["a.s1"][0], spans["a.s2"][0])
    assert spans["c.s2"][0] < spans["b.s2"][1]  # c did not wait
    assert journal.run(run_id)["status"] == "reverted"


def test_a_failed_target_undo_in_a_group_leaves_that_machine_s_target_steps_and_undoes_the_rest(journal):
    """One machine's target-side undo fails: its other target-side undos are left for the next revert, its
    source-side ones and every other machine are undone (the old side serves); the next revert finishes."""
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    machines = []
    for i in range(4):
        name = f"svc{i}"
        machines.append(ServiceMachine(name, [
            Step(f"{name}.stop_source", "stopped", _work(f"{name}.stop_source", name, 0.05),
                 undo=_undoing(f"{name}.stop_source", 0.05), host="source"),
            Step(f"{name}.import", "imported", _work(f"{name}.import", name, 0.05),
                 undo=_undoing(f"{name}.import", 0.05), host="target"),
            Step(f"{name}.start", "started", _work(f"{name}.start", name, 0.05),
                 undo=_undoing(f"{name}.start", 0.05), host="target")]))
    group = ParallelGroup(frozenset(m.name for m in machines), 2)
    Runner(journal, run_id, machines, Ctx(), groups=[group]).forward()
    ctx = Ctx(broken={"undo svc1.start"})
    with pytest.raises(RunFailed) as err:
        Runner(journal, run_id, machines, ctx, groups=[group]).revert()
    assert err.value.partial and err.value.step == "svc1.start" and "undo of svc1.start broke" in str(err.value)
    assert "undo svc1.import" not in ctx.calls and "undo svc1.stop_source" in ctx.calls
    view = replay(journal.events(run_id))
    assert set(view.machine("svc1").committed) == {"svc1.import", "svc1.start"}
    assert not any(view.machine(f"svc{i}").committed for i in (0, 2, 3))
    assert journal.run(run_id)["status"] == "revert_failed"
    ctx = Ctx()
    Runner(journal, run_id, machines, ctx, groups=[group]).revert()
    assert sorted(ctx.calls) == ["undo svc1.import", "undo svc1.start"]
    assert journal.run(run_id)["status"] == "reverted" and journal.verify_chain() is None


def test_a_failed_source_undo_in_a_group_stops_the_revert_and_the_next_one_finishes(journal):
    """A failed undo that is not target-side stops the revert: the undos already running finish and are
    journaled, no other starts; `upgrade revert` again undoes exactly what is left."""
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    machines = [_undoable(_machine(f"compute.c{i}"), seconds=0.1) for i in range(6)]
    group = ParallelGroup(frozenset(m.name for m in machines), 2)
    Runner(journal, run_id, machines, Ctx(), groups=[group]).forward()
    ctx = Ctx(broken={"undo compute.c4.restart"})
    with pytest.raises(RunFailed) as err:
        Runner(journal, run_id, machines, ctx, groups=[group]).revert()
    assert not err.value.partial and err.value.step == "compute.c4.restart"
    ev = journal.events(run_id)
    failed_at = next(e.seq for e in ev if e.kind == "undo_failed")
    assert not [e for e in ev if e.kind == "undo_intent" and e.seq > failed_at]  # nothing new after it
    intents = {e.step for e in ev if e.kind == "undo_intent"}
    ended = {e.step for e in ev if e.kind in ("undone", "undo_failed")}
    assert intents == ended  # what was running when it failed finished and was journaled
    assert journal.run(run_id)["status"] == "revert_failed"
    left = {m.name: set(replay(ev).machine(m.name).committed) for m in machines}
    assert left["compute.c4"] == {"compute.c4.restart"} and any(left[f"compute.c{i}"] for i in (0, 1, 2, 3))
    ctx2 = Ctx()
    Runner(journal, run_id, machines, ctx2, groups=[group]).revert()
    assert sorted(ctx2.calls) == sorted(f"undo {s}" for steps in left.values() for s in steps)
    assert journal.run(run_id)["status"] == "reverted" and journal.verify_chain() is None


KILLED_REVERT = """
import sys
from pathlib import Path
from journal.store import Journal
from journal.vault import Key
from tests.test_runner_parallel import Ctx, _group_runner
journal = Journal(Path(sys.argv[1]), key=Key.from_bytes(bytes(32)))
runner, _ = _group_runner(journal, sys.argv[2])
runner.revert()
"""


def _group_runner(journal: Journal, run_id: str) -> tuple[Runner, list[ServiceMachine]]:
    machines = [_undoable(_machine(f"compute.c{i}"), seconds=0.2) for i in range(4)]
    return Runner(journal, run_id, machines, Ctx(), groups=[ParallelGroup(frozenset(m.name for m in machines),
                                                                          3)]), machines


def test_a_revert_killed_while_a_group_undoes_side_by_side_runs_again_to_the_end(tmp_path, journal):
    """SIGKILLed at an undo's start while other machines' undos run beside it: the next revert undoes
    exactly what is left (an undo begun and not journaled is done again: undos are idempotent), and the
    journal's chain holds."""
    import os
    import signal
    import subprocess
    import sys

    from statemachine import failpoints
    from tests.conftest import REPO

    run_id = journal.create_run({}, "x", None, "a", "b", None)
    runner, machines = _group_runner(journal, run_id)
    runner.forward()
    journal.close()
    env = {**os.environ, failpoints.ENV: "compute.c1.restart:undo_before"}
    res = subprocess.run([sys.executable, "-c", KILLED_REVERT, str(tmp_path / "journal"), run_id], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr
    j = Journal(tmp_path / "journal", key=Key.from_bytes(bytes(32)))
    try:
        ev = j.events(run_id)
        assert ev[-1].kind == "undo_intent" and ev[-1].step == "compute.c1.restart"
        undone_before = {e.step for e in ev if e.kind == "undone"}
        begun = {e.step for e in ev if e.kind == "undo_intent"}
        assert len(begun) >= 2  # others were at work beside it
        runner, _ = _group_runner(j, run_id)
        runner.revert()
        ev = j.events(run_id)
        undone = [e.step for e in ev if e.kind == "undone"]
        assert sorted(set(undone)) == sorted(s.name for m in machines for s in m.steps)
        assert len(undone) == len(set(undone))  # nothing journaled undone twice
        assert undone_before < set(undone)
        assert j.run(run_id)["status"] == "reverted" and j.verify_chain() is None
    finally:
        j.close()
