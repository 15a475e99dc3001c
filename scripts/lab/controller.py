"""A lab controller host as a directory tree, with its own MariaDB: build it, and seed keystone.

The old (2025.2) and the new (2026.1) controller are two such trees on one machine. The new
one is "installed but empty" like a freshly deployed host: config, key directories (empty),
DB user and a fresh schema of its own release, no data. The old one is seeded through the
real keystone API so the upgrade has real rows, tokens and encrypted credentials to carry.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.lab import ksapi, layout, schemacache, svc
from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import LabError, clean_env, tail

DEFAULT_VENV_ROOT = Path("/opt/openstack-upgrade/venvs")
DEFAULT_DB_PASSWORD = "kspass"
REGION = "RegionOne"
CREDENTIAL_BLOB = "secret-blob-123"
GLANCE_URL = "http://127.0.0.1:9292"  # a catalog entry only, unless the lab serves glance (seed_keystone)


def _redact(args: tuple[str, ...]) -> list[str]:
    """Hide the value after a password option, so error messages and logs do not carry it."""
    shown: list[str] = []
    for i, arg in enumerate(args):
        shown.append("***" if i > 0 and args[i - 1].endswith("-password") else arg)
    return shown


class CommandFailed(LabError):
    """A command of a controller (keystone-manage ...) exited non-zero; ``result`` holds its output."""

    def __init__(self, message: str, result: subprocess.CompletedProcess) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class Controller:
    """One controller tree: where its files are, which release it runs, its DB and keystone port."""

    root: Path
    release: str
    venv: Path
    db: MariaDB
    keystone_port: int

    @property
    def keystone_conf(self) -> Path:
        return layout.keystone_conf(self.root)

    @property
    def fernet_keys(self) -> Path:
        return layout.fernet_keys(self.root)

    @property
    def credential_keys(self) -> Path:
        return layout.credential_keys(self.root)

    @property
    def keystone_url(self) -> str:
        """Base URL of the identity API (the value the catalog holds, without trailing slash)."""
        return f"http://127.0.0.1:{self.keystone_port}/v3"

    @classmethod
    def load(cls, root: Path, db: MariaDB) -> Controller:
        """Re-open an existing tree from its lab.json (the DB object is the caller's: it knows the base)."""
        root = Path(root).resolve()
        desc = layout.read_descriptor(root)
        return cls(root=root, release=desc.release, venv=Path(desc.venv), db=db, keystone_port=desc.keystone_port)

    def keystone_manage(self, *args: str, check: bool = True, env: dict[str, str] | None = None
                        ) -> subprocess.CompletedProcess:
        """``<venv>/bin/keystone-manage --config-file <keystone.conf> ARGS``, output captured as text.

        With ``check`` (default) a non-zero rc raises CommandFailed with the output tail; pass
        ``check=False`` when the rc is the answer (``db_sync --check``: 0, 2 or 4). ``env`` adds
        variables to the child's environment: how a secret reaches keystone-manage off its argv.
        """
        argv = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.keystone_conf), *args]
        result = subprocess.run(
            argv, cwd=self.root, env=clean_env(**(env or {})), capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            # With log_file set, keystone logs its errors there rather than on stderr.
            out = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            log = tail(layout.log_dir(self.root, "keystone") / "keystone.log", 10)
            raise CommandFailed(
                f"keystone-manage {' '.join(_redact(args))} ({self.release}) rc {result.returncode}:\n{out}\n{log}",
                result,
            )
        return result


def _keystone_conf_text(root: Path, release: str, db: MariaDB, db_password: str) -> str:
    """keystone.conf after lab-recipes §4.1, with comments and commented-out options.

    The comments exist so that "the tool preserves the file byte for byte" is a real check,
    not one any rewrite of the sections would pass.
    """
    return f"""\
# keystone.conf for the lab controller at {root}
# Release {release}. Written by scripts/lab/controller.py.
#
# Operators keep notes in here; an upgrade must keep them, and the commented-out
# options below, exactly as they are.

[DEFAULT]
log_file = {layout.log_dir(root, "keystone") / "keystone.log"}
#debug = false
#max_param_size = 64

[database]
connection = mysql+pymysql://keystone:{db_password}@127.0.0.1:{db.port}/keystone
#connection_recycle_time = 3600
#max_pool_size = 5

[token]
provider = fernet
#expiration = 3600

[fernet_tokens]
key_repository = {layout.fernet_keys(root)}
#max_active_keys = 3

[fernet_receipts]
key_repository = {layout.fernet_keys(root)}

[credential]
key_repository = {layout.credential_keys(root)}
"""


def _ensure_db(db: MariaDB, password: str) -> None:
    """The keystone database and its user, as the install guide has the operator create them."""
    db.start()
    db.execute("CREATE DATABASE IF NOT EXISTS keystone")
    db.execute("CREATE USER IF NOT EXISTS 'keystone'@'127.0.0.1' IDENTIFIED BY %s", args=(password,))
    db.execute("ALTER USER 'keystone'@'127.0.0.1' IDENTIFIED BY %s", args=(password,))
    db.execute("GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'127.0.0.1'")


def make_controller(
    root: Path,
    release: str,
    db: MariaDB,
    keystone_port: int,
    venv_root: Path = DEFAULT_VENV_ROOT,
    db_password: str = DEFAULT_DB_PASSWORD,
    bind: str = "127.0.0.1",
    glance_port: int = 0,
) -> Controller:
    """Write the tree, keystone.conf and lab.json; create the DB and user; db_sync this release.

    Both controllers get a schema of their own release: the old one because it is in
    service, the new one because a freshly deployed controller has an empty, current schema
    that the upgrade replaces with the old data. Starts ``db`` if it is not running. ``bind`` is
    where keystone will listen (0.0.0.0 on a multi-host lab host, whose root is ``/``); a
    ``glance_port`` makes the lab's supervisor serve glance-api for real on this controller.
    """
    root = Path(root).resolve()
    venv = Path(venv_root) / release
    if not (venv / "bin" / "keystone-manage").exists():
        raise LabError(f"no keystone venv for {release} at {venv}; build it with: scripts/build-venv {release}")
    for path in (layout.etc_keystone(root), layout.var_lib(root, "keystone"), layout.log_dir(root, "keystone")):
        path.mkdir(parents=True, exist_ok=True)
    layout.run_dir(root).mkdir(parents=True, exist_ok=True)
    for keys in (layout.fernet_keys(root), layout.credential_keys(root)):
        keys.mkdir(mode=0o700, exist_ok=True)  # keystone warns about key directories others can read
    layout.keystone_conf(root).write_text(_keystone_conf_text(root, release, db, db_password))
    layout.write_descriptor(
        root,
        layout.Descriptor(release=release, venv=str(venv), keystone_port=keystone_port, db_port=db.port, bind=bind,
                          glance_port=glance_port),
    )
    _ensure_db(db, db_password)
    ctl = Controller(root=root, release=release, venv=venv, db=db, keystone_port=keystone_port)
    schemacache.synced(db, venv, "keystone", ("keystone",), lambda: ctl.keystone_manage("db_sync"))
    return ctl


def alembic_heads(db: MariaDB) -> set[str]:
    """The keystone schema's alembic heads (one row per branch: expand and contract)."""
    exists = db.execute(
        "SELECT COUNT(*) FROM information_schema.tables"
        " WHERE table_schema = 'keystone' AND table_name = 'alembic_version'"
    )
    if not exists[0][0]:
        return set()
    return {row[0] for row in db.execute("SELECT version_num FROM keystone.alembic_version")}


def seed_keystone(ctl: Controller, admin_password: str, glance_url: str = GLANCE_URL) -> dict:
    """Bootstrap the (old) controller's keystone, serve it, and create data through the real API.

    Creates project/user ``demo`` with role ``member``, a ``cert`` credential (encrypted with
    the credential keys), service ``glance`` with a public endpoint. Leaves keystone running.
    Returns what it made, including a valid admin token and the demo password.
    """
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    if not alembic_heads(ctl.db):  # make_controller normally did it already: save 3 s
        ctl.keystone_manage("db_sync")
    ctl.keystone_manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
    ctl.keystone_manage("credential_setup", "--keystone-user", "root", "--keystone-group", "root")
    endpoint = f"{ctl.keystone_url}/"
    # The password goes in keystone's own OS_BOOTSTRAP_PASSWORD, not after --bootstrap-password: a random
    # one that starts with '-' would be taken by argparse for an option (and argv is readable by anyone).
    ctl.keystone_manage(
        "bootstrap",
        "--bootstrap-region-id",
        REGION,
        "--bootstrap-admin-url",
        endpoint,
        "--bootstrap-internal-url",
        endpoint,
        "--bootstrap-public-url",
        endpoint,
        env={"OS_BOOTSTRAP_PASSWORD": admin_password},
    )
    timings["keystone_manage"] = time.monotonic() - t0

    t1 = time.monotonic()
    svc.start(ctl.root, "keystone")
    timings["serve"] = time.monotonic() - t1

    t2 = time.monotonic()
    url = ctl.keystone_url
    token = ksapi.get_token(url, "admin", admin_password, project="admin")
    demo_password = secrets.token_urlsafe(12)
    project = ksapi.call("POST", f"{url}/projects", token, {"project": {"name": "demo", "domain_id": "default"}})
    project_id = project["project"]["id"]
    user = ksapi.call(
        "POST",
        f"{url}/users",
        token,
        {"user": {"name": "demo", "domain_id": "default", "password": demo_password, "default_project_id": project_id}},
    )
    user_id = user["user"]["id"]
    roles = ksapi.call("GET", f"{url}/roles?name=member", token)["roles"]
    if not roles:
        raise LabError("keystone bootstrap created no 'member' role")
    member_id = roles[0]["id"]
    ksapi.call("PUT", f"{url}/projects/{project_id}/users/{user_id}/roles/{member_id}", token)
    credential = ksapi.call(
        "POST",
        f"{url}/credentials",
        token,
        {"credential": {"type": "cert", "user_id": user_id, "project_id": project_id, "blob": CREDENTIAL_BLOB}},
    )
    service = ksapi.call("POST", f"{url}/services", token, {"service": {"name": "glance", "type": "image"}})
    service_id = service["service"]["id"]
    glance_ep = ksapi.call(
        "POST",
        f"{url}/endpoints",
        token,
        {"endpoint": {"service_id": service_id, "interface": "public", "url": glance_url, "region_id": REGION}},
    )
    timings["api_seed"] = time.monotonic() - t2
    return {
        "keystone_url": url,
        "region": REGION,
        "admin_user": "admin",
        "admin_project": "admin",
        "admin_password": admin_password,
        "admin_token": token,
        "demo_project": "demo",
        "demo_project_id": project_id,
        "demo_user": "demo",
        "demo_user_id": user_id,
        "demo_password": demo_password,
        "member_role_id": member_id,
        "credential_id": credential["credential"]["id"],
        "credential_blob": CREDENTIAL_BLOB,
        "glance_service_id": service_id,
        "glance_endpoint_id": glance_ep["endpoint"]["id"],
        "glance_endpoint_url": glance_url,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
