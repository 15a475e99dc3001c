"""The multi-host lab: real hosts (network namespaces + sshd) for `upgrade` runs over SSH.

    python -m scripts.lab.hosts up [--computes N] [--no-controllers] [--from SNAPSHOT] DIR
    python -m scripts.lab.hosts down DIR
    python -m scripts.lab.hosts status DIR
    python -m scripts.lab.hosts snapshot DIR SNAPSHOT

Hosts (lab-recipes §11): ``deploy`` (198.51.100.2: where the tool runs, ``ip netns exec``),
``oldctl`` (.11, plus the management VIP .10), ``newctl`` (.12) and ``compute1..N`` (.21 ...),
each a network namespace on one bridge. Every host but ``deploy`` runs ``scripts/lab/hostinit.py``
as PID 1 of its own PID/mount/UTS/IPC namespaces, with copy-on-write ``/etc``, ``/var/lib`` and
``/var/log`` (upper directories in ``DIR/hosts/<host>/``), a fresh ``/root``, private ``/tmp`` and
``/run``, and a real ``sshd`` on port 22 (host key per host, one client key for the lab).

The controllers each run a MariaDB on their own address (datadir in their ``/var/lib/mysql``),
keystone and glance rooted at ``/`` (``scripts/lab/hostside.py``, with the full lab's code:
2025.2 seeded and serving on oldctl — glance's service user and images made through the real
APIs, glance's catalog endpoint on the management address —, 2026.1 installed with an empty
schema and stopped on newctl), driven by the lab supervisor (``scripts/lab/svc.py``) like systemd
would; a ``whoami`` probe on port 8080 says which host answers on an address. Compute hosts run
the ``nova-compute`` and ``neutron-agent`` stand-ins. On a running lab, ``scripts.lab.novahost.setup``
makes placement and nova real on both controllers and nova-compute real on every compute host (and
``scripts.lab.netvolhost.setup`` neutron and cinder), the catalog and the computes on the management address.

``up`` writes ``DIR/plan.toml`` (keystone) and ``DIR/plan-glance.toml`` (keystone and glance),
ready for ``upgrade run`` inside ``deploy``, ``DIR/dump.key`` and ``DIR/ssh/ssh_config``; ``down``
kills each host's PID 1 by its recorded pid (the kernel ends everything in that PID namespace,
mounts included), deletes the namespaces and removes every file ``up`` made. ``--from`` starts
the controllers from a ``snapshot`` of a seeded lab instead of building and seeding them
(seconds instead of a minute).

Only 198.51.100.0/24 and loopback are ever configured, inside namespaces this module creates;
no namespace has a default route.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.lab import netns, schemacache
from scripts.lab.hostplan import plan_text
from scripts.lab.hostside import GLANCE_PORT, UNITS
from scripts.lab.plan import write_key
from scripts.lab.proc import LabError, pid_alive, tail

REPO = Path(__file__).resolve().parents[2]
HOSTINIT = Path(__file__).resolve().with_name("hostinit.py")
STATE = "hostlab.json"
PLAN = "plan.toml"
GLANCE_PLAN = "plan-glance.toml"
#: the plans `up` writes: file -> the services they upgrade
PLANS = {PLAN: ("keystone",), GLANCE_PLAN: ("keystone", "glance")}
NET = "198.51.100"
VIP = f"{NET}.10"
FIXED = {"deploy": f"{NET}.2", "oldctl": f"{NET}.11", "newctl": f"{NET}.12"}
FIRST_COMPUTE = 21
MAX_COMPUTES = 200
CONTROLLERS = ("oldctl", "newctl")
KEYSTONE_PORT = 5000
#: what serves on each controller of a fresh (or restored) lab: the source release on oldctl only
SERVING: dict[str, list[str]] = {"oldctl": list(UNITS), "newctl": []}
#: the commands every controller's venv must hold
VENV_TOOLS = ("keystone-manage", "glance-api", "glance-manage")
DB_PORT = 3306
DB_ADMIN = "osu_admin"
INSIDE_REPO = "/run/osu/repo"
READY_TIMEOUT = 20.0
#: files and directories `up` makes in DIR; `down` removes exactly these
MADE = (STATE, *PLANS, "dump.key", "ssh", "hosts")


# ---------------------------------------------------------------------- the lab as tests see it
@dataclass
class Lab:
    """A running lab, loaded from DIR/hostlab.json: names, addresses and helpers for tests."""

    dir: Path
    state: dict[str, Any]

    @classmethod
    def load(cls, lab: Path) -> Lab:
        lab = Path(lab).resolve()
        try:
            return cls(lab, json.loads((lab / STATE).read_text()))
        except (OSError, ValueError) as exc:
            raise LabError(f"{lab} holds no multi-host lab ({STATE}: {exc})") from None

    def save(self) -> None:
        """Write the state back (0600: what a test adds to it may be secret too)."""
        _save(self.dir, self.state)

    @property
    def prefix(self) -> str:
        return self.state["prefix"]

    @property
    def hosts(self) -> dict[str, str]:
        """host name -> its own (admin) address, deploy included."""
        return {h: v["address"] for h, v in self.state["hosts"].items()}

    @property
    def computes(self) -> list[str]:
        return [h for h in self.state["hosts"] if h.startswith("compute")]

    @property
    def plan(self) -> Path:
        """keystone alone (and the management address, the compute hosts)."""
        return self.dir / PLAN

    @property
    def glance_plan(self) -> Path:
        """keystone and glance (and the management address, the compute hosts)."""
        return self.dir / GLANCE_PLAN

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh" / "ssh_config"

    def ns(self, host: str) -> str:
        return netns.ns_name(self.prefix, host)

    def pid1(self, host: str) -> int:
        pid = self.state["hosts"][host].get("init")
        if not pid or not pid_alive(pid, ("hostinit.py",)):
            raise LabError(f"host {host} is not running (no live PID 1)")
        return int(pid)

    def upper(self, host: str, tree: str = "etc") -> Path:
        """Where the host's writes to /etc (``etc``), /var/lib (``varlib``) or /var/log (``varlog``) land."""
        return self.dir / "hosts" / host / f"{tree}.upper"

    def host_tmp(self, host: str) -> Path:
        """The host's own /tmp, seen from here."""
        return self.dir / "hosts" / host / "tmp"

    def in_deploy(self, argv: list[str]) -> list[str]:
        """*argv* to run as the tool does: inside the deploy host's network namespace."""
        return ["ip", "netns", "exec", self.ns("deploy"), *argv]

    def inside(self, host: str, argv: list[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
        """Run *argv* inside *host* (all its namespaces), as a process of that host."""
        return subprocess.run(["nsenter", "-t", str(self.pid1(host)), "-a", "-r", "-w", *argv],
                              capture_output=True, text=True, timeout=timeout, **kw)

    def helper(self, host: str, action: str, payload: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """``scripts.lab.inhost ACTION`` run in *host*; the payload (passwords too) goes through stdin."""
        with schemacache.lent(self.host_tmp(host)) as cache:  # a setup there loads the run's schemas
            argv = ["env", f"PYTHONPATH={INSIDE_REPO}", *cache, _host_python(), "-m", "scripts.lab.inhost", action]
            res = self.inside(host, argv, timeout=timeout, input=json.dumps(payload))
        if res.returncode != 0:
            raise LabError(f"lab helper `{action}` on {host} failed (rc {res.returncode}):\n"
                           f"{res.stderr.strip()[-3000:]}")
        return json.loads(res.stdout or "{}")

    def addresses(self, host: str) -> list[str]:
        return netns.addresses(self.prefix, host)

    def mac(self, host: str) -> str:
        return netns.mac(self.prefix, host)

    def set_link(self, host: str, up: bool) -> None:
        netns.set_link(self.prefix, host, up)

    def sshd_pids(self, host: str) -> list[int]:
        """Every sshd process of *host* (the listener and one per connection), by the host's PID namespace."""
        pid1 = self.pid1(host)
        mine = os.readlink(f"/proc/{pid1}/ns/pid")
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == pid1:
                continue
            try:
                if os.readlink(entry / "ns" / "pid") != mine:
                    continue
                argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if argv0.startswith(b"sshd") or argv0 == b"/usr/sbin/sshd":
                out.append(int(entry.name))
        return out

    def kill_sshd(self, host: str) -> list[int]:
        """A dead sshd on *host*: the listener and every session die (by pid); MariaDB and services live on."""
        pids = self.sshd_pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def start_sshd(self, host: str) -> None:
        res = self.inside(host, ["/usr/sbin/sshd", "-f", "/run/osu/lab/sshd_config", "-E", "/run/osu/log/sshd.log"])
        if res.returncode != 0:
            raise LabError(f"sshd on {host} did not start: {res.stderr.strip()}")
        _wait_listening(self.pid1(host), 22, host, self.dir / "hosts" / host / "log" / "sshd.log")

    def db_socket(self, host: str) -> str:
        """The unix socket of the host's MariaDB, reachable from outside through its PID 1's root."""
        return f"/proc/{self.pid1(host)}/root/var/lib/mysql/run/mysqld.sock"

    def query(self, host: str, sql: str, args: Any = None, db: str | None = None) -> list[tuple]:
        from services.infra.mysql import Connection

        conn = Connection(unix_socket=self.db_socket(host), user="root", password="", database=db,
                          autocommit=True, charset="utf8mb4", connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()


def _host_python() -> str:
    """The project's python as seen inside a host (the repository is bind-mounted at /run/osu/repo)."""
    exe = Path(sys.executable)
    try:
        return str(Path(INSIDE_REPO) / exe.relative_to(REPO))
    except ValueError:
        return str(exe)


def _prefix(lab: Path) -> str:
    """Namespace names unique per lab directory, so labs and test runs never collide."""
    return "osu" + hashlib.sha256(str(lab).encode()).hexdigest()[:6] + "-"


def _save(lab: Path, state: dict[str, Any]) -> None:
    """Atomic, 0600: the state holds DB and keystone passwords."""
    tmp = lab / (STATE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(lab / STATE)


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       check=True, capture_output=True)


SSHD_CONFIG = """\
Port 22
ListenAddress 0.0.0.0
HostKey /run/osu/lab/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile /run/osu/lab/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
Subsystem sftp /usr/lib/openssh/sftp-server
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 64
ClientAliveInterval 5
LogLevel VERBOSE
"""


def _ssh_config(lab: Path, hosts: dict[str, str]) -> str:
    """The client side (lab-recipes §11.5): a private config, known_hosts pre-seeded, no ~/.ssh read."""
    ssh = lab / "ssh"
    text = ("# ssh client config of the multi-host lab (written by scripts/lab/hosts.py)\n"
            "Host *\n  User root\n"
            f"  IdentityFile {ssh / 'id_ed25519'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {ssh / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n  LogLevel ERROR\n  ConnectTimeout 5\n"
            "  KexAlgorithms curve25519-sha256\n")
    for h, addr in hosts.items():
        if h != "deploy":
            text += f"Host {h}\n  HostName {addr}\n  HostKeyAlias {h}\n"
    return text


def _host_addresses(computes: int) -> dict[str, str]:
    if not 0 <= computes <= MAX_COMPUTES:
        raise LabError(f"--computes {computes}: between 0 and {MAX_COMPUTES}")
    hosts = dict(FIXED)
    for i in range(1, computes + 1):
        hosts[f"compute{i}"] = f"{NET}.{FIRST_COMPUTE + i - 1}"
    return hosts


def _prepare_host(lab: Path, h: str, hosts: dict[str, str], keep: list[str]) -> None:
    """The host's directories, host key, sshd config and init config (before it starts)."""
    home = lab / "hosts" / h
    for d in ("lab", "log", "tmp", *(f"{t}.{k}" for t in ("etc", "varlib", "varlog") for k in ("upper", "work"))):
        (home / d).mkdir(parents=True, exist_ok=True)
    (home / "lab").chmod(0o700)
    (home / "tmp").chmod(0o1777)
    _keygen(home / "lab" / "ssh_host_ed25519_key", f"host-{h}")
    shutil.copyfile(lab / "ssh" / "id_ed25519.pub", home / "lab" / "authorized_keys")
    (home / "lab" / "sshd_config").write_text(SSHD_CONFIG)
    names = [[addr, [name]] for name, addr in hosts.items()] + [[VIP, ["controller"]]]
    (home / "lab" / "init.json").write_text(json.dumps({"name": h, "dir": str(home), "repo": str(REPO),
                                                         "hosts": names, "keep": keep}))


def _hidden_pythons(venv_root: Path) -> list[str]:
    """Python installations that a host's fresh /root or private /tmp would hide (pyenv lives in /root):
    the project's venv and the keystone venvs point at them."""
    homes = {Path(sys.base_prefix).resolve()}
    for cfg in venv_root.glob("*/pyvenv.cfg"):
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                homes.add(Path(value.strip()).resolve().parent)
    return sorted(str(p) for p in homes if p.is_relative_to("/root") or p.is_relative_to("/tmp"))


def _listening(pid: int, port: int) -> bool:
    """A TCP socket in LISTEN on *port* in the network namespace of *pid* (read from outside)."""
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1].endswith(f":{port:04X}") and f[3] == "0A" for f in (line.split() for line in lines))


def _wait_listening(pid: int, port: int, host: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if _listening(pid, port):
            return
        if not pid_alive(pid):
            break
        time.sleep(0.02)
    raise LabError(f"sshd on {host} is not listening after {READY_TIMEOUT:.0f} s; {log}:\n{tail(log)}")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _launch(lab: Path, state: dict[str, Any], h: str) -> dict[str, int]:
    """Start the host: nsenter into its netns, unshare the rest; hostinit.py becomes PID 1 and starts sshd."""
    home = lab / "hosts" / h
    log = home / "log" / "init.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["nsenter", f"--net={netns.NETNS_DIR / netns.ns_name(state['prefix'], h)}", "unshare", "--mount",
             "--uts", "--ipc", "--pid", "--fork", "--mount-proc", "--propagation", "private", sys.executable,
             str(HOSTINIT), str(home / "lab" / "init.json")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    init = 0
    while time.monotonic() < deadline and not init:
        if proc.poll() is not None:
            raise LabError(f"host {h} exited during start (rc {proc.returncode}); {log}:\n{tail(log)}")
        kids = _children(proc.pid)
        init = kids[0] if kids else 0
        time.sleep(0.005)
    if not init:
        raise LabError(f"host {h}: no PID 1 after {READY_TIMEOUT:.0f} s; {log}:\n{tail(log)}")
    _wait_listening(init, 22, h, log)
    return {"launcher": proc.pid, "init": init}


def _known_hosts(lab: Path, hosts: dict[str, str]) -> None:
    """Pinned from the generated host keys: strict checking from the first connection on."""
    lines = []
    for h, addr in hosts.items():
        if h == "deploy":
            continue
        key = (lab / "hosts" / h / "lab" / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{h},{addr} {key[0]} {key[1]}\n")
    (lab / "ssh" / "known_hosts").write_text("".join(lines))


# ---------------------------------------------------------------------- up / down / status
def up(lab: Path, computes: int = 1, controllers: bool = True, snapshot_dir: Path | None = None,
       old: str = "2025.2", new: str = "2026.1", venv_root: Path | None = None) -> dict[str, Any]:
    """Create the network, start every host, build (or restore) the controllers, start the compute agents."""
    from scripts.lab.controller import DEFAULT_VENV_ROOT

    venv_root = Path(venv_root or DEFAULT_VENV_ROOT)
    lab = Path(lab).resolve()
    lab.mkdir(parents=True, exist_ok=True)
    if (lab / STATE).exists():
        raise LabError(f"{lab} already holds a multi-host lab; run `down {lab}` first")
    if os.geteuid() != 0:
        raise LabError("the multi-host lab needs root (network namespaces, mounts, sshd)")
    for tool in ("ip", "nsenter", "unshare", "ssh", "ssh-keygen", "/usr/sbin/sshd", "arping", "ping"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed — run scripts/setup-system")
    if controllers and snapshot_dir is None:
        for rel in (old, new):
            missing = [c for c in VENV_TOOLS if not (venv_root / rel / "bin" / c).exists()]
            if missing:
                raise LabError(f"venv {venv_root / rel} lacks {', '.join(missing)}; build it with: make openstack")
    t0 = time.monotonic()
    hosts = _host_addresses(computes)
    state: dict[str, Any] = {"prefix": _prefix(lab), "vip": VIP, "complete": False, "controllers": controllers,
                             "hosts": {h: {"address": a} for h, a in hosts.items()}, "timings": {}}
    _save(lab, state)  # first, so that `down` can clean up after a failed `up`
    try:
        _up(lab, state, hosts, controllers, snapshot_dir, old, new, venv_root)
    except BaseException:
        with contextlib.suppress(Exception):
            down(lab)
        raise
    state["timings"]["total"] = round(time.monotonic() - t0, 2)
    state["complete"] = True
    _save(lab, state)
    return status(lab)


def _up(lab: Path, state: dict[str, Any], hosts: dict[str, str], controllers: bool, snapshot_dir: Path | None,
        old: str, new: str, venv_root: Path) -> None:
    timings = state["timings"]
    t = time.monotonic()
    (lab / "ssh").mkdir(mode=0o700, exist_ok=True)
    _keygen(lab / "ssh" / "id_ed25519", "osu-lab-client")
    served = [h for h in hosts if h != "deploy"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        keep = _hidden_pythons(venv_root)
        list(pool.map(lambda h: _prepare_host(lab, h, hosts, keep), served))
    _known_hosts(lab, hosts)
    (lab / "ssh" / "ssh_config").write_text(_ssh_config(lab, hosts))
    timings["keys"] = round(time.monotonic() - t, 2)
    if snapshot_dir is not None:
        _restore_snapshot(lab, state, Path(snapshot_dir))
    t = time.monotonic()
    netns.create(state["prefix"], hosts, extra={"oldctl": [VIP]})
    state["network_ready"] = True
    _save(lab, state)
    timings["network"] = round(time.monotonic() - t, 2)
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for h, pids in zip(served, pool.map(lambda h: _launch(lab, state, h), served), strict=True):
            state["hosts"][h].update(pids)
    _save(lab, state)
    timings["hosts"] = round(time.monotonic() - t, 2)
    info = Lab(lab, state)
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = [pool.submit(info.helper, h, "compute", {"name": h}) for h in info.computes]
        if not controllers:
            jobs += [pool.submit(info.helper, h, "probe", {}) for h in CONTROLLERS]
        else:
            if snapshot_dir is None:
                _build_controllers(info, old, new, venv_root)
            else:
                for h in CONTROLLERS:
                    info.helper(h, "start", {"units": SERVING[h], "address": hosts[h]})
        for job in jobs:
            job.result()
    timings["services"] = round(time.monotonic() - t, 2)
    if controllers:
        _write_plan(info)


def _build_controllers(info: Lab, old: str, new: str, venv_root: Path) -> None:
    state = info.state
    ctl = state.setdefault("controller", {})
    ctl.update({"old": old, "new": new, "venv_root": str(venv_root), "admin_password": secrets.token_urlsafe(12),
                "glance_password": secrets.token_urlsafe(12),
                "db_admin_password": {h: secrets.token_urlsafe(16) for h in CONTROLLERS}})
    _save(info.dir, state)
    jobs = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for h, rel in (("oldctl", old), ("newctl", new)):
            jobs[h] = pool.submit(info.helper, h, "controller", {
                "release": rel, "venv_root": str(venv_root), "address": info.hosts[h],
                "db_admin_password": ctl["db_admin_password"][h], "admin_password": ctl["admin_password"],
                "glance_password": ctl["glance_password"], "glance_url": f"http://{VIP}:{GLANCE_PORT}",
                "seed": h == "oldctl"})
        ctl["seed"] = jobs["oldctl"].result()["seed"]
        jobs["newctl"].result()
    _save(info.dir, state)


def _write_plan(info: Lab) -> None:
    """Every plan of ``PLANS``, 0600: the DB admin passwords are inline."""
    write_key(info.dir / "dump.key")
    for name, services in PLANS.items():
        fd = os.open(info.dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(plan_text(info, services=services))


# ---------------------------------------------------------------------- snapshots
SNAPSHOT_TREES = ("etc", "varlib", "varlog")


def snapshot(lab: Path, dest: Path) -> Path:
    """Freeze the controllers (services stopped cleanly, then restarted) into *dest* for ``up --from``."""
    info = Lab.load(lab)
    ctl = info.state.get("controller")
    if not ctl:
        raise LabError(f"{info.dir}: a lab without controllers has nothing to snapshot")
    dest = Path(dest).resolve()
    if dest.exists():
        raise LabError(f"{dest} exists; a snapshot goes into a new directory")
    running = {h: info.helper(h, "stop", {})["running"] for h in CONTROLLERS}
    try:
        for h in CONTROLLERS:
            for tree in SNAPSHOT_TREES:
                (dest / h).mkdir(parents=True, exist_ok=True)
                subprocess.run(["cp", "-a", str(info.upper(h, tree)), str(dest / h / f"{tree}.upper")], check=True)
        (dest / "controller.json").write_text(json.dumps(ctl, indent=2, sort_keys=True))
        (dest / "controller.json").chmod(0o600)
    finally:
        for h in CONTROLLERS:
            info.helper(h, "start", {"units": running[h], "address": info.hosts[h]})
    return dest


def _restore_snapshot(lab: Path, state: dict[str, Any], src: Path) -> None:
    """Upper directories are filled before the overlays are mounted (changing them later is undefined)."""
    try:
        state["controller"] = json.loads((src / "controller.json").read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{src} is not a lab snapshot: {exc}") from None
    for h in CONTROLLERS:
        for tree in SNAPSHOT_TREES:
            target = lab / "hosts" / h / f"{tree}.upper"
            shutil.rmtree(target)
            subprocess.run(["cp", "-a", str(src / h / f"{tree}.upper"), str(target)], check=True)
    _save(lab, state)


def down(lab: Path) -> list[str]:
    """Kill every host (by its recorded PID 1), delete the namespaces, remove the files `up` made."""
    lab = Path(lab).resolve()
    info = Lab.load(lab)
    done: list[str] = []
    launchers = []
    for h, v in info.state["hosts"].items():
        init, launcher = v.get("init"), v.get("launcher")
        if init and pid_alive(init, ("hostinit.py", str(lab / "hosts" / h / "lab" / "init.json"))):
            os.kill(init, signal.SIGKILL)  # PID 1 of the host: the kernel kills the rest of its namespace
            done.append(f"host {h}")
        if launcher and pid_alive(launcher, ("unshare", str(HOSTINIT))):
            launchers.append(launcher)
    deadline = time.monotonic() + 30
    for pid in launchers:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    done += [f"netns {n}" for n in netns.destroy(info.prefix, list(info.state["hosts"]))]
    for name in MADE:
        p = lab / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    with contextlib.suppress(OSError):
        lab.rmdir()  # only if empty: a journal or anything else put there stays
    return done


def status(lab: Path) -> dict[str, Any]:
    info = Lab.load(lab)
    hosts: dict[str, Any] = {}
    for h, addr in info.hosts.items():
        entry: dict[str, Any] = {"address": addr, "netns": info.ns(h)}
        if h != "deploy":
            init = info.state["hosts"][h].get("init")
            alive = bool(init) and pid_alive(init, ("hostinit.py",))
            entry.update({"pid1": init, "running": alive, "sshd": alive and _listening(init, 22)})
        if netns.exists(info.ns(h)):
            entry["addresses"] = info.addresses(h)
        hosts[h] = entry
    return {"dir": str(info.dir), "complete": info.state.get("complete", False), "vip": info.state["vip"],
            "plan": str(info.plan) if info.plan.exists() else None, "ssh_config": str(info.ssh_config),
            "run": f"ip netns exec {info.ns('deploy')} {REPO / '.venv/bin/upgrade'} run {info.plan}",
            "hosts": hosts, "timings": info.state.get("timings", {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lab.hosts", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="create the hosts, start them, write the plan; prints a JSON summary")
    p_up.add_argument("dir", type=Path)
    p_up.add_argument("--computes", type=int, default=1)
    p_up.add_argument("--no-controllers", dest="controllers", action="store_false",
                      help="hosts and compute agents only: no MariaDB, no keystone or glance, no plan")
    p_up.add_argument("--from", dest="snapshot", type=Path, help="controllers from a `snapshot` (fast)")
    p_up.add_argument("--old", default="2025.2")
    p_up.add_argument("--new", default="2026.1")
    p_up.add_argument("--venv-root", type=Path)
    for name, text in (("down", "kill every host, delete the namespaces and the lab's files"),
                       ("status", "hosts, addresses, processes")):
        sub.add_parser(name, help=text).add_argument("dir", type=Path)
    p_snap = sub.add_parser("snapshot", help="save the controllers' state for `up --from`")
    p_snap.add_argument("dir", type=Path)
    p_snap.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(json.dumps(up(args.dir, args.computes, args.controllers, args.snapshot, args.old, args.new,
                                args.venv_root), indent=2))
        elif args.command == "down":
            print(f"lab down: {', '.join(down(args.dir)) or 'nothing was running'}", file=sys.stderr)
        elif args.command == "status":
            print(json.dumps(status(args.dir), indent=2))
        elif args.command == "snapshot":
            print(snapshot(args.dir, args.dest))
    except LabError as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
