"""`upgrade check` and `upgrade run` ask the new controller's RabbitMQ to take the carried-over transport_urls.

The plan's ``[amqp] broker`` is the new controller's broker as this machine reaches it before the
cut-over; every ``transport_url`` in the source configs of the plan's services is tried there
(``services/infra/broker.py``). Without ``[amqp]`` nothing is tried and `upgrade check` says so.
"""

from __future__ import annotations

from services import preflight
from services.infra import broker
from upgrade import app, guards
from upgrade.plan import Plan


def logins(plan: Plan) -> list[broker.Login]:
    """The logins of every transport_url in the source configs of the plan's services."""
    src = app.side(plan.source)
    return preflight.source_logins(src.host, src.etc, plan.services)


def findings(plan: Plan) -> list[tuple[str, str]]:
    """(problem, fix) for every login the new controller's broker refuses; [] without ``[amqp]``."""
    if not plan.amqp_broker:
        return []
    return broker.problems(logins(plan), plan.amqp_broker)


def refuse(plan: Plan) -> None:
    """Before `upgrade run` stops anything: the new broker takes every carried-over login (exit 2)."""
    guards.refuse_findings(lambda: findings(plan), "the source configs for their transport_url",
                           "the new controller's message queue refuses what the services' configs carry over",
                           plan.path)
