"""`upgrade plan`'s estimate of the maintenance window, before anything runs (issue #8).

Per service: the size of its databases on the source (``information_schema.tables``:
data_length + index_length, and the row estimate) over a dump rate and an import rate, plus a
fixed cost for what does not grow with the data (schema upgrade, status check, start,
verification, the other steps). The rates and the fixed cost come from the latest completed run
in the plan's journal when it measured them, else from the defaults below; the output says which.

The table size stands in for the dump's bytes: indexes are not dumped (so it overstates rows with
many indexes) and ``--hex-blob`` doubles BLOBs (so it understates BLOB-heavy tables). Measured
rates are in dump bytes per second; close enough for planning a window, not a promise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from rich.filesize import decimal

from journal.store import JOURNAL_FILE
from services.infra import mysql
from services.infra.settings import DBEndpoint
from services.registry import databases, steps_for_plan
from services.releases import Jump
from statemachine.step import StepError
from upgrade import app, guards, window
from upgrade.errors import UserError
from upgrade.plan import Plan

MB = 10**6

#: Defaults, when no completed run measured better. BENCHMARKS.md ("Vault throughput", 1 GiB of
#: BLOBs, 2 cores) measured the tool's dump at 2164.5 MB in 11.2 s (193 MB/s) and its verify+import
#: at 30.3 s (71 MB/s). The defaults are a quarter of that: service databases are many small rows
#: with secondary indexes (slower to import than BLOBs), and a controller's disks and CPUs are shared.
DEFAULT_DUMP_MBPS = 48.0
DEFAULT_IMPORT_MBPS = 18.0
#: One service's schema upgrade, status check, start and verification when no run measured it:
#: db_sync of a large nova or neutron database takes minutes; verification polls the API up to 60 s.
DEFAULT_FIXED_SECONDS = 300.0
#: The cut-over the clients wait for after the services (``window.CUTOVER``) when no run measured it:
#: BENCHMARKS.md measured the management address move at about 5 s and an HA group's other members'
#: starts with the VIP move at 22-43 s; a minute leaves room for slower hosts.
DEFAULT_CUTOVER_SECONDS = 60.0
#: Below this many dump bytes a run's rate measures its fixed overhead, not the throughput.
MIN_MEASURED_BYTES = 64 * MB
BENCHMARKS = "BENCHMARKS.md: 193 MB/s dump, 71 MB/s import measured at 1 GiB; the defaults are a quarter"


class EstimateUnavailable(Exception):
    """The estimate cannot be made (the source DB cannot be reached); the plan is shown without it."""


@dataclass(frozen=True)
class Rates:
    """Dump and import rates (MB of dump per second) and fixed costs per service, with their origin."""

    dump_mbps: float = DEFAULT_DUMP_MBPS
    import_mbps: float = DEFAULT_IMPORT_MBPS
    rates_from: str = f"defaults ({BENCHMARKS})"
    fixed: dict[str, float] = field(default_factory=dict)
    fixed_from: str | None = None     # the run the fixed costs were measured in

    def fixed_for(self, service: str) -> tuple[float, str]:
        if service in self.fixed:
            return self.fixed[service], f"run {self.fixed_from}"
        return DEFAULT_CUTOVER_SECONDS if service == window.CUTOVER else DEFAULT_FIXED_SECONDS, "default"


def _dump_bytes(result: Any) -> int:
    """Plaintext bytes of every dump a ``dump_source`` step wrote (its result names the artifacts)."""
    dbs = (result or {}).get("databases") or {}
    return sum(int(a.get("bytes") or 0) for d in dbs.values()
               for a in (d.get("artifacts") or [d.get("artifact") or {}]))


def measured(events: Sequence[Any], run_id: str) -> Rates:
    """The rates and fixed costs one completed run measured (its events, in journal order).

    Dump rate: dump bytes over the dump steps' seconds; import rate: the same bytes over the import
    steps' seconds (an import loads the dump of its own service). Too few bytes keep the defaults.
    """
    dumped: dict[str, int] = {}
    secs = {"dump": 0.0, "import": 0.0}
    moved = {"dump": 0, "import": 0}
    for e in events:
        if e.kind != "done" or e.step is None:
            continue
        kind = window.step_kind(e.step)
        seconds = float((e.result or {}).get("seconds") or 0.0)
        if kind == "dump":
            dumped[e.machine] = _dump_bytes(e.result)
            moved["dump"] += dumped[e.machine]
            secs["dump"] += seconds
        elif kind == "import" and e.machine in dumped:
            moved["import"] += dumped[e.machine]
            secs["import"] += seconds
    fixed = {w.service: w.fixed() for w in window.measure(events).services if w.closed_by == "verified"}
    base = Rates(fixed=fixed, fixed_from=run_id if fixed else None)
    if moved["dump"] < MIN_MEASURED_BYTES or not (secs["dump"] > 0 and secs["import"] > 0 and moved["import"]):
        return Rates(rates_from=f"defaults ({BENCHMARKS}); run {run_id} dumped {decimal(moved['dump'])}, "
                     "too little to measure a rate", fixed=base.fixed, fixed_from=base.fixed_from)
    return Rates(moved["dump"] / MB / secs["dump"], moved["import"] / MB / secs["import"],
                 f"measured by run {run_id} ({decimal(moved['dump'])} dumped)", base.fixed, base.fixed_from)


def history(journal_dir: Path) -> tuple[Rates, str | None]:
    """Rates from the latest completed run of the plan's journal, and why not when there is none.

    Read only: a plan without a journal yet stays without one (`upgrade plan` creates nothing).
    """
    if not (Path(journal_dir) / JOURNAL_FILE).exists():
        return Rates(), f"no journal at {journal_dir} yet"
    try:
        guards.require_private_dir(Path(journal_dir))
        journal = app.open_journal(Path(journal_dir), app.redactor_for(None), create=False)
    except UserError as exc:
        return Rates(), f"journal not read: {exc}"
    try:
        done = [r for r in journal.runs() if r["status"] == "completed"]
        if not done:
            return Rates(), f"no completed run in {journal_dir}"
        return measured(journal.events(done[-1]["id"]), done[-1]["id"]), None
    finally:
        journal.close()


def source_sizes(ep: DBEndpoint, dbs: Iterable[str]) -> dict[str, tuple[int, int]]:
    """database -> (data_length + index_length, estimated rows) on the source; absent ones are left out."""
    names = list(dbs)
    if not names:
        return {}
    marks = ", ".join(["%s"] * len(names))
    rows = mysql.query(ep, "SELECT table_schema, COALESCE(SUM(data_length + index_length), 0), "
                           "COALESCE(SUM(table_rows), 0) FROM information_schema.tables "
                           f"WHERE table_schema IN ({marks}) GROUP BY table_schema", names)
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


@dataclass(frozen=True)
class ServiceEstimate:
    service: str
    databases: tuple[str, ...]
    missing: tuple[str, ...]     # named by the plan, not on the source (`upgrade check` fails on it)
    bytes: int
    rows: int
    dump: float
    import_: float
    fixed: float
    fixed_from: str

    @property
    def seconds(self) -> float:
        return self.dump + self.import_ + self.fixed


@dataclass(frozen=True)
class Estimate:
    services: list[ServiceEstimate]
    rates: Rates
    history_note: str | None

    @property
    def seconds(self) -> float:
        """Services are upgraded one after another: the run's window is the sum of theirs."""
        return sum(s.seconds for s in self.services)


