"""The plan file for a lab: both controllers as local directory trees driven by the lab's
service supervisor. Used by the tests, `make demo` and `python -m scripts.lab up`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.lab.controller import Controller

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DBAdmin:
    """The admin account the tool uses on one DB server; the password goes inline or by env var."""

    user: str
    password: str = ""
    password_env: str = ""


def write_key(path: Path) -> None:
    """A vault key made by the tool itself (`upgrade keygen`)."""
    if not path.exists():
        subprocess.run([sys.executable, "-m", "upgrade.cli", "keygen", str(path)], cwd=REPO, check=True,
                       capture_output=True)


def plan_text(old: Controller, new: Controller, old_admin: DBAdmin, new_admin: DBAdmin, services=("keystone",),
              journal: str = "journal", extra_service_keys: dict[str, str] | None = None) -> str:
    def side(role: str, ctl: Controller, admin: DBAdmin) -> str:
        # PYTHONPATH so the supervisor is found from any working directory (svc drops it for services)
        control = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "scripts.lab.svc", "--root", str(ctl.root),
                   "{action}", "{unit}"]
        pw = (f'admin_password_env = "{admin.password_env}"' if admin.password_env
              else f'admin_password = "{admin.password}"')
        return (f"[{role}]\n"
                f"host = \"local\"\n"
                f"etc = \"{ctl.root}/etc\"\n"
                f"lib = \"{ctl.root}/var/lib\"\n"
                f"log = \"{ctl.root}/var/log\"\n"
                f"bin = \"{ctl.venv}/bin\"            # where this controller's *-manage commands live\n"
                f"service_control = \"template\"       # the lab has no systemd: its own supervisor\n"
                f"control = {json.dumps(control)}\n"
                f"[{role}.db]\n"
                f"address = \"{ctl.db.host}\"\n"
                f"port = {ctl.db.port}\n"
                f"admin_user = \"{admin.user}\"\n"
                f"{pw}\n\n")

    extra = "".join(f'{k} = "{v}"\n' for k, v in (extra_service_keys or {}).items())
    return (f"# openstack-upgrade plan for the built-in lab: {old.release} -> {new.release}\n"
            f"[upgrade]\nfrom = \"{old.release}\"\nto = \"{new.release}\"\n"
            f"services = {json.dumps(list(services))}\njournal = \"{journal}\"\n\n"
            f"[vault]\nkey_file = \"dump.key\"\n\n"
            + side("source", old, old_admin) + side("target", new, new_admin)
            + "[services.keystone]\nunit = \"keystone\"\nowner = \"root:root\"\n"
              f"verify_url = \"{old.keystone_url}\"\n"
              "grant_hosts = [\"127.0.0.1\", \"%\"]\n" + extra)


def write_plan(directory: Path, old: Controller, new: Controller, old_admin: DBAdmin, new_admin: DBAdmin,
               **kw) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_key(directory / "dump.key")
    plan = directory / "plan.toml"
    plan.write_text(plan_text(old, new, old_admin, new_admin, **kw))
    return plan
