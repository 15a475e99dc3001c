"""PID 1 of a lab host: build the host's own view of the filesystem, start sshd, reap orphans.

Started by ``scripts.lab.hosts`` as ``nsenter --net=NETNS unshare --mount --uts --ipc --pid
--fork --mount-proc --propagation private python hostinit.py CONFIG``, so it runs inside the
host's network namespace with fresh mount, UTS, IPC and PID namespaces (lab-recipes §11.3):

- ``/etc``, ``/var/lib`` and ``/var/log`` are overlays over the real directories, their upper
  directories in ``<lab>/hosts/<name>/`` — tests read what the tool wrote there directly;
- ``binds`` of the config (``[source, target]``: a directory several hosts share, as over NFS) are
  bind-mounted over those overlays;
- ``/root`` is fresh (no ``.bashrc`` slowing every SSH command), ``/run`` a tmpfs, ``/tmp`` private;
- ``/run/osu/lab`` holds the host's sshd config and keys, ``/run/osu/repo`` the repository (read
  only: the lab's service supervisor runs from it), ``/run/osu/log`` its logs;
- the paths in the config's ``keep`` list (python installations under the real ``/root``, which
  the project's and the keystone venvs point at) stay visible, read only, at the same place.

It is deliberately not sshd itself: killing sshd (a fault test) must not kill the host's
MariaDB and services. Killing this process (from outside) ends the whole host: the kernel
kills everything in a PID namespace whose init exits. Only the standard library is used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

SSHD = "/usr/sbin/sshd"
OVERLAYS = (("etc", "/etc"), ("varlib", "/var/lib"), ("varlog", "/var/log"))


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, stdin=subprocess.DEVNULL)


def build_view(cfg: dict) -> None:
    home = Path(cfg["dir"])
    socket.sethostname(cfg["name"])
    mount("-t", "sysfs", "sysfs", "/sys")  # /sys/class/net shows this host's interfaces only
    mount("-t", "tmpfs", "-o", "mode=755,size=64m", "osu-run", "/run")
    stage = Path("/run/osu/stage")
    for i, path in enumerate(cfg.get("keep", [])):  # held here before /root and /tmp are covered
        (stage / str(i)).mkdir(parents=True, exist_ok=True)
        mount("-o", "bind,ro", path, str(stage / str(i)))
    for name, target in OVERLAYS:
        upper, work = home / f"{name}.upper", home / f"{name}.work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        mount("-t", "overlay", f"osu-{name}", "-o", f"lowerdir={target},upperdir={upper},workdir={work}", target)
    for source, target in cfg.get("binds", []):  # shared storage (an NFS export in production) over the overlays
        os.makedirs(target, exist_ok=True)
        mount("--bind", source, target)
    root_home = home / "root"
    if not root_home.exists():
        shutil.copytree("/etc/skel", root_home, symlinks=True)
        root_home.chmod(0o700)
    mount("--bind", str(root_home), "/root")
    for d in ("/run/sshd", "/run/osu/lab", "/run/osu/repo", "/run/osu/log"):
        os.makedirs(d, mode=0o755, exist_ok=True)
    mount("--bind", str(home / "lab"), "/run/osu/lab")
    mount("--bind", str(home / "log"), "/run/osu/log")
    mount("-o", "bind,ro", cfg["repo"], "/run/osu/repo")
    mount("--bind", str(home / "tmp"), "/tmp")  # last: the lab directory itself may live under /tmp
    for i, path in enumerate(cfg.get("keep", [])):
        os.makedirs(path, exist_ok=True)
        mount("--move", str(stage / str(i)), path)
    hosts = "127.0.0.1 localhost\n" + "".join(f"{addr} {' '.join(names)}\n" for addr, names in cfg["hosts"])
    Path("/etc/hosts").write_text(hosts)
    Path("/etc/hostname").write_text(cfg["name"] + "\n")


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    build_view(cfg)
    # sshd in its own process, not exec'd: it can die and be restarted while the host lives on
    subprocess.Popen([SSHD, "-D", "-e", "-f", "/run/osu/lab/sshd_config"], stdin=subprocess.DEVNULL,
                     start_new_session=True)
    print(f"host {cfg['name']} ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 ignores signals it has no handler for
    signal.signal(signal.SIGCHLD, lambda *_: None)  # so that pause() wakes up when an orphan exits
    while True:  # the init's job: reap every orphan (services started by the supervisor end up here)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
