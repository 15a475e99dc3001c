"""Compute nodes: once the control plane has moved, restart their agents so they reconnect to it.

Each compute host is its own machine (``compute.<name>``) with its own journal steps, so the
runner can drive many of them at once (a bounded pool, ``[upgrade] compute_pool``), one failing
host fails only its own step, and ``resume`` retries only the hosts that did not finish:

1. ``compute.<name>.restart``: stop (if running) and start every unit — nova-compute first, then
   the network agent if the plan names one — by the host's own service control;
2. ``compute.<name>.verify``: every unit reports in (its status says running) within a timeout.

Undo restarts the units again, so that after a revert they reconnect to the old controller.

A host whose plan entry names an ``upgrade_command`` then gets the rolling upgrade of the runbook
("upgrade the computes one by one"), each step journaled with its undo:

3. ``compute.<name>.disable``: its ``nova-compute`` service row disabled in the new controller's nova
   database (what ``openstack compute service set --disable`` writes; an operator's own disable is left
   alone), so the scheduler places nothing there meanwhile; undo enables it again;
4. ``compute.<name>.upgrade``: the plan's upgrade command on the host (a package upgrade; ``{from}`` and
   ``{to}`` name the releases); undo runs its ``downgrade_command``, gives its row back the service
   version it had (nova refuses to start a service older than the lowest of its kind in the table:
   ServiceTooOld), restarts the new controller's nova-conductor (it caches that lowest version) and
   the host's units, waiting for the old release's heartbeat, so a revert leaves
   the host on the old release;
5. ``compute.<name>.restart_upgraded``: the units restarted on the new code;
6. ``compute.<name>.report_version``: a condition, bounded by ``[upgrade] compute_timeout``: its row's
   heartbeat (``services.updated_at``) advances and its ``version`` is the target release's (what its
   nova-conductor reports: ``nova.objects.service.SERVICE_VERSION`` of the target's nova);
7. ``compute.<name>.enable``: the row enabled again; undo disables it.

``nova-unpin`` reads the same rows (:func:`old_computes`): it unpins only once every ``nova-compute``
row reports the target's service version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.infra import mysql
from services.infra.host import Host, check, command_text
from services.infra.settings import ServiceControl
from statemachine.machine import ServiceMachine
from statemachine.step import Result, Step, StepError

PREFIX = "compute"


@dataclass(frozen=True)
class ComputeSettings:
    name: str
    units: tuple[str, ...]
    control: ServiceControl
    #: how long a restarted agent may take to report in
    verify_timeout: float = 60.0
    #: the rolling upgrade (``upgrade_command``/``downgrade_command`` of the plan), or none: the host is
    #: only restarted, its upgrade left for later
    upgrade_command: tuple[str, ...] = ()
    downgrade_command: tuple[str, ...] = ()
    #: its name in nova's services table (``[DEFAULT] host`` of its nova.conf; default: ``name``)
    nova_host: str = ""
    #: how long its heartbeat with the new service version may take after a restart
    version_timeout: float = 300.0

    @property
    def host_in_nova(self) -> str:
        return self.nova_host or self.name


def running(host: Host, control: ServiceControl, unit: str) -> bool:
    """LSB status: 0 running, the kind's "stopped" codes stopped, anything else an error (never guessed)."""
    argv = control.argv("status", unit)
    res = host.run(argv, timeout=120)
    if res.rc == 0:
        return True
    if res.rc in control.stopped_codes:
        return False
    raise StepError(f"cannot tell whether {unit} runs on {host.name}: `{command_text(argv)}` exited {res.rc}",
                    host=host.name, command=command_text(argv), rc=res.rc, output=res.output)


def restart(host: Host, s: ComputeSettings) -> dict[str, bool]:
    was: dict[str, bool] = {}
    for unit in s.units:
        was[unit] = running(host, s.control, unit)
        if was[unit]:
            check(host, s.control.argv("stop", unit), f"stopping {unit}", timeout=300)
        check(host, s.control.argv("start", unit), f"starting {unit}", timeout=300)
    return was


# ---------------------------------------------------------------------- nova's services rows
#: the disabled_reason the rolling upgrade writes: enable only lifts a disable of its own
DISABLED_REASON = "openstack-upgrade: rolling compute upgrade"
#: what prints nova's service version, run with the target controller's python (its ``bin``)
VERSION_CODE = "from nova.objects.service import SERVICE_VERSION; print(SERVICE_VERSION)"


def nova_db(ctx: Any) -> str:
    """The new controller's main nova database (cell1's), as the plan names it."""
    st = ctx.services.get("nova")
    return st.db_name if st is not None else "nova"


