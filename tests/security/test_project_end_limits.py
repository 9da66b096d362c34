"""Attacks on the end-of-project limits while a workspace runs: the home quota.

One real hub for the module (home quota 8 MB, watcher every second), alice's workspace in a real
bubblewrap sandbox; the attack runs as code in her kernel.
"""

from __future__ import annotations

import time

import pytest
from hub_identity_support import started_world
from project_end_support import PROJECT, QUOTA_MB, execute, make_quota_world, running, start_workspace
from websocket import WebSocketConnectionClosedException

pytestmark = pytest.mark.functional

#: Files of half the quota each, 12 MB in all: no single file passes the quota (the sandbox's
#: per-file limit refuses that one at once, test_disk_quota_attacks.py); their sum does.
FILL_CODE = f"""
import os
for part in range(3):
    with open(os.path.expanduser(f"~/results/cache-{{part}}.bin"), "wb") as out:
        for _ in range({QUOTA_MB // 2}):
            out.write(os.urandom(1024 * 1024))
print("written")
"""


@pytest.fixture(scope="module")
def world():
    with started_world(make_quota_world) as world:
        yield world


def test_filling_the_home_past_its_quota_while_the_workspace_runs(world):
    """alice's running workspace writes 12 MB, in three files under the quota each, into a home
    whose quota is 8 MB (checked at start only, before): the hub stops it within seconds, audited,
    and refuses to start it again."""
    hub, secret = world
    alice, url = start_workspace(hub, secret)
    try:
        result = execute(url, alice.token, "import os; os.makedirs(os.path.expanduser('~/results'), exist_ok=True)\n"
                         + FILL_CODE, timeout=60)
        assert "written" in result["stdout"], result  # the write itself is not blocked: the stop follows
    except WebSocketConnectionClosedException:
        pass  # a pass of the watcher came before the cell ended (a loaded machine): the stop, checked below
    deadline = time.monotonic() + 30
    while running(hub, "alice") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not running(hub, "alice"), "the workspace kept running with its home over the quota"
    stops = [e for e in hub.actions("workspace.stop")
             if e.project == PROJECT and e.details.get("cause") == "home over quota"]
    assert stops and f"over its limit of {QUOTA_MB} MB" in stops[0].details["reason"]
    again = alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}")
    assert again.status_code == 403, again.text
    assert "ask an administrator to free space" in again.text.lower()
