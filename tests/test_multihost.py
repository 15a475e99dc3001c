"""The multi-host lab: real network namespaces, real sshd per host, real MariaDB, keystone and glance per
controller, and the real `upgrade` running in the deploy host as a subprocess, over SSH.

Assertions read each host's overlay upper directories and databases directly (from outside the
hosts), and watch the management address from a compute host, as a client would.
A test that leaves its lab changed makes its own from one seeded snapshot (a few seconds) and removes it,
whatever happens; the others share the module's one lab (``shared_lab``, one xdist group), each leaving it
as it found it (its run reverted, what it added taken away). Needs root; under CI a missing part fails
instead of skipping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.lab import hosts as hostlab
from scripts.lab import tablesums
from tests.conftest import KEYSTONE_STEPS, REPO
from upgrade import window

OLD, NEW = "2025.2", "2026.1"
HEADS_NEW = {"742c857f1dfb", "c88cdce8f248"}
VIP = hostlab.VIP
NETWORK_STEPS = ["network.nonlocal_bind"] + [f"network.management.{s}" for s in
                                             ("record", "remove_old", "persist", "add_new", "announce", "check")] \
    + ["network.old_units.record", "network.old_units.disable"]
#: oldctl's ifupdown file naming the management address as an alias stanza (written by the tests that need it)
INTERFACES = f"""auto lo
iface lo inet loopback

auto eth0:1
iface eth0:1 inet static
    address {VIP}/24

# the host's own address comes from the lab
""".encode()


# ---------------------------------------------------------------------- fixtures (hostlab_snapshot: conftest)
@contextlib.contextmanager
def _lab(directory: Path, snapshot: Path, computes: int):
    hostlab.up(directory, computes=computes, snapshot_dir=snapshot)
    try:
        yield hostlab.Lab.load(directory)
    finally:
        hostlab.down(directory)


@pytest.fixture
def lab(hostlab_snapshot, tmp_path):
    with _lab(tmp_path / "lab", hostlab_snapshot, 1) as running:
        yield running


@pytest.fixture
def lab20(hostlab_snapshot, tmp_path):
    with _lab(tmp_path / "lab", hostlab_snapshot, 20) as running:
        yield running


# ---------------------------------------------------------------------- helpers
def _env(failpoint: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENSTACK_UPGRADE_FAILPOINT"}
    if failpoint:
        env["OPENSTACK_UPGRADE_FAILPOINT"] = failpoint
    return env


def tool(lab: hostlab.Lab, *args: str, failpoint: str | None = None, timeout: float = 600):
    """The real `upgrade` command, run where an operator would: on the deploy host."""
    return subprocess.run(lab.in_deploy([sys.executable, "-m", "upgrade.cli", *args]), cwd=REPO,
                          env=_env(failpoint), capture_output=True, text=True, timeout=timeout)


def start_tool(lab: hostlab.Lab, *args: str) -> subprocess.Popen:
    return subprocess.Popen(lab.in_deploy([sys.executable, "-m", "upgrade.cli", *args, "--quiet"]), cwd=REPO,
                            env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal_events(journal: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{journal / 'journal.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")]
    finally:
        conn.close()


def wait_for(what: str, predicate, timeout: float = 180, interval: float = 0.02, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()}")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"no {what} within {timeout} s")


def intent_seen(journal: Path, step: str) -> bool:
    try:
        return any(e["step"] == step and e["kind"] == "intent" for e in journal_events(journal))
    except sqlite3.Error:
        return False


def who_answers(lab: hostlab.Lab, host: str = "compute1") -> str | None:
    res = subprocess.run(["ip", "netns", "exec", lab.ns(host), "curl", "-s", "-m", "2", f"http://{VIP}:8080/"],
                         capture_output=True, text=True)
    return json.loads(res.stdout)["host"] if res.returncode == 0 and res.stdout else None


def vip_holders(lab: hostlab.Lab) -> list[str]:
    return [h for h in ("oldctl", "newctl") if VIP in lab.addresses(h)]


def tree(root: Path) -> dict[str, tuple[str, int, int, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return out


def write_inside(lab: hostlab.Lab, host: str, path: str, data: bytes) -> None:
    res = subprocess.run(["nsenter", "-t", str(lab.pid1(host)), "-a", "-r", "-w", "sh", "-c",
                          'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path], input=data, capture_output=True)
    assert res.returncode == 0, res.stderr


def read_inside(lab: hostlab.Lab, host: str, path: str) -> bytes:
    return subprocess.run(["nsenter", "-t", str(lab.pid1(host)), "-a", "-r", "-w", "cat", path],
                          capture_output=True, check=True).stdout


def svc_inside(lab: hostlab.Lab, host: str, *args: str) -> subprocess.CompletedProcess:
    """The lab supervisor of *host*, as the tool drives it over SSH."""
    return lab.inside(host, ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.svc", "--root", "/",
                             *args])


def heads(lab: hostlab.Lab, host: str) -> set[str]:
    return {r[0] for r in lab.query(host, "SELECT version_num FROM keystone.alembic_version")}


def checksums(lab: hostlab.Lab, host: str, schema: str = "keystone") -> dict:
    """Per table of *schema* on *host*'s server: (rows, fingerprint), keystone's login date stamp left out."""
    return tablesums.table_sums(lambda sql: lab.query(host, sql), schema)


def keystone_token(lab: hostlab.Lab, host: str, user: str, password: str, project: str) -> int:
    """Log in through the management address from *host*; returns the HTTP status."""
    code = ("import sys, json; from scripts.lab import ksapi; "
            f"print(ksapi.issue_token('http://{VIP}:5000/v3', sys.argv[1], sys.argv[2], project=sys.argv[3]).status)")
    res = subprocess.run(["ip", "netns", "exec", lab.ns(host), sys.executable, "-c", code, user, password, project],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return int(res.stdout)


IMAGE_CLIENT = """\
import json, sys
from scripts.lab import glapi, ksapi
base, password = sys.argv[1:3]
token = ksapi.get_token(base + ":5000/v3", "admin", password, project="admin")
url = base + ":9292"
print(json.dumps([{"id": i["id"], "name": i["name"], "status": i["status"], "checksum": i["checksum"],
                   "download": list(glapi.download_md5(url, token, i["id"]))} for i in glapi.images(url, token)]))
