"""Shared by the attacks on a running workspace's build when a newer publication supersedes it
(test_extract_superseded_while_running.py, test_redteam22_superseded_watch.py): a published build,
what a workspace's start took of it, a newer publication, and the watcher's pass on it."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

from published import publish_by_hand

from pds_kernel.extract.mount_check import check_for_workspace
from pds_kernel.extract.mount_watch import MountedExtract, changed_mounts, open_watched

PROJECT = "p-superseded"


def write_build(runtime, folders: int, per_folder: int) -> Path:
    """Publish an extract of ``folders`` partition folders of ``per_folder`` files and one flat file."""
    written = runtime.settings.paths.projects / PROJECT / "extract"
    written.mkdir(parents=True)
    (written / "COHORT.parquet").write_bytes(b"cohort rows" * 50)
    for f in range(folders):
        folder = written / f"ER_PRS_F_{f:02d}"
        folder.mkdir()
        for i in range(per_folder):
            (folder / f"part-{i:05d}.parquet").write_bytes(f"rows {f} {i} ".encode() * 20)
    return publish_by_hand(runtime, PROJECT)


@contextmanager
def started(runtime, folders: int = 2, per_folder: int = 4):
    """A published build and what a workspace's start took of it (the watcher's reference)."""
    build = write_build(runtime, folders, per_folder)
    mounted = open_watched(runtime.settings, check_for_workspace(runtime.settings, runtime.audit, PROJECT))
    try:
        yield build, mounted
    finally:
        os.close(mounted.directory)


def publish_newer(runtime) -> None:
    """A newer build published and recorded; the one the workspace mounts not removed yet."""
    link = runtime.settings.paths.projects / PROJECT / "extract"
    link.unlink()
    link.mkdir()
    (link / "COHORT.parquet").write_bytes(b"newer cohort rows" * 40)
    publish_by_hand(runtime, PROJECT)


def files(build: Path) -> list[Path]:
    return sorted(p for p in build.rglob("*") if p.is_file())


def writable(build: Path) -> None:
    """What the removal does first (and what a builder who owns the files can do): folders 0700."""
    for folder in [build, *(p for p in build.iterdir() if p.is_dir())]:
        os.chmod(folder, stat.S_IRWXU)


def watcher_pass(runtime, mounted: MountedExtract) -> tuple[str, str] | None:
    """``(cause, reason)`` of the watcher's pass for a workspace mounting ``mounted``, or ``None``."""
    stops = changed_mounts(runtime.settings, runtime.audit, {("alice", PROJECT): mounted})
    return None if not stops else stops[0][2:]
