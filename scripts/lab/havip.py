"""keepalived and HAProxy of an HA lab controller, run inside a lab host (``scripts.lab.hanode``).

keepalived holds the management VIP by VRRP with unicast peers on the lab's bridge (no
multicast needed; only 198.51.100.0/24 addresses appear in its config); the first controller
has the highest priority and starts as MASTER, the others as BACKUP. HAProxy on every
controller binds the VIP (``net.ipv4.ip_nonlocal_bind=1`` in the host's namespace, so it
listens whether or not its host holds the VIP) and forwards: the database port to the
Galera nodes (one active, the others ``backup``: writes go to one node, as production setups
do to avoid certification conflicts), keystone's, glance's, placement's, nova's, neutron's and cinder's ports
to the API of
every controller (round robin, health-checked) and AMQP to every node of the RabbitMQ cluster, adding
``X-Lab-Haproxy`` (which host's HAProxy answered) and ``X-Lab-Backend`` (which controller served)
to each HTTP response.

Both run as plain background processes (``--dont-fork`` and ``-db``), pid files in the host's
``/run``, logs in its ``/var/log``; the configs are written on every controller, the new side's
processes only started when an upgrade moves the VIP to it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from scripts.lab.proc import LabError, pid_alive, read_pid, tail, terminate, write_pid

KEEPALIVED_CONF = Path("/etc/keepalived/keepalived.conf")
HAPROXY_CFG = Path("/etc/haproxy/haproxy.cfg")
RUN = Path("/run/osu-ha")
LOG = Path("/var/log/osu-ha")
VRID = 51
START_TIMEOUT = 20.0
#: process name -> (argv, what its cmdline must hold)
PROGRAMS: dict[str, tuple[list[str], str]] = {
    "keepalived": (["/usr/sbin/keepalived", "--dont-fork", "--log-console", "--vrrp", "-f", str(KEEPALIVED_CONF),
                    "-p", str(RUN / "keepalived.pid"), "-r", str(RUN / "vrrp.pid")], "keepalived"),
    "haproxy": (["/usr/sbin/haproxy", "-db", "-f", str(HAPROXY_CFG)], "haproxy"),
}


def keepalived_conf(name: str, address: str, peers: list[str], vip: str, prefixlen: int, priority: int,
                    master: bool) -> str:
    others = "".join(f"    {p}\n" for p in peers if p != address)
    return (f"# keepalived of HA lab controller {name} (written by scripts/lab/havip.py)\n"
            f"global_defs {{\n  router_id {name}\n  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 2\n}}\n"
            "vrrp_instance management {\n"
            f"  state {'MASTER' if master else 'BACKUP'}\n  interface eth0\n  virtual_router_id {VRID}\n"
            f"  priority {priority}\n  advert_int 1\n"
            f"  unicast_src_ip {address}\n  unicast_peer {{\n{others}  }}\n"
            f"  virtual_ipaddress {{\n    {vip}/{prefixlen} dev eth0\n  }}\n}}\n")


def _http_listen(name: str, service: str, vip: str, port: int, backends: dict[str, str], backend_port: int,
                 check: str) -> str:
    """An API on the VIP: round robin over every controller's *backend_port*, health-checked by GET *check*,
    the two ``X-Lab-*`` headers added."""
    servers = "".join(f"  server {n} {a}:{backend_port} check inter 1s rise 1 fall 1\n" for n, a in backends.items())
    return (f"listen {service}\n  bind {vip}:{port}\n  mode http\n  balance roundrobin\n"
            f"  option httpchk GET {check}\n"
            f"  http-response set-header X-Lab-Haproxy {name}\n"
            "  http-response set-header X-Lab-Backend %s\n"
            f"{servers}")


def haproxy_cfg(name: str, vip: str, backends: dict[str, str], db_port: int, api_port: int,
                keystone_port: int, glance: tuple[int, int] | None = None, amqp: tuple[int, int] | None = None,
                apis: list[tuple[str, int, int, str]] = ()) -> str:
    """*backends*: controller name -> its own address (every side's three); *glance* and *amqp*: (port on the
    VIP, port on each controller) of glance-api and of the RabbitMQ cluster's AMQP (any node serves: one
    cluster), where the lab has them; *apis*: more APIs the same way as glance's (placement, nova: name, port
    on the VIP, port on each controller, the path of the health check)."""
    db_servers = "".join(f"  server {n} {a}:{db_port} check inter 1s rise 1 fall 2{' backup' if i else ''}\n"
                         for i, (n, a) in enumerate(backends.items()))
    text = (f"# HAProxy of HA lab controller {name} (written by scripts/lab/havip.py)\n"
            "global\n  maxconn 512\n"
            "defaults\n  timeout connect 3s\n  timeout client 10m\n  timeout server 10m\n  retries 3\n"
            "  option redispatch\n"
            f"listen galera\n  bind {vip}:{db_port}\n  mode tcp\n  option tcpka\n{db_servers}"
            + _http_listen(name, "keystone", vip, api_port, backends, keystone_port, "/v3"))
    if glance:
        text += _http_listen(name, "glance", vip, glance[0], backends, glance[1], "/versions")
    for service, port, backend_port, check in apis:
        text += _http_listen(name, service, vip, port, backends, backend_port, check)
    if amqp:
        text += (f"listen rabbitmq\n  bind {vip}:{amqp[0]}\n  mode tcp\n  option tcpka\n  balance roundrobin\n"
                 + "".join(f"  server {n} {a}:{amqp[1]} check inter 1s rise 1 fall 2\n" for n, a in backends.items()))
    return text


def _pair(ports: list[int] | None) -> tuple[int, int] | None:
    return (int(ports[0]), int(ports[1])) if ports else None


def write(p: dict) -> None:
    """Both configs of this controller (payload from ``scripts.lab.ha``)."""
    for path, text in ((KEEPALIVED_CONF, keepalived_conf(p["name"], p["address"], p["peers"], p["vip"],
                                                         p["prefixlen"], p["priority"], p["master"])),
                       (HAPROXY_CFG, haproxy_cfg(p["name"], p["vip"], p["backends"], p["db_port"], p["api_port"],
                                                 p["keystone_port"], _pair(p.get("glance")), _pair(p.get("amqp")),
                                                 [tuple(a) for a in p.get("apis", ())]))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["haproxy", "-c", "-q", "-f", str(HAPROXY_CFG)], check=True, capture_output=True)


def pid(program: str) -> int | None:
    found = read_pid(RUN / f"{program}.lab.pid")
    return found if pid_alive(found, (PROGRAMS[program][1],)) else None


def _ready(program: str, port: int) -> bool:
    """keepalived: its VRRP process wrote its pid file; HAProxy: it listens on *port* (in this host's network)."""
    if program == "keepalived":
        return (RUN / "vrrp.pid").exists()
    lines = Path("/proc/self/net/tcp").read_text().splitlines()[1:]
    return any(f[1].endswith(f":{port:04X}") and f[3] == "0A" for f in (line.split() for line in lines))


def start(program: str, port: int = 0) -> int:
    """Launch *program* detached (a child of the host's PID 1 once this helper exits) and wait until it is
    ready (HAProxy: listening on *port*); no-op if it runs."""
    running = pid(program)
    if running:
        return running
    RUN.mkdir(parents=True, exist_ok=True)
    LOG.mkdir(parents=True, exist_ok=True)
    log = LOG / f"{program}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(PROGRAMS[program][0], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    write_pid(RUN / f"{program}.lab.pid", proc.pid)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"{program} exited with rc {proc.returncode} at start; {log}:\n{tail(log)}")
        if _ready(program, port):
            return proc.pid
        time.sleep(0.05)
    terminate(proc.pid, 5)
    raise LabError(f"{program} not ready after {START_TIMEOUT:.0f} s; {log}:\n{tail(log)}")


def stop(program: str) -> bool:
    """Stop *program* (SIGTERM: keepalived gives the VIP up with a priority-0 advert); True if it ran."""
    running = pid(program)
    if running:
        terminate(running, START_TIMEOUT)
    (RUN / f"{program}.lab.pid").unlink(missing_ok=True)
    return bool(running)
