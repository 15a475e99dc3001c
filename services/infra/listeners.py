"""The TCP listeners of a controller: where a service's API listened before its stop, so that a revert can
wait until the old controller listens there again.

A unit that has been started is not yet serving: neutron-server or cinder-api bind their ports seconds after
``systemctl start`` returns. The source's stop records the addresses listening on the port the service's own
config names (``Listen``: neutron's ``bind_port``, cinder's ``osapi_volume_listen_port`` ...), and ``upgrade
revert`` ends only when each listens again (``upgrade/serving.py``). By port, not by what closed during the
stop: another process of the host may close a socket at that moment. Read from ``/proc/net/tcp{,6}`` of the
host (its network namespace): every Linux has it, and no tool's output format is parsed.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from services.infra.config import get_value
from services.infra.host import Host

#: ``st`` of a listening socket in /proc/net/tcp
_LISTEN = "0A"
#: how often a wait reads the listeners again
POLL = 0.5


@dataclass(frozen=True)
class Listen:
    """A port a service's API listens on: the option of its config (a file under the controller's ``etc``)
    that sets it, and the release's default."""

    file: str
    section: str
    option: str
    default: int

    def port(self, side: Any) -> int | None:
        """The port the source's config sets (the default when unset; None if the file is absent)."""
        path = f"{side.etc.rstrip('/')}/{self.file}"
        if not side.host.exists(path):
            return None
        raw = (get_value(side.host.read_bytes(path), self.section, self.option) or "").strip()
        return int(raw) if raw.isdigit() else self.default


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def serving(side: Any, listens: tuple[Listen, ...]) -> set[str] | None:
    """The addresses listening now on the ports *listens* name in *side*'s config (None: unreadable)."""
    ports = {p for p in (lst.port(side) for lst in listens) if p is not None}
    now = listening(side.host) if ports else set()
    return None if now is None else {a for a in now if port_of(a) in ports}


def _address(hexed: str) -> str:
    """``0100007F:1F90`` (the kernel's byte order per 32-bit word) as ``127.0.0.1:8080``; IPv6 in brackets."""
    host, port = hexed.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    return f"{ip}:{int(port, 16)}" if ip.version == 4 else f"[{ip}]:{int(port, 16)}"


def parse(text: str) -> set[str]:
    """The listening addresses of /proc/net/tcp and tcp6 text (header lines skipped)."""
    out = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == _LISTEN and ":" in fields[1]:
            out.add(_address(fields[1]))
    return out


def listening(host: Host) -> set[str] | None:
    """The host's listening TCP addresses; None when they cannot be read (the stop goes on without them)."""
    res = host.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=60)
    return parse(res.stdout) if res.rc == 0 or res.stdout else None


def wait_listening(host: Host, wanted: set[str], timeout: float) -> set[str]:
    """Poll until every address of *wanted* listens on *host*; returns those that still do not (empty: all)."""
    deadline = time.monotonic() + timeout
    while True:
        now = listening(host)
        missing = set(wanted) - (now or set())
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(POLL)
