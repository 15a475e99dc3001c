"""The release table: which jumps the tool supports (N -> N+1, or SLURP -> next SLURP)."""

from __future__ import annotations

#: (series, is SLURP) in release order
RELEASES: tuple[tuple[str, bool], ...] = (
    ("2023.1", True), ("2023.2", False), ("2024.1", True), ("2024.2", False),
    ("2025.1", True), ("2025.2", False), ("2026.1", True), ("2026.2", False),
)
NAMES = tuple(r for r, _ in RELEASES)


def allowed_targets(source: str) -> list[str]:
    if source not in NAMES:
        return []
    i = NAMES.index(source)
    out = [NAMES[i + 1]] if i + 1 < len(NAMES) else []
    if dict(RELEASES)[source]:
        later_slurps = [r for r, s in RELEASES[i + 1:] if s]
        if later_slurps and later_slurps[0] not in out:
            out.append(later_slurps[0])
    return out


def jump_error(source: str, target: str) -> str | None:
    """None if source -> target is supported, else a message listing what is."""
    if source not in NAMES:
        return f"unknown source release {source!r}; known releases: {', '.join(NAMES)}"
    if target not in NAMES:
        return f"unknown target release {target!r}; known releases: {', '.join(NAMES)}"
    allowed = allowed_targets(source)
    if target not in allowed:
        return (f"the jump {source} -> {target} is not supported; from {source} the tool upgrades to "
                f"{' or '.join(allowed) or 'nothing yet'}")
    return None


#: the major version each service's ``*-manage --version`` prints per release (`upgrade check`
#: compares it with the plan's ``to``); keystone's majors follow its release series
MANAGE_COMMAND: dict[str, str] = {"keystone": "keystone-manage"}
MAJOR_VERSIONS: dict[str, dict[str, int]] = {
    "keystone": {"2025.1": 27, "2025.2": 28, "2026.1": 29},
}


def expected_major(service: str, release: str) -> int | None:
    """The major version of *service* in *release*, or None when the table does not know it."""
    return MAJOR_VERSIONS.get(service, {}).get(release)


def release_of(service: str, major: int) -> str | None:
    """The release whose *service* has this major version (for messages), or None."""
    return next((r for r, m in MAJOR_VERSIONS.get(service, {}).items() if m == major), None)
