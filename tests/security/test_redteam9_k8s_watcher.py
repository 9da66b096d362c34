"""Red team 9: the Kubernetes hub's membership watcher, held up or sent elsewhere.

The hub is the real JupyterHub 5.5 in Kubernetes mode with its real proxy (tests/k8s/k8s_hub.py,
the world of test_k8s_membership_watcher): only KubeSpawner's Kubernetes calls are replaced.

- **One stop that hangs.** A pod stuck terminating (a node that stopped answering, an NFS mount
  hung under a researcher's load on /data) makes KubeSpawner's stop wait. The watcher awaited each
  stop in turn (JupyterHub answers 202 after 10 s, then the watcher waited 60 s more for the
  server), so the whole watcher was blind meanwhile: another researcher whose membership was
  removed kept working. Got through before; each stop now runs on its own.
- **A name that is a path.** JupyterHub's rename API (``PATCH /hub/api/users/NAME``) checks no
  name: an account renamed ``bob/servers/alpha-study#`` made the watcher's ``DELETE`` stop bob's
  workspace, every pass, and never the renamed one. Got through before; the names are now
  percent-encoded in the path.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from jupyterhub import orm, roles
from k8s_watcher_support import (  # noqa: F401  (the world fixture)
    INTERVAL,
    audited_stops,
    running_alpha,
    stopped_within,
    watcher_stops,
    watcher_world_fixture,
)
from tornado.httpclient import AsyncHTTPClient

from tests.k8s.k8s_hub import NoClusterSpawner

pytestmark = pytest.mark.asyncio


async def test_a_hanging_stop_does_not_hold_the_other_stops(world, monkeypatch):
    hub, registry, runtime = world
    released = asyncio.Event()
    stop = NoClusterSpawner.stop

    async def hanging_stop(self, now=False):
        if self.user.name == "bob":
            await released.wait()  # his pod stuck terminating
        return await stop(self, now)

    monkeypatch.setattr(NoClusterSpawner, "stop", hanging_stop)
    stuck = await running_alpha(hub, "bob")  # his pod is the one stuck terminating
    alice = await running_alpha(hub, "alice")
    try:
        registry.remove_member("admin", "alpha-study", "bob")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20 * INTERVAL + 5
        while stuck.pending != "stop" and loop.time() < deadline:  # the watcher began his stop
            await asyncio.sleep(0.05)
        assert stuck.pending == "stop"
        registry.remove_member("admin", "alpha-study", "alice")
        assert await stopped_within(alice, 20 * INTERVAL + 3), "alice's stop waited behind bob's"
        assert len(await audited_stops(runtime, "alice")) == 1
        assert stuck.active and not watcher_stops(runtime, "bob")  # not stopped: not audited
    finally:
        released.set()
    assert await stopped_within(stuck, 10)
    assert len(await audited_stops(runtime, "bob")) == 1  # audited once, once seen stopped


async def _rename(hub, old: str, new: str) -> None:
    """JupyterHub's own rename API, called with a token holding ``admin:users`` (a service the
    chart's ``hub.services`` and ``hub.loadRoles`` give that role: the hub's own sign-ins never
    keep a JupyterHub administrator)."""
    service = orm.Service(name="ops")
    hub.app.db.add(service)
    hub.app.db.commit()
    roles.grant_role(hub.app.db, entity=service, rolename="admin")
    token = service.new_api_token(scopes=["admin:users"])
    response = await AsyncHTTPClient().fetch(
        f"{hub.api_url}/users/{old}", method="PATCH", body=json.dumps({"name": new}),
        headers={"Authorization": f"token {token}"}, raise_error=False)
    assert response.code == 200, response.body  # JupyterHub checks no name here


async def test_a_renamed_account_cannot_send_the_stop_to_another_path(world):
    hub, registry, runtime = world
    bob = await running_alpha(hub, "bob")
    alice = await running_alpha(hub, "alice")
    assert bob.active and alice.active
    renamed = "bob/servers/alpha-study#"
    await _rename(hub, "alice", renamed)  # no registry user of that name: her access is revoked
    assert await stopped_within(alice, 20 * INTERVAL + 5), "the renamed account's workspace still runs"
    assert len(await audited_stops(runtime, renamed)) == 1
    assert bob.active and not watcher_stops(runtime, "bob")  # bob was never the one stopped
