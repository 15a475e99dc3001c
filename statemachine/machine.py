"""One `transitions` state machine per service: one state per completed step.

Forward transitions are named ``run:<step>`` and go from the state of the previous step to the
state of this one; each has an inverse ``undo:<step>`` going back. The machine is the model of
where a service is; the journal is the record of how it got there, and on resume the machine is
set from the journal (DESIGN.md §3, rule 3).
"""

from __future__ import annotations

from collections.abc import Sequence

from transitions import Machine

from statemachine.deps import check_machine
from statemachine.step import Step

INITIAL = "pending"


class MachineDefinitionError(Exception):
    """Steps that cannot form a machine (duplicate names or states): a programming error."""


class ServiceMachine:
    """The machine of one service; ``state`` is maintained by `transitions`."""

    state: str

    def __init__(self, name: str, steps: Sequence[Step]) -> None:
        self.name = name
        self.steps: tuple[Step, ...] = tuple(steps)
        states = [INITIAL] + [s.state for s in self.steps]
        if len(set(states)) != len(states):
            raise MachineDefinitionError(f"machine {name}: states are not unique: {states}")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise MachineDefinitionError(f"machine {name}: step names are not unique: {names}")
        check_machine(name, self.steps)  # every requirement of its own met by an earlier step
        self.machine = Machine(model=self, states=states, initial=INITIAL, auto_transitions=False,
                               model_attribute="state")
        for before, step in zip(states, self.steps, strict=False):
            self.machine.add_transition(f"run:{step.name}", source=before, dest=step.state)
            self.machine.add_transition(f"undo:{step.name}", source=step.state, dest=before)

    def state_before(self, step: Step) -> str:
        i = self.steps.index(step)
        return INITIAL if i == 0 else self.steps[i - 1].state

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def set_state(self, state: str) -> None:
        self.machine.set_state(state)

    def advance(self, step: Step) -> None:
        self.trigger(f"run:{step.name}")  # type: ignore[attr-defined]

    def retreat(self, step: Step) -> None:
        self.trigger(f"undo:{step.name}")  # type: ignore[attr-defined]

    @property
    def states(self) -> list[str]:
        return [INITIAL] + [s.state for s in self.steps]
