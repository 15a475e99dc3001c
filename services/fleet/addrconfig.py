"""Where the old controller keeps a moved address across a reboot, and who else manages it.

``ip addr del`` removes the address from the running interface only: if the old controller's network
configuration still names it, the next boot (or ``ifup``) puts it back and two hosts answer for it.
So the switchover also removes it from that configuration, the way the layout keeps it:

- ifupdown (``/etc/network/interfaces`` and ``interfaces.d/*``): a line ``up|post-up ... ip addr add
  ADDRESS ...`` (and its ``down`` partner) is commented out; an alias stanza (``iface eth0:1 inet static``
  with ``address ADDRESS``) is commented out whole, with its ``auto``/``allow-hotplug`` line. The file's
  bytes before the change are kept in the journal; undo writes them back.
- netplan, ifcfg and NetworkManager files, or any other form: refused up front, naming the file to edit
  (the address stays on the interface until the switchover moves it, so editing first is safe).

An address that keepalived or pacemaker manages is refused until the tool supports them: they would
put it back (or fight the new controller for it). Found by their configuration files naming the
address and by their running daemons. Everything here but :func:`persist_removal` only reads.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Protocol

from services.infra.host import Host, check

MARK = "#osu-removed# "
IFUPDOWN = ("/etc/network/interfaces", "/etc/network/interfaces.d/*")
#: files the tool cannot edit for the operator: the address must leave them before the run
OTHER_CONFIGS = ("/etc/netplan/*.yaml", "/etc/netplan/*.yml", "/etc/sysconfig/network-scripts/ifcfg-*",
                 "/etc/sysconfig/network/ifcfg-*", "/etc/NetworkManager/system-connections/*",
                 "/etc/systemd/network/*.network")
HA_CONFIGS = ("/etc/keepalived/keepalived.conf", "/etc/keepalived/conf.d/*", "/etc/corosync/corosync.conf",
              "/var/lib/pacemaker/cib/cib.xml")
HA_DAEMONS = ("keepalived", "pacemakerd", "corosync")
_HOOK = re.compile(rb"^\s*(pre-up|up|post-up|down|pre-down|post-down)\s")
_STANZA = re.compile(rb"^\s*(iface|mapping|auto|allow-\S+|source|source-directory)\b")


class AddressMove(Protocol):
    """What this module reads of ``services.fleet.network.AddressMove`` (which imports this module)."""

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def ip(self) -> str: ...


def _mentions(ip: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![0-9.])" + re.escape(ip.encode()) + rb"(?![0-9])")


def files_naming(host: Host, ip: str, patterns: tuple[str, ...]) -> list[str]:
    """The existing files among *patterns* (globs) on *host* that name *ip*."""
    script = "for f in " + " ".join(patterns) + "; do [ -f \"$f\" ] && grep -lwF -- \"$1\" \"$f\"; done; true"
    res = check(host, ["sh", "-c", script, "sh", ip], f"looking for {ip} in network configuration", timeout=60)
    return [f for f in res.stdout.splitlines() if f and _mentions(ip).search(host.read_bytes(f))]


def ha_daemons(host: Host) -> list[str]:
    """keepalived, pacemakerd or corosync processes running on *host*."""
    res = check(host, ["ps", "-eo", "comm="], "listing the processes", timeout=60)
    return sorted({c.strip() for c in res.stdout.splitlines()} & set(HA_DAEMONS))


@dataclass(frozen=True)
class Edit:
    """What removing an address from one ifupdown file changes: the new bytes and the lines commented out."""

    path: str
    before: bytes
    after: bytes
    lines: tuple[int, ...]


def ifupdown_edit(path: str, data: bytes, move: AddressMove) -> Edit | str:
    """The edit that drops *move* from an ifupdown file, or why it cannot be done safely (a string)."""
    lines = data.splitlines(keepends=True)
    hit = _mentions(move.ip)
    out = set()
    for i, line in enumerate(lines):
        if not hit.search(line) or line.lstrip().startswith(b"#"):
            continue
        if _HOOK.match(line):
            out.add(i)
            continue
        if re.match(rb"^\s*address\s", line):
            start = next((j for j in range(i, -1, -1) if re.match(rb"^\s*iface\s", lines[j])), None)
            name = lines[start].split()[1] if start is not None else b""
            if b":" not in name:
                return (f"{path} line {i + 1} makes {move.address} the primary address of "
                        f"{name.decode() or 'an interface'}, not an alias the tool can drop")
            end = next((j for j in range(start + 1, len(lines)) if _STANZA.match(lines[j])), len(lines))
            out.update(j for j in range(start, end) if lines[j].strip() and not lines[j].lstrip().startswith(b"#"))
            out.update(j for j, ln in enumerate(lines) if re.match(rb"^\s*(auto|allow-\S+)\s+" + re.escape(name)
                                                                     + rb"\s*$", ln))
            continue
        return f"{path} line {i + 1} names {move.ip} in a form the tool does not edit"
    new = [MARK.encode() + ln if i in out else ln for i, ln in enumerate(lines)]
    return Edit(path, data, b"".join(new), tuple(sorted(i + 1 for i in out)))


def problems(host: Host, moves: tuple[AddressMove, ...]) -> list[tuple[str, str]]:
    """Why the switchover of *moves* cannot be made to last on the old controller *host*, as
    (problem, fix) pairs; empty when it can. Read-only."""
    out = []
    daemons = ha_daemons(host)
    if daemons:
        out.append((f"{', '.join(daemons)} run(s) on {host.name}: an HA manager may own the moved addresses and put "
                    "them back", "this version does not move addresses an HA cluster manages: move them with "
                              "keepalived/pacemaker itself, and leave them out of [network] addresses"))
    for m in moves:
        for f in files_naming(host, m.ip, HA_CONFIGS):
            out.append((f"{f} on {host.name} names {m.ip} ({m.name}): keepalived or pacemaker manages it",
                        f"move {m.ip} with keepalived/pacemaker itself, and leave it out of [network] addresses"))
        for f in files_naming(host, m.ip, OTHER_CONFIGS):
            out.append((f"{f} on {host.name} configures {m.ip} ({m.name}): the old controller would take the "
                        "address back at its next boot", f"remove {m.ip} from {f} on {host.name} (it stays on "
                                                         f"{m.device} until the switchover moves it), then run again"))
        for f in files_naming(host, m.ip, IFUPDOWN):
            edit = ifupdown_edit(f, host.read_bytes(f), m)
            if isinstance(edit, str):
                out.append((f"{edit} on {host.name}: the old controller would take it back at its next boot",
                            f"remove {m.ip} from {f} on {host.name} (it stays on {m.device} until the "
                            "switchover moves it), then run again"))
    return out


def _mode(host: Host, path: str) -> int:
    return int(check(host, ["stat", "-c", "%a", path], f"reading the mode of {path}", timeout=60).stdout.strip(), 8)


def persist_removal(host: Host, move: AddressMove) -> list[dict]:
    """Drop *move* from the ifupdown files of *host*; per file the bytes before (base64, for undo) and
    the lines commented out. Files already edited (a resumed step) are left as they are."""
    done = []
    for f in files_naming(host, move.ip, IFUPDOWN):
        data = host.read_bytes(f)
        # a step killed after its write runs again: the file as it was is the one without the tool's marks
        before = unmarked(data)
        edit = ifupdown_edit(f, before, move)
        if isinstance(edit, str):
            raise ValueError(edit)
        if edit.after != data:
            host.write_bytes(f, edit.after, _mode(host, f))
        done.append({"file": f, "lines": list(edit.lines), "before_b64": base64.b64encode(before).decode(),
                     "after_sha256": hashlib.sha256(edit.after).hexdigest()})
    return done


def unmarked(data: bytes) -> bytes:
    """*data* without the tool's marks: the lines :func:`ifupdown_edit` commented out, as they were."""
    mark = MARK.encode()
    return b"".join(ln[len(mark):] if ln.startswith(mark) else ln for ln in data.splitlines(keepends=True))


