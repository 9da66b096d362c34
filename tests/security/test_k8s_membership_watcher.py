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

import pytest
from k8s_watcher_support import (  # noqa: F401  (the world fixture)
    INTERVAL,
    audited_stops,
    running_alpha,
    stopped_within,
    watcher_stops,
    watcher_world_fixture,
)

from pds_kernel.project_end import ProjectEnd

pytestmark = pytest.mark.asyncio


async def test_workspace_of_a_removed_membership_is_stopped(world):
    hub, registry, runtime = world
    alice, bob = await running_alpha(hub, "alice"), await running_alpha(hub, "bob")
    registry.remove_member("admin", "alpha-study", "alice")
    assert await stopped_within(alice, 20 * INTERVAL + 5)
    (entry,) = await audited_stops(runtime, "alice")
    assert entry.project == "alpha-study" and entry.details["cause"] == "access revoked"
    assert bob.active and not watcher_stops(runtime, "bob")  # the control: bob may still use it


async def test_workspaces_of_a_halted_project_are_stopped(world):
    hub, registry, runtime = world
    registry.upsert_user("admin", "ada", is_admin=True)  # the first administrator: approved at once
    alice, bob = await running_alpha(hub, "alice"), await running_alpha(hub, "bob")
    ProjectEnd(runtime).halt("ada", "alpha-study", "suspected breach")
    assert await stopped_within(alice, 20 * INTERVAL + 5) and await stopped_within(bob, 5)
    assert await audited_stops(runtime, "alice") and await audited_stops(runtime, "bob")


async def test_workspace_of_a_disabled_account_is_stopped(world):
    hub, registry, runtime = world
    alice = await running_alpha(hub, "alice")
    registry.upsert_user("admin", "alice", active=False)
    assert await stopped_within(alice, 20 * INTERVAL + 5)
    assert await audited_stops(runtime, "alice")


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
    alice = await running_alpha(hub, "alice")
    working = hub.app.proxy.api_url
    hub.app.proxy.api_url = "http://127.0.0.1:9"  # discard port: nothing listens, the route stays
    registry.remove_member("admin", "alpha-study", "alice")
    await asyncio.sleep(6 * INTERVAL + 6)  # passes whose stops fail (each waits 5 s for the server)
    assert alice.active and not watcher_stops(runtime, "alice")
    hub.app.proxy.api_url = working  # the proxy back: the next pass stops it, audited once
    assert await stopped_within(alice, 20 * INTERVAL + 10)
    assert len(await audited_stops(runtime, "alice")) == 1
