"""Config options the target release no longer reads under their old names (facts §1.4):
``[DEFAULT] sql_connection`` & co. become ``[database] connection`` (removed in 2024.1), and the
``rabbit_*`` options become one ``transport_url`` (removed in Stein).

Line-level edits like ``services.config``: the old lines go, the new option is added, every
other byte stays. A jump whose target still reads the old names changes nothing (Havana ->
Icehouse keeps ``sql_connection``, as the runbook does).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from services import releases
from services.infra.config import delete_key, get_value, set_value

__all__ = ["delete_key", "edit", "rewrite", "transport_url"]


def transport_url(data: bytes) -> str | None:
    """``rabbit://user:pass@host:port,host2:port/vhost`` from Havana-style ``[DEFAULT] rabbit_*``."""
    g = lambda k: get_value(data, "DEFAULT", k)  # noqa: E731
    hosts = g("rabbit_hosts") or g("rabbit_host")
    if not hosts:
        return None
    port = g("rabbit_port") or "5672"
    user = quote(g("rabbit_userid") or "guest", safe="")
    password = quote(g("rabbit_password") or "guest", safe="")
    vhost = (g("rabbit_virtual_host") or "/").lstrip("/")
    netloc = ",".join(f"{user}:{password}@{h.strip() if ':' in h else f'{h.strip()}:{port}'}"
                      for h in hosts.split(",") if h.strip())
    return f"rabbit://{netloc}/{quote(vhost, safe='')}"


def rewrite(data: bytes, target: str) -> tuple[bytes, list[str]]:
    """Apply every rename the *target* release needs; returns the new bytes and what changed."""
    notes: list[str] = []
    for r in releases.RENAMES:
        value = get_value(data, *r.old)
        if value is None or not releases.at_least(target, r.removed_in):
            continue
        data = delete_key(data, *r.old)
        if get_value(data, *r.new) is None:
            data = set_value(data, *r.new, value)
        notes.append(f"[{r.old[0]}] {r.old[1]} -> [{r.new[0]}] {r.new[1]}")
    if releases.at_least(target, releases.RABBIT_REMOVED_IN) and get_value(data, "DEFAULT", "transport_url") is None:
        url = transport_url(data)
        if url:
            for k in releases.RABBIT_KEYS:
                data = delete_key(data, "DEFAULT", k)
            data = set_value(data, "DEFAULT", "transport_url", url)
            notes.append("[DEFAULT] rabbit_* -> transport_url")
    return data, notes


def edit(target: str) -> Any:
    """The ConfigEdit for install_config."""
    from services.steps.configs import ConfigEdit

    def apply(ctx: Any, path: str, data: bytes) -> tuple[bytes, list[str]]:
        return rewrite(data, target)

    def shown(ctx: Any) -> list[str]:
        out = [f"rename [{r.old[0]}] {r.old[1]} to [{r.new[0]}] {r.new[1]} where present"
               for r in releases.RENAMES if releases.at_least(target, r.removed_in)]
        if releases.at_least(target, releases.RABBIT_REMOVED_IN):
            out.append("replace [DEFAULT] rabbit_*/rpc_backend by transport_url = rabbit://USER:***@HOST:PORT/VHOST "
                       "where present")
        return out

    return ConfigEdit(apply, shown)
