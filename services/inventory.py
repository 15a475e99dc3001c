"""What the old controller serves besides what a plan upgrades: its keystone catalog and its running
daemons.

The run moves the controller's address and stops its databases' users: a service the plan does not
upgrade (heat, swift, octavia, ceilometer, cinder-backup, or a service this tool upgrades but the plan
leaves out) would keep running against an address that now answers from another controller, with
another database behind it. So every such service is found before anything is changed, and refused
unless the plan ignores it explicitly with a reason (``[upgrade] ignore = {swift = "..."}``).

Two places show what runs: the source keystone's catalog (service types with their endpoints: what
clients are told to use) and the source host's processes and running systemd units (what actually
runs, also when the catalog forgot it, e.g. cinder-backup has no endpoint of its own).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.infra import mysql
from services.infra.host import check
from services.infra.settings import DBEndpoint, Side

#: catalog service types -> the project that serves them (the name a plan's ``services`` or ``ignore`` uses)
TYPES = {
    "identity": "keystone", "image": "glance", "placement": "placement", "compute": "nova",
    "compute_legacy": "nova", "ec2": "nova", "network": "neutron", "volume": "cinder", "volumev2": "cinder",
    "volumev3": "cinder", "block-storage": "cinder", "block-store": "cinder", "orchestration": "heat",
    "cloudformation": "heat", "object-store": "swift", "load-balancer": "octavia", "metering": "ceilometer",
    "alarming": "aodh", "metric": "gnocchi", "key-manager": "barbican", "dns": "designate",
    "shared-file-system": "manila", "share": "manila", "sharev2": "manila", "baremetal": "ironic",
    "baremetal-introspection": "ironic-inspector", "container-infra": "magnum", "workflowv2": "mistral",
    "workflow": "mistral", "database": "trove", "data-processing": "sahara", "clustering": "senlin",
    "messaging": "zaqar", "event": "panko", "rating": "cloudkitty", "instance-ha": "masakari",
    "container": "zun", "reservation": "blazar", "application-catalog": "murano", "nfv-orchestration": "tacker",
    "infra-optim": "watcher", "accelerator": "cyborg", "backup": "freezer",
}

#: projects whose daemons are recognised by name (``heat-engine``, ``openstack-swift-proxy``), and the
#: daemons of upgraded projects that the tool still does not upgrade
PROJECTS = ("keystone", "glance", "placement", "nova", "neutron", "cinder", "heat", "swift", "octavia",
            "ceilometer", "aodh", "gnocchi", "barbican", "designate", "manila", "ironic", "magnum", "mistral",
            "trove", "sahara", "senlin", "zaqar", "panko", "cloudkitty", "masakari", "zun", "blazar", "murano",
            "tacker", "watcher", "cyborg", "freezer", "vitrage")
#: daemons that belong to an upgraded project but are not among the units the tool upgrades for it:
#: they are named on their own (``ignore = {cinder-backup = "..."}``) unless the plan lists the unit
SEPARATE = ("cinder-backup",)
_DAEMON = re.compile(r"^(?:openstack-)?(" + "|".join(re.escape(p) for p in PROJECTS) + r")(?:-[a-z0-9-]+)?$")
_UNIT_SUFFIX = re.compile(r"(?:@[^.]*)?\.service$")


@dataclass
class Unplanned:
    """One service the source runs that the plan neither upgrades nor ignores, and where it was seen."""

    name: str
    seen: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.name} ({'; '.join(self.seen)})"


def catalog(ep: DBEndpoint, db: str) -> list[tuple[str, str, list[str]]]:
    """The catalog in the source keystone's database: (type, name, endpoint URLs) of every enabled service.

    Read from the database, not the API: the source's keystone may be stopped already (a resumed run's
    pre-flight), and the database is what the run carries over."""
    if not mysql.db_exists(ep, db):
        return []
    columns = mysql.table_columns(ep, db, "service")
    if not columns:  # not (yet) a keystone with a catalog: nothing is listed in it
        return []
    # ``service.enabled`` came in a later release than Havana's schema: without it every service is enabled
    enabled = "s.enabled" if "enabled" in columns else "1"
    rows = mysql.query(ep, f"SELECT s.id, s.type, s.extra, {enabled}, e.interface, e.url FROM service s "
                           "LEFT JOIN endpoint e ON e.service_id = s.id ORDER BY s.type, s.id, e.interface", db=db)
    out: dict[str, tuple[str, str, list[str]]] = {}
    for sid, typ, extra, enabled, interface, url in rows:
        if not enabled:
            continue
        try:
            name = str(json.loads(extra or "{}").get("name") or "")
        except ValueError:
            name = ""
        entry = out.setdefault(sid, (typ, name, []))
        if url:
            entry[2].append(f"{interface} {url}")
    return list(out.values())


def project_of_type(typ: str, name: str) -> str:
    """The project a catalog entry belongs to: by its type, else by its name (an in-house service)."""
    return TYPES.get(typ) or name or typ


def daemon_project(word: str) -> str | None:
    """The project (or separate daemon, ``cinder-backup``) a process or unit name belongs to, or None."""
    base = _UNIT_SUFFIX.sub("", word.rsplit("/", 1)[-1])
    for sep in SEPARATE:
        if base in (sep, f"openstack-{sep}"):
            return sep
    m = _DAEMON.match(base)
    return m.group(1) if m else None


def _owned(args: str, side: Side) -> bool:
    """Whether a process belongs to *side*'s controller: on a host of its own every process does; a
    controller laid out as a directory tree on a shared machine (etc not ``/etc``) owns only the
    processes whose command line names its trees."""
    if side.etc.rstrip("/") in ("", "/etc"):
        return True
    roots = {p.rstrip("/") for p in (side.etc, side.lib) if p}
    return any(f"{r}/" in args or args.endswith(r) for r in roots)


def running(side: Side) -> list[tuple[str, str]]:
    """(project, what) for every daemon of a known project running on *side*: processes (``ps``), and
    running systemd units when the controller uses systemd."""
    found: list[tuple[str, str]] = []
    # -ww: whole lines, never cut at 80 columns; a failed ps is an error, never taken as "nothing runs"
    res = check(side.host, ["ps", "-ww", "-eo", "args="], "listing the processes", timeout=60)
    for line in res.stdout.splitlines():
        args = line.split()
        if not args or not _owned(line, side):
            continue
        # a Python daemon shows as `python3 /usr/bin/heat-engine ...`: its script is the second word
        for word in args[:2]:
            if (project := daemon_project(word)) is not None:
                found.append((project, f"process {word.rsplit('/', 1)[-1]}"))
                break
    if side.control.kind == "systemd":
        res = side.host.run(["systemctl", "list-units", "--type=service", "--state=running", "--plain",
                             "--no-legend", "--no-pager"], timeout=60)
        for line in res.stdout.splitlines() if res.rc == 0 else ():
            unit = line.split()[0] if line.split() else ""
            if (project := daemon_project(unit)) is not None:
                found.append((project, f"unit {unit}"))
    return found


def unplanned(side: Side, keystone_db: str, upgraded: Iterable[str], units: Iterable[str],
              ignored: Mapping[str, str]) -> list[Unplanned]:
    """The services *side* runs (catalog or daemons) that are neither in *upgraded* nor *ignored*, in
    the order first seen. A daemon listed among the plan's *units* is upgraded with its service."""
    upgraded, units = set(upgraded), {_UNIT_SUFFIX.sub("", u) for u in units}
    out: dict[str, Unplanned] = {}

    def add(project: str, where: str) -> None:
        if project in ignored or (project in upgraded and project not in SEPARATE):
            return
        if project in SEPARATE and project.split("-")[0] in ignored:  # ignoring cinder covers its backup
            return
        seen = out.setdefault(project, Unplanned(project)).seen
        if where not in seen:
            seen.append(where)

    for typ, name, urls in catalog(side.db, keystone_db):
        shown = f"catalog: {typ} {name!r}" if name else f"catalog: {typ}"
        add(project_of_type(typ, name), shown + (f" at {', '.join(urls)}" if urls else ""))
    for project, what in running(side):
        unit = what.split(" ", 1)[1]
        if project in SEPARATE and (unit in units or f"openstack-{unit}" in units or unit.removeprefix(
                "openstack-") in units):
            continue
        add(project, what)
    return list(out.values())
