"""Where things live inside a lab controller tree, and its ``lab.json`` descriptor.

Kept apart from ``controller`` so that the supervisor (``svc``) can find a controller's files
without importing pymysql or MariaDB code: it runs as a plain command like systemctl would.

Tree (``root`` stands for the controller's "/"):

    root/lab.json                        {"release", "venv", "keystone_port", "db_port", "glance_port"}
    root/etc/keystone/keystone.conf
    root/etc/keystone/fernet-keys/
    root/etc/keystone/credential-keys/
    root/var/lib/keystone/
    root/var/log/keystone/               keystone.log, keystone-api.out
    root/run/                            <service>.pid
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from scripts.lab.proc import LabError

DESCRIPTOR = "lab.json"


#: the units of the services beside keystone on a lab controller, in the order they stop (started in
#: reverse), and horizon's web server: stand-ins, but glance-api where the controller serves glance and
#: placement's and nova's (with nova's own broker, ``rabbitmq-nova``) where it serves them
#: (``scripts.lab.novaserve``)
UNITS = {"glance": ["glance-api"], "placement": ["placement-api"],
         "nova": ["nova-api", "nova-conductor", "nova-scheduler", "nova-metadata", "rabbitmq-nova"],
         "neutron": ["neutron-server", "neutron-dhcp-agent", "neutron-metadata-agent"],
         "cinder": ["cinder-api", "cinder-scheduler", "cinder-volume"], "horizon": ["httpd"]}


@dataclass(frozen=True)
class Descriptor:
    """What a controller runs: its release, venv and loopback ports (the content of lab.json)."""

    release: str
    venv: str
    keystone_port: int
    db_port: int
    #: where keystone listens: loopback in the local lab; 0.0.0.0 inside a multi-host lab's namespace
    bind: str = "127.0.0.1"
    #: where glance-api listens when this controller serves glance for real; 0: it does not
    glance_port: int = 0


def etc_keystone(root: Path) -> Path:
    return root / "etc" / "keystone"


def keystone_conf(root: Path) -> Path:
    return etc_keystone(root) / "keystone.conf"


def fernet_keys(root: Path) -> Path:
    return etc_keystone(root) / "fernet-keys"


def credential_keys(root: Path) -> Path:
    return etc_keystone(root) / "credential-keys"


def glance_conf(root: Path) -> Path:
    return root / "etc" / "glance" / "glance-api.conf"


def var_lib(root: Path, service: str) -> Path:
    return root / "var" / "lib" / service


def log_dir(root: Path, service: str) -> Path:
    return root / "var" / "log" / service


def run_dir(root: Path) -> Path:
    return root / "run"


def pid_file(root: Path, service: str) -> Path:
    return run_dir(root) / f"{service}.pid"


def descriptor_path(root: Path) -> Path:
    """``ROOT/lab.json``; for a multi-host lab host, whose controller root is ``/``, ``/etc/lab.json``
    (its /etc is the host's own overlay, its real / is shared by all hosts)."""
    return Path("/etc") / DESCRIPTOR if Path(root) == Path("/") else root / DESCRIPTOR


def write_descriptor(root: Path, desc: Descriptor) -> None:
    """Write lab.json; sorted keys and a trailing newline keep it diff-friendly (bind only if not loopback)."""
    data = asdict(desc)
    if data["bind"] == "127.0.0.1":
        del data["bind"]
    if not data["glance_port"]:
        del data["glance_port"]
    descriptor_path(root).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_descriptor(root: Path) -> Descriptor:
    """Read lab.json; a clear error beats a KeyError when ROOT is not a lab controller."""
    path = descriptor_path(root)
    try:
        data = json.loads(path.read_text())
        return Descriptor(
            release=str(data["release"]),
            venv=str(data["venv"]),
            keystone_port=int(data["keystone_port"]),
            db_port=int(data["db_port"]),
            bind=str(data.get("bind", "127.0.0.1")),
            glance_port=int(data.get("glance_port", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{root} is not a lab controller (cannot read {path}: {exc})") from exc
