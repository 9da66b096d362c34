"""Red team 7 of the watch over a running workspace's extract (:mod:`pds_kernel.extract.mount_watch`):
the hub's restart path.

The hub remembers what each running workspace mounts (the build and its fingerprint at the start)
in the spawner's saved state, in the hub's own database, and reads it again when it starts. Someone
who can write the hub's database and the project's directory on the host (an intruder on the hub's
machine) kills the hub, edits alice's saved state so that the watcher has nothing, or the changed
tree's fingerprint (computed from ``stat`` alone, no key needed), to compare with, changes the
extract's files and starts the hub again, hoping her workspace runs on, unwatched.

Both attempts FAILED already: on one machine the sandbox is bubblewrap's child with
``--die-with-parent`` (the launcher execs it from the hub's process), so it dies with the hub; the
restarted hub finds no live sandbox, forgets the state, and the next start checks the extract again
and refuses it. The saved state is never what a live sandbox is watched against after a restart
(docs/isolation.md, "Extract changed while a workspace runs").

One real hub for the module, alice's workspace in a real bubblewrap sandbox, the hub killed with
SIGKILL and its SQLite database edited with the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest
from extract_watch_support import READ, build_of, republish, watch_world_fixture  # noqa: F401  (the fixture world)
from hubfixtures import write_extract
from project_end_support import PROJECT, execute, running, start_workspace
from published import publish_by_hand

from pds_kernel.extract.tree import fingerprint
from pds_kernel.hub.local import hub_db_url

pytestmark = pytest.mark.functional


def _kill_hub(hub) -> None:
    """The hub dies at once, cleaning up nothing (a crash, a kill)."""
    os.killpg(hub.proc.pid, signal.SIGKILL)
    hub.proc.wait()


def _edit_state(hub, edit) -> None:
    """``edit(state)`` on alice's saved spawner state of the project, in the hub's database."""
    path = hub_db_url(hub.settings).removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT spawners.id, spawners.state FROM spawners JOIN users ON users.id = spawners.user_id "
                          "WHERE users.name = ? AND spawners.name = ?", (f"alice@{PROJECT}", PROJECT)).fetchall()
        assert len(rows) == 1, rows
        state = json.loads(rows[0][1])
        assert "extract" in state, state
        edit(state)
        db.execute("UPDATE spawners SET state = ? WHERE id = ?", (json.dumps(state), rows[0][0]))


def _append_rows(hub) -> None:
    target = build_of(hub) / "ER_PRS_F.parquet"
    os.chmod(target, 0o644)
    with open(target, "ab") as out:
        out.write(b"\0" * 4096)


def _gone_and_refused(hub, alice) -> None:
    """alice's workspace did not outlive the hub (the restarted hub may take a few seconds to poll
    it), and its next start is refused (extract changed)."""
    deadline = time.monotonic() + 60
    while running(hub, "alice") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not running(hub, "alice"), "the workspace outlived its hub, on an extract changed unseen"
    again = alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}")
    assert again.status_code == 403, again.text
    assert "extract of project" in again.text and "cannot be mounted" in again.text


def _restart_with(hub, secret, edit):
    """alice's workspace running, the hub killed, her saved state edited, the hub started again."""
    alice, url = start_workspace(hub, secret)
    assert "ER_PRS_F.parquet" in execute(url, alice.token, READ, timeout=60)["stdout"]
    _kill_hub(hub)
    _edit_state(hub, edit)
    return alice, url


def test_the_record_of_the_mounted_extract_removed_from_the_hub_database(world):
    hub, secret = world
    alice, _url = _restart_with(hub, secret, lambda state: state.pop("extract"))
    _append_rows(hub)
    hub.start()
    _gone_and_refused(hub, alice)
    republish(hub)


