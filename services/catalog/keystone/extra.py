"""Keystone's release specifics beside its schema upgrade: endpoint URLs that hold the old
controller's address (reported; rewritten when the plan says the address changes), the fernet
and credential key repositories checked against the source, and ``keystone-status upgrade
check`` — from a venv the stock command loads its backends before parsing ``--config-file``
and fails on ``/etc/keystone/fernet-keys/`` (lab-recipes §4.5), so it is re-run with the
workaround that loads them after the parse.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from services import releases
from services.infra import mysql
from services.infra.before import keep as keep_before
from services.infra.config import get_value
from services.infra.files import sums
from services.infra.host import Completed
from services.steps.commands import render, status_step, tool
from statemachine.step import Result, Step, StepError

NAME = "keystone"
KEY_OPTIONS = (("fernet_tokens", "key_repository", "fernet-keys"),
               ("fernet_receipts", "key_repository", "fernet-keys"),
               ("credential", "key_repository", "credential-keys"))

#: lab-recipes §4.5 ks_status.py: load the backends after oslo.config has parsed --config-file
STATUS_WORKAROUND = (
    "import sys\n"
    "from oslo_upgradecheck import upgradecheck\n"
    "import keystone.conf\n"
    "from keystone.cmd import status\n"
    "from keystone.server import backends\n"
    "orig = upgradecheck.UpgradeCommands.check\n"
    "def check(self):\n"
    "    backends.load_backends()\n"
    "    return orig(self)\n"
    "upgradecheck.UpgradeCommands.check = check\n"
    "keystone.conf.configure()\n"
    "sys.exit(upgradecheck.main(keystone.conf.CONF, 'keystone', status.Checks()))\n"
)


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _with_host(url: str, new: str) -> str:
    p = urlsplit(url)
    netloc = p.netloc
    host = p.hostname or ""
    at = netloc.rfind("@")
    prefix, hostport = (netloc[:at + 1], netloc[at + 1:]) if at >= 0 else ("", netloc)
    hostport = hostport.replace(f"[{host}]" if ":" in host else host, f"[{new}]" if ":" in new else new, 1)
    return urlunsplit(p._replace(netloc=prefix + hostport))


def endpoints_step() -> Step:
    def addresses(ctx: Any) -> tuple[str, str]:
        o = ctx.services[NAME].options
        return o.get("old_address") or "", o.get("new_address") or ""

    def run(ctx: Any) -> Result:
        old, new = addresses(ctx)
        if not old:
            return {"old_address": None, "endpoints": [], "note": "no old_address in the plan: nothing to report"}
        db = ctx.services[NAME].db_name
        rows = mysql.query(ctx.target.db, "SELECT id, interface, url FROM endpoint ORDER BY id", db=db)
        first, _art = keep_before(ctx, f"{NAME}.endpoints", "endpoints-before",
                                  {i: {"id": i, "interface": iface, "url": url}
                                   for i, iface, url in rows if _host_of(url) == old})
        hits = [first[k] for k in sorted(first)]
        rewrite = bool(new and new != old)
        if rewrite and hits:
            conn = mysql.connect(ctx.target.db, db)
            try:
                with conn.cursor() as cur:
                    for h in hits:
                        cur.execute("UPDATE endpoint SET url=%s WHERE id=%s", (_with_host(h["url"], new), h["id"]))
            finally:
                conn.close()
        return {"old_address": old, "new_address": new or None, "rewritten": rewrite, "endpoints": hits}

    def undo(ctx: Any, result: Result | None) -> None:
        if not result or not result.get("rewritten"):
            return
        conn = mysql.connect(ctx.target.db, ctx.services[NAME].db_name)
        try:
            with conn.cursor() as cur:
                for h in result["endpoints"]:
                    cur.execute("UPDATE endpoint SET url=%s WHERE id=%s", (h["url"], h["id"]))
        finally:
            conn.close()

    def commands(ctx: Any) -> list[str]:
        old, new = addresses(ctx)
        db = ctx.services[NAME].db_name
        if not old:
            return ["(no old_address in the plan: endpoints not examined)"]
        out = [f"SQL: SELECT id, interface, url FROM {db}.endpoint   # report the URLs on {old}"]
        if new and new != old:
            out.append(f"SQL: UPDATE {db}.endpoint SET url = <url with host {new}> WHERE id IN (those)")
        return out

    return Step(f"{NAME}.endpoints", "endpoints_checked", run, undo, host="target", commands=commands, kind="fixup",
                describe="report endpoint URLs on the old controller's address; rewrite them if the address changes")


def _repos(side: Any) -> list[tuple[str, str]]:
    data = side.host.read_bytes(f"{side.etc.rstrip('/')}/keystone/keystone.conf")
    out = []
    for section, key, default in KEY_OPTIONS:
        path = get_value(data, section, key) or f"{side.etc.rstrip('/')}/keystone/{default}"
        out.append((f"[{section}] {key}", path))
    return out


def check_keys(ctx: Any) -> list[dict[str, Any]]:
    """The fernet and credential key repositories hold the source's keys. /etc/keystone is copied
    whole, so they do when they live under it; a repository elsewhere is named here."""
    s, t = ctx.source, ctx.target
    out = []
    for (opt, spath), (_o, tpath) in zip(_repos(s), _repos(t), strict=True):
        have, got = sums(s.host, spath), sums(t.host, tpath)
        if have != got:
            raise StepError(f"keystone's {opt} repository {tpath} on {t.host.name} does not hold the source's "
                            f"keys ({spath}: {len(have)} file(s), target {len(got)}): tokens and credentials "
                            "would not decrypt — copy the repository, then `upgrade resume`", host=t.host.name)
        out.append({"option": opt, "path": tpath, "keys": len(got)})
    return out


KEYS_SHOWN = "source and target: find KEY_REPOSITORY -type f -exec sha256sum {} +   # [fernet_tokens], " \
             "[fernet_receipts], [credential]: the same keys on both"


def status_fallback(ctx: Any, res: Completed, cmd: releases.Cmd | None = None) -> dict[str, Any] | None:
    """Re-run keystone-status (*cmd*, the target release's) with the workaround when the stock one
    trips over the default path."""
    if res.rc not in (0, 2) and "fernet-keys" in res.output and "does not exist" in res.output:
        t = ctx.target
        args = render(cmd, t)[1:] if cmd else ["--config-file", f"{t.etc.rstrip('/')}/keystone/keystone.conf",
                                               "upgrade", "check"]
        alt = t.host.run([tool(t, "python"), "-c", STATUS_WORKAROUND, *args], timeout=600)
        return {"workaround": "keystone-status loads its backends before parsing --config-file "
                              "(lab-recipes §4.5): re-run with them loaded after the parse",
                "stock_rc": res.rc, "_completed": alt}
    return None


def verify_extra(ctx: Any) -> dict[str, Any]:
    """The keys check: tokens and credentials made by the old controller decrypt on the new one."""
    return {"key_repositories": check_keys(ctx)}


def verify_extra_shown(ctx: Any) -> list[str]:
    return [KEYS_SHOWN]


def status_check_step(cmd: releases.Cmd | None) -> Step | None:
    """keystone-status upgrade check before keystone starts, like every service's (with the venv
    workaround, lab-recipes §4.5), where the release has it (Stein on): *cmd* is the spec's."""
    if cmd is None:
        return None
    return status_step(NAME, cmd, fallback=lambda ctx, res: status_fallback(ctx, res, cmd))
