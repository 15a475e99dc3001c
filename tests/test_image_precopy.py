"""Glance's image pre-copy on real files and a real tar between two LocalHosts (no mocks).

``glance.precopy_images`` copies the image files before the old API stops; ``glance.copy_images``,
inside the maintenance window, copies only what is new or changed since and removes the copies of
images deleted meanwhile. Killed with SIGKILL at their fail points (a real child process), each
resumes to the same end state and is undone exactly; a file the target held before the run is never
touched, and one that differs from the source's is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.catalog import glance
from services.infra.settings import DBEndpoint, ServiceControl, ServiceSettings, Side
from services.releases import Jump
from statemachine import failpoints
from statemachine.step import Step, StepError
from tests.conftest import REPO, tree_digest
from upgrade.hosts import LocalHost

JUMP = Jump("2025.2", "2026.1")
PRE, POST = "glance.precopy_images", "glance.copy_images"
IMAGES = "glance/images"


@dataclass
class Ctx:
    """What the copy steps need of the run's context: both sides, the service, the artifact dir."""

    base: Path
    services: dict[str, ServiceSettings] = field(default_factory=lambda: {"glance": ServiceSettings(
        name="glance", unit="openstack-glance-api", db_name="glance", owner="glance:glance", options={})})
    source_host: LocalHost = field(default_factory=lambda: LocalHost("source"))

    def _side(self, role: str) -> Side:
        host = self.source_host if role == "source" else LocalHost(role)
        return Side(role=role, host=host, etc=str(self.base / role / "etc"),
                    lib=str(self.base / role / "lib"), bin="/usr/bin", db=DBEndpoint("127.0.0.1", 1, "root", ""),
                    control=ServiceControl("systemd"))

    @property
    def source(self) -> Side:
        return self._side("source")

    @property
    def target(self) -> Side:
        return self._side("target")

    @property
    def artifact_dir(self) -> Path:
        d = self.base / "artifacts"
        d.mkdir(mode=0o700, exist_ok=True)
        return d

    def failpoint(self, name: str) -> None:
        failpoints.hit(name)


def steps() -> dict[str, Step]:
    return {s.name: s for s in glance.steps(JUMP)}


def src_dir(base: Path) -> Path:
    return base / "source" / "lib" / IMAGES


def dst_dir(base: Path) -> Path:
    return base / "target" / "lib" / IMAGES


def put(path: Path, data: bytes, mode: int = 0o640) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return data


def image(name: str) -> bytes:
    """An image big enough that the copy is killed half way (fail point after the first 64 KiB); the
    same bytes for the same name, so that a killed run and a reference run can be compared."""
    return random.Random(name).randbytes(300_000)


def setup(base: Path) -> dict[str, bytes]:
    """Source: three images. Target: one file of its own (never touched) and one the source has too,
    with the same bytes (not copied, not added)."""
    same = image("img-same")
    files = {name: put(src_dir(base) / name, image(name)) for name in ("img-a", "img-b", "img-c")}
    files["img-same"] = put(src_dir(base) / "img-same", same)
    put(dst_dir(base) / "target-own", b"the target's own file\n", 0o600)
    put(dst_dir(base) / "img-same", same)
    return files


def meanwhile(base: Path) -> dict[str, bytes]:
    """While the old API serves after the pre-copy: img-b deleted, img-c deleted and recreated with
    other bytes, img-d uploaded."""
    (src_dir(base) / "img-b").unlink()
    return {"img-c": put(src_dir(base) / "img-c", image("img-c, recreated")),
            "img-d": put(src_dir(base) / "img-d", image("img-d"))}


