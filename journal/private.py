"""Private places: the journal directory, the vault directory and the files in them (the key file,
``vault.salt``, ``journal.db``) must belong to the user running the tool and be closed to others.

Modes alone are not enough: a directory another user owns is private to *that* user, who can rename
or replace the journal under a running tool; a symbolic link can send a private file's content, or
the tool's writes, elsewhere. So every check here looks at what the path itself is (``lstat``, or
``O_NOFOLLOW``), never at what a link points to, and compares the owner with the effective uid.
Once a directory is proven ours and closed, no other user can swap the entries inside it, so the
files in it may then be opened by name.
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
from pathlib import Path

from journal.errors import UserError


class PrivatePathError(UserError):
    """A path that is not the tool's own private place; the message names the path and the fix."""


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _problem(path: Path, st: os.stat_result, what: str, want_dir: bool) -> str | None:
    """Why the object *st* (of *path*, not followed) is not a private place of ours, or None."""
    q = shlex.quote(str(path))
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return (f"the {what} {path} is a symbolic link (to {target}); it is opened only where it is, so "
                f"nobody can redirect it — use the real path {target} instead")
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return f"the {what} {path} is not a directory — pass a directory"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return f"the {what} {path} is not a regular file — check the path"
    me = os.geteuid()
    if st.st_uid != me:
        return (f"the {what} {path} belongs to {_user(st.st_uid)}, not to {_user(me)} who runs `upgrade`; "
                "its owner could change or replace what it holds — use one of your own, or as root: "
                f"chown {me} {q}")
    if st.st_mode & 0o077:
        fix = f"chmod 700 {q}" if want_dir else f"chmod 600 {q}"
        return (f"the {what} {path} is open to other users (mode {stat.filemode(st.st_mode)}); it must be "
                f"private: {fix}")
    return None


def _existing_problem(path: Path, what: str, want_dir: bool) -> str | None:
    """Why an existing *path* (never followed if a link) is not ours and private, or None (also when missing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect the {what} {path}: {exc.strerror}"
    return _problem(Path(path), st, what, want_dir=want_dir)


def dir_problem(path: Path, what: str = "journal directory") -> str | None:
    """Why *path* may not be used as a private directory, or None (also None when it does not exist)."""
    return _existing_problem(path, what, want_dir=True)


def require_dir(path: Path, what: str = "journal directory") -> None:
    if (problem := dir_problem(path, what)) is not None:
        raise PrivatePathError(problem)


def make_dir(path: Path, what: str = "journal directory") -> Path:
    """Create *path* (and the missing directories above it) mode 0700, or check the existing one.

    Only the last level must be ours: the levels above may be shared (``/srv``), but each level this
    creates is 0700 whatever the umask, so a new tree is never readable by others.
    """
    path = Path(path)
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise PrivatePathError(f"cannot create the {what} {d}: {exc.strerror} — choose a writable place") \
                from None
        else:
            os.chmod(d, 0o700, follow_symlinks=False)  # the umask may have taken bits away, never added
    require_dir(path, what)
    return path


def open_file(path: Path, flags: int, what: str, mode: int = 0o600, repair_mode: bool = False) -> int:
    """Open a private file without following a symbolic link, and check the opened file itself (no
    check-then-use race): a regular file of ours, closed to group and others (*repair_mode*: made so,
    for files the tool owns inside a private directory). Returns the fd; raises FileNotFoundError when
    it is missing and ``O_CREAT`` is not in *flags*."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise PrivatePathError(_problem(Path(path), os.lstat(path), what, want_dir=False)) from None
        raise PrivatePathError(f"cannot open the {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if repair_mode and stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
            st = os.fstat(fd)
        problem = _problem(Path(path), st, what, want_dir=False)
    except BaseException:
        os.close(fd)
        raise
    if problem is not None:
        os.close(fd)
        raise PrivatePathError(problem)
    return fd


def file_problem(path: Path, what: str) -> str | None:
    """Why an existing file at *path* is not ours and private (or is a link), or None (also when missing)."""
    return _existing_problem(path, what, want_dir=False)
