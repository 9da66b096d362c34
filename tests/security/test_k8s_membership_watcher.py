"""Red team: on Kubernetes, a running workspace outlives the end of its user's access.

The local hub's watcher (:class:`pds_kernel.hub.expiry.MembershipWatcher`) stops, within
``hub.membership_check_seconds``, a running workspace whose membership was removed, whose project
was halted or whose account was disabled. The Kubernetes hub started no such watcher: a researcher
whose membership was revoked, or whose project an administrator halted on a suspected breach
(``pds project halt``, docs/deploy-kubernetes.md section 10, which said the hub's watcher stops them),
kept working in an open notebook pod until it was stopped by hand. All three attacks got through
before: the server stayed running.

The hub is the real JupyterHub 5.5 in Kubernetes mode, configured by
:func:`pds_kernel.hub.kubernetes.configure` (tests/k8s/k8s_hub.py): only the Kubernetes calls of
KubeSpawner are replaced. The watcher stops servers through the hub's REST API with the token of the
hub's own ``pds-watcher`` service, made at each start.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import pytest_asyncio

from pds_kernel.project_end import ProjectEnd
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from tests.k8s.conftest import two_projects, use_dummy_kubeconfig
from tests.k8s.k8s_hub import Hub, start_hub, start_notebook_stand_in, start_proxy

pytestmark = pytest.mark.asyncio

INTERVAL = 0.3  #: seconds between the watcher's passes here (10 by default)


@pytest_asyncio.fixture
async def world(settings, tmp_path, monkeypatch):
    settings = replace(settings, hub=replace(settings.hub, membership_check_seconds=INTERVAL))
    runtime = Runtime(settings)
    registry = two_projects(Registry.from_runtime(runtime))
    use_dummy_kubeconfig(tmp_path, monkeypatch)
    notebook, notebook_url = start_notebook_stand_in()
    app, server, api_url = await start_hub(settings, f"sqlite:///{tmp_path}/hub.sqlite", tmp_path, notebook_url)
    proxy = start_proxy(app)
    try:
        yield Hub(app, api_url, app.services), registry, runtime
    finally:
        watcher = getattr(app.authenticator, "_watcher", None)
        if watcher is not None:
            await watcher.close()
        proxy.terminate()
        proxy.wait(10)
        server.stop()
        notebook.stop()
        app.db.close()
        runtime.close()


async def _running_alpha(hub: Hub, name: str):
    user = hub.sign_in(name, ["alpha-study"])
    await hub.start_server(user, "alpha-study")
    spawner = user.spawners["alpha-study"]
    assert spawner.active
    return spawner


async def _stopped_within(spawner, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if not spawner.active:
            return True
        await asyncio.sleep(0.05)
    return not spawner.active


def _watcher_stops(runtime, user: str) -> list:
    return [e for e in runtime.audit.entries(action="workspace.stop")
            if e.target == f"user:{user}" and (e.details or {}).get("checked_at") == "watcher"]


async def _audited_stops(runtime, user: str, seconds: float = 5) -> list:
    """The watcher's ``workspace.stop`` entries of ``user`` (written once it saw the server stopped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not (found := _watcher_stops(runtime, user)) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return found


async def test_workspace_of_a_removed_membership_is_stopped(world):
    hub, registry, runtime = world
    alice, bob = await _running_alpha(hub, "alice"), await _running_alpha(hub, "bob")
    registry.remove_member("admin", "alpha-study", "alice")
    assert await _stopped_within(alice, 20 * INTERVAL + 5)
    (entry,) = await _audited_stops(runtime, "alice")
    assert entry.project == "alpha-study" and entry.details["cause"] == "access revoked"
    assert bob.active and not _watcher_stops(runtime, "bob")  # the control: bob may still use it


async def test_workspaces_of_a_halted_project_are_stopped(world):
    hub, registry, runtime = world
    registry.upsert_user("admin", "ada", is_admin=True)  # the first administrator: approved at once
    alice, bob = await _running_alpha(hub, "alice"), await _running_alpha(hub, "bob")
    ProjectEnd(runtime).halt("ada", "alpha-study", "suspected breach")
    assert await _stopped_within(alice, 20 * INTERVAL + 5) and await _stopped_within(bob, 5)
    assert await _audited_stops(runtime, "alice") and await _audited_stops(runtime, "bob")


async def test_workspace_of_a_disabled_account_is_stopped(world):
    hub, registry, runtime = world
    alice = await _running_alpha(hub, "alice")
    registry.upsert_user("admin", "alice", active=False)
    assert await _stopped_within(alice, 20 * INTERVAL + 5)
    assert await _audited_stops(runtime, "alice")


async def test_the_watchers_token_stops_servers_and_nothing_else(world):
    """Its service holds ``admin:servers`` only: it cannot list users or read tokens."""
    hub, _registry, _runtime = world
    from tornado.httpclient import AsyncHTTPClient

    token = hub.service_tokens["pds-watcher"]
    for path in ("/users", "/users/alice/tokens", "/groups"):
        response = await AsyncHTTPClient().fetch(f"{hub.api_url}{path}", raise_error=False,
                                                 headers={"Authorization": f"token {token}"})
        assert response.code in (403, 404), (path, response.code, response.body[:200])


async def test_a_stop_the_hub_did_not_carry_out_is_not_audited_as_done(world):
    """JupyterHub answers 204 to a stop whose proxy route it could not remove, and leaves the server
    running. Before, the watcher took the 204 for a stop and wrote ``workspace.stop`` at every pass
    for a server that still ran. Now it writes nothing until it sees the server stopped."""
    hub, registry, runtime = world
    alice = await _running_alpha(hub, "alice")
    working = hub.app.proxy.api_url
    hub.app.proxy.api_url = "http://127.0.0.1:9"  # discard port: nothing listens, the route stays
    registry.remove_member("admin", "alpha-study", "alice")
    await asyncio.sleep(6 * INTERVAL + 6)  # passes whose stops fail (each waits 5 s for the server)
    assert alice.active and not _watcher_stops(runtime, "alice")
    hub.app.proxy.api_url = working  # the proxy back: the next pass stops it, audited once
    assert await _stopped_within(alice, 20 * INTERVAL + 10)
    assert len(await _audited_stops(runtime, "alice")) == 1