def restore(host: Host, done: list[dict]) -> None:
    """Write back the bytes of every file :func:`persist_removal` edited (idempotent)."""
    for entry in done:
        before = base64.b64decode(entry["before_b64"])
        if not host.exists(entry["file"]) or host.read_bytes(entry["file"]) != before:
            mode = _mode(host, entry["file"]) if host.exists(entry["file"]) else 0o644
            host.write_bytes(entry["file"], before, mode)


def commented_back(host: Host, move: AddressMove) -> list[dict]:
    """After a crash inside the persist step (no result journaled): the files holding the tool's marked
    lines for *move*, with the marks taken out, as :func:`restore` wants them."""
    res = check(host, ["sh", "-c", "for f in " + " ".join(IFUPDOWN) + "; do [ -f \"$f\" ] && grep -lF -- "
                       + shlex.quote(MARK.strip()) + " \"$f\"; done; true"], "looking for the tool's edits", timeout=60)
    out = []
    for f in res.stdout.splitlines():
        data = host.read_bytes(f)
        lines = data.splitlines(keepends=True)
        if not any(_mentions(move.ip).search(ln) for ln in lines if ln.startswith(MARK.encode())):
            continue
        out.append({"file": f, "before_b64": base64.b64encode(unmarked(data)).decode()})
    return out