def target_version(ctx: Any) -> int:
    """The service version of the nova the new controller runs (its installed code), asked once per run."""
    argv = [ctx.target.tool("python3"), "-c", VERSION_CODE]
    key = (ctx.target.host.name, argv[0])
    if key not in _VERSIONS:
        res = check(ctx.target.host, argv, "reading the target's nova service version", timeout=120)
        try:
            _VERSIONS[key] = int(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise StepError(f"`{command_text(argv)}` on {ctx.target.host.name} printed no service version",
                            host=ctx.target.host.name, command=command_text(argv), output=res.output) from None
    return _VERSIONS[key]


_VERSIONS: dict[tuple[str, str], int] = {}


def compute_rows(ctx: Any, host: str | None = None) -> list[tuple[str, int, Any, int, str | None]]:
    """``(host, version, updated_at, disabled, disabled_reason)`` of the live ``nova-compute`` rows."""
    sql = ("SELECT host, version, updated_at, disabled, disabled_reason FROM services "
           "WHERE `binary`='nova-compute' AND deleted=0" + (" AND host=%s" if host else "") + " ORDER BY host")
    return [tuple(r) for r in mysql.query(ctx.target.db, sql, (host,) if host else None, db=nova_db(ctx))]


def old_computes(ctx: Any) -> list[str]:
    """Every ``nova-compute`` row not reporting the target's service version, as ``host (version N)``."""
    want = target_version(ctx)
    return [f"{h} (version {v})" for h, v, *_ in compute_rows(ctx) if v != want]


def _row(ctx: Any, s: ComputeSettings) -> tuple[str, int, Any, int, str | None]:
    rows = compute_rows(ctx, s.host_in_nova)
    if not rows:
        raise StepError(f"the new controller's nova database ({nova_db(ctx)}) has no nova-compute row for host "
                        f"{s.host_in_nova!r} — set `nova_host` of [[computes]] {s.name} to its [DEFAULT] host",
                        host="target")
    return rows[0]


def _set_disabled(ctx: Any, s: ComputeSettings, disabled: int, reason: str | None) -> None:
    mysql.query(ctx.target.db, "UPDATE services SET disabled=%s, disabled_reason=%s WHERE `binary`='nova-compute' "
                               "AND deleted=0 AND host=%s", (disabled, reason, s.host_in_nova), db=nova_db(ctx))


def wait_heartbeat(ctx: Any, s: ComputeSettings, since: Any, version: int | None, timeout: float,
                   not_version: int | None = None) -> dict[str, Any]:
    """Until the row's heartbeat advances past *since* with the wanted version (a condition, bounded)."""
    started = time.monotonic()
    while True:
        _h, v, updated, _d, _r = _row(ctx, s)
        fresh = updated is not None and (since is None or updated > since)
        if fresh and (version is None or v == version) and (not_version is None or v != not_version):
            return {"version": v, "heartbeat": updated.isoformat(sep=" "),
                    "after": round(time.monotonic() - started, 3)}
        if time.monotonic() - started > timeout:
            want = f"version {version}" if version is not None else f"a version other than {not_version}"
            raise StepError(f"nova-compute on {s.name} did not report {want} with a fresh heartbeat within "
                            f"{timeout:.0f} s (its row: version {v}, updated_at {updated}) — look at its log on "
                            "the host, then `upgrade resume` (or raise [upgrade] compute_timeout)", host=s.name)
        time.sleep(0.5)


def _command(argv: tuple[str, ...], ctx: Any) -> list[str]:
    return [a.format(**{"from": ctx.from_release, "to": ctx.to_release}) for a in argv]


def upgrade_steps(s: ComputeSettings, host: Host, conductors: Callable[[Any], object]) -> list[Step]:
    """The rolling upgrade of one compute host (see the module's docstring), after its restart and verify;
    *conductors* restarts the new controller's nova-conductor (nova's catalog module knows its units)."""
    base = f"{PREFIX}.{s.name}"

    def disable_run(ctx: Any) -> Result:
        _h, _v, _u, disabled, reason = _row(ctx, s)
        if disabled and reason != DISABLED_REASON:
            return {"changed": False, "note": f"already disabled by the operator ({reason}): left so"}
        _set_disabled(ctx, s, 1, DISABLED_REASON)
        return {"changed": True}

    def disable_undo(ctx: Any, result: Result | None) -> None:
        if result is None or result.get("changed"):
            rows = compute_rows(ctx, s.host_in_nova)
            if rows and rows[0][4] == DISABLED_REASON:
                _set_disabled(ctx, s, 0, None)

    def upgrade_run(ctx: Any) -> Result:
        _h, before, _u, _d, _r = _row(ctx, s)  # not restarted yet: the old release's version (also on a re-run)
        argv = _command(s.upgrade_command, ctx)
        res = check(host, argv, f"upgrading {s.name} to {ctx.to_release}", timeout=1800)
        ctx.failpoint(f"{base}.upgrade:inside")
        return {"host": host.name, "command": command_text(argv), "rc": res.rc, "version_before": before}

    def upgrade_undo(ctx: Any, result: Result | None) -> None:
        _h, now, _u, _d, _r = _row(ctx, s)
        check(host, _command(s.downgrade_command, ctx), f"putting {s.name} back on {ctx.from_release}",
              timeout=1800)
        if result and result.get("version_before") is not None and now != result["version_before"]:
            # nova refuses to start a service older than the lowest version of its kind in the table
            # (ServiceTooOld): its row gets back the version it had before, as the old release writes it
            mysql.query(ctx.target.db, "UPDATE services SET version=%s WHERE `binary`='nova-compute' AND deleted=0 "
                                       "AND host=%s", (result["version_before"], s.host_in_nova), db=nova_db(ctx))
            conductors(ctx)  # they cache the lowest version: read the table again
        restart(host, s)
        since = _row(ctx, s)[2]  # the new code stopped: a later heartbeat is the old release's
        wait_heartbeat(ctx, s, since, None, s.version_timeout, not_version=target_version(ctx))

    def restart_run(ctx: Any) -> Result:
        return {"host": host.name, "was_running": restart(host, s)}

    def version_run(ctx: Any) -> Result:
        want = target_version(ctx)
        _h, _v, since, _d, _r = _row(ctx, s)
        return {"host_in_nova": s.host_in_nova, "target_version": want,
                **wait_heartbeat(ctx, s, since, want, s.version_timeout)}

    def enable_run(ctx: Any) -> Result:
        _h, _v, _u, disabled, reason = _row(ctx, s)
        if disabled and reason == DISABLED_REASON:
            _set_disabled(ctx, s, 0, None)
            return {"changed": True}
        return {"changed": False}

    def enable_undo(ctx: Any, result: Result | None) -> None:
        if result and result.get("changed"):
            _set_disabled(ctx, s, 1, DISABLED_REASON)

    db = "<nova DB of the new controller>"
    where = f"`binary`='nova-compute' AND host={s.host_in_nova!r}"
    units = ", ".join(s.units)
    return [
        Step(f"{base}.disable", "disabled", disable_run, disable_undo, host="target", kind="stop",
             describe=f"disable nova-compute of {s.name} (the scheduler places nothing there meanwhile)",
             commands=(f"SQL: UPDATE {db}.services SET disabled=1, disabled_reason={DISABLED_REASON!r} "
                       f"WHERE {where}",)),
        Step(f"{base}.upgrade", "upgraded", upgrade_run, upgrade_undo, host=host.name, kind="schema",
             describe=f"upgrade {s.name} to the target release (undo: its downgrade command, then a restart)",
             commands=(command_text(s.upgrade_command),)),
        Step(f"{base}.restart_upgraded", "restarted_upgraded", restart_run, host=host.name, kind="start",
             describe=f"restart {units} on {s.name} on the new code",
             commands=tuple(command_text(s.control.argv(a, u)) for u in s.units for a in ("stop", "start"))),
        Step(f"{base}.report_version", "reports_version", version_run, host="target", kind="verify",
             describe=f"wait (at most {s.version_timeout:.0f} s) for {s.name}'s heartbeat with the target's "
                      "service version",
             commands=(f"SQL: SELECT version, updated_at FROM {db}.services WHERE {where}   "
                       "# until updated_at advances and version = the target's SERVICE_VERSION",)),
        Step(f"{base}.enable", "enabled", enable_run, enable_undo, host="target", kind="start",
             describe=f"enable nova-compute of {s.name} again",
             commands=(f"SQL: UPDATE {db}.services SET disabled=0, disabled_reason=NULL WHERE {where}",)),
    ]


def machine(s: ComputeSettings, host: Host, conductors: Callable[[Any], object] = lambda ctx: None) -> ServiceMachine:
    base = f"{PREFIX}.{s.name}"

    def restart_run(ctx: object) -> Result:
        return {"host": host.name, "was_running": restart(host, s)}

    def restart_undo(ctx: object, result: Result | None) -> None:
        restart(host, s)

    def verify_run(ctx: object) -> Result:
        started = time.monotonic()
        for unit in s.units:
            while not running(host, s.control, unit):
                if time.monotonic() - started > s.verify_timeout:
                    raise StepError(f"{unit} on {host.name} did not report in within {s.verify_timeout:.0f} s "
                                    "after its restart", host=host.name)
                time.sleep(0.5)
        return {"units": list(s.units), "reported_in_after": round(time.monotonic() - started, 3)}

    return ServiceMachine(base, [
        Step(f"{base}.restart", "restarted", restart_run, restart_undo, host=host.name, acts=restart_run,
             describe=f"restart {', '.join(s.units)} on {s.name}"),
        Step(f"{base}.verify", "reported_in", verify_run, host=host.name, acts=verify_run,
             describe=f"{', '.join(s.units)} on {s.name} report in"),
        *(upgrade_steps(s, host, conductors) if s.upgrade_command else ()),
    ])
