"""Typed settings the plan loader builds and the service steps read.

They live here, below the CLI, because they are OpenStack knowledge (where a controller keeps
/etc and /var/lib, how it starts a service, how its database is reached); ``upgrade/plan.py``
only validates a TOML file into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.infra.host import Host


@dataclass(frozen=True)
class DBEndpoint:
    """A MySQL/MariaDB server as the tool and the controller's services reach it."""

    address: str
    port: int
    admin_user: str
    admin_password: str = field(repr=False)
    #: the address the services on that controller use to reach this DB (written into configs)
    service_address: str = ""
    #: "mariadb" or "mysql": a MySQL server (or an old client) cannot read MariaDB's sandbox line
    flavor: str = "mariadb"

    @property
    def address_for_services(self) -> str:
        return self.service_address or self.address


@dataclass(frozen=True)
class ServiceControl:
    """How a controller starts and stops services: systemd, sysvinit, or a command template."""

    kind: str = "systemd"
    template: tuple[str, ...] = ()

    @property
    def stopped_codes(self) -> frozenset[int]:
        """Status exit codes that mean "not running" (LSB: 3; sysvinit scripts also use 1 and 2)."""
        return frozenset({1, 2, 3}) if self.kind == "sysvinit" else frozenset({3})

    def argv(self, action: str, unit: str) -> list[str]:
        if self.kind == "systemd":
            return ["systemctl", {"status": "is-active"}.get(action, action), unit]
        if self.kind == "sysvinit":
            return ["service", unit, action]
        return [a.format(action=action, unit=unit) for a in self.template]


@dataclass
class Side:
    """One controller: ``source`` (old, only ever read) or ``target`` (new)."""

    role: str
    host: Host
    etc: str
    lib: str
    bin: str
    db: DBEndpoint
    control: ServiceControl
    log: str = "/var/log"

    def layout(self) -> dict[str, str]:
        """The directory prefixes that differ between controllers of different layouts."""
        return {"etc": self.etc, "lib": self.lib, "log": self.log}

    def tool(self, name: str) -> str:
        return f"{self.bin.rstrip('/')}/{name}" if self.bin else name


@dataclass(frozen=True)
class ServiceSettings:
    """Per-service settings from the plan's ``[services.<name>]`` table."""

    name: str
    unit: str
    db_name: str
    owner: str = "root:root"
    verify_url: str = ""
    grant_hosts: tuple[str, ...] = ("%", "localhost")
    #: the service's DB credentials on the target; empty = the ones in the source config
    db_user: str = ""
    db_password: str = field(default="", repr=False)
    config_files: tuple[str, ...] = ()
    #: the service's own plan keys (``units``, ``old_host``, …; see ``services/options.py``)
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
