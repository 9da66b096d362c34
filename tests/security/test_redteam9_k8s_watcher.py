"""Red team 9: the Kubernetes hub's membership watcher, held up or sent elsewhere.

The hub is the real JupyterHub 5.5 in Kubernetes mode with its real proxy (tests/k8s/k8s_hub.py,
the world of test_k8s_membership_watcher): only KubeSpawner's Kubernetes calls are replaced.

- **One stop that hangs.** A pod stuck terminating (a node that stopped answering, an NFS mount
  hung under a researcher's load on /data) makes KubeSpawner's stop wait. The watcher awaited each
  stop in turn (JupyterHub answers 202 after 10 s, then the watcher waited 60 s more for the
  server), so the whole watcher was blind meanwhile: another researcher whose membership was
  removed kept working. Got through before; each stop now runs on its own.
- **A name that is a path.** JupyterHub's rename API (``PATCH /hub/api/users/NAME``, refused on
  both hubs since red team 9) checks no name, and a writer of the hub's database needs none: an
  account renamed ``bob/servers/alpha-study#`` made the watcher's ``DELETE`` stop bob's workspace,
  every pass, and never the renamed one. Got through before; the names are now percent-encoded in
  the path.
- **A hub left with the old keyring.** After ``pds audit rotate-key``, a hub pod not restarted
  cannot check a sealed membership: every watcher pass ended on that error, and every workspace ran
  unwatched. Got through before; a workspace whose access cannot be checked is now stopped.
"""

from __future__ import annotations

import asyncio
import sqlite3

import k8s_watcher_support as watched
import pytest
from k8s_watcher_support import watcher_world_fixture  # noqa: F401  (the world fixture)

from tests.k8s.k8s_hub import NoClusterSpawner

pytestmark = pytest.mark.asyncio


async def test_a_hanging_stop_does_not_hold_the_other_stops(world, monkeypatch):
    hub, registry, runtime = world
    released = asyncio.Event()
    stop = NoClusterSpawner.stop

    async def hanging_stop(self, now=False):
        if self.user.name == "bob@alpha-study":  # bob's workspace user (ADR 17)
            await released.wait()  # his pod stuck terminating
        return await stop(self, now)

    monkeypatch.setattr(NoClusterSpawner, "stop", hanging_stop)
    stuck = await watched.running_alpha(hub, "bob")  # his pod is the one stuck terminating
    alice = await watched.running_alpha(hub, "alice")
    try:
        registry.remove_member("admin", "alpha-study", "bob")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20 * watched.INTERVAL + 5
        while stuck.pending != "stop" and loop.time() < deadline:  # the watcher began his stop
            await asyncio.sleep(0.05)
        assert stuck.pending == "stop"
        registry.remove_member("admin", "alpha-study", "alice")
        assert await watched.stopped_within(alice, 20 * watched.INTERVAL + 3), "alice's stop waited behind bob's"
        assert len(await watched.audited_stops(runtime, "alice")) == 1
        assert stuck.active and not watched.watcher_stops(runtime, "bob")  # not stopped: not audited
    finally:
        released.set()
    assert await watched.stopped_within(stuck, 10)
    assert len(await watched.audited_stops(runtime, "bob")) == 1  # audited once, once seen stopped


def _rename(hub, old: str, new: str) -> None:
    """A name the hub holds but no sign-in gives: JupyterHub's rename API let any in (it checks
    none; both hubs now refuse renames, test_redteam9_k8s_rename), a writer of the hub's database
    still can."""
    with sqlite3.connect(hub.app.db.get_bind().url.database) as db:
        assert db.execute("UPDATE users SET name = ? WHERE name = ?", (new, old)).rowcount == 1
    hub.app.db.expire_all()


async def test_a_renamed_account_cannot_send_the_stop_to_another_path(world):
    hub, registry, runtime = world
    bob = await watched.running_alpha(hub, "bob")
    alice = await watched.running_alpha(hub, "alice")
    assert bob.active and alice.active
    renamed = "bob/servers/alpha-study#"
    _rename(hub, "alice@alpha-study", renamed)  # her workspace user: no workspace of that name, it stops
    assert await watched.stopped_within(alice, 20 * watched.INTERVAL + 5), "the renamed account's workspace still runs"
    assert len(await watched.audited_stops(runtime, renamed)) == 1
    assert bob.active and not watched.watcher_stops(runtime, "bob")  # bob was never the one stopped


async def test_a_hub_left_with_the_old_keyring_after_a_rotation(world):
    """The key is rotated (``pds audit rotate-key`` after a new key was added to the keyring) and
    the hub's pod is not restarted: its keyring lacks the key in force, so it can check no sealed
    membership. Its watcher's every pass ended on that error before any stop: alice, whose
    membership is then removed, kept working, and so did every workspace, unwatched (got through
    before). Now a workspace whose access the hub cannot check is stopped (deny by default)."""
    import secrets

    from pds_kernel.audit_key import AuditKey
    from pds_kernel.registry import Registry
    from pds_kernel.rotate_audit_key import rotate_audit_key
    from pds_kernel.runtime import Runtime

    hub, registry, runtime = world
    alice, bob = await watched.running_alpha(hub, "alice"), await watched.running_alpha(hub, "bob")
    registry.upsert_user("admin", "ada", is_admin=True)  # the first administrator: approved at once
    new = AuditKey(secrets.token_bytes(32))
    with open(runtime.settings.audit_key_file, "a", encoding="ascii") as keyring:
        keyring.write(f"{new.key_id} {new.secret.hex()}\n")
    operator = Runtime(runtime.settings)  # the administrator's process, with the new keyring
    try:
        assert rotate_audit_key(operator, "ada").to_key == new.key_id
        Registry.from_runtime(operator).remove_member("ada", "alpha-study", "alice")
        assert await watched.stopped_within(alice, 20 * watched.INTERVAL + 5), "alice still works"
        assert await watched.stopped_within(bob, 5), "bob's workspace runs unwatched"
    finally:
        operator.close()
