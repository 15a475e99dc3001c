"""The root of every error an operator can cause or fix, and the exit code each kind means.

It lives in the bottom layer so that every layer's user-facing errors (the journal's and the
vault's here, the engine's lock and step-list checks, the CLI's plan and claim errors) derive from
the one root while imports still point down; ``upgrade.errors`` re-exports it, and ``upgrade.cli``
turns any of them into its message and ``exit_code`` in one place.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1      # a step failed (resume after fixing, or revert), or verification found tampering
EXIT_USAGE = 2       # bad input: plan, arguments, key, journal
EXIT_BUSY = 3        # another process holds the journal, or another run is unfinished
EXIT_INTERNAL = 70   # a bug: the traceback is in the log file
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error with a message for the operator (what happened — where — what to do)."""

    exit_code = EXIT_USAGE


class BusyError(UserError):
    """Another process or run holds what this one needs: wait for it, or finish it first."""

    exit_code = EXIT_BUSY
