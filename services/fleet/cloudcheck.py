"""The cloud after the cut-over: the run's last step waits until the whole cloud reports to the new controller.

Each service's own verify step proves that its API answers on the new controller; it cannot prove that
the rest of the cloud found it: the compute hosts' ``nova-compute`` reporting through the new broker and
conductor, the network agents and ``cinder-volume`` heartbeating into the new databases, every API of the
catalog serving an authenticated request. The ``cloud`` machine runs after every other one (after the
IP switchover, the compute hosts and nova's unpin) with one step, ``cloud.verify``, that waits —
bounded by ``[cloud] timeout`` — until, read on the new controller only:

* every live ``nova-compute`` row of its nova database (and every ``[[computes]]`` host of the plan) has a
  ``services.updated_at`` newer than the one it had when the step began (a heartbeat written after the
  step began: clock-independent, since the row's own earlier value is the yardstick);
* with neutron in the run, every agent of its database (``agents.heartbeat_timestamp``) likewise;
* with cinder in the run, every ``cinder-volume`` service (``services.updated_at``) likewise;
* with ``[cloud] auth_url``, a keystone token from the plan's admin credentials (password in the request
  body, token in a header: never in argv, the journal or a log), and a GET with it to every endpoint of
  the catalog's ``interface`` answers (any status below 500 but 401: the API serves and takes the token);
* with both and cinder in the run, cinder-scheduler has a pool of every enabled ``cinder-volume`` backend
  (``GET <block-storage API>/scheduler-stats/get_pools``). A heartbeat is not enough: the scheduler learns a
  backend's capabilities only when it asks at its own start or when the volume service publishes them, every
  ``backend_stats_polling_interval`` (60 s), not at its start. A scheduler that started before
  ``cinder-volume`` consumed its RPC (``systemctl start`` of a ``Type=simple`` unit returns before that) knows
  no pool until then, and every volume create fails meanwhile with "No valid backend was found".

A timeout names every host, agent, service and endpoint that did not report and fails the step: the run
stays resumable, and `upgrade resume` after the operator's fix runs the step again from the start.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pymysql

from services.infra import mysql
from services.infra.settings import DBEndpoint
from statemachine import failpoints
from statemachine.machine import ServiceMachine
from statemachine.step import Result, Step, StepError

MACHINE = "cloud"
#: how often the rows and the endpoints are read again while the step waits
POLL = 1.0
#: one HTTP request's own bound (the step's is ``timeout``)
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Auth:
    """The plan's admin credentials for the new controller's keystone (``[cloud]``)."""

    auth_url: str
    username: str
    password: str = field(repr=False)
    project: str = "admin"
    user_domain: str = "Default"
    project_domain: str = "Default"
    interface: str = "public"


@dataclass(frozen=True)
class CloudSettings:
    """What the step waits for; the databases are the target's, named as the plan names them."""

    timeout: float = 300.0
    #: the plan's compute hosts as nova names them: each must have a row, besides every live row
    computes: tuple[str, ...] = ()
    #: the nova database (cell1's) to read ``nova-compute`` rows in, or "" (nova not in this cloud's plan)
    nova_db: str = ""
    neutron_db: str = ""
    cinder_db: str = ""
    auth: Auth | None = None


# ---------------------------------------------------------------------- what reports, read on the target
def _stamp(value: Any) -> str | None:
    return value.isoformat(sep=" ") if value is not None else None


#: when each service itself calls a reporter down (nova's and cinder's ``service_down_time``, neutron's
#: ``agent_down_time``, their defaults): what `upgrade check` reads on the old controller
DOWN_AFTER = {"nova": 60, "neutron": 75, "cinder": 60}


def reporters(ep: DBEndpoint, s: CloudSettings) -> list[tuple[str, str, Any]]:
    """(service, reporter, last heartbeat or None) of every reporter the step waits for, read in the databases
    of *ep*. Reporters say what and where: ``nova-compute on compute1``, ``neutron-openvswitch-agent on
    compute1``, ``cinder-volume on ctl@lvm``. A database or table that cannot be read is a StepError naming it."""
    try:
        return _reporters(ep, s)
    except pymysql.MySQLError as exc:
        raise StepError(f"cannot read the heartbeats on {ep.address}:{ep.port}: {exc}") from None


