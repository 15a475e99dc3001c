"""Argument lists the shared steps run, built once for ``run`` and for `upgrade plan`."""

from __future__ import annotations


def tar_out(etc: str, name: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Pack ``<etc>/<name>`` to stdout with numeric owners (config copy and backup), leaving out the
    files *exclude* names exactly (paths relative to ``<etc>/<name>``, no patterns)."""
    if not exclude:
        return ["tar", "-C", etc, "--numeric-owner", "-cf", "-", name]
    return ["tar", "-C", etc, "--numeric-owner", "--anchored", "--no-wildcards",
            *(f"--exclude={name}/{rel}" for rel in exclude), "-cf", "-", name]


def tar_in(etc: str) -> list[str]:
    """Unpack stdin under ``<etc>`` keeping modes and numeric owners."""
    return ["tar", "-C", etc, "--numeric-owner", "-xpf", "-"]


def chown_argv(owner: str, path: str) -> list[str]:
    return ["chown", "-R", owner, path]
