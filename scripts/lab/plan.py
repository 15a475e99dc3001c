"""The plan file for a lab: both controllers as local directory trees driven by the lab's
unit supervisor. Used by the tests, `make demo` and `python -m scripts.lab up`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.lab import served
from scripts.lab.controller import Controller
from scripts.lab.openstack import NEW_HOST, NEW_PORTAL, OLD_HOST, OLD_PORTAL, UNITS

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DBAdmin:
    """The admin account the tool uses on one DB server; the password goes inline or by env var."""

    user: str
    password: str = ""
    password_env: str = ""


def write_key(path: Path) -> None:
    """A vault key made as `upgrade keygen` makes it: the tool's own function, without starting an
    interpreter for it (every lab plan of the tests has one)."""
    if not path.exists():
        from journal.vault import generate_key_file  # the project's dependencies: the project venv's python

        generate_key_file(path)


def control(root: Path) -> list[str]:
    """The plan's service control for a lab controller: ``scripts.lab.units`` (keystone and glance
    for real through ``svc``, stand-ins for the rest). PYTHONPATH so the supervisor is found from
    any working directory (the supervisor drops it for the services it starts)."""
    return ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "scripts.lab.units", "--root", str(root),
            "{action}", "{unit}"]


def _units(service: str, root: Path | None) -> str:
    """A service's ``units`` (and, served for real, its ``verify_url``): scripts.lab.netvol's where the
    controller at *root* serves it for real, else the stand-ins'."""
    lab = served.served(root, service)
    return lab.plan_lines(root) if lab and root else f"units = {json.dumps(UNITS[service])}\n"


def service_sections(services: tuple[str, ...], glance_url: str | None = None, root: Path | None = None,
                     served: dict[str, str] | None = None) -> str:
    """The ``[services.*]`` tables of a lab plan for every service but keystone: the lab's units (of
    the old controller at *root*), the old/new host names and iSCSI portals its rows use
    (scripts.lab.openstack). *served* gives the verify URL of placement and nova where the lab serves
    them for real (their units start only once ready, the tool then asks the API)."""
    common = 'owner = "root:root"\ngrant_hosts = ["127.0.0.1", "%"]\n'
    verify = f'verify_url = "{glance_url}/versions"\n' if glance_url else ""
    served = served or {}
    url = {k: f'verify_url = "{v}"\n' for k, v in served.items()}
    # without the placement API the nova-status check of it fails by design (lab-recipes §10.3)
    accept = "" if "placement" in served else ('# the placement API is not served in this lab: that check fails by '
                                               'design (lab-recipes §10.3)\nstatus_accept = ["Placement API"]\n')
    tables = {
        "glance": f"units = {json.dumps(UNITS['glance'])}\n{common}{verify}",
        "placement": f"units = {json.dumps(UNITS['placement'])}\n{common}{url.get('placement', '')}",
        "nova": f'units = {json.dumps(UNITS["nova"])}\n{common}old_host = "{OLD_HOST}"\nnew_host = "{NEW_HOST}"\n'
                f'metadata = "neutron"\n{url.get("nova", "")}'
                "# nova's broker stands at the management address and moves with nova (its last unit)\n"
                + accept,
        "neutron": f'{_units("neutron", root)}{common}old_host = "{OLD_HOST}"\n',
        "cinder": f'{_units("cinder", root)}{common}old_host = "{OLD_HOST}"\nnew_host = "{NEW_HOST}"\n'
                  f'iscsi_address_from = "{OLD_PORTAL}"\niscsi_address_to = "{NEW_PORTAL}"\n',
    }
    return "".join(f"[services.{s}]\n{tables[s]}\n" for s in tables if s in services)


#: the services the lab's keystone catalog names (the seeded endpoints; the full lab runs them all)
LAB_CATALOG = ("keystone", "glance")


def lab_ignore(services: tuple[str, ...] | list[str]) -> str:
    """``[upgrade] ignore`` of a lab plan: the seeded catalog names keystone and glance, which a plan
    without them leaves on the old controller on purpose."""
    left = [s for s in LAB_CATALOG if s not in services]
    if not left:
        return ""
    return "ignore = {" + ", ".join(f'{s} = "the lab\'s {s} is not part of this upgrade"' for s in left) + "}\n"


