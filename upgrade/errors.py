"""Errors a user can cause or fix, each with an exit code and a message that says what to do."""

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
    exit_code = EXIT_BUSY