def _reporters(ep: DBEndpoint, s: CloudSettings) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    if s.nova_db:
        rows = mysql.query(ep, "SELECT host, updated_at FROM services WHERE `binary`='nova-compute' AND deleted=0 "
                               "ORDER BY host", db=s.nova_db)
        out += [("nova", f"nova-compute on {host}", beat) for host, beat in rows]
        seen = {host for host, _b in rows}
        out += [("nova", f"nova-compute on {host}", None) for host in s.computes if host not in seen]
    if s.neutron_db:
        out += [("neutron", f"{binary} on {host}", beat) for binary, host, beat in mysql.query(
            ep, "SELECT `binary`, host, heartbeat_timestamp FROM agents ORDER BY host, `binary`", db=s.neutron_db)]
    if s.cinder_db:
        out += [("cinder", f"cinder-volume on {host}", beat) for host, beat in mysql.query(
            ep, "SELECT host, updated_at FROM services WHERE `binary`='cinder-volume' AND deleted=0 ORDER BY host",
            db=s.cinder_db)]
    return out


def heartbeats(ctx: Any, s: CloudSettings) -> dict[str, Any]:
    """Every reporter the step waits for -> its last heartbeat (None: never reported), read on the new
    controller only."""
    return {who: beat for _svc, who, beat in reporters(ctx.target.db, s)}


def down(ep: DBEndpoint, s: CloudSettings) -> list[str]:
    """The reporters of *ep*'s databases that their own service calls down now (no heartbeat for longer
    than its down time): on the old controller before a run, each would keep the last step waiting."""
    now = mysql.query(ep, "SELECT UTC_TIMESTAMP()")[0][0]
    return [f"{who} (last heartbeat {_stamp(beat) or 'never'})" for svc, who, beat in reporters(ep, s)
            if beat is None or (now - beat).total_seconds() > DOWN_AFTER[svc]]


def stale(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The reporters without a heartbeat newer than the one they had when the step began (a reporter that
    appeared since counts once it has any)."""
    return [who for who, beat in now.items()
            if beat is None or (before.get(who) is not None and beat <= before[who])]


# ---------------------------------------------------------------------- the catalog, through keystone
def _request(url: str, token: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request; an HTTP error status is an answer, not an exception."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if data else {}),
               **({"X-Auth-Token": token} if token else {})}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:  # noqa: S310 (plan-given URL)
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read() if exc.fp else b""


def token_and_catalog(auth: Auth) -> tuple[str, list[dict[str, Any]]]:
    """A project-scoped token and its catalog (keystone v3 password auth), or StepError saying why not."""
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": auth.username, "domain": {"name": auth.user_domain}, "password": auth.password}}},
        "scope": {"project": {"name": auth.project, "domain": {"name": auth.project_domain}}}}}
    url = auth.auth_url.rstrip("/") + "/auth/tokens"
    try:
        status, headers, raw = _request(url, body=body)
    except (urllib.error.URLError, OSError) as exc:
        raise StepError(f"keystone at {auth.auth_url} does not answer: {getattr(exc, 'reason', exc)}") from None
    token = {k.lower(): v for k, v in headers.items()}.get("x-subject-token")
    if status != 201 or not token:
        raise StepError(f"keystone at {auth.auth_url} refused a token for {auth.username} in project {auth.project} "
                        f"(HTTP {status}) — check [cloud] username, password and project")
    try:
        catalog = json.loads(raw)["token"]["catalog"]
    except (ValueError, KeyError, TypeError):
        raise StepError(f"keystone at {auth.auth_url} gave a token without a catalog (HTTP {status})") from None
    return token, catalog


def endpoints(catalog: list[dict[str, Any]], interface: str) -> dict[str, str]:
    """``<type> (<name>) <url>`` -> URL of every endpoint of *interface* in the catalog."""
    out = {}
    for svc in catalog:
        for ep in svc.get("endpoints", ()):
            if ep.get("interface") == interface and ep.get("url"):
                out[f"API {svc.get('type')} ({svc.get('name')}) {ep['url']}"] = ep["url"]
    return out


def answers(url: str, token: str) -> str | None:
    """None when *url* answers a request with *token* (below 500 and not 401), else why not."""
    try:
        status, _h, _b = _request(url, token=token)
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    return None if status < 500 and status != 401 else f"HTTP {status}"


# ---------------------------------------------------------------------- cinder-scheduler's pools
#: the catalog types cinder's API is registered under, the service-types authority's name first
VOLUME_API = ("block-storage", "volumev3", "volumev2", "volume")
POOLS = "cinder-scheduler's pool of "
#: what to do about a missing pool, in the timeout's message
POOLS_HINT = ("; a missing pool: restart cinder-scheduler on the new controller once cinder-volume runs, it asks "
              "every volume service for its capabilities when it starts")


def volume_backends(ep: DBEndpoint, cinder_db: str) -> list[str]:
    """The backends cinder-scheduler must have a pool of: every enabled, unfrozen ``cinder-volume`` service of
    *ep*'s cinder database, by the name the scheduler files its pools under (its cluster, else its host; the
    columns a release lacks are left out). A disabled or frozen backend gets no pool: the scheduler skips it."""
    try:
        columns = set(mysql.table_columns(ep, cinder_db, "services"))
        name = "COALESCE(cluster_name, host)" if "cluster_name" in columns else "host"
        where = " ".join(f"AND {c}=0" for c in ("disabled", "frozen") if c in columns)
        return sorted({r[0] for r in mysql.query(
            ep, f"SELECT {name} FROM services WHERE `binary`='cinder-volume' AND deleted=0 {where}", db=cinder_db)})
    except pymysql.MySQLError as exc:
        raise StepError(f"cannot read cinder's volume services in {cinder_db} on {ep.address}:{ep.port}: "
                        f"{exc}") from None


def volume_api(catalog: list[dict[str, Any]], interface: str) -> str | None:
    """The URL of cinder's API of *interface* in the catalog, or None (no block-storage endpoint)."""
    for kind in VOLUME_API:
        for svc in catalog:
            if svc.get("type") == kind:
                for ep in svc.get("endpoints", ()):
                    if ep.get("interface") == interface and ep.get("url"):
                        return ep["url"]
    return None


