"""The maintenance window (issue #8): measured from the journal's events by `upgrade status`, estimated
from the source's table sizes and the previous run by `upgrade plan`.

Hand-built event lists pin the rules (where a window opens and closes, the breakdown by step kind,
a resumed run, an open window, a revert); one real keystone run checks them on a real journal, and
the plan's estimate on the real source database and that run's measurements."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scripts.lab.mariadb import free_port
from tests.conftest import SECRETS, upgrade
from tests.test_planview import PLAN
from upgrade import estimate, window

STEPS = ["stop_source", "dump_source", "stop_target", "backup_target", "install_config", "import_db",
         "upgrade_schema", "fix_ownership", "start_target", "verify"]
#: seconds each keystone step takes in the hand-built runs (in any order: a window is defined by its
#: stop_source intent and its verify done alone)
TAKES = {"stop_source": 2, "dump_source": 10, "stop_target": 1, "backup_target": 3, "install_config": 1,
         "import_db": 20, "upgrade_schema": 30, "fix_ownership": 1, "start_target": 2, "verify": 5}


@dataclass(frozen=True)
class Ev:
    """The fields of ``journal.store.Event`` the window reads."""

    ts: float
    machine: str
    step: str | None
    kind: str
    result: Any = None


def steps(machine: str, t: float, names: list[str] = STEPS, fail: str | None = None) -> tuple[list[Ev], float]:
    """intent/done pairs for *names* from time *t*; *fail* ends with that step failing."""
    out = []
    for s in names:
        out.append(Ev(t, machine, f"{machine}.{s}", "intent"))
        t += TAKES.get(s, 1)
        if s == fail:
            out.append(Ev(t, machine, f"{machine}.{s}", "failed"))
            return out, t
        out.append(Ev(t, machine, f"{machine}.{s}", "done", {"seconds": TAKES.get(s, 1)}))
    return out, t


def test_a_service_window_runs_from_its_stop_intent_to_its_verify_done_with_the_time_by_step_kind():
    events, end = steps("keystone", 1000.0)
    rw = window.measure(events)
    (w,) = rw.services
    assert (w.service, w.start, w.end, w.closed_by, w.retried) == ("keystone", 1000.0, end, "verified", 0)
    assert w.seconds(now=10**9) == sum(TAKES.values())
    assert w.phases == {"dump": 10, "import": 20, "schema": 30, "verify": 5, "cutover": 0,
                        "other": 2 + 1 + 3 + 1 + 1 + 2}
    assert w.idle(now=10**9) == 0 and w.fixed() == 30 + 5 + 10


def test_the_run_window_spans_the_first_stop_to_the_last_verification_and_skips_machines_without_a_stop():
    ks, t = steps("keystone", 0.0)
    gl, t2 = steps("glance", t + 4, ["stop_source", "dump_source", "import_db", "upgrade_schema", "status_check",
                                     "start_target", "verify"])
    hz, _ = steps("horizon", t2 + 1, ["install_settings", "restart_web", "verify"])
    ip = [Ev(t + 1, "ip-switchover", "ip.move", "intent"), Ev(t + 3, "ip-switchover", "ip.move", "done")]
    rw = window.measure([*ks, *ip, *gl, *hz, Ev(t2 + 9, "run", None, "note")])
    assert [w.service for w in rw.services] == ["keystone", "glance"]
    assert (rw.start, rw.end, rw.seconds(now=0)) == (0.0, t2, t2)
    assert rw.service("glance").phases["verify"] == TAKES["verify"] + 1          # verify + status_check
    rep = window.report(rw, now=0)
    assert rep["total"]["seconds"] == t2 and rep["total"]["idle_seconds"] == 4   # the gap between services
    assert rep["resumed"] is False and rep["note"] is None


def test_a_resumed_run_counts_the_dead_time_and_says_so():
    first, t = steps("keystone", 0.0, STEPS[:6])
    # killed inside upgrade_schema (an intent, no end), resumed an hour later: a note, then the step again
    killed = [Ev(t, "keystone", "keystone.upgrade_schema", "intent"),
              Ev(t + 3600, "keystone", "keystone.upgrade_schema", "note")]
    again, end = steps("keystone", t + 3601, STEPS[6:])
    rw = window.measure([*first, *killed, *again])
    w = rw.services[0]
    assert w.end == end and w.seconds(now=0) == end
    assert w.retried == 1 and rw.retried == 1
    assert w.phases["schema"] == 30                     # the killed attempt has no end: it is idle time
    assert w.idle(now=0) == 3601
    rep = window.report(rw, now=0)
    assert rep["resumed"] is True and rep["note"] == window.RESUMED_NOTE


def test_a_failed_step_resumed_later_is_a_retry_and_its_failed_attempt_counts():
    first, t = steps("keystone", 0.0, STEPS, fail="upgrade_schema")
    again, end = steps("keystone", t + 600, STEPS[6:])
    w = window.measure([*first, *again]).services[0]
    assert w.retried == 1 and w.closed_by == "verified"
    assert w.phases["schema"] == 2 * TAKES["upgrade_schema"]
    assert w.idle(now=0) == 600


def test_an_open_window_runs_until_now():
    events, t = steps("keystone", 100.0, STEPS[:6])
    rw = window.measure(events)
    w = rw.services[0]
    assert w.open and w.end is None and rw.open and rw.end is None
    assert w.seconds(now=t + 50) == t + 50 - 100
    rep = window.report(rw, now=t + 50)
    assert rep["services"][0]["running"] and rep["total"]["running"]
    row = window.table_rows(rep)[0]
    assert row["end"] == "running" and row["duration"].startswith(f"since {window.stamp(100.0)} (")


def test_a_revert_before_verification_closes_the_window_when_the_old_controller_serves_again():
    events, t = steps("keystone", 0.0, STEPS[:3], fail="stop_target")
    undo = [Ev(t + 5, "keystone", "keystone.stop_source", "undo_intent"),
            Ev(t + 7, "keystone", "keystone.stop_source", "undone")]
    w = window.measure([*events, *undo]).services[0]
    assert (w.end, w.closed_by) == (t + 7, "reverted")


# ---------------------------------------------------------------------- the cut-over after the services
MOVE = ["network.management.record", "network.management.remove_old", "network.management.add_new",
        "network.management.announce", "network.management.check"]


def _roles(names: list[str], role: str = "cutover") -> Ev:
    """The note a run records at its start: what its plan-built steps declare."""
    return Ev(0.0, window.ROLES_MACHINE, None, "note",
              {"steps": {n: {"kind": "switch", "window": role} for n in names}})


def _chain(machine: str, names: list[str], t: float, each: float = 1.0) -> tuple[list[Ev], float]:
    out = []
    for n in names:
        out += [Ev(t, machine, n, "intent"), Ev(t + each, machine, n, "done", {"seconds": each})]
        t += each
    return out, t


def test_the_run_window_lasts_until_the_address_answers_from_the_new_controller():
    ks, t = steps("keystone", 0.0)
    move, end = _chain("network", MOVE, t + 2)
    after, _ = _chain("network", ["network.old_units.record", "network.old_units.disable"], end)  # clients served
    rw = window.measure([_roles(MOVE), *ks, *move, *after])
    assert [w.service for w in rw.services] == ["keystone", "cutover"]
    cut = rw.service("cutover")
    assert (cut.start, cut.end, cut.closed_by) == (t + 2, end, "verified")
    assert cut.phases["cutover"] == len(MOVE) and cut.phases["other"] == 0
    assert (rw.start, rw.end, rw.seconds(now=0)) == (0.0, end, end)
    rep = window.report(rw, now=0)
    assert rep["total"]["cutover_seconds"] == len(MOVE) and rep["total"]["idle_seconds"] == 2  # before the move
    assert rep["total"]["end"] == window.stamp(end)
    assert [r["service"] for r in window.table_rows(rep)] == ["keystone", "cutover", "total"]
    assert "cutover" in window.TABLE_COLUMNS
    # a journal without the note (an earlier version's run): the move is not known to be the cut-over
    old = window.measure([*ks, *move])
    assert [w.service for w in old.services] == ["keystone"] and old.end == t


def test_the_cutover_stays_open_until_every_declared_step_is_done_across_a_kill():
    """An HA run killed inside the VIP move: the window is open (the clients wait), resumed: it closes at the
    VIP's check; the other members' starts count in the cut-over."""
    ha = ["ha.cluster.replicated", "ha.newctl2.keystone.start_target", "ha.vip.record", "ha.vip.stop_old",
          "ha.vip.start_new", "ha.vip.check"]
    ks, t = steps("keystone", 0.0)
    first, t2 = _chain("ha", ha[:4], t)
    killed = [Ev(t2, "ha.vip", "ha.vip.start_new", "intent")]
    rw = window.measure([_roles(ha), *ks, *first, *killed])
    assert rw.open and rw.service("cutover").open and rw.end is None
    again, end = _chain("ha.vip", ha[4:], t2 + 100)
    rw = window.measure([_roles(ha), *ks, *first, *killed, *again])
    cut = rw.service("cutover")
    assert (cut.end, cut.closed_by, cut.retried) == (end, "verified", 1)
    assert rw.end == end and cut.phases["cutover"] == len(ha) and cut.idle(now=0) == 100


def test_a_revert_during_the_cutover_closes_it_when_the_walk_back_begins():
    ks, t = steps("keystone", 0.0)
    move, t2 = _chain("network", MOVE[:2], t)
    undo = [Ev(t2 + 1, "network", MOVE[1], "undo_intent"), Ev(t2 + 3, "network", MOVE[1], "undone")]
    cut = window.measure([_roles(MOVE), *ks, *move, *undo]).service("cutover")
    assert (cut.end, cut.closed_by) == (t2 + 3, "reverted")


def test_a_run_records_what_its_plan_built_steps_declare_and_the_window_reads_it_back(tmp_path):
    """A real journal: the note holds the plan-built steps with a window role only (not the catalog's)."""
    from types import SimpleNamespace

    from journal.store import Journal
    from journal.vault import Key
    from statemachine.step import Step

    def step(name: str, role: str = "") -> Step:
        return Step(name, name, lambda ctx: {}, kind="switch", window=role)

    catalog_step = next(iter(window.catalog()))
    machines = [SimpleNamespace(steps=[step(catalog_step), step("network.management.check", "cutover"),
                                       step("network.old_units.disable")])]
    j = Journal(tmp_path / "journal", key=Key.from_bytes(bytes(32)))
    try:
        run = j.create_run({}, "0" * 64, None, "2025.2", "2026.1", None)
        window.record_roles(j, run, machines)
        (note,) = [e for e in j.events(run) if e.machine == window.ROLES_MACHINE]
        assert note.result == {"steps": {"network.management.check": {"kind": "switch", "window": "cutover"}}}
        assert window.declared(note) == {"network.management.check": window.Declared("switch", "cutover")}
        j.append(run, "network", "intent", step="network.management.check")
        rw = window.measure(j.events(run))
        assert [w.service for w in rw.services] == ["cutover"] and rw.open
    finally:
        j.close()


def test_the_estimate_counts_the_cutover_measured_or_by_default():
    ks, t = steps("keystone", 0.0)
    move, _ = _chain("network", MOVE, t, each=2.0)
    r = estimate.measured([_roles(MOVE), *ks, *move], "run-3")
    assert r.fixed == {"keystone": 45, "cutover": 2.0 * len(MOVE)}
    assert r.fixed_for("cutover") == (10.0, "run run-3")
    assert estimate.Rates().fixed_for("cutover") == (estimate.DEFAULT_CUTOVER_SECONDS, "default")


def test_human_durations():
    assert [window.human(s) for s in (None, 0.04, 59.9, 60, 725, 11220)] == \
        ["-", "0.0s", "59.9s", "1m00s", "12m05s", "3h07m"]


# ---------------------------------------------------------------------- estimate: the rates a run measured
def _dump(machine: str, t: float, nbytes: int, seconds: float) -> list[Ev]:
    res = {"databases": {machine: {"artifact": {"bytes": nbytes}}}, "seconds": seconds}
    return [Ev(t, machine, f"{machine}.dump_source", "intent"), Ev(t + seconds, machine, f"{machine}.dump_source",
                                                                   "done", res)]


def test_rates_are_measured_from_dump_and_import_steps_of_a_large_enough_run():
    events, t = steps("keystone", 0.0)
    big = [*_dump("nova", t, 500 * estimate.MB, 5.0),
           Ev(t + 5, "nova", "nova.import_db", "intent"), Ev(t + 25, "nova", "nova.import_db", "done",
                                                                {"seconds": 20.0})]
    r = estimate.measured([*events, *big], "run-1")
    # keystone's dump result names no artifact: 0 bytes, but its seconds count
    assert r.dump_mbps == 500 / (TAKES["dump_source"] + 5.0)
    assert r.import_mbps == 500 / (TAKES["import_db"] + 20.0)
    assert r.rates_from == "measured by run run-1 (500.0 MB dumped)"
    assert r.fixed == {"keystone": 30 + 5 + 10} and r.fixed_for("keystone") == (45, "run run-1")
    assert r.fixed_for("nova") == (estimate.DEFAULT_FIXED_SECONDS, "default")   # never verified in that run


def test_a_small_run_keeps_the_default_rates_but_gives_its_fixed_costs():
    events, _ = steps("keystone", 0.0)
    events[3] = Ev(events[3].ts, "keystone", "keystone.dump_source", "done",
                   {"databases": {"keystone": {"artifact": {"bytes": 300_000}}}, "seconds": 10})
    r = estimate.measured(events, "run-2")
    assert (r.dump_mbps, r.import_mbps) == (estimate.DEFAULT_DUMP_MBPS, estimate.DEFAULT_IMPORT_MBPS)
    assert "BENCHMARKS.md" in r.rates_from and "run run-2 dumped 300.0 kB, too little" in r.rates_from
    assert r.fixed_for("keystone") == (45, "run run-2")


# ---------------------------------------------------------------------- a real run
def test_status_shows_the_actual_window_and_plan_the_estimate_of_a_real_run(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    before = upgrade("plan", str(plan))
    assert before.returncode == 0, before.stderr
    assert "keystone  keystone" in before.stdout                     # sizes read from the real source DB
    assert f"no measurements: no journal at {tmp_path / 'journal'} yet" in before.stdout
    assert "BENCHMARKS.md" in before.stdout
    assert not (tmp_path / "journal").exists()                       # plan creates nothing

    res = upgrade("run", str(plan))
    assert res.returncode == 0, res.stderr
    journal = tmp_path / "journal"
    st = json.loads(upgrade("status", "--journal", str(journal), "-f", "json").stdout)
    ex = upgrade("journal", "export", "--journal", str(journal), "--format", "jsonl")
    events = [json.loads(line) for line in ex.stdout.splitlines()]
    at = {(e["step"], e["kind"]): e["ts"] for e in events}
    win = st["window"]
    (ks,) = win["services"]
    assert ks["service"] == "keystone" and ks["closed_by"] == "verified" and not ks["running"]
    assert ks["start"] == window.stamp(at[("keystone.stop_source", "intent")])
    assert ks["end"] == window.stamp(at[("keystone.verify", "done")])
    assert ks["seconds"] == round(at[("keystone.verify", "done")] - at[("keystone.stop_source", "intent")], 1)
    for kind, step in (("dump", "dump_source"), ("import", "import_db"), ("schema", "upgrade_schema")):
        took = at[(f"keystone.{step}", "done")] - at[(f"keystone.{step}", "intent")]
        assert ks[f"{kind}_seconds"] == round(took, 1), kind
    assert win["total"]["seconds"] == ks["seconds"] and win["resumed"] is False

    table = upgrade("status", "--journal", str(journal)).stdout
    assert "maintenance window (first stop on the old controller -> verification on the new):" in table
    assert table.count(ks["start"]) == 2 and "running" not in table     # keystone and total
    value = upgrade("status", "--journal", str(journal), "-f", "value").stdout.splitlines()
    assert value[0].split()[:5] == ["keystone", "verified", "-", ks["start"], ks["end"]]
    assert value[-1].split()[:2] == ["total", "completed"]

    after = upgrade("plan", str(plan))
    assert after.returncode == 0, after.stderr
    row = next(line for line in after.stdout.splitlines() if line.startswith("keystone  keystone"))
    assert f"run {st['run']}" in row                                 # fixed cost measured by that run
    assert f"run {st['run']} dumped" in after.stdout and "too little to measure a rate" in after.stdout
    for secret in SECRETS:
        assert secret not in before.stdout + after.stdout + table


def test_plan_without_a_reachable_source_db_still_shows_the_steps_and_says_why_there_is_no_estimate(tmp_path):
    port = free_port()                      # nothing listens there
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.replace("port = 13306", f"port = {port}"))
    assert upgrade("keygen", str(tmp_path / "dump.key")).returncode == 0
    res = upgrade("plan", str(plan))
    assert res.returncode == 0, res.stderr
    assert "keystone.verify  on target (local)" in res.stdout
    assert f"estimate unavailable: cannot connect to the database at 127.0.0.1:{port}" in res.stdout
    for secret in SECRETS:
        assert secret not in res.stdout + res.stderr


def test_a_killed_and_resumed_real_run_shows_the_open_window_then_the_whole_outage(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    assert upgrade("run", str(plan), failpoint="keystone.upgrade_schema:before").returncode == -9
    killed = upgrade("status", "--journal", str(journal))
    (row,) = [line for line in killed.stdout.splitlines() if line.startswith("keystone  20")]
    assert "  running  since " in row and "so far" in row
    assert upgrade("resume", "--journal", str(journal)).returncode == 0
    st = json.loads(upgrade("status", "--journal", str(journal), "-f", "json").stdout)
    win = st["window"]
    assert win["resumed"] is True and win["retried_steps"] == 1 and win["services"][0]["closed_by"] == "verified"
    assert f"note: {window.RESUMED_NOTE}" in upgrade("status", "--journal", str(journal)).stdout
