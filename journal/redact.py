"""Secret redaction: the one place that decides what never leaves the process in clear.

Everything the tool writes for humans or auditors (console, JSON log, journal rows, exports,
error messages) passes through :class:`Redactor`. It knows two kinds of secret:

* values it was told about (passwords from the plan, passwords read from service configs), and
* shapes that are secret whatever their value: the password part of a URL
  (``mysql+pymysql://user:PASSWORD@host``) and ``password = ...``-like assignments.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<post>@)")
_ASSIGNMENT = re.compile(
    r"(?P<pre>\b[\w\-.]*(?:password|passwd|secret|token|_key|passphrase)\b\s*[=:]\s*[\"']?)(?P<pw>[^\s,;'\"]+)",
    re.IGNORECASE,
)
_CLI_PASSWORD = re.compile(r"(?P<pre>(?:^|\s)(?:-p|--password=))(?P<pw>\S+)")


class Redactor:
    """Masks known secret values and secret-shaped substrings in strings and nested data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        """Remember a secret value. Very short values are ignored: masking "a" everywhere hides nothing
        but corrupts every message (and a 1–3 character password is refused elsewhere anyway)."""
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def text(self, value: str) -> str:
        """Return *value* with every secret masked."""
        if not value:
            return value
        with self._lock:
            known = sorted(self._secrets, key=len, reverse=True)
        for s in known:
            if s in value:
                value = value.replace(s, MASK)
        value = _URL_PASSWORD.sub(lambda m: m["pre"] + MASK + m["post"], value)
        value = _ASSIGNMENT.sub(lambda m: m["pre"] + MASK, value)
        value = _CLI_PASSWORD.sub(lambda m: m["pre"] + MASK, value)
        return value

    def data(self, value: Any) -> Any:
        """Redact strings anywhere inside JSON-like data; keys named like secrets lose their value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                # only string values: a table named "password" with its checksums is not a secret
                if isinstance(k, str) and is_secret_key(k) and isinstance(v, str) and v:
                    out[k] = MASK
                else:
                    out[k] = self.data(v)
            return out
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def processor(self, _logger: Any, _method: str, event_dict: dict) -> dict:
        """structlog processor: the same redaction for every log line."""
        return self.data(event_dict)


def is_secret_key(key: str) -> bool:
    k = key.lower()
    if k.endswith(("_env", "_file", "_id")):
        # names of where a secret lives (an environment variable, a key file) or its public id
        return False
    return any(w in k for w in ("password", "passwd", "secret", "token", "passphrase")) or k in ("key",)