def windowed(plan: Plan) -> list[str]:
    """The plan's services that have a maintenance window (a stop on the old controller)."""
    return [n for n in plan.services if any(s.window == "opens" for s in steps_for_plan(plan, n))]


def estimate(plan: Plan, cutover: bool = False) -> Estimate:
    """The estimated window of every service of *plan*, and (*cutover*: the run's steps declare one) of the
    cut-over after them, up to the address or VIP answering from the new side; raises EstimateUnavailable
    when the source DB cannot be read (its message names the server, never a password)."""
    jump = Jump(plan.from_release, plan.to_release)
    names = windowed(plan)
    dbs = {n: databases(n, jump, plan.service_settings[n]) for n in names}
    try:
        sizes = source_sizes(plan.source.db, [d for ds in dbs.values() for d in ds])
    except StepError as exc:
        raise EstimateUnavailable(str(exc)) from None
    except (pymysql.Error, OSError) as exc:
        ep = plan.source.db
        raise EstimateUnavailable(f"reading table sizes on {ep.address}:{ep.port} failed: {exc}") from None
    rates, note = history(plan.journal_dir)
    out = []
    for n in names:
        size = sum(sizes.get(d, (0, 0))[0] for d in dbs[n])
        rows = sum(sizes.get(d, (0, 0))[1] for d in dbs[n])
        fixed, origin = rates.fixed_for(n)
        out.append(ServiceEstimate(n, tuple(dbs[n]), tuple(d for d in dbs[n] if d not in sizes), size, rows,
                                   size / MB / rates.dump_mbps, size / MB / rates.import_mbps, fixed, origin))
    if cutover and out:
        fixed, origin = rates.fixed_for(window.CUTOVER)
        out.append(ServiceEstimate(window.CUTOVER, (), (), 0, 0, 0.0, 0.0, fixed, origin))
    return Estimate(out, rates, note)
