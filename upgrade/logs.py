"""Logging as a list of small processors (structlog): redact, timestamp, then both a readable
console line and a JSON line in ``<journal>/upgrade.log`` (0600)."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

import structlog

from journal.redact import Redactor


class JsonFile:
    """Processor that appends the event as one JSON line to the log file, then passes it on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.fchmod(self.fd, 0o600)

    def __call__(self, _logger: Any, _method: str, event_dict: dict) -> dict:
        line = (json.dumps(event_dict, default=str, sort_keys=True) + "\n").encode()
        try:
            os.write(self.fd, line)  # one append per line: lines never interleave or tear across processes
        except OSError as exc:
            # a full disk loses log lines, never the run: the journal (same disk) reports it with the fix
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
        return event_dict


LEVELS = ("debug", "info", "warning", "error", "critical")


class ConsoleLevel:
    """Processor (after the JSON file) that drops console output below a level: the file stays complete.

    ``--quiet`` shows errors only; while a progress display shows the steps, their info lines
    would only repeat it, so warnings and errors remain.
    """

    def __init__(self, level: str) -> None:
        self.min = LEVELS.index(level)

    def __call__(self, _logger: Any, method: str, event_dict: dict) -> dict:
        if method in LEVELS and LEVELS.index(method) < self.min:
            raise structlog.DropEvent
        return event_dict


class _Stderr:
    """Writes to whatever ``sys.stderr`` is now, so a live display that redirects it keeps its lines in place."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(redactor: Redactor, log_file: Path | None, quiet: bool = False,
              progress: bool = False) -> Path | None:
    """Log to *log_file* (JSON, everything) and to stderr (readable; see :class:`ConsoleLevel`)."""
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redactor.processor,
    ]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        processors.append(JsonFile(log_file))
    level = "error" if quiet else "warning" if progress else "info"
    processors += [ConsoleLevel(level), structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(processors=processors, logger_factory=structlog.PrintLoggerFactory(_Stderr()),
                        cache_logger_on_first_use=False)
    return log_file


def get() -> Any:
    return structlog.get_logger("upgrade")