"""


def images_seen(lab: hostlab.Lab, host: str, password: str) -> list[dict]:
    """From *host*, through the management address, as a client would: a token with the admin's password,
    then every image glance lists, each downloaded (HTTP status, md5 of the bytes served)."""
    res = subprocess.run(["ip", "netns", "exec", lab.ns(host), sys.executable, "-c", IMAGE_CLIENT, f"http://{VIP}",
                          password], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def assert_images_served(lab: hostlab.Lab, seed: dict) -> None:
    """Every seeded image listed, active, and downloaded whole (md5 = glance's checksum = the seeded one)."""
    seen = images_seen(lab, "compute1", seed["admin_password"])
    assert {i["id"]: i["checksum"] for i in seen} == {i["id"]: i["checksum"] for i in seed["images"]}
    assert all(i["status"] == "active" and i["download"] == [200, i["checksum"]] for i in seen), seen


# ---------------------------------------------------------------------- the full run
def test_keystone_upgrade_over_ssh_seen_from_a_compute_host_and_reverted(shared_lab, tmp_path):
    """keystone upgraded over SSH, checked on both hosts' files, databases and the journal, while a client on
    compute1 polls the management address through run and revert (one lab, one run: the full run's
    checks and the switchover's)."""
    lab = shared_lab
    plan, journal = _own_plan(lab, tmp_path), tmp_path / "journal"
    seed = lab.state["controller"]["seed"]
    source_before = checksums(lab, "oldctl")
    old_etc_before = tree(lab.upper("oldctl") / "keystone")
    assert who_answers(lab) == "oldctl"
    out, stop = tmp_path / "answers.txt", tmp_path / "stop"
    poller = ("import sys, time, os, json, urllib.request\n"
              "out, stop, url = sys.argv[1:4]\n"
              "with open(out, 'a') as fh:\n"
              "    while not os.path.exists(stop):\n"
              "        try:\n"
              "            with urllib.request.urlopen(url, timeout=0.3) as r:\n"
              "                fh.write(f'{time.time():.3f} {json.load(r)[\"host\"]}\\n')\n"
              "        except OSError as exc:\n"
              "            fh.write(f'{time.time():.3f} -\\n')\n"
              "        fh.flush(); time.sleep(0.02)\n")
    proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("compute1"), sys.executable, "-c", poller, str(out),
                             str(stop), f"http://{VIP}:8080/"])
    write_inside(lab, "oldctl", "/etc/network/interfaces", INTERFACES)
    assert svc_inside(lab, "oldctl", "is-enabled", "keystone").stdout.strip() == "enabled"
    try:
        wait_for("a first answer", lambda: out.exists() and out.read_text().strip())
        res = tool(lab, "run", str(plan))
        assert res.returncode == 0, res.stderr
        after_run = out.read_text().split("\n")
        # newctl's /etc/keystone, as written through SSH, read from its overlay upper directory
        new_etc = lab.upper("newctl") / "keystone"
        old_tree, new_tree = tree(lab.upper("oldctl") / "keystone"), tree(new_etc)
        assert old_tree == old_etc_before  # the old controller was only read
        # fernet and credential keys, keystone.conf: same bytes, modes and owners (both controllers keep the
        # same layout, and keystone reaches its DB at 127.0.0.1:3306 on either, so the rewrite changes nothing)
        assert new_tree == old_tree
        assert "connection = mysql+pymysql://keystone:kspass@127.0.0.1:3306/keystone" in \
            (new_etc / "keystone.conf").read_text().splitlines()
        # databases, read through each host's own MariaDB socket
        assert heads(lab, "newctl") == HEADS_NEW
        assert checksums(lab, "oldctl") == source_before
        assert lab.query("newctl", "SELECT COUNT(*) FROM keystone.user")[0][0] == \
            lab.query("oldctl", "SELECT COUNT(*) FROM keystone.user")[0][0]
        # credentials reach the DB clients on a pipe; no private directory is left in /tmp on either host
        for h in ("oldctl", "newctl"):
            assert not list((lab.dir / "hosts" / h / "tmp").glob("osu-*")), h
        # the management address moved; clients on a compute host reach the new keystone with old credentials
        assert vip_holders(lab) == ["newctl"]
        assert who_answers(lab) == "newctl"
        assert keystone_token(lab, "compute1", "admin", seed["admin_password"], "admin") == 201
        assert keystone_token(lab, "compute1", "demo", seed["demo_password"], "demo") == 201
        assert (lab.upper("newctl", "varlog") / "keystone/keystone-api.out").exists()
        # the journal: every step in order, the copy verified per file
        events = journal_events(journal)
        dones = [e["step"] for e in events if e["kind"] == "done"]
        head = len(KEYSTONE_STEPS) + len(NETWORK_STEPS)
        assert dones[:head] == [f"keystone.{s}" for s in KEYSTONE_STEPS] + NETWORK_STEPS
        assert sorted(dones[head:]) == ["compute.compute1.restart", "compute.compute1.verify"]
        install = next(json.loads(e["result"]) for e in events
                       if e["step"] == "keystone.install_config" and e["kind"] == "done")
        copied = install["copied"]
        assert copied["files_checksummed"] >= 3 and len(copied["tar_sha256"]) == 64
        assert {"file": "/etc/keystone/keystone.conf", "option": "[database] connection",
                "db": "127.0.0.1:3306/keystone"} in install["rewritten"]
        check = next(json.loads(e["result"]) for e in events
                     if e["step"] == "network.management.check" and e["kind"] == "done")
        assert check["mac"] == lab.mac("newctl")
        st = tool(lab, "status", "--journal", str(journal), "-f", "json")
        machines = {s["service"]: s for s in json.loads(st.stdout)["services"]}
        assert machines["network"]["last_step"] == "network.old_units.disable", machines
        # the reported window reaches the end of the address move: the clients waited for it (the cut-over)
        win = json.loads(st.stdout)["window"]
        moved = next(e["ts"] for e in events if e["step"] == "network.management.check" and e["kind"] == "done")
        cut = next(r for r in win["services"] if r["service"] == "cutover")
        assert cut["closed_by"] == "verified" and cut["end"] == win["total"]["end"] == window.stamp(moved), win
        assert win["total"]["cutover_seconds"] == cut["cutover_seconds"] > 0, win
        # the old controller cannot come back by itself: the address is out of its ifupdown file (the alias
        # stanza commented out), keystone is disabled and masked, and a boot of the host leaves it stopped
        persisted = read_inside(lab, "oldctl", "/etc/network/interfaces")
        assert [ln for ln in persisted.splitlines() if VIP.encode() in ln] == [f"#osu-removed#     address {VIP}/24"
                                                                               .encode()]
        assert b"\n#osu-removed# auto eth0:1\n#osu-removed# iface eth0:1 inet static\n" in persisted
        assert persisted.startswith(b"auto lo\n") and b"\n# the host's own address comes from the lab\n" in persisted
        assert svc_inside(lab, "oldctl", "is-enabled", "keystone").stdout.strip() == "masked"
        assert svc_inside(lab, "oldctl", "start", "keystone").returncode == 1  # masked: not even by hand
        booted = svc_inside(lab, "oldctl", "boot", "keystone")
        assert booted.returncode == 0 and "started nothing" in booted.stderr, booted.stderr
        events = journal_events(journal)
        disabled = next(json.loads(e["result"]) for e in events
                        if e["step"] == "network.old_units.disable" and e["kind"] == "done")
        assert disabled["disabled"] == [{"unit": "keystone", "before": "enabled", "actions": ["disable", "mask"]}]
        res = tool(lab, "revert", "--journal", str(journal))
        assert res.returncode == 0, res.stderr
        # revert: exactly what the run disabled is enabled again, the file has its bytes back
        assert svc_inside(lab, "oldctl", "is-enabled", "keystone").stdout.strip() == "enabled"
        assert read_inside(lab, "oldctl", "/etc/network/interfaces") == INTERFACES
        polled = len(out.read_text().splitlines())
        wait_for("the client's next answer, from oldctl", lambda: any(
            line.endswith(" oldctl") for line in out.read_text().splitlines()[polled:]))
    finally:
        stop.touch()
        proc.wait(timeout=10)
    seen = [line.split()[1] for line in out.read_text().splitlines() if line]
    answered = [h for h in seen if h != "-"]
    changes = [h for i, h in enumerate(answered) if i == 0 or answered[i - 1] != h]
    assert changes == ["oldctl", "newctl", "oldctl"], changes
    during_run = [x.split()[1] for x in after_run if x and x.split()[1] != "-"]
    assert during_run[0] == "oldctl" and during_run[-1] == "newctl"
    # how long the address was in flight is a measurement (make bench: the window), not asserted here
    assert vip_holders(lab) == ["oldctl"] and who_answers(lab) == "oldctl"


