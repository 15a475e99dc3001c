"""A run resumed or reverted by a version of the tool whose step lists differ from the run's: refused
with a message naming the service and the steps, before any event is written or any step runs."""

from __future__ import annotations

from typing import Any

import pytest

from journal.store import Journal
from journal.vault import Key
from statemachine.machine import ServiceMachine
from statemachine.runner import RunFailed, Runner, StepsChanged
from statemachine.step import Step, StepError


class Ctx:
    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.calls: list[str] = []

    def note(self, machine: str, message: str) -> None:
        pass


def _machine(names: list[str], broken: str = "") -> ServiceMachine:
    def step(name: str) -> Step:
        def run(ctx: Ctx) -> dict:
            ctx.calls.append(name)
            if name == broken:
                raise StepError(f"{name} broke on purpose")
            return {}

        def undo(ctx: Ctx, result: Any) -> None:
            ctx.calls.append(f"undo {name}")

        return Step(f"glance.{name}", f"{name}_done", run, undo)

    return ServiceMachine("glance", [step(n) for n in names])


@pytest.mark.parametrize("verb", ["forward", "revert"])
def test_a_new_step_before_those_the_run_went_through_is_refused(tmp_path, verb):
    journal = Journal(tmp_path / "journal", key=Key.from_bytes(bytes(32)))
    run_id = journal.create_run({}, "x", None, "a", "b", None)
    with pytest.raises(RunFailed):
        Runner(journal, run_id, [_machine(["stop", "dump", "import"], broken="import")], Ctx()).forward()
    before = len(journal.events(run_id))

    ctx = Ctx()
    newer = Runner(journal, run_id, [_machine(["precopy", "stop", "dump", "import"])], ctx)
    with pytest.raises(StepsChanged, match=r"glance's steps .* adds glance\.precopy before .* version of the "
                                           r"tool that started it"):
        getattr(newer, verb)()
    assert ctx.calls == [] and len(journal.events(run_id)) == before
    assert journal.run(run_id)["status"] == "failed"

    older = Runner(journal, run_id, [_machine(["stop", "import"])], Ctx())
    with pytest.raises(StepsChanged, match=r"went through glance\.dump, which this version lacks"):
        getattr(older, verb)()

    same = Runner(journal, run_id, [_machine(["stop", "dump", "import"])], ctx)
    getattr(same, verb)()  # the version that started it finishes it
    assert ctx.calls == (["import"] if verb == "forward" else ["undo import", "undo dump", "undo stop"])
    journal.close()
