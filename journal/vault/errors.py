"""The vault's errors: each message names the artifact (or key file) and the fix."""

from __future__ import annotations

from journal.errors import UserError


class VaultError(UserError):
    """User-facing message naming the artifact path (or key file) and the fix."""


class WrongKeyError(VaultError):
    """The key (or passphrase) is not the one the artifact was encrypted with."""


class CorruptArtifactError(VaultError):
    """The artifact was altered, truncated or damaged; nothing in it can be trusted."""


class KeyFileError(VaultError):
    """The key file is missing, unsafe (permissions) or malformed."""
