"""The plan of an HA lab (``scripts.lab.ha``): both sides as groups of three with the VIP's owner.

Each side works through its first controller (the Galera node dumped from or imported into),
reached on its own address, never the VIP; its ``members`` are the three controllers with every
role, its ``vip`` the management VIP held by keepalived, with HAProxy in front of the APIs: both
driven by ``scripts.lab.havipctl`` (the lab runs them without systemd). `upgrade run` moves keystone,
glance, placement, nova, neutron and cinder (their units driven by ``scripts.lab.units``, nova's by
``scripts.lab.novaserve``, neutron's and cinder's by their labs, ``scripts.lab.netvol``),
then the VIP from the old side's keepalived to the new side's (services/fleet/hagroup.py).

Glance is verified on the first new controller's own address (its backend port, behind HAProxy), as
keystone is. Its image store is one directory per side that the side's three controllers share
(``scripts.lab.ha``), so the one copy of the files from the old first controller to the new first
fills the whole new side; the group's steps stop glance-api on every old controller and start it on
every new one.
"""

from __future__ import annotations

import json
from typing import Any

from scripts.lab import served
from scripts.lab.hanode import NOVA_BACKEND_PORT, PLACEMENT_BACKEND_PORT
from scripts.lab.hostplan import LabFacts
from scripts.lab.hostside import DB_ADMIN, DB_PORT
from scripts.lab.novahost import CONTROL
from scripts.lab.openstack import NEW_HOST, NEW_PORTAL, OLD_HOST, OLD_PORTAL
from scripts.lab.plan import lab_ignore, service_sections

ROLES = ["db", "mq", "api"]
#: what the lab's HA plan upgrades (the whole catalog the lab seeds)
SERVICES = ("keystone", "glance", "placement", "nova", "neutron", "cinder")
#: nova's units on every controller (no broker of its own: nova's RPC is the side's RabbitMQ cluster on the VIP;
#: no metadata API: the lab's servers boot with no network)
NOVA_UNITS = ["nova-api", "nova-conductor", "nova-scheduler"]
#: how the plan starts and stops keepalived and HAProxy on a lab controller
VIP_CONTROL = ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.havipctl", "{action}", "{unit}"]


def _toml_members(lab: LabFacts, members: list[str]) -> str:
    return "[" + ", ".join(f"{{name = \"{m}\", host = \"ssh://root@{lab.hosts[m]}\", roles = {json.dumps(ROLES)}}}"
                           for m in members) + "]"


def plan_text(lab: LabFacts, sides: dict[str, list[str]], vip: str, prefixlen: int,
              keystone_port: int, glance_port: int) -> str:
    """*sides*: ``old``/``new`` -> their controllers, the first being the one the run works through;
    *keystone_port*/*glance_port*: where the APIs listen on each controller (behind HAProxy)."""
    ctl: dict[str, Any] = lab.state["controller"]
    venvs = ctl["venv_root"]
    text = (f"# openstack-upgrade plan for the HA lab in {lab.dir}: {ctl['old']} -> {ctl['new']}, three controllers "
            "a side\n"
            f"[upgrade]\nfrom = \"{ctl['old']}\"\nto = \"{ctl['new']}\"\nservices = {json.dumps(list(SERVICES))}\n"
            f"{lab_ignore(SERVICES)}journal = \"journal\"\n\n[vault]\nkey_file = \"dump.key\"\n\n"
            f"[ssh]\nconfig = \"{lab.ssh_config}\"\n\n")
    for role, side in (("source", "old"), ("target", "new")):
        members = sides[side]
        first = members[0]
        text += (f"[{role}]\n"
                 f"host = \"ssh://root@{lab.hosts[first]}\"     # its own admin address, never the VIP\n"
                 f"name = \"{first}\"\n"
                 "etc = \"/etc\"\nlib = \"/var/lib\"\nlog = \"/var/log\"\n"
                 f"bin = \"{venvs}/{ctl[side]}/bin\"\n"
                 "service_control = \"template\"        # the lab supervisor stands in for systemd\n"
                 f"control = {json.dumps(CONTROL)}\n"
                 f"members = {_toml_members(lab, members)}\n"
                 f"vip = {{address = \"{vip}/{prefixlen}\", device = \"eth0\", owner = \"keepalived\", "
                 f"units = [\"haproxy\", \"keepalived\"], service_control = \"template\", "
                 f"control = {json.dumps(VIP_CONTROL)}}}\n"
                 f"[{role}.db]\n"
                 f"address = \"{lab.hosts[first]}\"\nport = {DB_PORT}\nadmin_user = \"{DB_ADMIN}\"\n"
                 f"admin_password = \"{ctl['db_admin_password'][side]}\"\n"
                 "service_address = \"127.0.0.1\"\n\n")
    first_new = lab.hosts[sides["new"][0]]
    common = 'owner = "root:root"\ngrant_hosts = ["127.0.0.1", "%"]\n'
    return text + ("[services.keystone]\nunit = \"keystone\"\nowner = \"root:root\"\n"
                   f"verify_url = \"http://{first_new}:{keystone_port}/v3\"\n"
                   "grant_hosts = [\"127.0.0.1\", \"%\"]\n\n"
                   + service_sections(("glance",), f"http://{first_new}:{glance_port}")
                   + f"[services.placement]\nunits = [\"placement-api\"]\n{common}"
                     f"verify_url = \"http://{first_new}:{PLACEMENT_BACKEND_PORT}/\"\n\n"
                   + f"[services.nova]\nunits = {json.dumps(NOVA_UNITS)}\n{common}"
                     f"verify_url = \"http://{first_new}:{NOVA_BACKEND_PORT}/\"\n\n"
                   + _netvol_sections(lab, sides["old"][0], first_new, common))


def _netvol_sections(lab: LabFacts, first_old: str, first_new: str, common: str) -> str:
    """Neutron's and cinder's tables (``scripts.lab.netvolhost``'s, adapted): the real units the first old
    controller's tree runs (no broker of theirs: the side's RabbitMQ cluster is none of their units), the API
    verified on the first new controller's backend port; cinder's ``update_host`` from the old side's host name
    to the new side's (each side's cinder-volumes share one, ``scripts.lab.ha``)."""
    etc = lab.upper(first_old, "etc")
    extra = {"neutron": f'old_host = "{OLD_HOST}"\n',
             "cinder": f'old_host = "{OLD_HOST}"\nnew_host = "{NEW_HOST}"\niscsi_address_from = "{OLD_PORTAL}"\n'
                       f'iscsi_address_to = "{NEW_PORTAL}"\n'}
    return "".join(f"[services.{s.name}]\n{s.plan_lines(etc, first_new)}{common}{extra[s.name]}\n"
                   for s in served.labs())
