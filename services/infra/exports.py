"""The source's iSCSI exports of the volumes being copied (tgtd: cinder's default ``target_helper =
tgtadm``, ``iscsi_helper`` before Queens).

tgtd keeps serving a volume after cinder-volume stops: a compute still logged in to the old portal
could write to the blocks while they are copied. So each copied volume's target is taken down
first, and put back exactly as it was by the undo (same tid, IQN, LUNs and their backing stores,
initiator ACLs and bound CHAP accounts: an account outlives its target in tgtd, so binding it again
restores the CHAP login without the tool ever knowing its secret).
"""

from __future__ import annotations

import re
from typing import Any

from services.infra.host import Host, check

_TARGET = re.compile(r"^Target (\d+): (\S+)\s*$")
_SECTIONS = {"System information:": "system", "I_T nexus information:": "nexus", "LUN information:": "lun",
             "Account information:": "account", "ACL information:": "acl"}


def tgtadm(port: int, *args: str) -> list[str]:
    """``tgtadm`` of the tgtd listening on management port *port* (0: tgtd's default)."""
    return ["tgtadm", *(["-C", str(port)] if port else []), "--lld", "iscsi", *args]


def parse(text: str) -> list[dict[str, Any]]:
    """The targets of ``tgtadm --mode target --op show``: tid, iqn, luns [{lun, path}] (LUN 0, the
    controller, excluded), accounts [{user, outgoing}], acls [address]."""
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    section = ""
    lun: int | None = None
    for raw in text.splitlines():
        if m := _TARGET.match(raw):
            cur = {"tid": int(m[1]), "iqn": m[2], "luns": [], "accounts": [], "acls": []}
            out.append(cur)
            section, lun = "", None
            continue
        line = raw.strip()
        if cur is None or not line:
            continue
        if line in _SECTIONS:
            section = _SECTIONS[line]
        elif section == "lun" and (m := re.match(r"^LUN: (\d+)$", line)):
            lun = int(m[1])
        elif section == "lun" and lun and line.startswith("Backing store path:"):
            path = line.split(":", 1)[1].strip()
            if path and path != "None":
                cur["luns"].append({"lun": lun, "path": path})
        elif section == "account":
            user, _, flag = line.partition(" ")
            cur["accounts"].append({"user": user, "outgoing": flag.strip() == "(outgoing)"})
        elif section == "acl":
            cur["acls"].append(line)
    return out


def targets(host: Host, port: int) -> list[dict[str, Any]]:
    return parse(check(host, tgtadm(port, "--mode", "target", "--op", "show"),
                       f"listing the iSCSI targets (tgtd) on {host.name}").stdout)


def remove(host: Host, port: int, target: dict[str, Any]) -> None:
    check(host, tgtadm(port, "--mode", "target", "--op", "delete", "--force", "--tid", str(target["tid"])),
          f"stopping the export {target['iqn']}")


def restore(host: Host, port: int, target: dict[str, Any]) -> None:
    """Export *target* (a :func:`parse` entry) again, unless a target of its IQN already exists."""
    if any(t["iqn"] == target["iqn"] for t in targets(host, port)):
        return
    tid = str(target["tid"])
    what = f"exporting {target['iqn']} again"
    check(host, tgtadm(port, "--mode", "target", "--op", "new", "--tid", tid, "-T", target["iqn"]), what)
    for lun in target["luns"]:
        check(host, tgtadm(port, "--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", str(lun["lun"]),
                           "-b", lun["path"]), what)
    for acl in target["acls"]:
        check(host, tgtadm(port, "--mode", "target", "--op", "bind", "--tid", tid, "-I", acl), what)
    for acc in target["accounts"]:
        check(host, tgtadm(port, "--mode", "account", "--op", "bind", "--tid", tid, "--user", acc["user"],
                           *(["--outgoing"] if acc["outgoing"] else [])), what)


def shown(port: int, *args: str) -> str:
    return " ".join(tgtadm(port, *args))
