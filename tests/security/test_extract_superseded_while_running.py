"""A new publication while a workspace runs: the build it mounts superseded, then removed.

A publication records the new build, then removes the build it replaces
(:func:`pds_kernel.extract.build.remove_superseded`: its folders made writable, its files unlinked
one by one). A fresh-clone CI run of session 21 caught the hub's watcher taking a half-removed
build for a tampered one: it stopped alice's workspace, audited ``cause: extract changed`` (a
false alarm of tampering), for a routine publication. A check of the files cannot tell that
removal from an attack (red team 22, test_redteam22_superseded_watch.py, got through an exception
made for it), so the watcher now asks the audit trail first: a build a newer publication superseded
stops the workspaces that mount it, ``cause: extract republished``, whatever state its removal is
in (their next start mounts the new build); a build losing its files with no newer publication is
changed. Each test runs the watcher's own pass
(:func:`~pds_kernel.extract.mount_watch.changed_mounts`) on what a start took
(:func:`~pds_kernel.extract.mount_watch.open_watched`); test_extract_changed_while_running.py
runs the whole path with a real hub.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from superseded_support import files, publish_newer, started, watcher_pass, writable

from pds_kernel.extract.build import remove_superseded
from pds_kernel.extract.mount_watch import CHANGED_CAUSE, REPUBLISHED_CAUSE

CHANGED = "changed after the workspace started"


@pytest.fixture(name="world")
def world_fixture(runtime):
    with started(runtime) as (build, mounted):
        yield runtime, build, mounted


def _remove_half(build: Path) -> None:
    """What the removal has done when a pass lands halfway: folders writable, every other file gone."""
    writable(build)
    for path in files(build)[::2]:
        path.unlink()


def test_a_superseded_build_stops_its_workspace_whatever_its_removal_has_done(world):
    """Recorded and intact, half removed (the pass CI caught), wholly removed: each pass says
    republished, never changed."""
    runtime, build, mounted = world
    assert watcher_pass(runtime, mounted) is None
    publish_newer(runtime)
    first = watcher_pass(runtime, mounted)
    assert first[0] == REPUBLISHED_CAUSE and build.name in first[1], first
    _remove_half(build)
    assert watcher_pass(runtime, mounted)[0] == REPUBLISHED_CAUSE
    remove_superseded(build)
    assert not build.exists()
    assert watcher_pass(runtime, mounted)[0] == REPUBLISHED_CAUSE


def test_the_watcher_racing_a_real_removal(runtime):
    """Passes taken back to back while the builder's removal of 2,400 files runs in another
    thread: each says republished (before, a pass landing in the removal said changed, or that
    the build could not be read); the test makes sure some landed while the build was half gone."""
    with started(runtime, folders=4, per_folder=600) as (build, mounted):
        publish_newer(runtime)
        remover = threading.Thread(target=remove_superseded, args=(build,))
        verdicts, halfway = [], 0
        remover.start()
        while remover.is_alive():
            entries = len(os.listdir(mounted.directory))
            verdicts.append(watcher_pass(runtime, mounted))
            halfway += 0 < entries and os.fstat(mounted.directory).st_nlink > 0
        remover.join()
        verdicts.append(watcher_pass(runtime, mounted))
        assert not build.exists()
        assert {cause for cause, _ in verdicts} == {REPUBLISHED_CAUSE}, verdicts[:3]
        assert halfway >= 1, "no pass landed during the removal: the race was not exercised"


def test_a_half_removed_build_that_no_publication_replaced(world):
    """An intruder removing the files of the current build: no newer publication, so the
    workspace is stopped as changed, then as removed."""
    runtime, build, mounted = world
    _remove_half(build)
    cause, reason = watcher_pass(runtime, mounted)
    assert cause == CHANGED_CAUSE and CHANGED in reason
    remove_superseded(build)
    cause, reason = watcher_pass(runtime, mounted)
    assert cause == CHANGED_CAUSE and "was removed" in reason


def test_an_audit_trail_that_cannot_be_read_leaves_the_files_watched(world, caplog):
    """The trail's table taken away under the hub (a database failing): the pass cannot tell a
    superseded build, so it compares the files all the same: an unchanged build runs on, a
    changed one is stopped as changed."""
    runtime, build, mounted = world
    with runtime.audit._sessions() as session:
        session.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
        session.commit()
    assert watcher_pass(runtime, mounted) is None
    assert "latest publication of project p-superseded could not be read" in caplog.text
    target = files(build)[-1]
    os.chmod(target, 0o644)
    with open(target, "ab") as out:
        out.write(b"forged rows")
    cause, reason = watcher_pass(runtime, mounted)
    assert cause == CHANGED_CAUSE and CHANGED in reason
