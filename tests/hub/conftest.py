"""Fixtures of the hub tests (helpers in hubfixtures.py)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hubfixtures import free_port_block, make_world


@pytest.fixture
def hub_world():
    """A registry and config in a short temp dir; the hub is not started."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = Path(tempfile.mkdtemp(prefix="pdsh", dir="/tmp"))
    hub = make_world(root, free_port_block())
    yield hub
    hub.stop()
    hub.runtime.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hub(hub_world):
    hub_world.start()
    return hub_world