def test_the_recorded_fingerprint_replaced_by_the_changed_trees(world):
    hub, secret = world

    def forge(state: dict) -> None:
        _append_rows(hub)
        fd = os.open(build_of(hub), os.O_RDONLY | os.O_DIRECTORY)
        try:
            state["extract"]["fingerprint"] = fingerprint(fd)
        finally:
            os.close(fd)

    alice, _url = _restart_with(hub, secret, forge)
    hub.start()
    _gone_and_refused(hub, alice)
    republish(hub)


def test_the_mounted_build_moved_away_as_a_new_one_is_published(world):
    """GOT THROUGH before: the host writer renames the build alice's workspace mounts out of
    ``builds/`` just as a data manager publishes a new extract (publishing removes the previous
    build: it finds none to remove). The watcher, finding the build gone and a newer one published,
    took it for the publication's removal and watched no more; the moved files, still mounted in
    alice's sandbox, were then rewritten and read unchecked. Now the hub watches the directory it
    checked through a descriptor, wherever it is moved, and a superseded build stops the
    workspaces that mount it (``extract republished``, session 22)."""
    hub, secret = world
    alice, url = start_workspace(hub, secret)
    assert "ER_PRS_F.parquet" in execute(url, alice.token, READ, timeout=60)["stdout"]
    mounted = build_of(hub)
    moved = mounted.parent.parent / "moved-away"
    os.rename(mounted, moved)
    pdir = hub.settings.paths.projects / PROJECT
    (pdir / "extract").unlink()
    write_extract(pdir / "extract", rows=120)
    publish_by_hand(hub.runtime, PROJECT, actor="root")
    time.sleep(3)  # the watcher's passes after the publication
    os.chmod(moved / "ER_PRS_F.parquet", 0o644)
    with open(moved / "ER_PRS_F.parquet", "ab") as out:
        out.write(b"\0" * 4096)
    deadline = time.monotonic() + 30
    while running(hub, "alice") and time.monotonic() < deadline:
        time.sleep(0.3)
    if running(hub, "alice"):
        seen = execute(url, alice.token, READ, timeout=60)["stdout"]
        pytest.fail(f"got through: the workspace runs on, reading the moved, changed build: {seen}")
    stops = [e for e in hub.actions("workspace.stop") if mounted.name in e.details.get("reason", "")]
    # stopped at the first pass after the publication (the build superseded), before the rewrite
    assert stops and stops[-1].details["cause"] in {"extract republished", "extract changed"}, stops
    for path in [moved, *moved.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    shutil.rmtree(moved)


NEST = """
import os
fd = os.open('/home/jovyan', os.O_RDONLY | os.O_DIRECTORY)
for _ in range(20):  # 20 names of 250 characters: a path longer than the system's 4096
    os.mkdir('x' * 250, dir_fd=fd)
    inner = os.open('x' * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = inner
print('nested')
"""


def test_a_home_nested_deeper_than_a_path_can_name(world):
    """GOT THROUGH before: alice's kernel nests folders in her home until its path is longer than
    the system can name (each step relative to the last). Measuring her home raised ``File name too
    long`` and ended the watcher's every pass before its extract check, for every workspace: no
    home quota was enforced and no changed extract seen while her folders stayed. Now the home is
    measured through directory descriptors (``pds_kernel/trees.py``; one that still cannot be
    counts as over the quota), and the watcher goes on: her extract changed, she is stopped."""
    hub, secret = world
    alice, url = start_workspace(hub, secret)
    assert "nested" in execute(url, alice.token, NEST, timeout=60)["stdout"]
    home = hub.settings.paths.homes / PROJECT / "alice"
    try:
        time.sleep(2)  # passes of the watcher over the nested home
        assert running(hub, "alice")
        _append_rows(hub)
        deadline = time.monotonic() + 30
        while running(hub, "alice") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not running(hub, "alice"), "the watcher's pass ended on the nested home: the changed extract was not seen"
        stop = [e for e in hub.actions("workspace.stop") if e.details.get("checked_at") == "watcher"][-1]
        assert stop.details["cause"] == "extract changed", stop.details
    finally:
        subprocess.run(["find", str(home / ("x" * 250)), "-depth", "-delete"], check=True)
        republish(hub)
