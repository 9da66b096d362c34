"""Attacks on the build a running workspace mounts while a newer publication removes it.

A publication removes the build it replaces (:func:`pds_kernel.extract.build.remove_superseded`:
its folders made writable, then its files unlinked one by one), once the new one is in the audit
trail; the workspaces that mount the old build keep running, and their next start mounts the new
one. A fresh-clone CI run of session 21 caught the hub's watcher
(:func:`pds_kernel.extract.mount_watch.mounted_extract_change`) taking a half-removed build for a
changed one: it stopped alice's workspace, `cause: extract changed`, for a routine publication (it
treated the build as superseded only once no link was left; and the removal came before the
publication's record). Now it remembers every entry's state at the start and lets a superseded
build lose entries, and its folders change permissions and times, and nothing else.

The attacker below writes in the build while it is superseded and not yet gone (a removal under way,
or one that stopped halfway): each attempt must still be seen as a change, and the workspace stopped.
The hub's watcher calls the same function at each pass, with what its spawner's start took
(:func:`~pds_kernel.extract.mount_watch.open_watched`); test_extract_changed_while_running.py runs
the whole path with a real hub.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from published import publish_by_hand

from pds_kernel.extract.build import remove_superseded
from pds_kernel.extract.mount_check import check_for_workspace
from pds_kernel.extract.mount_watch import MountedExtract, mounted_extract_change, open_watched

PROJECT = "p-superseded"
CHANGED = "changed after the workspace started"


def _write_build(runtime, folders: int, per_folder: int) -> Path:
    """Publish an extract of ``folders`` partition folders of ``per_folder`` files and one flat file."""
    written = runtime.settings.paths.projects / PROJECT / "extract"
    written.mkdir(parents=True)
    (written / "COHORT.parquet").write_bytes(b"cohort rows" * 50)
    for f in range(folders):
        folder = written / f"ER_PRS_F_{f}"
        folder.mkdir()
        for i in range(per_folder):
            (folder / f"part-{i:05d}.parquet").write_bytes(f"rows {f} {i} ".encode() * 20)
    return publish_by_hand(runtime, PROJECT)


@contextmanager
def _started(runtime, folders: int = 2, per_folder: int = 4):
    """A published build and what a workspace's start took of it (the watcher's reference)."""
    build = _write_build(runtime, folders, per_folder)
    mounted = open_watched(runtime.settings, check_for_workspace(runtime.settings, runtime.audit, PROJECT))
    try:
        yield build, mounted
    finally:
        os.close(mounted.directory)


@pytest.fixture(name="world")
def world_fixture(runtime):
    with _started(runtime) as (build, mounted):
        yield runtime, build, mounted


def _publish_newer(runtime) -> None:
    """A newer build published and recorded; the one the workspace mounts not removed yet."""
    link = runtime.settings.paths.projects / PROJECT / "extract"
    link.unlink()
    link.mkdir()
    (link / "COHORT.parquet").write_bytes(b"newer cohort rows" * 40)
    publish_by_hand(runtime, PROJECT)


def _files(build: Path) -> list[Path]:
    return sorted(p for p in build.rglob("*") if p.is_file())


def _remove_half(build: Path) -> None:
    """What the removal has done when a pass lands halfway: folders writable, every other file gone."""
    for folder in [build, *(p for p in build.iterdir() if p.is_dir())]:
        os.chmod(folder, stat.S_IRWXU)
    for path in _files(build)[::2]:
        path.unlink()


def _verdict(runtime, mounted: MountedExtract) -> str | None:
    return mounted_extract_change(runtime.settings, runtime.audit, mounted)


def test_a_half_removed_superseded_build_keeps_its_workspace_running(world):
    """The control: the pass that failed in CI, landing halfway through the removal."""
    runtime, build, mounted = world
    _publish_newer(runtime)
    assert _verdict(runtime, mounted) is None
    _remove_half(build)
    assert _verdict(runtime, mounted) is None
    remove_superseded(build)
    assert not build.exists()
    assert _verdict(runtime, mounted) is None


def test_the_watcher_racing_a_real_removal(runtime):
    """Passes taken back to back while the builder's removal runs in another thread: none of them
    may stop the workspace; the test makes sure some landed while the build was half gone."""
    with _started(runtime, folders=4, per_folder=600) as (build, mounted):
        _publish_newer(runtime)
        remover = threading.Thread(target=remove_superseded, args=(build,))
        verdicts, halfway = [], 0
        remover.start()
        while remover.is_alive():
            entries = len(os.listdir(mounted.directory))
            verdicts.append(_verdict(runtime, mounted))
            halfway += 0 < entries and os.fstat(mounted.directory).st_nlink > 0
        remover.join()
        verdicts.append(_verdict(runtime, mounted))
        assert not build.exists()
        assert set(verdicts) == {None}, [v for v in verdicts if v][:1]
        assert halfway >= 1, "no pass landed during the removal: the race was not exercised"


@pytest.mark.parametrize("halfway", [False, True], ids=["before the removal", "removal stopped halfway"])
def test_a_file_of_a_superseded_build_rewritten_in_place(world, halfway):
    runtime, build, mounted = world
    _publish_newer(runtime)
    if halfway:
        _remove_half(build)
    target = _files(build)[-1]
    os.chmod(target.parent, stat.S_IRWXU)
    os.chmod(target, 0o644)
    with open(target, "r+b") as out:  # the same size, the same inode
        out.write(b"X")
    assert CHANGED in _verdict(runtime, mounted)


@pytest.mark.parametrize("halfway", [False, True], ids=["before the removal", "removal stopped halfway"])
def test_a_file_added_to_a_superseded_build(world, halfway):
    runtime, build, mounted = world
    _publish_newer(runtime)
    if halfway:
        _remove_half(build)
    folder = next(p for p in build.iterdir() if p.is_dir())
    os.chmod(folder, stat.S_IRWXU)
    (folder / "part-99999.parquet").write_bytes(b"planted rows")
    assert CHANGED in _verdict(runtime, mounted)


def test_a_file_of_a_superseded_build_replaced_by_another_of_the_same_size(world):
    runtime, build, mounted = world
    _publish_newer(runtime)
    _remove_half(build)
    target = _files(build)[-1]
    forged = target.with_name(".forged")
    forged.write_bytes(bytes(reversed(target.read_bytes())))
    os.chmod(forged, 0o444)
    os.rename(forged, target)
    assert CHANGED in _verdict(runtime, mounted)


def test_a_removed_file_brought_back_under_its_name(world):
    """A file the removal unlinked, put back (a copy, or another file of the build renamed to it)."""
    runtime, build, mounted = world
    _publish_newer(runtime)
    gone = _files(build)[0]
    kept = _files(build)[1]
    _remove_half(build)
    assert not gone.exists() and kept.exists()
    os.rename(kept, gone)
    assert CHANGED in _verdict(runtime, mounted)


def test_a_folder_of_a_superseded_build_replaced_by_one_holding_the_same_files(world):
    """The files hard-linked into a new folder renamed over the old one: every file's bytes, inode
    and times are the same; the folder is another."""
    runtime, build, mounted = world
    _publish_newer(runtime)
    os.chmod(build, stat.S_IRWXU)
    folder = next(p for p in build.iterdir() if p.is_dir())
    os.chmod(folder, stat.S_IRWXU)
    other = build / ".other"
    other.mkdir()
    for path in sorted(folder.iterdir()):
        os.link(path, other / path.name)
    shutil.rmtree(folder)
    os.rename(other, folder)
    assert CHANGED in _verdict(runtime, mounted)


def test_a_half_removed_build_that_no_publication_replaced(world):
    """An intruder removing the files of the current build: no newer publication, so it is no
    removal of a superseded build, and the workspace is stopped."""
    runtime, build, mounted = world
    _remove_half(build)
    assert CHANGED in _verdict(runtime, mounted)
    remove_superseded(build)
    assert "was removed" in _verdict(runtime, mounted)