def content(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def journaled(result: dict[str, Any]) -> dict[str, Any]:
    """The result as the journal hands it back to undo."""
    return json.loads(json.dumps(result))


# ---------------------------------------------------------------------- the steps in a child that can be killed
def run_in_child(base: Path, names: list[str], failpoint: str | None = None) -> subprocess.CompletedProcess:
    """Run the steps *names* in order in a real child process (killed at *failpoint*); their results
    go to ``<base>/results.json``."""
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV}
    if failpoint:
        env[failpoints.ENV] = failpoint
    code = "import sys; from tests.test_image_precopy import child; child(sys.argv[1], sys.argv[2:])"
    return subprocess.run([sys.executable, "-c", code, str(base), *names], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def child(base: str, names: list[str]) -> None:
    ctx = Ctx(Path(base))
    path = Path(base) / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        results[name] = steps()[name].run(ctx)
        path.write_text(json.dumps(results))


# ---------------------------------------------------------------------- tests
def test_precopy_runs_before_the_stop_and_the_copy_after_the_schema() -> None:
    names = list(steps())
    assert names[0] == PRE and names[1:4] == ["glance.stop_target", "glance.backup_target", "glance.stop_source"]
    assert names.index("glance.upgrade_schema") < names.index(POST) < names.index("glance.fix_ownership")


def test_precopy_then_only_the_difference_inside_the_window_then_undo(tmp_path: Path) -> None:
    ctx, s = Ctx(tmp_path), steps()
    files = setup(tmp_path)
    before = tree_digest(tmp_path / "target")
    own = dst_dir(tmp_path) / "target-own"
    own_stat = own.stat()

    pre = s[PRE].run(ctx)
    assert pre["copied_files"] == 3 and pre["added"] == ["img-a", "img-b", "img-c"]
    assert pre["copied_bytes"] == 3 * 300_000 and pre["unsettled"] == [] and pre["removed"] == []
    assert content(dst_dir(tmp_path)) == {**files, "target-own": b"the target's own file\n"}

    files.update(meanwhile(tmp_path))
    del files["img-b"]
    post = s[POST].run(ctx)
    assert post["new"] == ["img-d"] and post["changed"] == ["img-c"] and post["removed"] == ["img-b"]
    assert post["copied_files"] == 2 and post["copied_bytes"] == 2 * 300_000
    assert post["added"] == ["img-c", "img-d"] and post["files"] == 4
    # exactly the target's own files plus the source's, modes and owners as on the source
    assert content(dst_dir(tmp_path)) == {**files, "target-own": b"the target's own file\n"}
    src, dst = tree_digest(src_dir(tmp_path)), tree_digest(dst_dir(tmp_path))
    assert {k: v for k, v in dst.items() if k != "target-own"} == src
    assert s[POST].run(ctx)["copied_files"] == 0  # idempotent: a second run copies nothing

    s[POST].undo(ctx, journaled(post))
    # the copy's undo removed what it wrote; the pre-copy's img-a and the target's own file are there
    assert sorted(content(dst_dir(tmp_path))) == ["img-a", "img-same", "target-own"]
    s[PRE].undo(ctx, journaled(pre))
    assert tree_digest(tmp_path / "target") == before
    assert own.stat().st_mtime_ns == own_stat.st_mtime_ns and own.stat().st_ino == own_stat.st_ino


def test_a_directory_the_run_created_is_gone_after_undo(tmp_path: Path) -> None:
    ctx, s = Ctx(tmp_path), steps()
    put(src_dir(tmp_path) / "img-a", image("img-a"))
    put(src_dir(tmp_path) / "sub" / "img-b", image("img-b"))
    (tmp_path / "target" / "lib").mkdir(parents=True)
    pre = s[PRE].run(ctx)
    post = s[POST].run(ctx)
    assert tree_digest(dst_dir(tmp_path)) == tree_digest(src_dir(tmp_path))
    s[POST].undo(ctx, journaled(post))
    s[PRE].undo(ctx, journaled(pre))
    assert list((tmp_path / "target" / "lib").iterdir()) == [tmp_path / "target" / "lib" / "glance"]
    assert not any((tmp_path / "target" / "lib" / "glance").iterdir())


class GlanceAtWork(LocalHost):
    """The old controller while its API still serves: an image is deleted and another one rewritten
    right when the pre-copy's tar starts (after the checksums were listed)."""

    def __init__(self, images: Path) -> None:
        super().__init__("source")
        self.images = images

    def popen(self, argv: list[str], *args: Any, **kwargs: Any) -> Any:
        if argv[0] == "tar" and (self.images / "img-b").exists():
            (self.images / "img-b").unlink()
            put(self.images / "img-c", image("img-c, recreated"))
        return super().popen(argv, *args, **kwargs)


def test_images_deleted_or_rewritten_during_the_precopy_are_left_to_the_copy(tmp_path: Path) -> None:
    ctx, s = Ctx(tmp_path, source_host=GlanceAtWork(src_dir(tmp_path))), steps()
    files = setup(tmp_path)
    before = tree_digest(tmp_path / "target")
    pre = s[PRE].run(ctx)
    assert pre["unsettled"] == ["img-b", "img-c"] and pre["copied_files"] == 3
    assert not (dst_dir(tmp_path) / "img-b").exists()
    post = s[POST].run(Ctx(tmp_path))
    assert post["copied_files"] == 0 and post["removed"] == []  # img-c came over in its new content
    files.pop("img-b")
    files["img-c"] = image("img-c, recreated")
    assert content(dst_dir(tmp_path)) == {**files, "target-own": b"the target's own file\n"}
    s[POST].undo(ctx, journaled(post))
    s[PRE].undo(ctx, journaled(pre))
    assert tree_digest(tmp_path / "target") == before


def _scenario(base: Path, kill: str | None) -> tuple[subprocess.CompletedProcess, dict[str, bytes]]:
    """setup, pre-copy, the source changes, the copy; the one step of *kill* killed at its fail point.
    Returns the child and the digest of the target before the run."""
    setup(base)
    before = tree_digest(base / "target")
    if kill == PRE:
        return _killed(base, PRE, "img-a"), before
    assert run_in_child(base, [PRE]).returncode == 0
    meanwhile(base)
    if kill == POST:
        return _killed(base, POST, "img-c"), before
    return run_in_child(base, [POST]), before


def _killed(base: Path, step: str, first: str) -> subprocess.CompletedProcess:
    """*step* killed at its fail point (after the first 64 KiB left the source), and the first file
    it copies left half written, as a kill a moment later leaves it (tar had written part of it)."""
    res = run_in_child(base, [step], f"{step}:inside")
    (dst_dir(base) / first).write_bytes((src_dir(base) / first).read_bytes()[:100_000])
    return res


@pytest.mark.parametrize("kill", [PRE, POST])
def test_killed_inside_resumes_to_the_same_end_state(tmp_path: Path, kill: str) -> None:
    ref = tmp_path / "ref"
    done, _ = _scenario(ref, None)
    assert done.returncode == 0, done.stderr

    base = tmp_path / "killed"
    killed, _ = _scenario(base, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (base / "artifacts" / f"{kill}.writes.json").exists()
    if kill == PRE:  # the partial copies are the step's own: no clash on resume
        assert run_in_child(base, [PRE]).returncode == 0
        meanwhile(base)
    res = run_in_child(base, [POST])
    assert res.returncode == 0, res.stderr
    assert tree_digest(base / "target") == tree_digest(ref / "target")
    assert {k: v for k, v in tree_digest(dst_dir(base)).items() if k != "target-own"} == tree_digest(src_dir(base))
    mine = json.loads((base / "results.json").read_text())
    theirs = json.loads((ref / "results.json").read_text())
    for key in ("files", "sha256", "added"):
        assert mine[POST][key] == theirs[POST][key], key
    assert mine[PRE]["added"] == theirs[PRE]["added"] == ["img-a", "img-b", "img-c"]


@pytest.mark.parametrize("kill", [PRE, POST])
def test_undo_after_a_kill_inside_restores_the_target_byte_for_byte(tmp_path: Path, kill: str) -> None:
    ctx, s = Ctx(tmp_path), steps()
    killed, before = _scenario(tmp_path, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if kill == POST:
        s[POST].undo(ctx, None)  # interrupted: its writes manifest says what it may have written
        assert (dst_dir(tmp_path) / "img-a").exists()  # the pre-copy's: not the copy's to remove
        pre = json.loads((tmp_path / "results.json").read_text())[PRE]
        s[PRE].undo(ctx, journaled(pre))
    else:
        s[PRE].undo(ctx, None)
    assert tree_digest(tmp_path / "target") == before
    s[PRE].undo(ctx, None)  # a revert that dies runs the undo again: still the same
    assert tree_digest(tmp_path / "target") == before


def test_a_target_file_with_other_content_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    ctx, s = Ctx(tmp_path), steps()
    setup(tmp_path)
    put(dst_dir(tmp_path) / "img-b", b"not the source's img-b")
    before = tree_digest(tmp_path / "target")
    with pytest.raises(StepError, match=r"already holds 1 file\(s\) that differ from the source's \(img-b\) "
                                        r"— move them away, then `upgrade resume`"):
        s[PRE].run(ctx)
    assert tree_digest(tmp_path / "target") == before
    s[PRE].undo(ctx, None)  # the failed step's undo (revert) removes nothing
    assert tree_digest(tmp_path / "target") == before


def test_a_clash_that_appears_after_the_precopy_is_refused_by_the_copy(tmp_path: Path) -> None:
    """A source file named like one the target held before the run, with other bytes, new since the
    pre-copy: the copy inside the window refuses before writing anything (not even img-d)."""
    ctx, s = Ctx(tmp_path), steps()
    setup(tmp_path)
    s[PRE].run(ctx)
    meanwhile(tmp_path)
    put(src_dir(tmp_path) / "target-own", b"another file of that name")
    after_pre = tree_digest(tmp_path / "target")
    with pytest.raises(StepError, match=r"differ from the source's \(target-own\)"):
        s[POST].run(ctx)
    assert tree_digest(tmp_path / "target") == after_pre
