"""Errors a user can cause or fix, each with an exit code and a message that says what to do.

The root and the codes are defined at the bottom layer (``journal.errors``) so that the journal's,
the vault's and the engine's errors derive from the same root; this module is where the CLI's
layer takes them from.
"""

from __future__ import annotations

from journal.errors import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    BusyError,
    UserError,
)

__all__ = ["EXIT_BUSY", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "BusyError",
           "UserError"]