def pooled(url: str, token: str) -> set[str] | str:
    """The backends (``host@backend``, or the cluster's) cinder-scheduler has a pool of, or why it cannot say."""
    try:
        status, _h, raw = _request(url.rstrip("/") + "/scheduler-stats/get_pools", token=token)
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    if status == 403:
        return "HTTP 403: only an admin may read them ([cloud] username must be one)"
    if status != 200:
        return f"HTTP {status}"
    try:
        return {str(p["name"]).partition("#")[0] for p in json.loads(raw)["pools"]}
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status} without a list of pools"


def unpooled(url: str, token: str, backends: list[str]) -> dict[str, str]:
    """What the wait names for cinder-scheduler: each backend it has no pool of yet, and why."""
    known = pooled(url, token)
    if isinstance(known, str):
        return {f"cinder-scheduler's pools at {url}": known}
    return {f"{POOLS}{b}": "none yet: the scheduler learns a backend when it asks at its own "
            "start or when cinder-volume publishes its capabilities (every backend_stats_polling_interval)"
            for b in backends if b not in known}


# ---------------------------------------------------------------------- the step
def verify(ctx: Any, s: CloudSettings) -> Result:
    """Wait until every reporter has a newer heartbeat and every endpoint answers (see the module)."""
    started = time.monotonic()
    began = mysql.query(ctx.target.db, "SELECT UTC_TIMESTAMP(6)")[0][0]
    before = heartbeats(ctx, s)
    failpoints.hit(f"{MACHINE}.verify:inside")  # a kill here: resume runs the step again from the start
    token: str | None = None
    apis: dict[str, str] | None = None if s.auth else {}
    volumes: str | None = None  # cinder's API in the catalog, where the scheduler's pools are asked
    answered: dict[str, str] = {}
    why: dict[str, str] = {}
    while True:
        now = heartbeats(ctx, s)
        waiting = {who: f"last heartbeat {_stamp(now[who])}" for who in stale(before, now)}
        if s.auth and apis is None:
            try:
                token, catalog = token_and_catalog(s.auth)
                ctx.redactor.add(token)
                apis = endpoints(catalog, s.auth.interface)
                volumes = volume_api(catalog, s.auth.interface) if s.cinder_db else None
            except StepError as exc:
                waiting[f"keystone {s.auth.auth_url}"] = str(exc)
        for what, url in (apis or {}).items():
            if what not in answered and token is not None:
                if (err := answers(url, token)) is None:
                    answered[what] = url
                else:
                    why[what] = err
        waiting.update({what: why.get(what, "not asked yet") for what in (apis or {}) if what not in answered})
        backends = volume_backends(ctx.target.db, s.cinder_db) if volumes and token else []
        if volumes and token and backends:
            waiting.update(unpooled(volumes, token, backends))
        if not waiting:
            return {"began": _stamp(began), "after": round(time.monotonic() - started, 3),
                    "reported": {who: {"before": _stamp(before.get(who)), "heartbeat": _stamp(beat)}
                                 for who, beat in sorted(now.items())},
                    "apis": sorted(answered), **({"pools": backends} if volumes else {})}
        if time.monotonic() - started > s.timeout:
            lines = "\n  ".join(f"{who}: {detail}" for who, detail in sorted(waiting.items()))
            hint = POOLS_HINT if any(who.startswith(POOLS) for who in waiting) else ""
            raise StepError(f"the cloud did not report to the new controller {ctx.target.host.name} within "
                            f"{s.timeout:.0f} s after the cut-over; {len(waiting)} did not (heartbeats read in its "
                            f"databases since {_stamp(began)} UTC):\n  {lines}\n— start or fix each one (its "
                            f"service on that host, its log{hint}"
                            "), then `upgrade resume` (or raise [cloud] timeout)",
                            host=ctx.target.host.name)
        time.sleep(POLL)


