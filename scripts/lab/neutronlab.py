"""Neutron served for real on a lab controller tree: the API (``neutron.wsgi.api``, the release's WSGI
application: 2026.1 ships no ``neutron-server`` script and 2025.2's ``neutron-api`` is that same
application for uWSGI, so both releases are served by ``netvol_wsgi.py``) and ``neutron-rpc-server``
(the RPC side agents and the API's notifications talk to), with its own RabbitMQ.

ML2 with the ``flat`` and ``vxlan`` type drivers (tenant networks are VXLAN segments from
``vni_ranges``: allocated in the database, no kernel device needed), the ``openvswitch`` mechanism
driver and the ``router`` service plugin: networks, subnets, routers, ports and security groups work
through the API. No agent runs: ports stay unbound (``DOWN``), routers are not scheduled to an L3
agent, no DHCP server answers; the API's answers and the rows are real. ``neutron-periodic-workers``
is not run either: its periodic tasks (agent liveness, rescheduling) act on agents only.

Units, in stop order (started in reverse): ``neutron-server`` (the API), ``neutron-rpc-server``,
``rabbitmq-neutron`` (its broker: it belongs to the management address and moves with neutron).
The carried-over Havana-era agent timers stay in neutron.conf, so the tool's agents step still warns.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from scripts.lab import layout, netvol, rabbit
from scripts.lab.proc import LabError

if TYPE_CHECKING:  # the unit supervisor imports this module: no pymysql at run time
    from scripts.lab.mariadb import MariaDB

NAME = "neutron"


class Neutron(netvol.Served):
    name = NAME
    units = ("neutron-server", "neutron-rpc-server", f"rabbitmq-{NAME}")
    catalog = (("neutron", "network", "/"),)

    def conf_files(self, root: Path) -> list[Path]:
        etc = Path(root) / "etc" / NAME
        return [etc / "neutron.conf", etc / "plugins" / "ml2" / "ml2_conf.ini"]

    def argv(self, root: Path, unit: str) -> list[str]:
        if self.is_api(unit):
            return self.api_argv(root)
        return [str(self.venv(root) / "bin" / unit), *self.config_args(root)]

    def rpc_queue(self, root: Path, unit: str) -> str:
        return "q-plugin"  # ML2's RPC topic: the agents' calls reach the plugin through it


LAB = Neutron()


def _conf(root: Path, release: str, db_url: str, s: netvol.Settings) -> str:
    lib, log = layout.var_lib(root, NAME), layout.log_dir(root, NAME)
    return f"""\
# neutron.conf of the lab controller {root} ({release}): ML2 and the router plugin, no agents
[DEFAULT]
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = {s.transport_url}
state_path = {lib}
log_dir = {log}
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
# carried over from Havana days
agent_down_time = 9

[agent]
report_interval = 4

[database]
connection = {db_url}

{netvol.authtoken(s, NAME)}
[oslo_concurrency]
lock_path = {lib}/lock
"""


ML2 = """\
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security

[ml2_type_flat]
flat_networks = public

[ml2_type_vxlan]
vni_ranges = 1:1000
"""


def install(root: Path, release: str, venv: Path, db: MariaDB, s: netvol.Settings, dist_port: int = 0,
            broker: rabbit.Broker | None = None) -> None:
    """Neutron's real configs on a controller tree whose stack made its database and schema
    (``scripts.lab.openstack``), the release's paste pipeline, its own broker's files (or the host's
    *broker*, where its login exists); not started."""
    from scripts.lab.openstack import Stack  # its database code: at install time only

    root = Path(root).resolve()
    etc = root / "etc" / NAME
    if not (venv / "bin" / "neutron-rpc-server").exists():
        raise LabError(f"no neutron in the venv {venv}; build it with: scripts/build-venv {release}")
    for d in (etc / "plugins" / "ml2", layout.var_lib(root, NAME) / "lock", layout.log_dir(root, NAME)):
        d.mkdir(parents=True, exist_ok=True)
    conf, ml2 = LAB.conf_files(root)
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        f.write(_conf(root, release, Stack(root, release, venv, db).url(NAME, NAME), s))
    conf.chmod(0o640)
    ml2.write_text(ML2)
    shutil.copyfile(venv / "etc" / NAME / "api-paste.ini", etc / "api-paste.ini")
    LAB.install_broker(root, s, dist_port, broker)
