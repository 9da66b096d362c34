"""Fixtures of the hub tests (helpers in hubfixtures.py)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hubfixtures import free_port_block, make_world

#: Characters of the hub's log shown under a failed test (the gate's and the proxy's lines are in it).
LOG_TAIL_CHARS = 12_000
#: Whether a test's call failed (kept for the fixtures' teardown).
CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def hub_world(request):
    """A registry and config in a short temp dir; the hub is not started. Under a failed test, the
    tail of the hub's log is printed (shown as the teardown's captured output)."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = Path(tempfile.mkdtemp(prefix="pdsh", dir="/tmp"))
    hub = make_world(root, free_port_block())
    yield hub
    if request.node.stash.get(CALL_FAILED, False) and hub.log is not None and hub.log.exists():
        print(f"--- the last {LOG_TAIL_CHARS} characters of {hub.log} ---")
        print(hub.log.read_text(errors="replace")[-LOG_TAIL_CHARS:])
    hub.stop()
    hub.runtime.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hub(hub_world):
    hub_world.start()
    return hub_world
