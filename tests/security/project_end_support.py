"""Support of tests/security/test_project_end_limits.py: one real hub (tests/hub/hubfixtures.py) with a
small home quota and a fast watcher, alice's account made by the registry administrator, and her
workspace started in a real bubblewrap sandbox."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hub_kernel import execute  # noqa: F401  (re-exported)
from hubfixtures import PASSWORD, PROJECT, Hub, free_port_block, make_world

from pds_kernel.hub.local import provision_account

#: The home quota of the world (MB) and how often the hub's watcher looks (seconds).
QUOTA_MB = 8
CHECK_SECONDS = 1


def make_quota_world(root: Path) -> tuple[Hub, str]:
    """The hubfixtures world with ``project_end.home_quota_mb`` = :data:`QUOTA_MB` and the watcher
    every :data:`CHECK_SECONDS`; returns (hub, alice's TOTP secret). The hub is not started."""
    hub = make_world(root, free_port_block())
    data = yaml.safe_load(hub.config.read_text())
    data["project_end"] = {"home_quota_mb": QUOTA_MB}
    data["hub"]["membership_check_seconds"] = CHECK_SECONDS
    hub.config.write_text(yaml.safe_dump(data))
    return hub, provision_account(hub.settings, hub.registry, "alice", PASSWORD, actor="root")


#: (hub URL, secret) -> alice's signed-in client: a second sign-in must wait for the next 30-second
#: code window (the hub takes a code once), so her API token is used again while the hub accepts it
_SIGNED_IN: dict = {}


def start_workspace(hub: Hub, secret: str):
    """alice signs in (or uses her token again, while the hub still takes it) and starts her workspace
    of :data:`PROJECT`; returns (client, server URL)."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    client = _SIGNED_IN.get((hub.url, secret))
    if client is None or client.api("GET", "/hub/api/users/alice").status_code != 200:
        client = hub.client()
        assert client.login("alice", secret)
        client.make_token("alice")
        _SIGNED_IN[(hub.url, secret)] = client
    started = client.api("POST", f"/hub/api/users/alice/servers/{PROJECT}")
    assert started.status_code in (201, 202), started.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.hub.workspaces("alice").get(PROJECT)
        if state and state["ready"]:
            return client, hub.server(state)
        time.sleep(0.3)
    raise TimeoutError("alice's workspace did not start")


def running(hub: Hub, user: str) -> bool:
    return PROJECT in hub.workspaces(user)
