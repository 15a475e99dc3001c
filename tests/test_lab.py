"""Tests of the built-in local lab (scripts/lab): real MariaDB servers, real keystone releases.

Nothing is mocked: the point of the lab is that the tool's tests run against the real thing,
so the lab itself must be shown to produce it. Every process a test starts is stopped by a
finalizer, found through its pid file, never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts.lab import ksapi, layout, mariadb, svc
from scripts.lab.controller import (
    CREDENTIAL_BLOB,
    DEFAULT_VENV_ROOT,
    Controller,
    alembic_heads,
    make_controller,
    seed_keystone,
)
from scripts.lab.mariadb import MariaDB, free_port
from scripts.lab.proc import read_pid

REPO = Path(__file__).resolve().parents[1]
OLD, NEW = "2025.2", "2026.1"
# starts with "-", as one random password in 64 does: keystone-manage must not take it for an option
ADMIN_PASSWORD = "-lab-admin-pw"
HEADS = {OLD: {"47147121", "c88cdce8f248"}, NEW: {"742c857f1dfb", "c88cdce8f248"}}


# -- helpers (the lead's conftest.py may take these over) ---------------------------------


def _require_mariadb() -> None:
    missing = [
        p for p in ("mariadbd", "mariadb-install-db", "mariadb-admin", "mariadb", "mariadb-dump") if not shutil.which(p)
    ]
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"MariaDB not installed (missing {', '.join(missing)}): apt-get install mariadb-server mariadb-client"
        )


def _require_venv(release: str) -> None:
    if not (DEFAULT_VENV_ROOT / release / "bin" / "keystone-manage").exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"keystone venv {release} missing: scripts/build-venv {release}"
        )


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_gone(pid: int) -> bool:
    """No process, not even a zombie: /proc/<pid> does not exist."""
    return not Path(f"/proc/{pid}").exists()


def _svc_cli(root: Path, action: str, service: str = "keystone") -> subprocess.CompletedProcess:
    """The supervisor exactly as the tool would call it: a separate process, run from the repo."""
    return subprocess.run(
        [sys.executable, "-m", "scripts.lab.svc", "--root", str(root), action, service],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def make_db(tmp_path: Path) -> Iterator[Callable[[str], MariaDB]]:
    """Factory of MariaDB instances (not started) on free ports; all stopped at teardown."""
    _require_mariadb()
    made: list[MariaDB] = []

    def factory(name: str) -> MariaDB:
        db = MariaDB(tmp_path / f"db-{name}", free_port())
        made.append(db)
        return db

    yield factory
    for db in reversed(made):
        db.stop()


@pytest.fixture(scope="module")
def old_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Controller, dict]]:
    """An old (2025.2) controller, seeded and serving; shared by the module because seeding costs ~8 s."""
    _require_mariadb()
    _require_venv(OLD)
    base = tmp_path_factory.mktemp("old-lab")
    db = MariaDB(base / "db-old", free_port())
    root = base / "old"
    try:
        t0 = time.monotonic()
        ctl = make_controller(root, OLD, db, free_port())
        t1 = time.monotonic()
        seed = seed_keystone(ctl, ADMIN_PASSWORD)
        t2 = time.monotonic()
        print(f"\nold lab: make_controller {t1 - t0:.1f} s, seed_keystone {t2 - t1:.1f} s {seed['timings']}")
        yield ctl, seed
    finally:
        if (root / layout.DESCRIPTOR).exists():
            svc.stop(root, "keystone")
        db.stop()


# -- ports ------------------------------------------------------------------------------
def test_a_drawn_port_is_reserved_against_every_other_draw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes drawing lab ports at once never get the same one: a free port is only free until its
    caller binds it, and two labs built at once had drawn the same (a later start failed "already in use").
    Each draw is reserved (a file per port, created with O_EXCL); a reservation older than the window is
    stale and taken over. 300 draws each from ~12,000 ports: without the reservations the two would share
    a few (the birthday bound), so this fails without them."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the child's reservations: tmp_path/osu-lab-ports
    monkeypatch.setattr(mariadb, "PORT_RESERVATIONS", tmp_path / "osu-lab-ports")
    child = subprocess.Popen([sys.executable, "-c", "from scripts.lab.mariadb import free_port\n"
                              "print(*(free_port() for _ in range(300)))"],
                             cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    mine = [free_port() for _ in range(300)]
    out, _ = child.communicate(timeout=120)
    theirs = [int(p) for p in out.split()]
    assert child.returncode == 0 and len(set(mine)) == len(set(theirs)) == 300
    assert not set(mine) & set(theirs)
    assert {int(p.name) for p in mariadb.PORT_RESERVATIONS.iterdir()} == set(mine) | set(theirs)
    held, stale = mine[0], mariadb.PORT_RESERVATIONS / str(mine[1])
    assert not mariadb._reserve(held)  # held by this draw
    os.utime(stale, (time.time() - 2 * mariadb.PORT_RESERVED_FOR,) * 2)
    assert mariadb._reserve(mine[1]) and not mariadb._reserve(mine[1])  # stale: taken over, then held again


# -- MariaDB ----------------------------------------------------------------------------


def test_two_mariadb_side_by_side(make_db: Callable[[str], MariaDB], tmp_path: Path) -> None:
    a, b = make_db("a"), make_db("b")
    a.start()
    b.start()
    a.start()  # idempotent
    assert a.running() and b.running() and a.port != b.port
    assert a.execute("SELECT @@port, @@bind_address") == [(a.port, "127.0.0.1")]
    assert b.execute("SELECT @@port, @@bind_address") == [(b.port, "127.0.0.1")]

    a.execute("CREATE DATABASE labtest")
    a.execute(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64), data BLOB) CHARACTER SET utf8mb4",
        db="labtest",
    )
    rows = [(1, "plain", b"\x00\x01\xff"), (2, "unicode \u2603 \U0001f600", b""), (3, None, None)]
    for row in rows:
        a.execute("INSERT INTO items VALUES (%s, %s, %s)", db="labtest", args=row)
    assert b.execute("SHOW DATABASES LIKE 'labtest'") == []

    dump = tmp_path / "labtest.sql"
    a.snapshot("labtest", dump)
    b.restore("labtest", dump)
    b.restore("labtest", dump)  # restore replaces, it does not merge
    sums = a.checksums("labtest")
    assert sums["items"][0] == 3 and sums["items"][1] is not None
    assert b.checksums("labtest") == sums
    assert b.execute("SELECT id, name, data FROM items ORDER BY id", db="labtest") == rows

    b.execute("UPDATE items SET name = 'changed' WHERE id = 1", db="labtest")
    assert b.checksums("labtest") != sums  # checksums do see a changed row

    # keystone's login date stamp (scripts/lab/tablesums.py): a login on another day is not a change, any
    # other column of the same rows is, and NULL is not the empty string
    a.execute("CREATE DATABASE keystone")
    a.execute("CREATE TABLE user (id VARCHAR(64) PRIMARY KEY, enabled TINYINT, extra TEXT, last_active_at DATE)",
              db="keystone")
    a.execute("INSERT INTO user VALUES ('u1', 1, NULL, '2026-12-06'), ('u2', 1, '', NULL)", db="keystone")
    before = a.checksums("keystone")
    assert before["user"][0] == 2 and str(before["user"][1]).startswith("rows-without-last_active_at:")
    a.execute("UPDATE user SET last_active_at = '2026-12-07'", db="keystone")
    assert a.checksums("keystone") == before
    for change in ("UPDATE user SET enabled = 0 WHERE id = 'u1'", "UPDATE user SET extra = '' WHERE id = 'u1'"):
        a.execute(change, db="keystone")
        assert a.checksums("keystone") != before, change
        a.execute("UPDATE user SET enabled = 1, extra = NULL WHERE id = 'u1'", db="keystone")
        assert a.checksums("keystone") == before
    a.execute("DROP DATABASE keystone")

    pids = [read_pid(a.pid_file), read_pid(b.pid_file)]
    assert all(pids)
    a.stop()
    b.stop()
    a.stop()  # idempotent
    assert not a.running() and not b.running()
    assert all(_pid_gone(pid) for pid in pids if pid)
    assert not _port_open(a.port) and not _port_open(b.port)


# -- old controller: keystone 2025.2 seeded and served ----------------------------------


def test_seeded_keystone_answers(old_lab: tuple[Controller, dict]) -> None:
    ctl, seed = old_lab
    url = ctl.keystone_url
    assert seed["keystone_url"] == url and seed["admin_password"] == ADMIN_PASSWORD

    admin = ksapi.issue_token(url, "admin", ADMIN_PASSWORD, project="admin")
    assert admin.status == 201, admin.body
    token = admin.headers["x-subject-token"]
    demo = ksapi.issue_token(url, "demo", seed["demo_password"], project="demo")
    assert demo.status == 201, demo.body
    assert demo.body["token"]["project"]["id"] == seed["demo_project_id"]
    # bootstrap makes member imply reader, so the token carries both
    assert sorted(r["name"] for r in demo.body["token"]["roles"]) == ["member", "reader"]
    assert ksapi.issue_token(url, "demo", "wrong-password").status == 401

    cred = ksapi.call("GET", f"{url}/credentials/{seed['credential_id']}", token)["credential"]
    assert cred["blob"] == CREDENTIAL_BLOB == "secret-blob-123" and cred["type"] == "cert"
    # the blob is stored encrypted with the credential keys, not in clear
    ((stored,),) = ctl.db.execute(
        "SELECT encrypted_blob FROM keystone.credential WHERE id = %s", args=(seed["credential_id"],)
    )
    assert stored and CREDENTIAL_BLOB not in str(stored)

    endpoints = ksapi.call("GET", f"{url}/endpoints?service_id={seed['glance_service_id']}", token)["endpoints"]
    assert [(e["interface"], e["url"]) for e in endpoints] == [("public", "http://127.0.0.1:9292")]
    # the seed's admin token stays valid: it is what "old tokens survive the upgrade" will check
    check = ksapi.request("GET", f"{url}/auth/tokens", token=token, headers={"X-Subject-Token": seed["admin_token"]})
    assert check.status == 200

    assert alembic_heads(ctl.db) == HEADS[OLD]
    assert len(list(ctl.fernet_keys.iterdir())) >= 2 and len(list(ctl.credential_keys.iterdir())) >= 2


def test_svc_stop_status_start(old_lab: tuple[Controller, dict]) -> None:
    ctl, seed = old_lab
    root, port = ctl.root, ctl.keystone_port
    assert _svc_cli(root, "status").returncode == 0
    pid = svc.service_pid(root, "keystone")
    assert pid and read_pid(layout.pid_file(root, "keystone")) == pid

    stopped = _svc_cli(root, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not _port_open(port)
    assert _pid_gone(pid) or not svc.service_pid(root, "keystone")
    assert not layout.pid_file(root, "keystone").exists()
    status = _svc_cli(root, "status")
    assert status.returncode == 3 and len(status.stderr.strip().splitlines()) == 1
    assert _svc_cli(root, "stop").returncode == 0  # stopping a stopped service is fine

    t0 = time.monotonic()
    started = _svc_cli(root, "start")
    elapsed = time.monotonic() - t0
    assert started.returncode == 0, started.stderr
    print(f"\nsvc start keystone: {elapsed:.1f} s ({started.stderr.strip()})")
    new_pid = svc.service_pid(root, "keystone")
    assert new_pid and new_pid != pid
    again = _svc_cli(root, "start")
    assert again.returncode == 0 and svc.service_pid(root, "keystone") == new_pid  # idempotent
    assert _svc_cli(root, "status").returncode == 0
    assert ksapi.issue_token(ctl.keystone_url, "admin", ADMIN_PASSWORD, project="admin").status == 201
    # the detached service runs in its own session, so stop() can signal its whole group
    assert os.getsid(new_pid) == new_pid


def test_svc_start_refuses_a_taken_port(old_lab: tuple[Controller, dict], tmp_path: Path) -> None:
    """A second controller on the same port must fail loudly, not 'start' against the other keystone."""
    ctl, _ = old_lab
    other = tmp_path / "other"
    other.mkdir()
    layout.write_descriptor(
        other,
        layout.Descriptor(release=OLD, venv=str(ctl.venv), keystone_port=ctl.keystone_port, db_port=ctl.db.port),
    )
    result = _svc_cli(other, "start")
    assert result.returncode == 1 and "already in use" in result.stderr
    assert _svc_cli(other, "status").returncode == 3


# -- new controller: installed, empty, schema of its own release ------------------------


def test_new_controller_has_fresh_schema_of_its_release(
    old_lab: tuple[Controller, dict], make_db: Callable[[str], MariaDB], tmp_path: Path
) -> None:
    _require_venv(NEW)
    old_ctl, _ = old_lab
    t0 = time.monotonic()
    new = make_controller(tmp_path / "new", NEW, make_db("new"), free_port())
    print(f"\nnew controller: make_controller {time.monotonic() - t0:.1f} s")

    assert alembic_heads(new.db) == HEADS[NEW]
    assert alembic_heads(old_ctl.db) == HEADS[OLD]
    assert new.keystone_manage("db_sync", "--check", check=False).returncode == 0
    assert new.db.execute("SELECT COUNT(*) FROM keystone.user") == [(0,)]  # installed but empty
    assert (
        new.db.execute("SELECT COUNT(*) FROM keystone.user")[0][0]
        < old_ctl.db.execute("SELECT COUNT(*) FROM keystone.user")[0][0]
    )
    assert list(new.fernet_keys.iterdir()) == [] and list(new.credential_keys.iterdir()) == []
    assert not svc.status(new.root, "keystone")

    desc = json.loads((new.root / "lab.json").read_text())
    assert desc == {
        "release": NEW,
        "venv": str(DEFAULT_VENV_ROOT / NEW),
        "keystone_port": new.keystone_port,
        "db_port": new.db.port,
    }
    conf = new.keystone_conf.read_text()
    assert conf.startswith("# keystone.conf") and "\n#max_active_keys = 3\n" in conf
    assert f"connection = mysql+pymysql://keystone:kspass@127.0.0.1:{new.db.port}/keystone\n" in conf
    assert f"key_repository = {new.root}/etc/keystone/fernet-keys\n" in conf
    # the keystone user reaches its own database over TCP with the password (as keystone does)
    grants = new.db.execute("SHOW GRANTS FOR 'keystone'@'127.0.0.1'")
    assert any("ON `keystone`.*" in g[0] for g in grants)
