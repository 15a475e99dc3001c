"""`upgrade init`: an annotated plan for a common controller layout, every key explained.

The comments come from ``upgrade.planschema`` (the same text as the operator guide's plan
reference). The layouts differ in how services are controlled and named:

* ``rdo-sysvinit`` — RDO packages on CentOS/RHEL, the classic runbook: ``service openstack-keystone start``;
* ``ubuntu-systemd`` — Ubuntu Cloud Archive: ``systemctl``, keystone served by ``apache2`` (or a ``keystone`` unit);
* ``ubuntu-ha`` — three Ubuntu controllers per side (Galera, RabbitMQ, HAProxy) behind a VIP that keepalived
  holds (``members`` and ``vip`` of each side, upgrade/plangroup.py).

The plan runs on the new controller (``host = "local"``) and reaches the old one over SSH (the HA
sample: from a deploy host, every controller over SSH); the optional parts (SSH defaults, the IP
switchover, compute hosts, a side's group) are written commented out.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

from services.releases import jump_error
from upgrade import planschema
from upgrade.errors import UserError

OLD_ADDRESS = "198.51.100.11"    # documentation addresses (RFC 5737): replace with the real ones
NEW_ADDRESS = "198.51.100.12"


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    control: str                    # service_control of both controllers
    unit: str
    unit_note: str
    #: three controllers per side behind a keepalived VIP
    ha: bool = False


LAYOUTS = {
    "rdo-sysvinit": Layout("rdo-sysvinit", "RDO on CentOS/RHEL with init scripts (the classic runbook)",
                           "sysvinit", "openstack-keystone",
                           "RDO's init script: `service openstack-keystone start`"),
    "ubuntu-systemd": Layout("ubuntu-systemd", "Ubuntu (Cloud Archive) with systemd", "systemd", "apache2",
                             "Ubuntu serves keystone from apache2 (mod_wsgi); use \"keystone\" for a uwsgi unit"),
    "ubuntu-ha": Layout("ubuntu-ha", "three Ubuntu controllers per side with Galera, HAProxy and a keepalived VIP",
                        "systemd", "apache2",
                        "Ubuntu serves keystone from apache2 (mod_wsgi); use \"keystone\" for a uwsgi unit", ha=True),
}
#: the HA sample's controllers (documentation addresses) and VIP
HA_MEMBERS = {"source": [("oldctl1", "198.51.100.31"), ("oldctl2", "198.51.100.32"), ("oldctl3", "198.51.100.33")],
              "target": [("newctl1", "198.51.100.41"), ("newctl2", "198.51.100.42"), ("newctl3", "198.51.100.43")]}
HA_VIP = {"address": "198.51.100.10/24", "device": "eth0", "owner": "keepalived"}


def _comment(text: str, indent: str = "") -> list[str]:
    return [indent + "# " + line for line in textwrap.wrap(text, 96 - len(indent))]


def _toml(value: object) -> str:
    """A TOML value: strings (JSON escapes are TOML's), numbers, booleans, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


class _Writer:
    """Writes ``key = value`` lines, each preceded by its schema comment (and a layout note)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def table(self, name: str, note: str = "", commented: bool = False, title: str = "") -> None:
        t = planschema.table(name)
        self.lines += [""] + _comment(t.doc.rstrip(".") + "." + (f" {note}" if note else ""))
        self.lines.append(("# " if commented else "") + (title or f"[{name}]"))

    def key(self, table: str, key: str, value: object, note: str = "", commented: bool = False) -> None:
        k = planschema.table(table).key(key)
        self.lines += _comment(k.doc + (f" — {note}" if note else ""))
        self.lines.append(("# " if commented else "") + f"{key} = {_toml(value)}")


def render(layout: str = "rdo-sysvinit", from_release: str = "2025.2", to_release: str = "2026.1") -> str:
    """The annotated plan text; loads with ``upgrade.plan.load`` once the passwords and key exist."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r} — use one of {', '.join(LAYOUTS)}")
    if (msg := jump_error(from_release, to_release)) is not None:
        raise UserError(f"--from {from_release} --to {to_release}: {msg}")
    lay = LAYOUTS[layout]
    w = _Writer()
    w.lines += [f"# openstack-upgrade plan: {lay.title}, {from_release} -> {to_release}.",
                "# Written by `upgrade init`. Replace the documentation addresses (198.51.100.x) with yours, export",
                "# SOURCE_DB_PASSWORD and TARGET_DB_PASSWORD, create the key with `upgrade keygen dump.key`, then",
                "# `upgrade check plan.toml` and `upgrade plan plan.toml` before `upgrade run plan.toml`.",
                "# It runs on the new controller and reaches the old one over SSH (root, key-based)." if not lay.ha else
                "# It runs on a deploy host and reaches every controller over SSH (root, key-based). An HA plan is"
                "\n# run through each side's `host`; the other members and the VIP follow (docs/ha.md)."]
    w.table("upgrade")
    w.key("upgrade", "from", from_release)
    w.key("upgrade", "to", to_release)
    w.key("upgrade", "services", ["keystone"])
    w.key("upgrade", "journal", "upgrade-journal")
    w.key("upgrade", "compute_pool", 10, commented=True)
    w.key("upgrade", "service_pool", 2, commented=True)
    w.key("upgrade", "dump_streams", 0, commented=True)
    w.key("upgrade", "compute_timeout", 300, commented=True)
    w.key("upgrade", "unpin", "now", commented=True)
    w.key("upgrade", "ignore", {"swift": "swift stays on its own storage nodes"}, commented=True)
    w.table("vault")
    w.key("vault", "key_file", "dump.key")
    w.key("vault", "passphrase_env", "UPGRADE_PASSPHRASE", commented=True)
    w.key("vault", "dir", "/srv/upgrade-dumps", commented=True)
    for role in ("source", "target"):
        old = role == "source"
        members = HA_MEMBERS[role]
        if lay.ha:
            w.table(role, "The old controllers: the run reads one Galera node (the first)." if old else
                    "The new controllers: the run imports into the first, Galera replicates to the others.")
            w.key(role, "host", f"ssh://root@{members[0][1]}")
            w.key(role, "name", members[0][0])
        else:
            w.table(role, "The old controller." if old else "The new controller: this machine.")
            w.key(role, "host", f"ssh://root@{OLD_ADDRESS}" if old else "local")
            w.key(role, "name", "oldctl" if old else "newctl")
        w.key(role, "ssh_config", "/root/.ssh/config", commented=True)
        w.key(role, "ssh_options", ["-o", "ConnectTimeout=10"], commented=True)
        w.key(role, "etc", "/etc")
        w.key(role, "lib", "/var/lib")
        w.key(role, "log", "/var/log")
        w.key(role, "bin", "/usr/bin")
        w.key(role, "service_control", lay.control, lay.unit_note)
        w.key(role, "control", ["svcctl", "{action}", "{unit}"], "with service_control = \"template\"",
              commented=True)
        w.key(role, "members", [{"name": n, "host": f"ssh://root@{a}", "roles": ["db", "mq", "api"]}
                                for n, a in members], commented=not lay.ha)
        w.key(role, "vip", HA_VIP, commented=not lay.ha)
        w.table(f"{role}.db")
        w.key(f"{role}.db", "address", members[0][1] if lay.ha else OLD_ADDRESS if old else "127.0.0.1")
        w.key(f"{role}.db", "port", 3306)
        w.key(f"{role}.db", "admin_user", "root")
        w.key(f"{role}.db", "admin_password_env", "SOURCE_DB_PASSWORD" if old else "TARGET_DB_PASSWORD")
        w.key(f"{role}.db", "admin_password", "", "prefer admin_password_env", commented=True)
        w.key(f"{role}.db", "service_address", OLD_ADDRESS if old else NEW_ADDRESS, commented=old or lay.ha)
        w.key(f"{role}.db", "flavor", "mariadb")
    w.table("source.members", "Optional (`members = [...]` above is the same).", commented=True,
            title="[[source.members]]")
    w.key("source.members", "name", HA_MEMBERS["source"][0][0], commented=True)
    w.key("source.members", "host", f"ssh://root@{HA_MEMBERS['source'][0][1]}", commented=True)
    w.key("source.members", "roles", ["db", "mq", "api"], commented=True)
    w.key("source.members", "ssh_config", "/root/.ssh/config", commented=True)
    w.key("source.members", "ssh_options", ["-o", "ConnectTimeout=10"], commented=True)
    w.table("source.vip", "Optional (`vip = {...}` above is the same).", commented=True)
    for k, v in HA_VIP.items():
        w.key("source.vip", k, v, commented=True)
    w.key("source.vip", "resource", "vip-management", "with owner = \"pacemaker\"", commented=True)
    w.key("source.vip", "units", ["haproxy", "keepalived"], commented=True)
    w.key("source.vip", "check_from", "ssh://root@198.51.100.21", "a compute host", commented=True)
    w.table("services.keystone")
    w.key("services.keystone", "unit", lay.unit, lay.unit_note)
    w.key("services.keystone", "db_name", "keystone")
    w.key("services.keystone", "owner", "keystone:keystone")
    w.key("services.keystone", "verify_url",
          f"http://{HA_MEMBERS['target'][0][1]}:5000/v3" if lay.ha else "http://127.0.0.1:5000/v3")
    w.key("services.keystone", "grant_hosts", ["%", "localhost"])
    w.key("services.keystone", "db_user", "keystone", commented=True)
    w.key("services.keystone", "db_password_env", "KEYSTONE_DB_PASSWORD", commented=True)
    w.key("services.keystone", "db_password", "", commented=True)
    common = {k.name for k in planschema.table("services.<name>").keys}
    for k in planschema.table("services.keystone").keys:
        if k.name not in common:
            w.key("services.keystone", k.name, _example(k.default), commented=True)
    w.table("ssh", "Optional.", commented=True)
    w.key("ssh", "config", "/etc/openstack-upgrade/ssh_config", commented=True)
    w.key("ssh", "options", ["-o", "ServerAliveInterval=15"], commented=True)
    w.table("network", "Optional.", commented=True)
    w.key("network", "addresses", [{"address": "198.51.100.10/24", "device": "eth0", "name": "management"}],
          commented=True)
    w.key("network", "check_from", "local", commented=True)
    w.key("network", "nonlocal_bind", False, commented=True)
    w.key("network", "check_timeout", 30, commented=True)
    w.table("amqp", "Optional.", commented=True)
    w.key("amqp", "broker", "10.0.0.12", commented=True)
    w.table("cloud", "Optional.", commented=True)
    w.key("cloud", "timeout", 300, commented=True)
    w.key("cloud", "auth_url", "http://198.51.100.10:5000/v3", commented=True)
    w.key("cloud", "username", "admin", commented=True)
    w.key("cloud", "password_env", "OS_PASSWORD", commented=True)
    w.key("cloud", "password", "", "prefer password_env", commented=True)
    w.key("cloud", "project", "admin", commented=True)
    w.key("cloud", "user_domain", "Default", commented=True)
    w.key("cloud", "project_domain", "Default", commented=True)
    w.key("cloud", "interface", "public", commented=True)
    w.table("compute_defaults", "Optional.", commented=True)
    w.key("compute_defaults", "service_control", lay.control, commented=True)
    w.key("compute_defaults", "control", ["svcctl", "{action}", "{unit}"], commented=True)
    w.key("compute_defaults", "units", ["openstack-nova-compute"], commented=True)
    w.key("compute_defaults", "ssh_config", "/root/.ssh/config", commented=True)
    w.key("compute_defaults", "ssh_options", ["-o", "ConnectTimeout=10"], commented=True)
    w.key("compute_defaults", "upgrade_command", ["dnf", "-y", "upgrade", "openstack-nova-compute"], commented=True)
    w.key("compute_defaults", "downgrade_command", ["dnf", "-y", "downgrade", "openstack-nova-compute"],
          commented=True)
    w.table("computes", "Optional, one entry per compute host.", commented=True, title="[[computes]]")
    w.key("computes", "name", "compute1", commented=True)
    w.key("computes", "host", "ssh://root@198.51.100.21", commented=True)
    w.key("computes", "units", ["openstack-nova-compute"], commented=True)
    w.key("computes", "service_control", lay.control, commented=True)
    w.key("computes", "control", ["svcctl", "{action}", "{unit}"], commented=True)
    w.key("computes", "ssh_config", "/root/.ssh/config", commented=True)
    w.key("computes", "ssh_options", ["-o", "ConnectTimeout=10"], commented=True)
    w.key("computes", "upgrade_command", ["dnf", "-y", "upgrade", "openstack-nova-compute"], commented=True)
    w.key("computes", "downgrade_command", ["dnf", "-y", "downgrade", "openstack-nova-compute"], commented=True)
    w.key("computes", "nova_host", "compute1.example.org", commented=True)
    return "\n".join(w.lines).lstrip("\n") + "\n"


def _example(default: str | None) -> object:
    """A commented example value for a service option: its default, or an empty string."""
    return "" if default in (None, "(none)") else json.loads(default) if default[:1] in "[\"" else default
