"""What the services layer needs of a host: run a command, stream through one, read and write files.

The implementations (local, SSH) live in ``upgrade/hosts.py``; this protocol is the contract,
so that OpenStack knowledge never depends on how a host is reached. Commands are argument
lists, never shell strings built from input (DESIGN.md §6).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any, Protocol

from statemachine.step import StepError


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()


class Host(Protocol):
    name: str

    def run(self, argv: list[str], stdin: bytes | None = None, timeout: float = 900,
            env: dict[str, str] | None = None) -> Completed: ...

    def popen(self, argv: list[str], stdin: Any = None, stdout: Any = None, stderr: Any = None,
              env: dict[str, str] | None = None) -> Any: ...

    def read_bytes(self, path: str) -> bytes: ...

    def write_bytes(self, path: str, data: bytes, mode: int = 0o600) -> None: ...

    def exists(self, path: str) -> bool: ...

    def remove(self, path: str) -> None: ...

    def private_tmpdir(self) -> str: ...


#: what the command about to run means (its exit-code contract, its condition), set by the step library
#: around a command: a real host ignores it; a recording host (`upgrade plan`) shows it beside the command
NOTE: ContextVar[str] = ContextVar("NOTE", default="")


@contextmanager
def noted(text: str) -> Iterator[None]:
    """Commands run inside carry *text* as their note (see :data:`NOTE`)."""
    token = NOTE.set(text)
    try:
        yield
    finally:
        NOTE.reset(token)


def command_text(argv: list[str] | tuple[str, ...]) -> str:
    """A command as an operator would type it (for the journal and messages)."""
    return shlex.join(list(argv))


def check(host: Host, argv: list[str], what: str, ok: tuple[int, ...] = (0,), **kw: Any) -> Completed:
    """Run *argv* on *host*; a return code outside *ok* is a StepError naming host, command and output."""
    res = host.run(argv, **kw)
    if res.rc not in ok:
        raise StepError(f"{what} failed on {host.name}: `{command_text(argv)}` exited {res.rc}",
                        host=host.name, command=command_text(argv), rc=res.rc, output=res.output)
    return res


def wait_pipe(proc: Any, host: Host, argv: list[str], what: str, stderr_text: str = "") -> None:
    """Wait for a streaming process and turn a non-zero exit into a StepError."""
    rc = proc.wait()
    if rc != 0:
        err = stderr_text
        if not err and getattr(proc, "stderr", None) is not None:
            err = _read_all(proc.stderr)
        raise StepError(f"{what} failed on {host.name}: `{command_text(argv)}` exited {rc}",
                        host=host.name, command=command_text(argv), rc=rc, output=err)


def _read_all(stream: IO[bytes]) -> str:
    try:
        return stream.read().decode(errors="replace")
    except (OSError, ValueError):
        return ""