def side_table(role: str, root: Path, venv: Path, db_host: str, db_port: int, admin: DBAdmin) -> str:
    """``[source]``/``[target]`` of a lab plan: a local controller tree driven by the lab's units."""
    pw = (f'admin_password_env = "{admin.password_env}"' if admin.password_env
          else f'admin_password = "{admin.password}"')
    return (f"[{role}]\n"
            f"host = \"local\"\n"
            f"etc = \"{root}/etc\"\n"
            f"lib = \"{root}/var/lib\"\n"
            f"log = \"{root}/var/log\"\n"
            f"bin = \"{venv}/bin\"            # where this controller's *-manage commands live\n"
            f"service_control = \"template\"       # the lab has no systemd: its own supervisor\n"
            f"control = {json.dumps(control(root))}\n"
            f"[{role}.db]\n"
            f"address = \"{db_host}\"\n"
            f"port = {db_port}\n"
            f"admin_user = \"{admin.user}\"\n"
            f"{pw}\n\n")


def plan_text(old: Controller, new: Controller, old_admin: DBAdmin, new_admin: DBAdmin, services=("keystone",),
              journal: str = "journal", extra_service_keys: dict[str, str] | None = None,
              glance_url: str | None = None, served: dict[str, str] | None = None) -> str:
    def side(role: str, ctl: Controller, admin: DBAdmin) -> str:
        return side_table(role, ctl.root, ctl.venv, ctl.db.host, ctl.db.port, admin)

    extra = "".join(f'{k} = "{v}"\n' for k, v in (extra_service_keys or {}).items())
    return (f"# openstack-upgrade plan for the built-in lab: {old.release} -> {new.release}\n"
            f"[upgrade]\nfrom = \"{old.release}\"\nto = \"{new.release}\"\n"
            f"services = {json.dumps(list(services))}\njournal = \"{journal}\"\n{lab_ignore(services)}\n"
            f"[vault]\nkey_file = \"dump.key\"\n\n"
            + side("source", old, old_admin) + side("target", new, new_admin)
            + "[services.keystone]\nunit = \"keystone\"\nowner = \"root:root\"\n"
              f"verify_url = \"{old.keystone_url}\"\n"
              "grant_hosts = [\"127.0.0.1\", \"%\"]\n" + extra + "\n"
            + service_sections(tuple(services), glance_url, old.root, served))


#: the variable the lab's ``[cloud]`` names for the keystone admin password (``cloud_env`` gives it)
CLOUD_PASSWORD_ENV = "OSU_LAB_ADMIN_PASSWORD"
#: the lab's file (0600) that holds that password, beside the plan
CLOUD_PASSWORD = "cloud-password"


def cloud_table(keystone_url: str, timeout: int = 300) -> str:
    """``[cloud]`` of a lab whose compute host, agents and APIs are real: the run's last step waits until
    they report to the new controller and every API of the catalog answers the lab's admin. The admin
    password reaches the tool only by :data:`CLOUD_PASSWORD_ENV` (see :func:`cloud_env`), never the plan."""
    return ("# the run's last step: the cloud reports to the new controller (upgrade/plancloud.py)\n"
            f"[cloud]\ntimeout = {timeout}\nauth_url = \"{keystone_url}\"\nusername = \"admin\"\n"
            f"password_env = \"{CLOUD_PASSWORD_ENV}\"\nproject = \"admin\"\n\n")


def cloud_env(lab: Path) -> dict[str, str]:
    """The environment a lab plan with ``[cloud]`` needs (``{}`` for one without): the admin password read
    from the lab's 0600 file ``cloud-password`` (``python -m scripts.lab up`` writes both)."""
    path = lab / CLOUD_PASSWORD
    return {CLOUD_PASSWORD_ENV: path.read_text().strip()} if path.exists() else {}


def write_plan(directory: Path, old: Controller, new: Controller, old_admin: DBAdmin, new_admin: DBAdmin,
               **kw) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_key(directory / "dump.key")
    plan = directory / "plan.toml"
    plan.write_text(plan_text(old, new, old_admin, new_admin, **kw))
    return plan
