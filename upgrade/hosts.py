"""Host connections: the local machine through plumbum (SSH hosts join with the lab issue).

Implements the ``services.host.Host`` protocol. Commands are argument lists; the environment of
the tool never carries a secret into them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from plumbum import local
from plumbum.commands.processes import CommandNotFound

from services.host import Completed, command_text
from statemachine.step import StepError


class LocalHost:
    """The machine the tool runs on (an operator's controller, or the built-in lab)."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def _cmd(self, argv: list[str]) -> Any:
        try:
            return local[argv[0]][argv[1:]]
        except CommandNotFound:
            raise StepError(f"command {argv[0]!r} not found on {self.name} — install it or fix the "
                            "bin path in the plan", host=self.name, command=command_text(argv)) from None

    def run(self, argv: list[str], stdin: bytes | None = None, timeout: float = 900,
            env: dict[str, str] | None = None) -> Completed:
        proc = self.popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise StepError(f"`{command_text(argv)}` on {self.name} did not finish within {timeout:.0f} s",
                            host=self.name, command=command_text(argv),
                            output=(out + err).decode(errors="replace")) from None
        return Completed(tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def popen(self, argv: list[str], stdin: Any = None, stdout: Any = None, stderr: Any = None,
              env: dict[str, str] | None = None) -> Any:
        cmd = self._cmd(argv)
        kwargs: dict[str, Any] = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        if env:
            kwargs["env"] = {**os.environ, **env}
        try:
            return cmd.popen(**kwargs)
        except FileNotFoundError:
            raise StepError(f"command {argv[0]!r} not found on {self.name} — install it or fix the bin path in "
                            "the plan", host=self.name, command=command_text(argv)) from None

    def read_bytes(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise StepError(f"cannot read {path} on {self.name}: {exc.strerror}", host=self.name) from None

    def write_bytes(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Atomic replace: a crash leaves the old file or the new one, never half of one."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.osu-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if p.exists():
            st = p.stat()
            os.chown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, p)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def remove(self, path: str) -> None:
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            p.unlink()

    def private_tmpdir(self) -> str:
        return tempfile.mkdtemp(prefix="osu-")


def connect(spec: str, name: str) -> LocalHost:
    """A host from the plan's ``host`` value."""
    if spec == "local":
        return LocalHost(name)
    raise ValueError(f"unsupported host {spec!r} (only \"local\" in this version)")
