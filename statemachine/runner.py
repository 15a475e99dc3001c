"""The runner: run, resume and revert a list of service machines against the journal.

Write-ahead (DESIGN.md §3): before a step's side effect the runner commits an ``intent`` event,
after it a ``done`` event with the step's result, or ``failed`` with the error. Revert walks the
committed steps backwards — services in reverse order — with ``undo_intent``/``undone`` events,
so a revert that dies is resumed by running revert again.

Machines that may overlap (compute hosts; services, whose databases are independent) form a
:class:`ParallelGroup`: their steps run in a bounded thread pool, while every journal write, fail
point, result and state change stays on the runner's own thread (the journal is one SQLite
connection: appends are never concurrent, and the hash chain stays in commit order). A machine
of a group starts only once the group's machines it comes ``after`` are complete, and a step the
group ``waits`` names starts only once the steps it waits for are done (glance's verify needs
keystone serving, not keystone's whole upgrade): a machine parked before such a step keeps its
slot. A failing machine fails alone (what waits for it never starts or stays parked); the others
run on, and the run fails once the group is done. Revert undoes a group's machines side by side too,
the run's order reversed (what came after or waited is undone first).

A run has three phases: every machine's leading ``prepare`` steps (before the first service stops),
the other steps, then every machine's trailing ``finish`` steps (after the last service is verified).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from journal.errors import UserError
from journal.store import Journal
from statemachine import deps, failpoints
from statemachine.machine import INITIAL, ServiceMachine
from statemachine.replay import RunView, replay_rows
from statemachine.step import Step, StepError


class StepContext(Protocol):
    """What the runner needs of the context it hands to steps: a place for earlier results."""

    results: dict[str, Any]


class RunFailed(Exception):
    """A step failed; the run is stopped with its machine in the last good state."""

    #: the operator pressed Ctrl-C (SIGINT) during the step: the CLI exits 130, not 1
    interrupted = False

    def __init__(self, message: str, machine: str, step: str, host: str | None, output: str | None) -> None:
        super().__init__(message)
        self.machine = machine
        self.step = step
        self.host = host
        self.output = output


class RevertFailed(RunFailed):
    """An undo failed; the revert stops where it is and can be run again. ``partial``: only target-side
    undos failed, and the revert went on to undo everything else (the old controller serves again)."""

    partial = False


class StepsChanged(UserError):
    """The journal's run was made with other step lists than this version of the tool builds: replaying
    it would put machines in states their steps never reached. Nothing was changed."""


@dataclass
class Observer:
    """Hooks for progress display; the default does nothing."""

    def step_started(self, machine: str, step: Step, undo: bool) -> None: ...
    def step_finished(self, machine: str, step: Step, undo: bool, seconds: float) -> None: ...
    def note(self, machine: str, message: str) -> None: ...


@dataclass(frozen=True)
class ParallelGroup:
    """Machines that may run side by side: at most ``pool`` at once, each only after the machines
    of the group that ``after`` names for it are complete (names outside the group are ignored).
    ``waits`` maps a step name to the steps of other machines that must be done before it starts;
    a waited-for step no machine of the group has is ignored (its service is not in the run).
    ``weight``, asked once when the group starts, gives machines' weights (the bytes of their databases):
    the heaviest starts first, and the machines it waits for right after it (a machine ranks with the
    heaviest that waits for it), so the longest service neither starts last nor waits for one that
    did. Only running steps take a slot: a machine parked on another's step gives its slot back and
    takes the next free one when it may go on, ahead of machines not yet started (its service is
    stopped). A step may only wait for steps of machines earlier in the list, so the waits have no
    cycle and a slot is always free for the machine waited for: the group cannot deadlock."""

    machines: frozenset[str]
    pool: int = 10
    after: Mapping[str, frozenset[str]] = field(default_factory=dict)
    waits: Mapping[str, frozenset[str]] = field(default_factory=dict)
    weight: Callable[[], Mapping[str, int]] | None = None

    def start_order(self, names: Sequence[str], owner: Mapping[str, str]) -> list[str]:
        """*names* (the group's machines in list order) in the order they start; *owner*: step -> machine."""
        weight = self.weight() if self.weight else {}
        needs = {n: set(self.waits_for(n)) for n in names}
        for step, awaited in self.waits.items():
            if step in owner:
                needs[owner[step]] |= {owner[a] for a in awaited if a in owner} - {owner[step]}
        rank = {n: weight.get(n, 0) for n in names}
        for n in reversed(names):  # a machine waits only for earlier ones: its rank is final when reached
            for m in needs[n]:
                rank[m] = max(rank[m], rank[n])
        return sorted(names, key=lambda n: (-rank[n], -weight.get(n, 0), names.index(n)))

    def waits_for(self, name: str) -> frozenset[str]:
        return frozenset(self.after.get(name, frozenset())) & self.machines


@dataclass
class _Slots:
    """Machines of a group driven side by side, the bookkeeping a group's run and its revert share: at most
    *size* steps at work (a machine whose next step must wait gives its slot back and is parked), a
    machine started once *may_start* says so (its predecessors are complete), the parked ones first when
    a slot frees. *begin* does the step's write-ahead half on this thread and returns its future and what
    the end half needs."""

    size: int
    waiting: list[ServiceMachine]
    may_start: Callable[[ServiceMachine], bool]
    steps_of: Callable[[ServiceMachine], Iterator[Step]]
    unmet: Callable[[Step], Any]
    begin: Callable[[ThreadPoolExecutor, ServiceMachine, Step], tuple[Future, Any]]
    running: dict[Future, tuple[ServiceMachine, Step, Iterator[Step], Any]] = field(default_factory=dict)
    parked: list[tuple[ServiceMachine, Step, Iterator[Step]]] = field(default_factory=list)
    complete: set[str] = field(default_factory=set)

    def next_step(self, pool: ThreadPoolExecutor, m: ServiceMachine, steps: Iterator[Step],
                  step: Step | None = None) -> None:
        """The machine's next step: started, parked until what it waits for is done, or the machine complete."""
        step = step or next(steps, None)
        if step is None:
            self.complete.add(m.name)
        elif self.unmet(step):
            self.parked.append((m, step, steps))
        else:
            fut, token = self.begin(pool, m, step)
            self.running[fut] = (m, step, steps, token)

    def fill(self, pool: ThreadPoolExecutor) -> None:
        """While slots are free (only running steps hold one): first the parked machines whose awaited
        steps are done, then the waiting machines that may start, in their order (a machine with nothing
        left to do completes at once and may free the next one)."""
        for entry in [e for e in self.parked if not self.unmet(e[1])]:
            if len(self.running) >= self.size:
                return
            self.parked.remove(entry)
            self.next_step(pool, entry[0], entry[2], entry[1])
        started = True
        while started and len(self.running) < self.size:
            started = False
            for m in [m for m in self.waiting if self.may_start(m)]:
                self.waiting.remove(m)
                started = True
                self.next_step(pool, m, self.steps_of(m))
                if len(self.running) >= self.size:
                    return

    def ended(self) -> Iterator[tuple[Future, ServiceMachine, Step, Iterator[Step], Any]]:
        """Each step as it ends (its future done), until none runs; the caller takes the next step or not."""
        while self.running:
            done, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for fut in done:
                m, step, steps, token = self.running.pop(fut)
                yield fut, m, step, steps, token


class Runner:
    def __init__(self, journal: Journal, run_id: str, machines: Sequence[ServiceMachine], ctx: StepContext,
                 observer: Observer | None = None, log: Callable[..., Any] | None = None,
                 groups: Sequence[ParallelGroup] = ()) -> None:
        self.journal = journal
        self.run_id = run_id
        self.machines = list(machines)
        self.ctx = ctx
        self.observer = observer or Observer()
        self.log = log or (lambda *a, **k: None)
        self.groups = list(groups)
        # every requirement met by an earlier step (a programming error otherwise), before anything runs
        deps.cross_waits({m.name: m.steps for m in self.machines})

    # ------------------------------------------------------------------ state
    def view(self) -> RunView:
        return replay_rows(self.journal.step_rows(self.run_id))

    def _check_steps(self, view: RunView) -> None:
        """What the run committed (and the step it was in) is a prefix of each machine's steps here."""
        for m in self.machines:
            mv = view.machine(m.name)
            names = [s.name for s in m.steps]
            # undone steps count: a revert that went past a failed target-side undo leaves gaps
            ran = set(mv.committed) | mv.undone | ({mv.attempted} if mv.attempted else set())
            unknown = sorted(ran - set(names))
            done = [n for n in names if n in ran]
            if unknown or names[:len(done)] != done:
                missing = [n for n in names[:len(done)] if n not in ran]
                why = ([f"the run went through {', '.join(unknown)}, which this version lacks"] if unknown else []) \
                    + ([f"this version adds {', '.join(missing)} before steps the run already did"] if missing else [])
                raise StepsChanged(
                    f"run {self.run_id}: {m.name}'s steps in this version of the tool differ from the run's "
                    f"({'; '.join(why)}) — resume or revert this run with the version of the tool that started "
                    "it, then upgrade the tool")

    def _restore(self, view: RunView) -> None:
        """Set every machine to its last committed state and hand earlier results to the steps."""
        self._check_steps(view)
        self.ctx.results.clear()
        self.ctx.results.update(view.results)
        for m in self.machines:
            for step in m.steps:
                if step.name in view.results:
                    deps.publish(self.ctx.results, m.name, step, view.results[step.name])
        for m in self.machines:
            mv = view.machine(m.name)
            state = INITIAL
            for step in m.steps:
                if step.name in mv.committed:
                    state = step.state
                else:
                    break
            m.set_state(state)

    # ------------------------------------------------------------------ forward
    def forward(self) -> None:
        """Run every step not yet committed, in order; used by both `run` and `resume`. First every
        machine's leading preparation steps (``Step.prepare``), machine by machine: they come before
        the first service stops."""
        view = self.view()
        self._restore(view)
        self.journal.set_status(self.run_id, "running")
        for m in self.machines:
            for step in self._pending(m, view, "prepare"):
                self._do(m, step)
        view = self.view()
        started_groups: set[int] = set()
        for m in self.machines:
            group = next((i for i, g in enumerate(self.groups) if m.name in g.machines), None)
            if group is None:
                for step in self._pending(m, view, "main"):
                    self._do(m, step)
            elif group not in started_groups:  # the whole group, at its first machine's place
                started_groups.add(group)
                self._forward_group(self.groups[group], view)
        view = self.view()
        for m in self.machines:
            for step in self._pending(m, view, "finish"):
                self._do(m, step)
        self.journal.set_status(self.run_id, "completed")

    @staticmethod
    def _phase(m: ServiceMachine, phase: str) -> list[Step]:
        """The machine's steps of one phase: its leading ``prepare`` steps, its trailing ``finish``
        steps, or the ones between (``main``)."""
        lead = 0
        while lead < len(m.steps) and m.steps[lead].prepare:
            lead += 1
        tail = len(m.steps)
        while tail > lead and m.steps[tail - 1].finish:
            tail -= 1
        return {"prepare": m.steps[:lead], "main": m.steps[lead:tail], "finish": m.steps[tail:]}[phase]

    def _pending(self, m: ServiceMachine, view: RunView, phase: str) -> Iterator[Step]:
        """The machine's steps of *phase* not yet committed, in order (an interrupted one gets a
        note first)."""
        mv = view.machine(m.name)
        for step in self._phase(m, phase):
            if step.name in mv.committed:
                continue
            if mv.attempted == step.name:
                self._note_interrupted(m, step)
            yield step

    def _forward_group(self, group: ParallelGroup, view: RunView) -> None:
        """Run the group's machines side by side; only ``step.run`` leaves this thread."""
        members = [m for m in self.machines if m.name in group.machines]
        order = group.start_order([m.name for m in members], {s.name: m.name for m in members for s in m.steps})
        failures: list[RunFailed] = []
        known = {s.name for m in members for s in m.steps}
        done_steps = {s.name for m in members for s in m.steps if s.name in view.machine(m.name).committed}

        def unmet(step: Step) -> frozenset[str]:
            return (frozenset(group.waits.get(step.name, frozenset())) & known) - done_steps

        def begin(pool: ThreadPoolExecutor, m: ServiceMachine, step: Step) -> tuple[Future, Any]:
            token = self._begin(m, step)
            return pool.submit(step.run, self.ctx), token

        slots = _Slots(group.pool, sorted(members, key=lambda m: order.index(m.name)),
                       lambda m: group.waits_for(m.name) <= slots.complete,
                       lambda m: self._pending(m, view, "main"), unmet, begin)
        with ThreadPoolExecutor(max_workers=group.pool, thread_name_prefix="machine") as pool:
            slots.fill(pool)
            for fut, m, step, steps, (before, started) in slots.ended():
                try:
                    result = fut.result()
                except BaseException as exc:  # this machine stops; the others go on
                    failures.append(self._failure(m, step, exc, undo=False))
                else:
                    self._commit(m, step, before, started, result)
                    done_steps.add(step.name)
                    slots.next_step(pool, m, steps)
                slots.fill(pool)
        parked, waiting = slots.parked, slots.waiting
        if parked and not failures:  # a step waits for a later machine's step: the group's order is wrong
            raise RuntimeError("steps wait for machines that come later in the run: "
                               + ", ".join(f"{step.name} waits for {', '.join(sorted(unmet(step)))}"
                                           for _, step, _ in parked))
        if failures:
            first = failures[0]
            notes = [f"{f.machine} ({f.step})" for f in failures[1:]]
            if notes:
                first.args = (f"{first}; {len(notes)} more failed too: {', '.join(notes)}",)
            if parked:
                first.args = (f"{first}; stopped before a step that waits for a failed machine: "
                              + ", ".join(f"{m.name} ({step.name} waits for {', '.join(sorted(unmet(step)))})"
                                          for m, step, _ in parked),)
            if waiting:
                first.args = (f"{first}; not started (they wait for a failed machine): "
                              f"{', '.join(m.name for m in waiting)}",)
            raise first

    def _note_interrupted(self, m: ServiceMachine, step: Step) -> None:
        in_place = None
        if step.probe is not None:
            try:
                in_place = bool(step.probe(self.ctx))
            except Exception as exc:  # a probe is advice only; the step itself is idempotent
                in_place = None
                self.log("probe_failed", step=step.name, error=str(exc))
        what = {True: "its effect is already in place", False: "its effect is not in place",
                None: "its effect is unknown"}[in_place]
        msg = f"{step.name} was interrupted before it finished; {what}; running it again (it is idempotent)"
        self.journal.append(self.run_id, m.name, "note", step=step.name, output=msg,
                            result={"probe": in_place})
        self.observer.note(m.name, msg)

    def _do(self, m: ServiceMachine, step: Step) -> None:
        before, started = self._begin(m, step)
        try:
            result = step.run(self.ctx)
        except BaseException as exc:
            self._fail(m, step, exc, undo=False)
        self._commit(m, step, before, started, result)

    def _begin(self, m: ServiceMachine, step: Step) -> tuple[str, float]:
        """The write-ahead half: ``intent`` committed before the side effect."""
        before = m.state
        self.journal.append(self.run_id, m.name, "intent", step=step.name, from_state=before,
                            to_state=step.state, host=step.host, command=step.describe)
        self.observer.step_started(m.name, step, undo=False)
        self.log("step_intent", machine=m.name, step=step.name)
        started = time.monotonic()
        failpoints.hit(f"{step.name}:before")
        return before, started

    def _commit(self, m: ServiceMachine, step: Step, before: str, started: float, result: Any) -> None:
        """The other half: ``done`` with the result, then the machine advances."""
        failpoints.hit(f"{step.name}:after")
        result = dict(result or {})
        result.setdefault("seconds", round(time.monotonic() - started, 3))
        self.journal.append(self.run_id, m.name, "done", step=step.name, from_state=before,
                            to_state=step.state, host=step.host, result=result)
        deps.publish(self.ctx.results, m.name, step, result)
        m.advance(step)
        self.observer.step_finished(m.name, step, undo=False, seconds=time.monotonic() - started)
        self.log("step_done", machine=m.name, step=step.name, seconds=result["seconds"])

    # ------------------------------------------------------------------ revert
    def revert(self) -> None:
        """Undo committed (and interrupted) steps backwards, services in reverse order.

        A group's machines, which the run drove side by side, are undone side by side too, at the group's
        place: each step's undo waits only for what the run made wait for it, reversed (a machine's undo
        starts once the machines that came ``after`` it are undone; an undo waits for the undo of every step
        whose ``waits`` named it). The revert is the outage an operator chose to end, so it is as short as
        the run's own order allows; within a machine, steps are undone in reverse order, one at a time.

        The old controller must come back whatever happens on the new one (DESIGN.md §9.3): a
        failing undo of a target-side step (``Step.host == "target"``, unless ``revert_stops``) is
        journaled (``undo_failed``) and the revert goes on, leaving that machine's remaining
        target-side steps for the next revert (in their order) and still undoing its other steps
        (starting the old service) and every other machine. The revert then fails naming what
        failed, and `upgrade revert` again finishes the new controller. Any other failure stops
        the revert where it is (undos already running in a group finish and are journaled first)."""
        view = self.view()
        self._restore(view)
        self.journal.set_status(self.run_id, "reverting")
        failed: list[RevertFailed] = []
        reverted_groups: set[int] = set()
        for m in reversed(self.machines):
            group = next((i for i, g in enumerate(self.groups) if m.name in g.machines), None)
            if group is None:
                self._revert_machine(m, view, failed)
            elif group not in reverted_groups:  # the whole group, at its last machine's place
                reverted_groups.add(group)
                self._revert_group(self.groups[group], view, failed)
        if failed:
            self.journal.set_status(self.run_id, "revert_failed")
            first = failed[0]
            more = [f"{f.step} on {f.host}: {f}" for f in failed[1:]]
            first.args = (f"{first}" + (f"; also {'; '.join(more)}" if more else "")
                          + " — every other step was undone, the old controller's included; what stays to undo is "
                            "on the new controller",)
            first.partial = True
            raise first
        self.journal.set_status(self.run_id, "reverted")

    @staticmethod
    def _undo_todo(m: ServiceMachine, view: RunView) -> list[Step]:
        """The machine's steps a revert undoes, last first: the committed ones and the one interrupted."""
        mv = view.machine(m.name)
        return [s for s in reversed(m.steps) if s.name in mv.committed or s.name == mv.attempted]

    def _undo_failed(self, m: ServiceMachine, step: Step, exc: BaseException, failed: list[RevertFailed]) -> None:
        """A failed undo, journaled: a target-side one is kept in *failed* and the revert goes on (the
        machine's later target-side undos are left for the next revert); any other is raised."""
        err = self._failure(m, step, exc, undo=True)
        if err.interrupted or not self._target_side(step):
            self._raise(err, exc)
        failed.append(err)
        self.observer.note(m.name, f"{step.name} could not be undone ({err}); going on with the "
                                   "old controller's steps")

    def _revert_machine(self, m: ServiceMachine, view: RunView, failed: list[RevertFailed]) -> None:
        """Undo one machine's steps, last first (a machine outside any group)."""
        results = view.machine(m.name).committed
        target_failed = False
        for step in self._undo_todo(m, view):
            if target_failed and self._target_side(step):
                continue  # after this machine's failed target undo, in order, by the next revert
            token = self._undo_begin(m, step)
            try:
                step.undo(self.ctx, results.get(step.name))
            except BaseException as exc:
                self._undo_failed(m, step, exc, failed)
                target_failed = True
                continue
            self._undo_end(m, step, *token)

    def _revert_group(self, group: ParallelGroup, view: RunView, failed: list[RevertFailed]) -> None:
        """Undo the group's machines side by side; only ``step.undo`` leaves this thread. The run's order
        reversed: a machine starts once every machine that came ``after`` it is complete, and a step's
        undo once every step whose ``waits`` named it is undone or left for the next revert."""
        members = [m for m in self.machines if m.name in group.machines]
        todo = {m.name: self._undo_todo(m, view) for m in members}
        pending = {s.name for steps in todo.values() for s in steps}  # undos not yet done (nor left)
        waited_by: dict[str, set[str]] = {}
        for step_name, awaited in group.waits.items():
            for a in awaited:
                waited_by.setdefault(a, set()).add(step_name)
        followers = {m.name: {n.name for n in members if m.name in group.waits_for(n.name)} for m in members}
        target_failed: set[str] = set()
        stop: list[RevertFailed] = []

        def remaining(m: ServiceMachine) -> Iterator[Step]:
            for step in todo[m.name]:
                if m.name in target_failed and self._target_side(step):
                    pending.discard(step.name)  # left for the next revert, in order
                    continue
                yield step

        def begin(pool: ThreadPoolExecutor, m: ServiceMachine, step: Step) -> tuple[Future, Any]:
            token = self._undo_begin(m, step)
            return pool.submit(step.undo, self.ctx, view.machine(m.name).committed.get(step.name)), token

        slots = _Slots(group.pool, list(reversed(members)), lambda m: followers[m.name] <= slots.complete,
                       remaining, lambda step: waited_by.get(step.name, set()) & pending, begin)
        with ThreadPoolExecutor(max_workers=group.pool, thread_name_prefix="undo") as pool:
            slots.fill(pool)
            for fut, m, step, steps, token in slots.ended():
                try:
                    fut.result()
                except BaseException as exc:
                    try:
                        self._undo_failed(m, step, exc, failed)
                    except RevertFailed as err:
                        stop.append(err)  # no new undo starts; the running ones finish and are journaled
                        continue
                    target_failed.add(m.name)
                else:
                    self._undo_end(m, step, *token)
                pending.discard(step.name)
                if not stop:
                    slots.next_step(pool, m, steps)
                    slots.fill(pool)
        if stop:
            raise stop[0]
        if slots.parked or slots.waiting:  # an undo waits for one that never comes: the group's waits have a cycle
            raise RuntimeError("undos wait for steps no machine of the group undoes: "
                               + ", ".join(f"{step.name} waits for {', '.join(sorted(slots.unmet(step)))}"
                                           for _, step, _ in slots.parked))

    @staticmethod
    def _target_side(step: Step) -> bool:
        """A step whose undo acts on the new controller only: its failure must not keep the old one down."""
        return (step.undo_host or step.host) == "target" and not step.revert_stops

    def _undo_begin(self, m: ServiceMachine, step: Step) -> tuple[str, float]:
        """The write-ahead half of an undo: the machine stands in the step's state (a step interrupted or
        failed forward, or left by an earlier revert's failed target undo, is undone from there too; an
        uncommitted step's undo receives None: its effect may be partial), ``undo_intent`` committed."""
        m.set_state(step.state)
        before = m.state
        self.journal.append(self.run_id, m.name, "undo_intent", step=step.name, from_state=before,
                            to_state=m.state_before(step), host=step.undo_host or step.host)
        self.observer.step_started(m.name, step, undo=True)
        started = time.monotonic()
        failpoints.hit(f"{step.name}:undo_before")
        return before, started

    def _undo_end(self, m: ServiceMachine, step: Step, before: str, started: float) -> None:
        """The other half: ``undone`` committed, the machine one state back."""
        failpoints.hit(f"{step.name}:undo_after")
        seconds = time.monotonic() - started
        self.journal.append(self.run_id, m.name, "undone", step=step.name, from_state=before,
                            to_state=m.state_before(step), host=step.undo_host or step.host,
                            result={"seconds": round(seconds, 3)})
        self.ctx.results.pop(step.name, None)
        m.retreat(step)
        self.observer.step_finished(m.name, step, undo=True, seconds=seconds)
        self.log("step_undone", machine=m.name, step=step.name)

    # ------------------------------------------------------------------ failure
    def _fail(self, m: ServiceMachine, step: Step, exc: BaseException, undo: bool) -> NoReturn:
        self._raise(self._failure(m, step, exc, undo), exc)

    @staticmethod
    def _raise(err: RunFailed, exc: BaseException) -> NoReturn:
        """*err*, chained to an unexpected *exc* (a bug's traceback), not to a step's own error."""
        if isinstance(exc, (StepError, KeyboardInterrupt)) or not isinstance(exc, Exception):
            raise err from None
        raise err from exc

    def _failure(self, m: ServiceMachine, step: Step, exc: BaseException, undo: bool) -> RunFailed:
        """Journal the failure (``failed``/``undo_failed``, run status) and build the error to raise."""
        host = getattr(exc, "host", None) or step.host
        output = getattr(exc, "output", None)
        rc = getattr(exc, "rc", None)
        command = getattr(exc, "command", None)
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted by the operator (Ctrl-C)"
        else:
            message = str(exc) or type(exc).__name__
        self.journal.append(self.run_id, m.name, "undo_failed" if undo else "failed", step=step.name,
                            from_state=m.state, host=host, command=command, rc=rc,
                            output=message + (f"\n{output}" if output else ""))
        self.journal.set_status(self.run_id, "revert_failed" if undo else "failed")
        cls = RevertFailed if undo else RunFailed
        err = cls(self.journal.redactor.text(message), m.name, step.name, host,
                  self.journal.redactor.text(output) if output else None)
        err.interrupted = isinstance(exc, KeyboardInterrupt)
        return err
