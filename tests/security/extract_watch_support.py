"""Shared by the attacks on a running workspace's extract: the hub, what the kernel reads, the
build the workspace mounts, and a new publication."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hub_identity_support import started_world
from hubfixtures import write_extract
from project_end_support import PROJECT, make_quota_world
from published import publish_by_hand

from pds_kernel.extract.build import remove_superseded


@pytest.fixture(name="world", scope="module")
def watch_world_fixture():
    """One real hub for a module (the quota world: the watcher every second), alice provisioned."""
    with started_world(make_quota_world) as world:
        yield world


READ = "import os; print(sorted(os.listdir('/data')), os.path.getsize('/data/ER_PRS_F.parquet'))"


def build_of(hub):
    """The build alice's workspace mounts: the project's ``extract`` link's target."""
    link = hub.settings.paths.projects / PROJECT / "extract"
    return link.parent / os.readlink(link)


def republish(hub) -> None:
    """A fresh extract, published as a build publishes one: recorded, then the previous build
    removed by the builder's own function."""
    pdir = hub.settings.paths.projects / PROJECT
    old = build_of(hub)
    (pdir / "extract").unlink()
    write_extract(pdir / "extract", rows=120)
    publish_by_hand(hub.runtime, PROJECT, actor="root")
    remove_superseded(old)
