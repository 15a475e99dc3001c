"""What the operator sees while run, resume and revert work: live bars on a terminal, plain lines
elsewhere, nothing with ``--quiet``. The JSON log (``upgrade.log``) is complete in every case.

The runner calls the :class:`~statemachine.runner.Observer` hooks; dumps and imports report
their bytes through ``UpgradeContext.progress``, which is :meth:`Display.moved`.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from statemachine.runner import Observer
from statemachine.step import Step


class Display(Observer):
    """The quiet display: shows nothing. Subclasses show steps, times, bytes and rates."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        #: bytes moved by each machine's current step (machines may overlap)
        self.bytes: dict[str, int] = {}
        self._lock = threading.Lock()

    def begin(self, verb: str, total: int) -> None:
        """*total* steps are ahead (run/resume: not yet committed; revert: to undo)."""
        self.total = total

    def moved(self, machine: str, n: int) -> None:
        """Bytes went through a dump or an import of *machine*'s current step (called per chunk, from
        the thread that runs the step)."""
        with self._lock:
            self.bytes[machine] = self.bytes.get(machine, 0) + n

    def step_started(self, machine: str, step: Step, undo: bool) -> None:
        with self._lock:
            self.bytes[machine] = 0

    def step_finished(self, machine: str, step: Step, undo: bool, seconds: float) -> None:
        self.done += 1

    def close(self) -> None:
        """Stop drawing (always called, also when the run fails or is interrupted)."""

    def summary(self, machine: str, step: Step, undo: bool, seconds: float) -> str:
        """One finished step as a line: counter, name, time and, for dumps and imports, bytes and rate."""
        what = f"undo {step.name}" if undo else step.name
        line = f"[{self.done}/{self.total}] {what}  done  {seconds:.1f} s"
        moved = self.bytes.get(machine, 0)
        if moved:
            line += f"  {decimal(moved)} at {decimal(int(moved / max(seconds, 1e-3)))}/s"
        return line


class Plain(Display):
    """Not a terminal (a pipe, a file, CI): one plain line per finished step, no control characters."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out = out

    def step_finished(self, machine: str, step: Step, undo: bool, seconds: float) -> None:
        super().step_finished(machine, step, undo, seconds)
        self.out.write(self.summary(machine, step, undo, seconds) + "\n")
        self.out.flush()

    def note(self, machine: str, message: str) -> None:
        self.out.write(f"note: {message}\n")
        self.out.flush()


class _Detail(ProgressColumn):
    """Steps done of all for the overall bar; bytes and rate for a step that moves data."""

    def render(self, task: Task) -> Text:
        if task.fields.get("overall"):
            return Text(f"{int(task.completed)}/{int(task.total or 0)} steps")
        if not task.completed:
            return Text("")
        speed = task.finished_speed or task.speed
        rate = f" at {decimal(int(speed))}/s" if speed else ""
        return Text(f"{decimal(int(task.completed))}{rate}")


class Live(Display):
    """A terminal: the overall bar and each machine's current step (service, host, elapsed, bytes, rate),
    redrawn live; overlapping machines get a line each."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Detail(),
                                 TimeElapsedColumn(), console=console, transient=False, refresh_per_second=8)
        self.overall = None
        self.current: dict[str, TaskID] = {}

    def begin(self, verb: str, total: int) -> None:
        super().begin(verb, total)
        self.overall = self.progress.add_task(f"upgrade {verb}", total=max(total, 1), overall=True)
        self.progress.start()

    def step_started(self, machine: str, step: Step, undo: bool) -> None:
        super().step_started(machine, step, undo)
        what = f"undo {step.name}" if undo else step.name
        self.current[machine] = self.progress.add_task(f"{machine}: {what} on {step.host}", total=None)

    def moved(self, machine: str, n: int) -> None:
        super().moved(machine, n)
        task = self.current.get(machine)
        if task is not None:
            self.progress.advance(task, n)

    def step_finished(self, machine: str, step: Step, undo: bool, seconds: float) -> None:
        super().step_finished(machine, step, undo, seconds)
        task = self.current.pop(machine, None)
        if task is not None:
            self.progress.remove_task(task)
        if self.overall is not None:
            self.progress.advance(self.overall, 1)
        self.console.print(Text("✓ " + self.summary(machine, step, undo, seconds)))

    def note(self, machine: str, message: str) -> None:
        self.console.print(Text(f"note: {message}"))

    def close(self) -> None:
        self.progress.stop()


def for_console(quiet: bool, stream: TextIO | None = None) -> Display:
    """The display for stderr: Live on a terminal, Plain otherwise, the quiet one with ``--quiet``."""
    if quiet:
        return Display()
    stream = stream or sys.stderr
    console = Console(file=stream, stderr=stream is sys.stderr)
    return Live(console) if console.is_terminal else Plain(stream)
