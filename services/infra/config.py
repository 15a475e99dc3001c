"""Surgical edits of OpenStack INI files: change one value, keep every other byte.

Operators diff configs before and after an upgrade; a tool that reformats a file (as
configparser does: comments dropped, order and spacing lost) makes that diff useless. These
functions change the value on the line that holds the key and nothing else.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

_SECTION = re.compile(rb"^\s*\[(?P<name>[^\]]+)\]\s*$")
_KEY = re.compile(rb"^(?P<key>[A-Za-z0-9_.\-]+)(?P<sep>\s*=\s*)(?P<value>.*?)(?P<eol>\r?\n?)$")


def get_value(data: bytes, section: str, key: str) -> str | None:
    """The last value of *key* in *section* (oslo.config semantics: the last one wins)."""
    found = None
    current = None
    for line in data.splitlines(keepends=True):
        m = _SECTION.match(line)
        if m:
            current = m["name"].decode().strip()
            continue
        if current == section:
            k = _KEY.match(line)
            if k and k["key"].decode() == key:
                found = k["value"].decode().strip()
    return found


def set_value(data: bytes, section: str, key: str, value: str) -> bytes:
    """Return *data* with ``key = value`` in *section*; only the changed line(s) differ.

    Every occurrence of the key in the section is rewritten (oslo.config reads the last one, a
    human the first: both must see the new value). A missing key is added at the end of its
    section; a missing section is appended at the end of the file.
    """
    lines = data.splitlines(keepends=True)
    out: list[bytes] = []
    current = None
    replaced = False
    section_end: int | None = None
    for line in lines:
        m = _SECTION.match(line)
        if m:
            if current == section and section_end is None:
                section_end = len(out)
            current = m["name"].decode().strip()
            out.append(line)
            continue
        k = _KEY.match(line) if current == section else None
        if k and k["key"].decode() == key:
            out.append(k["key"] + k["sep"] + value.encode() + (k["eol"] or b""))
            replaced = True
        else:
            out.append(line)
    if replaced:
        return b"".join(out)
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    if current == section and section_end is None:
        section_end = len(out)
    if section_end is not None:
        # insert after the section's last non-blank line
        i = section_end
        while i > 0 and out[i - 1].strip() == b"":
            i -= 1
        if i > 0 and not out[i - 1].endswith(b"\n"):
            out[i - 1] += newline
        out.insert(i, f"{key} = {value}".encode() + newline)
        return b"".join(out)
    tail = b"" if not data or data.endswith(b"\n") else newline
    return data + tail + f"{newline.decode()}[{section}]{newline.decode()}{key} = {value}{newline.decode()}".encode()


def rewrite_paths(data: bytes, mapping: dict[str, str]) -> tuple[bytes, list[str]]:
    """Re-point option values that are paths under a source prefix to the target prefix.

    Controllers whose layouts differ (``/etc`` of a container vs of a host, or the lab's
    per-host trees) name different directories for the same thing: an option like
    ``key_repository = /srv/old/etc/keystone/fernet-keys`` must name the target's own
    directory after the config is carried over. Comments and every other byte stay as they are.
    Returns the new bytes and the ``[section] key`` of each rewritten option.
    """
    pairs = sorted(((a.rstrip("/"), b.rstrip("/")) for a, b in mapping.items() if a.rstrip("/") != b.rstrip("/")),
                   key=lambda ab: len(ab[0]), reverse=True)
    if not pairs:
        return data, []
    out: list[bytes] = []
    changed: list[str] = []
    section = ""
    for line in data.splitlines(keepends=True):
        m = _SECTION.match(line)
        if m:
            section = m["name"].decode().strip()
        k = None if m else _KEY.match(line)
        if k:
            value = k["value"].decode()
            for old, new in pairs:
                if value == old or value.startswith(old + "/"):
                    line = k["key"] + k["sep"] + (new + value[len(old):]).encode() + (k["eol"] or b"")
                    changed.append(f"[{section}] {k['key'].decode()}")
                    break
        out.append(line)
    return b"".join(out), changed


def rewrite_db_url(url: str, address: str, port: int, user: str | None = None, password: str | None = None) -> str:
    """Point an SQLAlchemy URL at another server, keeping scheme, database name and query string."""
    parts = urlsplit(url)
    old_user = unquote(parts.username or "")
    old_password = unquote(parts.password or "")
    u = quote(user if user else old_user, safe="")
    p = quote(password if password else old_password, safe="")
    auth = f"{u}:{p}@" if p else (f"{u}@" if u else "")
    host = f"[{address}]" if ":" in address else address
    return urlunsplit((parts.scheme, f"{auth}{host}:{port}", parts.path, parts.query, parts.fragment))


def db_url_credentials(url: str) -> tuple[str, str, str]:
    """(user, password, database) of an SQLAlchemy URL."""
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or ""), parts.path.lstrip("/")


def with_database(url: str, db: str) -> str:
    """The same SQLAlchemy URL (server, user, password, query) naming database *db*: how the install
    guides derive nova_api's and nova_cell0's URLs from the main one."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def sections(data: bytes) -> set[str]:
    """The names of the sections an INI file has."""
    return {m["name"].decode().strip() for line in data.splitlines() if (m := _SECTION.match(line))}
