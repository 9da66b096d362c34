"""The Kubernetes hub with its watchers, its real proxy and two projects, for the attacks on the
membership watcher (test_k8s_membership_watcher, test_redteam9_k8s_watcher), and what they read of it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest_asyncio

from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from tests.k8s.conftest import two_projects, use_dummy_kubeconfig
from tests.k8s.k8s_hub import Hub, start_hub, start_notebook_stand_in, start_proxy, stop_watched_hub

INTERVAL = 0.3  #: seconds between the watcher's passes here (10 by default)


@contextlib.asynccontextmanager
async def watched_hub(settings, tmp_path, monkeypatch, load_roles: list | None = None):
    """The hub with its watchers and its proxy (``load_roles``: the chart's ``hub.loadRoles``)."""
    use_dummy_kubeconfig(tmp_path, monkeypatch)
    notebook, notebook_url = start_notebook_stand_in()
    app, server, api_url = await start_hub(settings, f"sqlite:///{tmp_path}/hub.sqlite", tmp_path, notebook_url,
                                           load_roles=load_roles)
    proxy = start_proxy(app)
    try:
        yield Hub(app, api_url, app.services)
    finally:
        await stop_watched_hub(app, server, proxy, notebook)


@pytest_asyncio.fixture(name="world")
async def watcher_world_fixture(settings, tmp_path, monkeypatch):
    settings = replace(settings, hub=replace(settings.hub, membership_check_seconds=INTERVAL))
    runtime = Runtime(settings)
    registry = two_projects(Registry.from_runtime(runtime))
    try:
        async with watched_hub(settings, tmp_path, monkeypatch) as hub:
            yield hub, registry, runtime
    finally:
        runtime.close()


async def running_alpha(hub: Hub, name: str):
    user = hub.sign_in(name, ["alpha-study"])
    await hub.start_server(user, "alpha-study")
    spawner = hub.workspace_user(user, "alpha-study").spawners["alpha-study"]  # its workspace user (ADR 17)
    assert spawner.active
    return spawner


async def stopped_within(spawner, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if not spawner.active:
            return True
        await asyncio.sleep(0.05)
    return not spawner.active


def watcher_stops(runtime, user: str) -> list:
    return [e for e in runtime.audit.entries(action="workspace.stop")
            if e.target == f"user:{user}" and (e.details or {}).get("checked_at") == "watcher"]


async def audited_stops(runtime, user: str, seconds: float = 5) -> list:
    """The watcher's ``workspace.stop`` entries of ``user`` (written once it saw the server stopped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not (found := watcher_stops(runtime, user)) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return found
