"""Drawings of the service machines, for `upgrade plan --graph`.

A separate ``transitions`` GraphMachine (graphviz backend) is built from the same steps as the
runtime :class:`~statemachine.machine.ServiceMachine`, which stays free of drawing concerns.
Each service is one cluster; its forward ``run:<step>`` and inverse ``undo:<step>`` transitions
are the edges. Node names carry the service (``keystone.pending``) so several services can share
one drawing; labels show the plain state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import graphviz
from transitions import State
from transitions.extensions import GraphMachine

from journal.errors import UserError
from statemachine.machine import INITIAL, ServiceMachine

FORMATS = ("svg", "png", "dot")


class DiagramError(UserError):
    """The drawing cannot be made (unknown format, graphviz's `dot` missing); the message says the fix."""


class _Model:
    """The model a GraphMachine needs; it holds only the drawing's state."""


class _LabeledState(State):
    """A state drawn with a label other than its (service-qualified) name."""

    def __init__(self, *args: object, label: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.label = label


class _Drawing(GraphMachine):
    state_cls = _LabeledState


def machine_graph(m: ServiceMachine) -> graphviz.Digraph:
    """The graph of one service machine, as a cluster subgraph."""
    states = [{"name": f"{m.name}.{s}", "label": s} for s in m.states]
    gm = _Drawing(model=_Model(), states=states, initial=f"{m.name}.{INITIAL}", auto_transitions=False,
                      title=m.name, show_auto_transitions=False)
    for step in m.steps:
        before, after = f"{m.name}.{m.state_before(step)}", f"{m.name}.{step.state}"
        gm.add_transition(f"run:{step.name}", source=before, dest=after)
        gm.add_transition(f"undo:{step.name}", source=after, dest=before)
    g = gm.get_graph()
    g.name = f"cluster_{m.name}"
    return g


def graph(machines: Sequence[ServiceMachine]) -> graphviz.Digraph:
    """All services of a plan in one drawing."""
    top = graphviz.Digraph("upgrade", graph_attr={"rankdir": "LR", "label": "openstack-upgrade: service machines "
                                                  "(run: forward, undo: inverse)"})
    for m in machines:
        top.subgraph(machine_graph(m))
    return top


def write(machines: Sequence[ServiceMachine], path: str | Path) -> Path:
    """Write the drawing to *path*; the format is the file's suffix (svg, png or dot)."""
    p = Path(path)
    fmt = p.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise DiagramError(f"cannot draw {p}: unknown format {fmt or '(no suffix)'!r} — name the file .svg, .png "
                           "or .dot")
    g = graph(machines)
    try:
        data = g.source.encode() if fmt == "dot" else g.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise DiagramError(f"cannot draw {p}: graphviz's `dot` is not installed — apt-get install graphviz, or "
                           "write the .dot file and render it elsewhere") from None
    try:
        p.write_bytes(data)
    except OSError as exc:
        raise DiagramError(f"cannot write {p}: {exc.strerror} — choose a writable path") from None
    return p
