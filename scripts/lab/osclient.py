"""The real client, as a user of the lab cloud sees it: ``openstack`` (python-openstackclient) of a
release venv, its credentials in a 0600 clouds.yaml (never on its argv or in its environment: the
environment names the file and the cloud only).

Used by the heat lab (``scripts.lab.heatlab``) and the Grenade-style resources (``scripts.lab.grenade``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from scripts.lab.proc import LabError, clean_env

REGION = "RegionOne"


def write_clouds(path: Path, keystone_url: str, users: dict[str, tuple[str, str, str]]) -> Path:
    """A 0600 clouds.yaml with one cloud per entry of *users*: name -> (user, password, project)."""
    clouds = {name: {"auth": {"auth_url": keystone_url, "username": user, "password": password,
                              "project_name": project, "user_domain_name": "Default",
                              "project_domain_name": "Default"},
                     "region_name": REGION, "identity_api_version": 3}
              for name, (user, password, project) in users.items()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"clouds": clouds}, f)  # JSON is YAML
    return path


def openstack(venv: Path, clouds: Path, cloud: str, *args: str, json_out: bool = True,
              where: tuple[str, ...] = ()) -> Any:
    """``openstack ARGS [-f json]`` of *venv* as *cloud* of the clouds.yaml; its JSON answer (None when it
    prints nothing, as ``server delete`` does), or LabError with the client's own message. *where* runs it
    elsewhere (``ip netns exec NS``: a multi-host lab's host)."""
    argv = [*where, str(Path(venv) / "bin" / "openstack"), *args, *(("-f", "json") if json_out else ())]
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=clouds.parent,
                         env=clean_env(OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD=cloud), timeout=600)
    if res.returncode != 0:
        raise LabError(f"openstack {' '.join(args)} rc {res.returncode}: {res.stderr.strip()[-1500:]}")
    # `stack create --wait` and `server create --wait` print progress before their JSON
    lines = res.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(("{", "["))), None)
    return json.loads("\n".join(lines[start:])) if start is not None else None
