"""Surgical edits of OpenStack INI files: change one value, keep every other byte.

Operators diff configs before and after an upgrade; a tool that reformats a file (as
configparser does: comments dropped, order and spacing lost) makes that diff useless. These
functions change the value on the line that holds the key and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from oslo_config import iniparser

from statemachine.step import StepError


class ConfigSyntaxError(StepError):
    """An INI file oslo.config would refuse to read (the service would not start with it either)."""


@dataclass(frozen=True)
class Assignment:
    """One ``key = value`` (or ``key: value``) of an INI file as oslo.config reads it.

    ``value`` is oslo.config's: surrounding quotes removed, continuation lines joined with a line
    break. ``first``/``last`` are the indexes (in ``bytes.splitlines``) of the key's line and of its
    last continuation line: what the byte-preserving writer replaces."""

    section: str
    key: str
    value: str
    first: int
    last: int
    sep: str


def _normalized(section: str) -> str:
    """oslo.config's group name: ``DEFAULT`` in any case is DEFAULT, any other name is lower case."""
    return "DEFAULT" if section.upper() == "DEFAULT" else section.lower()


class _Reader(iniparser.BaseParser):
    """oslo.config's own line grammar (``oslo_config.iniparser``), remembering where each value stands."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.section: str | None = None
        self.found: list[Assignment] = []
        self.sections: list[tuple[str, int]] = []
        self._start = 0

    def new_section(self, section: str) -> None:
        self.section = section
        self.sections.append((section, self.lineno - 1))

    def _split_key_value(self, line: str) -> tuple[str, list[str]]:
        self._start = self.lineno - 1
        return super()._split_key_value(line)

    def assignment(self, key: str, value: list[str]) -> None:
        if self.section is None:  # oslo.config refuses it too
            raise self.parse_exc("Section must be started before assignment", self.lineno, "")
        last = self._start
        while last + 1 < len(self.lines) and self.lines[last + 1].rstrip() \
                and self.lines[last + 1].startswith((" ", "\t")):
            last += 1
        line = self.lines[self._start]
        colon, equal = line.find(":"), line.find("=")
        sep = ":" if equal < 0 or (0 <= colon < equal) else "="
        self.found.append(Assignment(self.section, key, "\n".join(value), self._start, last, sep))


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def parse(data: bytes) -> _Reader:
    """Every assignment and section of *data*, read by oslo.config's parser; ConfigSyntaxError if it
    would not read the file."""
    text = [line.decode("utf-8", errors="surrogateescape") for line in _lines(data)]
    reader = _Reader(text)
    try:
        reader.parse(text)
    except iniparser.ParseError as exc:
        raise ConfigSyntaxError(f"not an INI file oslo.config reads: {exc} — fix that line") from None
    return reader


def assignments(data: bytes, section: str, key: str) -> list[Assignment]:
    """Every assignment of *key* in *section* (oslo.config's group names: ``[database]`` is ``[Database]``)."""
    want = _normalized(section)
    return [a for a in parse(data).found if a.key == key and _normalized(a.section) == want]


def get_value(data: bytes, section: str, key: str) -> str | None:
    """The value of *key* in *section* as oslo.config reads it: ``key = value`` or ``key: value``,
    quotes removed, continuation lines joined; the last one wins."""
    found = assignments(data, section, key)
    return found[-1].value if found else None


def _line_for(a: Assignment, old: bytes, value: str) -> bytes:
    """The key's first line with *value*, keeping the key, its separator and spacing, the quotes the
    old value had, and the line ending."""
    eol = old[len(old.rstrip(b"\r\n")):]
    body = old[:len(old) - len(eol)]
    cut = body.index(a.sep.encode()) + 1
    head, rest = body[:cut], body[cut:]
    head += rest[:len(rest) - len(rest.lstrip())]
    raw = rest.strip()
    quote_char = raw[:1] if raw[:1] in (b'"', b"'") and raw[-1:] == raw[:1] and len(raw) > 1 else b""
    return head + quote_char + value.encode() + quote_char + (eol or b"")


def set_value(data: bytes, section: str, key: str, value: str) -> bytes:
    """Return *data* with ``key = value`` in *section*; only the changed line(s) differ.

    Every occurrence of the key in the section is rewritten (oslo.config reads the last one, a
    human the first: both must see the new value); its continuation lines go with its old value.
    A missing key is added at the end of its section; a missing section is appended at the end of
    the file.
    """
    lines = _lines(data)
    found = assignments(data, section, key)
    if found:
        drop: set[int] = set()
        for a in found:
            lines[a.first] = _line_for(a, lines[a.first], value)
            drop.update(range(a.first + 1, a.last + 1))
        return b"".join(line for i, line in enumerate(lines) if i not in drop)
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    reader = parse(data)
    starts = [i for name, i in reader.sections if _normalized(name) == _normalized(section)]
    if starts:
        # insert after the section's last non-blank line (the section ends where the next one starts)
        later = [i for _name, i in reader.sections if i > starts[-1]]
        i = later[0] if later else len(lines)
        while i > 0 and lines[i - 1].strip() == b"":
            i -= 1
        if i > 0 and not lines[i - 1].endswith((b"\n", b"\r")):
            lines[i - 1] += newline
        lines.insert(i, f"{key} = {value}".encode() + newline)
        return b"".join(lines)
    tail = b"" if not data or data.endswith(b"\n") else newline
    return data + tail + f"{newline.decode()}[{section}]{newline.decode()}{key} = {value}{newline.decode()}".encode()


def delete_key(data: bytes, section: str, key: str) -> bytes:
    """*data* without the lines (continuation lines included) that set *key* in *section*."""
    drop = {i for a in assignments(data, section, key) for i in range(a.first, a.last + 1)}
    return b"".join(line for i, line in enumerate(_lines(data)) if i not in drop)


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
    lines = _lines(data)
    changed: list[str] = []
    for a in parse(data).found:
        for old, new in pairs:
            if a.first == a.last and (a.value == old or a.value.startswith(old + "/")):
                lines[a.first] = _line_for(a, lines[a.first], new + a.value[len(old):])
                changed.append(f"[{a.section}] {a.key}")
                break
    return b"".join(lines), changed


def rewrite_db_url(url: str, address: str, port: int, user: str | None = None, password: str | None = None,
                   scheme: str | None = None) -> str:
    """Point an SQLAlchemy URL at another server, keeping database name and query string, and the
    scheme unless *scheme* is given (the target release's driver, ``releases.db_scheme``)."""
    parts = urlsplit(url)
    old_user = unquote(parts.username or "")
    old_password = unquote(parts.password or "")
    u = quote(user if user else old_user, safe="")
    p = quote(password if password else old_password, safe="")
    auth = f"{u}:{p}@" if p else (f"{u}@" if u else "")
    host = f"[{address}]" if ":" in address else address
    return urlunsplit((scheme or parts.scheme, f"{auth}{host}:{port}", parts.path, parts.query, parts.fragment))


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
    return {name for name, _i in parse(data).sections}