def _undo(ctx: Any, result: Result | None) -> None:
    """Nothing to undo: the step only reads the new controller's databases and asks its APIs; a revert
    moves the cloud back by the undos of the steps that moved it."""


def commands(s: CloudSettings) -> list[str]:
    """What the step reads and asks, for `upgrade plan` (it acts on no host: no commands to record)."""
    db = "<DB of the new controller>"
    out = []
    if s.nova_db:
        out.append(f"SQL: SELECT host, updated_at FROM {s.nova_db}.services WHERE `binary`='nova-compute' "
                   f"AND deleted=0   # {db}")
    if s.neutron_db:
        out.append(f"SQL: SELECT `binary`, host, heartbeat_timestamp FROM {s.neutron_db}.agents   # {db}")
    if s.cinder_db:
        out.append(f"SQL: SELECT host, updated_at FROM {s.cinder_db}.services WHERE `binary`='cinder-volume' "
                   f"AND deleted=0   # {db}")
    out.append(f"# until each heartbeat is newer than when the step began, {s.timeout:.0f} s at most")
    if s.auth:
        out += [f"POST {s.auth.auth_url.rstrip('/')}/auth/tokens   # as {s.auth.username} in project "
                f"{s.auth.project}: a token and its catalog",
                f"GET <every {s.auth.interface} endpoint of the catalog> with the token   # until each answers"]
        if s.cinder_db:
            out += [f"SQL: SELECT COALESCE(cluster_name, host) FROM {s.cinder_db}.services WHERE "
                    f"`binary`='cinder-volume' AND deleted=0 AND disabled=0 AND frozen=0   # {db}",
                    "GET <the block-storage endpoint>/scheduler-stats/get_pools with the token   # until "
                    "cinder-scheduler has a pool of each"]
    else:
        out.append("(no [cloud] auth_url: the catalog's APIs are not asked)")
    return out


def machine(s: CloudSettings) -> ServiceMachine:
    """The ``cloud`` machine: the run's last, one read-only step."""
    parts = ", ".join(p for p, on in (("nova-compute", s.nova_db), ("neutron agents", s.neutron_db),
                                      ("cinder-volume", s.cinder_db), ("every API of the catalog", s.auth),
                                      ("cinder-scheduler's pools", s.cinder_db and s.auth)) if on)
    return ServiceMachine(MACHINE, [
        Step(f"{MACHINE}.verify", "cloud_verified", lambda ctx: verify(ctx, s), _undo, host="target",
             kind="verify", provides=("reports",), commands=lambda ctx: commands(s),
             describe=f"wait (at most {s.timeout:.0f} s) until the cloud reports to the new controller: "
                      f"{parts or 'nothing to read'}"),
    ])
