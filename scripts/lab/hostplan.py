"""The plan for a multi-host lab: both controllers and every compute host over real SSH.

The controllers are reached through their own (admin) addresses — never through the management
VIP, which the run moves from oldctl to newctl as its last machine — with the lab's private
ssh config; services are driven by the lab supervisor on each host (``service_control =
"template"``), exactly as the tool would drive systemd on a real one.

With glance, its ``[services.glance]`` table is the full lab's (``scripts.lab.plan``); its
``verify_url`` is newctl's own address, like keystone's: glance is verified on the new
controller before the run's last machine moves the management address to it (through the
management address the old, stopped glance would be asked). The image files go from oldctl's
``/var/lib/glance/images`` to newctl's with the tool's own copy steps, over SSH.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from scripts.lab.hostside import DB_ADMIN, DB_PORT, GLANCE_PORT, KEYSTONE_PORT
from scripts.lab.plan import lab_ignore, service_sections


class LabFacts(Protocol):
    """What a plan needs to know of a running lab (``scripts.lab.hosts.Lab`` has it): declared here, so
    that ``hosts`` imports this module and not the other way round."""

    dir: Path
    state: dict[str, Any]

    @property
    def hosts(self) -> dict[str, str]: ...

    @property
    def computes(self) -> list[str]: ...

    @property
    def ssh_config(self) -> Path: ...

    def ns(self, host: str) -> str: ...


#: the lab supervisor, as the tool runs it on a host over SSH (the repository is mounted there)
CONTROL = ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.svc", "--root", "/", "{action}",
           "{unit}"]
COMPUTE_UNITS = ["nova-compute", "neutron-agent"]


def plan_text(lab: LabFacts, compute_pool: int = 10, check_from: str | None = None,
              services: tuple[str, ...] = ("keystone",), network: bool = True, control: list[str] | None = None,
              upgrade_keys: str = "", compute_keys: str = "", compute_control: list[str] | None = None,
              served: dict[str, str] | None = None) -> str:
    """The plan upgrading ``services`` (keystone first; glance, placement and nova may follow), then the
    management address (unless not *network*) and the compute hosts. *control* replaces the supervisor
    command (``scripts.lab.novalab`` serves nova's units and hands it the others), *compute_control* that of
    the compute hosts (default: *control*); *upgrade_keys* and *compute_keys* are lines added to ``[upgrade]``
    and ``[compute_defaults]``; *served*: the verify URLs of placement and nova where they serve for real."""
    control = control or CONTROL
    compute_control = compute_control or control
    ctl = lab.state["controller"]
    venvs = ctl["venv_root"]
    hosts = lab.hosts

    def side(role: str, host: str, release: str) -> str:
        addr = hosts[host]
        return (f"[{role}]\n"
                f"host = \"ssh://root@{addr}\"     # its own admin address, never the VIP\n"
                f"name = \"{host}\"                    # HostKeyAlias: the key belongs to the host\n"
                "etc = \"/etc\"\nlib = \"/var/lib\"\nlog = \"/var/log\"\n"
                f"bin = \"{venvs}/{release}/bin\"\n"
                "service_control = \"template\"        # the lab supervisor stands in for systemd\n"
                f"control = {json.dumps(control)}\n"
                f"[{role}.db]\n"
                f"address = \"{addr}\"\nport = {DB_PORT}\nadmin_user = \"{DB_ADMIN}\"\n"
                f"admin_password = \"{ctl['db_admin_password'][host]}\"\n"
                "service_address = \"127.0.0.1\"     # what keystone on that host writes in its config\n\n")

    computes = lab.computes
    check = check_from or (computes[0] if computes else "local")
    text = (f"# openstack-upgrade plan for the multi-host lab in {lab.dir}: {ctl['old']} -> {ctl['new']}\n"
            f"# services: {', '.join(services)}; run it inside the deploy host: ip netns exec "
            f"{lab.ns('deploy')} upgrade run {lab.dir}/THIS-FILE\n"
            f"[upgrade]\nfrom = \"{ctl['old']}\"\nto = \"{ctl['new']}\"\nservices = {json.dumps(list(services))}\n"
            f"journal = \"journal\"\ncompute_pool = {compute_pool}\n{lab_ignore(services)}{upgrade_keys}\n"
            "[vault]\nkey_file = \"dump.key\"\n\n"
            f"[ssh]\nconfig = \"{lab.ssh_config}\"\n\n"
            + side("source", "oldctl", ctl["old"]) + side("target", "newctl", ctl["new"])
            + "[services.keystone]\nunit = \"keystone\"\nowner = \"root:root\"\n"
            f"verify_url = \"http://{hosts['newctl']}:{KEYSTONE_PORT}/v3\"\n"
            "grant_hosts = [\"127.0.0.1\", \"%\"]\n\n"
            + service_sections(services, f"http://{hosts['newctl']}:{GLANCE_PORT}", served=served))
    if network:
        text += ("[network]\n"
                 f"addresses = [{{address = \"{lab.state['vip']}/24\", device = \"eth0\", name = \"management\"}}]\n"
                 f"check_from = \"{check}\"\nnonlocal_bind = true\n\n")
    if computes:
        text += ("[compute_defaults]\nservice_control = \"template\"\n"
                 f"control = {json.dumps(compute_control)}\nunits = {json.dumps(COMPUTE_UNITS)}\n{compute_keys}\n")
    for h in computes:
        text += f"[[computes]]\nname = \"{h}\"\nhost = \"ssh://root@{hosts[h]}\"\n\n"
    return text
