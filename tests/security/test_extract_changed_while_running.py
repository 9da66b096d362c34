"""Attacks on the extract while a workspace runs: its files changed after the start's check.

A workspace's start checks its extract against the audit trail and mounts the build it checked
(test_extract_mount_attacks.py). Someone who can write the project's directory on the host (a
data manager's script gone wrong, an intruder) changes the build's files while alice's workspace
runs. Before the watcher compared the build with its state at the start, alice's kernel read the
changed rows, unchecked, until her next start: both attempts below GOT THROUGH. Now the hub's
watcher (every second here) stops the workspace, audited as ``workspace.stop`` with ``cause:
extract changed``, and its next start is refused. A new publication, which removes the build a
running workspace mounts, is no tampering: that workspace is stopped as ``extract republished``
(never as changed: session 21's CI caught a pass during the removal doing that), and its next
start mounts the new build.

One real hub for the module (tests/hub/hubfixtures.py), alice's workspace in a real bubblewrap
sandbox; the extract's files are changed as root on the host.
"""

from __future__ import annotations

import html
import os
import time

import pytest
from extract_watch_support import READ, build_of, republish, watch_world_fixture  # noqa: F401  (the fixture world)
from project_end_support import PROJECT, execute, running, start_workspace

pytestmark = pytest.mark.functional


def _stopped_for_the_extract(hub) -> dict:
    deadline = time.monotonic() + 30
    while running(hub, "alice") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not running(hub, "alice"), "the workspace kept running on an extract changed after its start"
    stops = [e for e in hub.actions("workspace.stop") if e.project == PROJECT
             and e.details.get("cause") == "extract changed" and e.details.get("checked_at") == "watcher"]
    assert stops, [e.details for e in hub.actions("workspace.stop")][-3:]
    assert "changed after the workspace started" in stops[-1].details["reason"]
    return stops[-1].details


def _start_refused(alice) -> None:
    again = alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}")
    assert again.status_code == 403, again.text
    assert "extract of project" in again.text and "cannot be mounted" in again.text


def test_rows_appended_to_an_extract_file_while_the_workspace_runs(world):
    hub, secret = world
    alice, url = start_workspace(hub, secret)
    before = execute(url, alice.token, READ, timeout=60)["stdout"]
    assert "ER_PRS_F.parquet" in before
    target = build_of(hub) / "ER_PRS_F.parquet"
    os.chmod(target, 0o644)
    with open(target, "ab") as out:  # same inode: what the sandbox's mount shows at once
        out.write(b"\0" * 4096)
    _stopped_for_the_extract(hub)
    _start_refused(alice)
    republish(hub)


def test_an_extract_file_replaced_by_another_of_the_same_size(world):
    """The same bytes' length, a new inode renamed over the old one, the mode put back."""
    hub, secret = world
    alice, url = start_workspace(hub, secret)
    assert "ER_PRS_F.parquet" in execute(url, alice.token, READ, timeout=60)["stdout"]
    build = build_of(hub)
    os.chmod(build, 0o755)
    target = build / "ER_PRS_F.parquet"
    forged = build / ".forged"
    forged.write_bytes(bytes(reversed(target.read_bytes())))
    os.chmod(forged, 0o444)
    os.rename(forged, target)
    os.chmod(build, 0o555)
    _stopped_for_the_extract(hub)
    _start_refused(alice)
    republish(hub)


def test_a_new_publication_stops_a_running_workspace_as_republished(world):
    """The control: a data manager publishes a new extract (the build alice mounts is removed): her
    workspace is stopped, audited ``cause: extract republished`` (never ``extract changed``), her
    home page says why, and her next start mounts the new build."""
    hub, secret = world
    alice, _url = start_workspace(hub, secret)
    mounted = build_of(hub).name
    republish(hub)
    deadline = time.monotonic() + 30
    while running(hub, "alice") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not running(hub, "alice"), "the workspace kept running on a superseded build"
    stops = [e.details for e in hub.actions("workspace.stop") if mounted in e.details.get("reason", "")]
    assert [d["cause"] for d in stops] == ["extract republished"], stops
    assert stops[0]["checked_at"] == "watcher"
    told = f"Your workspace {PROJECT} was stopped: a newer version of the project's extract was published"
    assert told in html.unescape(alice.get("/hub/home").text)
    alice, url = start_workspace(hub, secret)
    assert "ER_PRS_F.parquet" in execute(url, alice.token, READ, timeout=60)["stdout"]
    assert build_of(hub).name != mounted
    stop = alice.api("DELETE", f"/hub/api/users/alice/servers/{PROJECT}")
    assert stop.status_code in (202, 204), stop.text