# ---------------------------------------------------------------------- faults
def test_unreachable_host_is_refused_before_anything_runs(shared_lab, tmp_path):
    """On the module's one lab (nothing changes): newctl's sshd dead, the run refused; sshd started again."""
    lab = shared_lab
    plan = _own_plan(lab, tmp_path)
    lab.kill_sshd("newctl")
    try:
        res = tool(lab, "run", str(plan))
    finally:
        lab.start_sshd("newctl")
    assert res.returncode == 2, res.stderr
    assert "target:newctl" in res.stderr and "198.51.100.12" in res.stderr and "Connection refused" in res.stderr
    assert "nothing was changed" in res.stderr
    assert not (tmp_path / "journal" / "journal.db").exists() or not journal_events(tmp_path / "journal")


def _import_process(lab: hostlab.Lab) -> bool:
    """The `mysql` client of the import runs on newctl (seen from outside, by its PID namespace)."""
    mine = os.readlink(f"/proc/{lab.pid1('newctl')}/ns/pid")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"mysql") and any(a.startswith(b"--defaults-extra-file") for a in argv) \
                    and os.readlink(entry / "ns" / "pid") == mine:
                return True
        except OSError:
            continue
    return False


def test_old_controller_sshd_killed_then_new_controller_link_down_mid_import_each_resumed(lab):
    """Two network faults in one run, chained: oldctl's sshd killed as keystone.stop_target begins (the run
    fails naming the host and `upgrade resume`); sshd back, the resume loses newctl's link while the import
    streams into it (it fails in keystone.dump_source naming newctl); the link back, the last resume ends
    the upgrade."""
    journal = lab.dir / "journal"
    proc = start_tool(lab, "run", str(lab.plan))
    try:
        wait_for("keystone.stop_target", lambda: intent_seen(journal, "keystone.stop_target"), proc=proc)
        assert lab.kill_sshd("oldctl")
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "source:oldctl" in err and "198.51.100.11" in err and "over SSH" in err, err
    assert "upgrade resume" in err
    assert not intent_seen(journal, "keystone.dump_source")  # the next fault comes in the resume
    lab.start_sshd("oldctl")
    proc = start_tool(lab, "resume", "--journal", str(journal))
    try:
        # the import streams from the dump as it is vaulted: it runs inside keystone.dump_source
        wait_for("keystone.dump_source", lambda: intent_seen(journal, "keystone.dump_source"), proc=proc)
        wait_for("the import on newctl", lambda: _import_process(lab), timeout=60, interval=0.005, proc=proc)
        lab.set_link("newctl", up=False)
        _, err = proc.communicate(timeout=180)
    finally:
        lab.set_link("newctl", up=True)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "keystone.dump_source failed" in err and "newctl" in err, err
    res = tool(lab, "resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert heads(lab, "newctl") == HEADS_NEW and vip_holders(lab) == ["newctl"] and who_answers(lab) == "newctl"


@pytest.fixture(scope="module")
def shared_lab(hostlab_snapshot, tmp_path_factory):
    with _lab(tmp_path_factory.mktemp("hostlab-moves") / "lab", hostlab_snapshot, 1) as running:
        yield running


def _own_plan(lab: hostlab.Lab, directory: Path, source: Path | None = None) -> Path:
    """The lab's plan (*source*: another of its plans) and key copied into *directory*: a run on the
    module's shared lab keeps its journal there (beside the plan), not in the lab's."""
    plan = directory / "plan.toml"
    shutil.copyfile(source or lab.plan, plan)
    shutil.copyfile(lab.dir / "dump.key", directory / "dump.key")
    (directory / "dump.key").chmod(0o600)
    return plan


#: the IP move's kill points in the order the move reaches them: one chained schedule (each resume killed at
#: the next point) keeps every point and recovers from each, with one run and one revert
MOVE_KILLS = ["network.management.remove_old:inside", "network.management.persist:inside",
              "network.management.add_new:inside", "network.management.announce:before"]


def test_killed_during_the_ip_move_resume_then_revert(shared_lab, tmp_path):
    """SIGKILL mid-move, at each point in turn: the address is on at most one controller after every kill;
    the last resume puts it on newctl, revert on oldctl.

    Starts from and ends in the lab's initial state (a reverted run), on the module's one lab.
    """
    lab = shared_lab
    journal = tmp_path / "journal"
    plan = _own_plan(lab, tmp_path)
    write_inside(lab, "oldctl", "/etc/network/interfaces", INTERFACES)
    args: tuple[str, ...] = ("run", str(plan))
    for point in MOVE_KILLS:
        res = tool(lab, *args, failpoint=point)
        assert res.returncode == -signal.SIGKILL, (point, res.stderr)
        assert len(vip_holders(lab)) <= 1, point
        if point.endswith(":inside"):
            assert intent_seen(journal, point.split(":")[0]), point
        args = ("resume", "--journal", str(journal))
    res = tool(lab, *args)
    assert res.returncode == 0, res.stderr
    assert vip_holders(lab) == ["newctl"] and who_answers(lab) == "newctl"
    assert VIP.encode() + b"/24" not in b"".join(ln for ln in read_inside(lab, "oldctl", "/etc/network/interfaces")
                                                 .splitlines() if not ln.startswith(b"#"))
    assert svc_inside(lab, "oldctl", "is-enabled", "keystone").stdout.strip() == "masked"
    res = tool(lab, "revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert vip_holders(lab) == ["oldctl"] and who_answers(lab) == "oldctl"
    assert read_inside(lab, "oldctl", "/etc/network/interfaces") == INTERFACES  # restored, even after the kills
    assert svc_inside(lab, "oldctl", "is-enabled", "keystone").stdout.strip() == "enabled"
    assert lab.query("newctl", "SELECT @@hostname")  # still serving
    events = journal_events(journal)
    dones = [e["step"] for e in events if e["kind"] == "done"]
    assert len(dones) == len(set(dones))  # no committed step ran twice
    for point in MOVE_KILLS[:3]:  # each `:inside` kill left its step open, the next resume did it again
        step = point.split(":")[0]
        assert [e["kind"] for e in events if e["step"] == step].count("intent") >= 2, step


def test_target_that_is_the_old_controller_over_ssh_is_refused(shared_lab, tmp_path):
    """The target host spelled as the old controller's address with an explicit port, its etc as `/etc/.`:
    over SSH the directories are the same by device and inode (one kernel), and `check` and `run`
    refuse it (exit 2) while the two DB servers are told apart; nothing changes on either controller."""
    lab = shared_lab
    old_addr = lab.hosts["oldctl"]
    text = lab.plan.read_text()
    target = text[text.index("[target]"):text.index("[target.db]")]
    lines = [f'host = "ssh://root@{old_addr}:22"' if ln.startswith("host =") else 'name = "oldctl"'
             if ln.startswith("name =") else 'etc = "/etc/."' if ln.startswith("etc =") else ln
             for ln in target.splitlines()]
    plan = tmp_path / "plan.toml"
    plan.write_text(text.replace(target, "\n".join(lines) + "\n"))
    shutil.copyfile(lab.dir / "dump.key", tmp_path / "dump.key")
    (tmp_path / "dump.key").chmod(0o600)
    old_etc, source_db = tree(lab.upper("oldctl") / "keystone"), checksums(lab, "oldctl")
    res = tool(lab, "check", str(plan))
    assert res.returncode == 2, res.stdout + res.stderr
    rows = {ln.split()[1] + " " + ln.split()[2]: ln.split()[0] for ln in res.stdout.splitlines()
            if ln.startswith(("OK", "FAIL", "SKIP", "WARN")) and ln.split()[1] == "identity"}
    assert rows == {"identity db": "OK", "identity dirs": "FAIL"}, res.stdout
    res = tool(lab, "run", str(plan))
    assert res.returncode == 2, res.stderr
    assert "`target.etc` (/etc/. -> /etc) is the same directory as `source.etc`" in res.stderr
    assert "nothing was changed" in res.stderr and "Traceback" not in res.stderr
    assert tree(lab.upper("oldctl") / "keystone") == old_etc and checksums(lab, "oldctl") == source_db
    assert not lab.query("newctl", "SHOW DATABASES LIKE 'openstack_upgrade'")
    assert not any((lab.upper(h, "varlib") / "openstack-upgrade.claim").exists() for h in ("oldctl", "newctl"))
    assert not (tmp_path / "journal").exists()
    assert vip_holders(lab) == ["oldctl"] and who_answers(lab) == "oldctl"


def test_address_managed_by_keepalived_is_refused(shared_lab, tmp_path):
    """keepalived's config naming the management address, then a running keepalived: `check` and `run`
    refuse (exit 2) naming the file or the daemon; nothing changes on either controller."""
    lab = shared_lab
    plan = _own_plan(lab, tmp_path)
    conf = "/etc/keepalived/keepalived.conf"
    write_inside(lab, "oldctl", conf, f"vrrp_instance VI_1 {{\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
                 .encode())
    old_etc, source_db = tree(lab.upper("oldctl") / "keystone"), checksums(lab, "oldctl")
    daemon = None
    try:
        res = tool(lab, "check", str(plan), "-f", "json")
        assert res.returncode == 2, res.stdout
        failed = [r for r in json.loads(res.stdout) if r["status"] == "FAIL"]
        assert [r["check"] for r in failed] == ["address config"], failed
        assert failed[0]["detail"].startswith(f"{conf} on source:oldctl names {VIP} (management)"), failed
        assert "keepalived/pacemaker" in failed[0]["remedy"], failed
        res = tool(lab, "run", str(plan))
        assert res.returncode == 2, res.stderr
        assert f"{conf} on source:oldctl names {VIP}" in res.stderr and "nothing was changed" in res.stderr, res.stderr
        lab.inside("oldctl", ["rm", "-f", conf])
        # no config names it, but the daemon runs (a process named keepalived, started detached in oldctl)
        daemon = lab.inside("oldctl", ["sh", "-c", "cp /bin/sleep /tmp/keepalived && "
                                                   "setsid /tmp/keepalived 600 >/dev/null 2>&1 & echo $!"])
        res = tool(lab, "run", str(plan))
        assert res.returncode == 2, res.stderr
        assert "keepalived run(s) on source:oldctl" in res.stderr, res.stderr
    finally:
        lab.inside("oldctl", ["rm", "-f", conf])
        if daemon is not None and daemon.stdout.strip():
            lab.inside("oldctl", ["kill", daemon.stdout.strip()])
    assert tree(lab.upper("oldctl") / "keystone") == old_etc and checksums(lab, "oldctl") == source_db
    assert svc_inside(lab, "oldctl", "is-enabled", "keystone").stdout.strip() == "enabled"
    assert not lab.query("newctl", "SHOW DATABASES LIKE 'openstack_upgrade'")
    assert not (tmp_path / "journal").exists()
    assert vip_holders(lab) == ["oldctl"] and who_answers(lab) == "oldctl"


# ---------------------------------------------------------------------- compute hosts
def _overlap(events: list[dict], suffix: str) -> int:
    start = {e["step"]: e["ts"] for e in events if e["kind"] == "intent" and e["step"].endswith(suffix)}
    spans = [(start[e["step"]], e["ts"]) for e in events if e["kind"] == "done" and e["step"].endswith(suffix)]
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def test_twenty_computes_in_parallel_one_broken_alone(lab20):
    lab = lab20
    journal = lab.dir / "journal"
    broken = "compute7"
    conf = "/etc/nova/nova.conf"
    good = lab.inside(broken, ["cat", conf]).stdout
    assert lab.inside(broken, ["sh", "-c", f"echo 'this is [not an ini' > {conf}"]).returncode == 0
    res = tool(lab, "run", str(lab.plan))
    assert res.returncode == 1, res.stderr
    assert f"compute.{broken}.restart failed" in res.stderr and "nova-compute" in res.stderr
    events = journal_events(journal)
    dones = {e["step"] for e in events if e["kind"] == "done"}
    for i in range(1, 21):
        want = {f"compute.compute{i}.restart", f"compute.compute{i}.verify"}
        assert (want <= dones) == (f"compute{i}" != broken), i
    assert _overlap(events, ".restart") >= 5  # pool of 10: the restarts ran side by side
    first = max(e["seq"] for e in events)
    # fixed; resume retries exactly the broken host
    fix = subprocess.run(["nsenter", "-t", str(lab.pid1(broken)), "-a", "-r", "-w", "sh", "-c", f"cat > {conf}"],
                         input=good, text=True, capture_output=True)
    assert fix.returncode == 0, fix.stderr
    res = tool(lab, "resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    later = [e for e in journal_events(journal) if e["seq"] > first and e["kind"] in ("intent", "done")]
    assert {e["machine"] for e in later} == {f"compute.{broken}"}
    assert [e["step"] for e in later if e["kind"] == "done"] == [f"compute.{broken}.restart",
                                                                  f"compute.{broken}.verify"]
    ok = subprocess.run(lab.in_deploy(["ssh", "-F", str(lab.ssh_config), broken, "env", "PYTHONPATH=/run/osu/repo",
                                       "python3", "-m", "scripts.lab.svc", "--root", "/", "status", "nova-compute"]),
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_check_reports_an_address_already_on_the_new_controller(shared_lab):
    """`upgrade check` reads the addresses on both controllers over SSH: on the old one is right,
    on the new one too is a failure (exit 2) naming the address and the host. (On the module's one lab:
    `check` changes nothing, the address it adds is taken away again.)"""
    lab = shared_lab
    res = tool(lab, "check", str(lab.plan))
    assert "address management" in res.stdout and f"{VIP}/24 on" in res.stdout, res.stdout
    assert res.returncode in (0, 1), res.stdout
    subprocess.run(["ip", "-n", lab.ns("newctl"), "addr", "add", f"{VIP}/24", "dev", "eth0"], check=True)
    try:
        res = tool(lab, "check", str(lab.plan))
        assert res.returncode == 2, res.stdout
        assert "already on the new controller" in res.stdout and "newctl" in res.stdout
    finally:
        subprocess.run(["ip", "-n", lab.ns("newctl"), "addr", "del", f"{VIP}/24", "dev", "eth0"], check=True)
    assert vip_holders(lab) == ["oldctl"]


# ---------------------------------------------------------------------- keystone and glance
def test_keystone_and_glance_upgrade_over_ssh_then_revert(shared_lab, tmp_path):
    """glance 2025.2 serving on oldctl (images uploaded through its API at seeding) -> 2026.1 on newctl:
    images and their files carried over SSH, served through the management address; revert gives them back."""
    lab = shared_lab
    plan, journal = _own_plan(lab, tmp_path, lab.glance_plan), tmp_path / "journal"
    seed = lab.state["controller"]["seed"]
    assert len(seed["images"]) >= 2
    images = Path("glance") / "images"
    old_files = tree(lab.upper("oldctl", "varlib") / images)
    assert sorted(old_files) == sorted(i["id"] for i in seed["images"])  # written by glance on oldctl
    sums_before = {db: checksums(lab, "oldctl", db) for db in ("keystone", "glance")}
    assert_images_served(lab, seed)  # oldctl's glance, through the management address
    res = tool(lab, "run", str(plan))
    assert res.returncode == 0, res.stderr
    # the management address moved; a client on compute1 sees the same images through glance 2026.1
    assert vip_holders(lab) == ["newctl"] and who_answers(lab) == "newctl"
    assert keystone_token(lab, "compute1", "admin", seed["admin_password"], "admin") == 201
    assert_images_served(lab, seed)
    assert (lab.upper("newctl", "varlog") / "glance-api" / "glance-api.out").exists()  # 2026.1 served it
    # the image files went host to host: same bytes, modes and owners in newctl's /var/lib overlay
    assert tree(lab.upper("newctl", "varlib") / images) == old_files
    # the old controller was only read: its image files and both its databases are as they were
    assert tree(lab.upper("oldctl", "varlib") / images) == old_files
    assert {db: checksums(lab, "oldctl", db) for db in ("keystone", "glance")} == sums_before
    events = journal_events(journal)
    dones = [e["step"] for e in events if e["kind"] == "done"]
    assert [d for d in dones if d.startswith("keystone.")] == [f"keystone.{s}" for s in KEYSTONE_STEPS]
    assert {f"glance.{s}" for s in ("import_db", "upgrade_schema", "copy_images", "start_target", "verify")} \
        <= set(dones)
    assert dones.index("glance.verify") < dones.index("network.management.remove_old")
    verified = next(json.loads(e["result"]) for e in events if e["step"] == "glance.verify" and e["kind"] == "done")
    assert verified["http_status"] == 200 and verified["url"].startswith(f"http://{lab.hosts['newctl']}:")
    # revert: oldctl serves glance again through the management address, nothing of it changed
    res = tool(lab, "revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert vip_holders(lab) == ["oldctl"] and who_answers(lab) == "oldctl"
    assert_images_served(lab, seed)
    assert tree(lab.upper("oldctl", "varlib") / images) == old_files
    assert {db: checksums(lab, "oldctl", db) for db in ("keystone", "glance")} == sums_before
