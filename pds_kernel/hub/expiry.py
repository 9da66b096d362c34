"""Stop running workspaces whose user may no longer use the project, within seconds.

Logins, JupyterHub's auth refresh (``auth_refresh_age``, 300 s, and only when the user makes a
request to the hub) and ``pds hub sync`` already stop such servers; none of them runs on its own
while a researcher keeps working in an open workspace. :class:`MembershipWatcher` runs in the hub
process every ``interval`` seconds (10 by default): for each running server it asks the registry
whether the user may still use that project (membership not expired, project open, account
active) and, if not, stops it through the hub's own REST API (so the proxy route, the database and
the spawner are cleaned up exactly as by an admin's stop), audited as ``workspace.stop`` with
``checked_at: watcher``.

The same pass enforces the home quota while workspaces run (``project_end.home_quota_mb``, local
homes are plain directories with no filesystem quota): it measures the home of each running
server (:func:`pds_kernel.project_end.homes_over_quota`, in a thread, off the hub's event loop),
with what the running sandbox takes of the disk besides (its log of this start, files removed but
held open: :func:`pds_kernel.project_end.outside_home_bytes`), and stops a workspace over the
quota, audited with ``cause: home over quota``. Its next start is refused with the same message
(:func:`pds_kernel.project_end.check_home_quota`) until an administrator frees space or raises the
quota.

And it stops a workspace whose extract changed while it runs: a file of the build it mounts
written, replaced, added or removed after its start (:mod:`pds_kernel.extract.mount_watch`),
audited with ``cause: extract changed``; its next start checks the extract again and is refused.
A workspace whose build a newer publication superseded is stopped too, audited with ``cause:
extract republished``; its next start mounts the new build.

Each stop runs on its own, never awaited by the pass: a stop that hangs (a pod stuck terminating on
a node that no longer answers, a sandbox slow to die) holds only its own server, which no later pass
stops again until it ends, while the passes go on for every other server (red team 9: the passes
awaited each stop in turn, up to two minutes each, and the watcher was blind meanwhile). The REST
API's path names the user and the server percent-encoded: a name JupyterHub's rename API let in
(it checks none) cannot send the stop to another path.

Each pass first reads the workspace entries other processes wrote to the audit trail (`pds hub
sync`'s stops), so the home pages say why (:meth:`pds_kernel.hub.notices.WorkspaceNotices.catch_up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from urllib.parse import quote

from ..audit import AuditEvent
from ..errors import IntegrityError
from ..extract.mount_watch import changed_mounts
from ..periodic import PeriodicCheck
from ..permissions import left_hub_group
from ..project_end import homes_over_quota, outside_home_bytes
from ..workspace_names import parse_workspace_user, person_of
from .common import MOVED, HubContext, is_registry_user, project_groups, revoke_reason

log = logging.getLogger(__name__)


def servers_to_stop(context: HubContext, running: dict[str, list[str]], today: date | None = None,
                    account_ok: Callable[[str], bool] | None = None,
                    groups_of: Callable[[str], set[str]] | None = None) -> list[tuple[str, str, str]]:
    """``(user, server, reason)`` for every running server whose user may not use that project now
    (registry) or whose hub account is revoked (``account_ok(user)`` false), or whose access it cannot
    check (a seal it cannot read: red team 9, a hub left with the old keyring after a rotation ended
    every pass here, every workspace unwatched). ``running`` maps user name -> running server names.
    ``groups_of(person)``: her hub groups, where a workspace needs the project's group to start
    (Kubernetes: the identity provider's side); the workspace stops once she is out of it."""
    doomed = []
    for user, servers in running.items():
        try:
            doomed += _user_servers_to_stop(context.registry, user, servers, today, account_ok, groups_of)
        except IntegrityError as exc:  # deny by default: a sealed approval or account it cannot check
            doomed += [(user, server, f"the hub cannot check the access of {user}: {exc}") for server in servers]
    return doomed


def _user_servers_to_stop(registry, user: str, servers: list[str], today: date | None,
                          account_ok: Callable[[str], bool] | None,
                          groups_of: Callable[[str], set[str]] | None = None) -> list[tuple[str, str, str]]:
    """``user`` is a hub user: a workspace user runs its project's server while its person may use
    the project; a person's own named server is from before workspace users (ADR 17), and stops."""
    found = parse_workspace_user(user)
    if found is None:
        return [(user, server, MOVED) for server in servers]
    person = found.person
    if account_ok is not None and not account_ok(person):
        return [(user, server, f"the hub account of {person} is revoked") for server in servers]
    allowed = set(project_groups(registry, person, today)) if is_registry_user(registry, person) else set()
    doomed = [(user, server, revoke_reason(registry, person, server, today)) for server in servers
              if server != found.server or server not in allowed]
    if groups_of is not None and found.server in servers and found.server in allowed \
            and found.server not in groups_of(person):
        doomed.append((user, found.server, left_hub_group(person, found.server)))
    return doomed


class MembershipWatcher(PeriodicCheck):
    """The periodic check described in the module docstring (one per hub process)."""

    what = "membership check"

    def __init__(self, app, context: HubContext, token: str, interval: float,
                 account_ok: Callable[[str], bool] | None = None, check_hub_groups: bool = False) -> None:
        super().__init__(interval)
        self.app = app
        self.account_ok = account_ok
        self.check_hub_groups = check_hub_groups
        self.context = context
        self.token = token
        self._stopping: set[tuple[str, str]] = set()
        self._stops: set[asyncio.Task] = set()

    @classmethod
    def start_for(cls, authenticator, interval: float, token: str) -> MembershipWatcher | None:
        """Start the watcher of the hub that owns ``authenticator`` (needs a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        watcher = cls(authenticator.parent, authenticator.context, token, interval,
                      account_ok=getattr(authenticator, "can_use_account", None),
                      check_hub_groups=getattr(authenticator, "workspaces_need_hub_groups", False))
        watcher.start()
        return watcher

    def _hub_groups(self, person: str) -> set[str]:
        """The hub groups of ``person`` (none when she has no hub user)."""
        from jupyterhub import orm

        row = orm.User.find(self.app.db, person)
        return {group.name for group in row.groups} if row is not None else set()

    def _running(self) -> dict[str, list[str]]:
        running: dict[str, list[str]] = {}
        for user in list(self.app.users.values()):
            for name, spawner in list(user.spawners.items()):
                if spawner.active and not spawner.pending and (user.name, name) not in self._stopping:
                    running.setdefault(user.name, []).append(name)
        return running

    def _spawners(self, running: dict[str, list[str]]):
        """``((user, server), spawner)`` of each running server."""
        for user, servers in running.items():
            for server in servers:
                spawner = self.app.users[user].spawners.get(server) if user in self.app.users else None
                if spawner is not None:
                    yield (user, server), spawner

    def _outside_home_sources(self, running: dict[str, list[str]]) -> dict[tuple[str, str], tuple]:
        """(user, server) -> (pid, log) of each running local sandbox (:meth:`SandboxSpawner.outside_home`)."""
        return {key: spawner.outside_home() for key, spawner in self._spawners(running)
                if hasattr(spawner, "outside_home")}

    async def check_once(self, today: date | None = None) -> list[str]:
        """Stop the servers of users who may no longer use their project, then those whose home is
        over the quota, then those whose extract changed; return ``user/server`` of each server
        whose stop began (each stop runs on its own: :meth:`_begin_stop`)."""
        if getattr(self.app, "hub", None) is None or not hasattr(self.app, "users"):
            return []
        try:  # what other processes wrote (`pds hub sync`'s stops) reaches the home pages
            self.context.notices.catch_up(self.context.runtime.audit)
        except Exception:
            log.exception("reading the audit trail's new workspace entries for the home pages failed")
        stopped = []
        try:  # a failure here must not skip the quota and extract checks below
            revoked = servers_to_stop(self.context, self._running(), today, self.account_ok,
                                      self._hub_groups if self.check_hub_groups else None)
        except Exception:
            log.exception("the membership check failed; the quota and extract checks run anyway")
            revoked = []
        for user, server, why in revoked:
            if self._begin_stop(user, server, "access revoked", why):
                stopped.append(f"{user}/{server}")
        running = self._running()
        sources = self._outside_home_sources(running)  # read on the event loop, measured in the thread

        def outside(user: str, server: str, home) -> int:
            pid, log_path = sources.get((user, server), (0, None))
            return outside_home_bytes(home, pid, log_path) if pid else 0

        try:  # a failure here must not skip the extract check below (it did, for every workspace)
            over = await asyncio.to_thread(homes_over_quota, self.context.settings, running, outside)
        except Exception:
            log.exception("the home quota check failed; the extract check runs anyway")
            over = []
        for user, server, why in over:
            if self._begin_stop(user, server, "home over quota", why):
                stopped.append(f"{user}/{server}")
        mounts = self._mounted_extracts(self._running())
        try:
            changed = await asyncio.to_thread(changed_mounts, self.context.settings, self.context.runtime.audit, mounts)
        finally:
            for mounted in mounts.values():
                if mounted.directory is not None:
                    os.close(mounted.directory)
        for user, server, cause, why in changed:
            if self._begin_stop(user, server, cause, why):
                stopped.append(f"{user}/{server}")
        return stopped

    def _mounted_extracts(self, running: dict[str, list[str]]) -> dict:
        """(user, server) -> the extract each running local sandbox mounts (:meth:`SandboxSpawner.mounted_extract`)."""
        mounts = {key: spawner.mounted_extract() for key, spawner in self._spawners(running)
                  if hasattr(spawner, "mounted_extract")}
        # each build directory held by the spawner is read through a copy of its descriptor, closed
        # after the pass: a workspace stopped meanwhile closes its own, never the one being read
        return {key: mounted if mounted.directory is None else replace(mounted, directory=os.dup(mounted.directory))
                for key, mounted in mounts.items() if mounted is not None}

    def _begin_stop(self, user: str, server: str, cause: str, why: str) -> bool:
        """Start stopping ``user``'s ``server`` in a task of its own, unless a stop of it runs."""
        if (user, server) in self._stopping:
            return False
        self._stopping.add((user, server))
        task = asyncio.get_running_loop().create_task(self._stop_recorded(user, server, cause, why))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)
        return True

    async def close(self) -> None:
        """End the passes, and the stops still under way (the hub is shutting down)."""
        await super().close()
        for task in list(self._stops):
            task.cancel()
        await asyncio.gather(*self._stops, return_exceptions=True)

    async def _stop_recorded(self, user: str, server: str, cause: str, why: str) -> bool:
        try:
            if not await self._stop(user, server):
                return False
            log.info("stopped %s/%s: %s", user, server, why)
            self.context.record(AuditEvent(
                actor="hub", action="workspace.stop", target=f"user:{person_of(user)}", project=server,
                details={"server": server, "cause": cause, "reason": why, "checked_at": "watcher"}))
            return True
        except Exception:  # nobody awaits this task: say why (the stop may be done, its entry not written)
            log.exception("stopping %s/%s, or auditing its stop, failed", user, server)
            return False
        finally:
            self._stopping.discard((user, server))

    async def _stop(self, user: str, server: str) -> bool:
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest

        url = f"{self._api_url()}/users/{quote(user, safe='')}/servers/{quote(server, safe='')}"
        request = HTTPRequest(url, method="DELETE", headers={"Authorization": f"token {self.token}"},
                              request_timeout=60, allow_nonstandard_methods=True)
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code in (202, 204):
            # 202: the stop is pending. 204 is no proof either: JupyterHub answers it when its stop
            # failed to remove the server's proxy route, and leaves the server running. The audit
            # entry is written only for a server seen stopped.
            if await self._wait_stopped(user, server, timeout=60 if response.code == 202 else 5):
                return True
            log.warning("could not stop %s/%s: the hub answered %s but the server still runs "
                        "(its proxy route not removed?); next try at the next pass", user, server, response.code)
            return False
        body = response.body.decode(errors="replace")[:200] if response.body else ""
        with contextlib.suppress(ValueError):
            body = json.loads(body).get("message", body)
        log.warning("could not stop %s/%s: %s %s", user, server, response.code, body)
        return False

    def _api_url(self) -> str:
        """The hub's REST API as this process reaches itself: on loopback when the hub listens there
        or on every address (the chart's ``:8081``), not through its Service name (no DNS lookup,
        and no network policy of the hub's own pod in the way)."""
        hub = self.app.hub
        if hub.ip in ("", "0.0.0.0", "::", "127.0.0.1", "localhost"):
            return f"http://127.0.0.1:{hub.port}{hub.base_url.rstrip('/')}/api"
        return hub.api_url.rstrip("/")

    async def _wait_stopped(self, user: str, server: str, timeout: float) -> bool:
        """Whether ``user``'s ``server`` is seen stopped within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            spawner = self.app.users[user].spawners.get(server) if user in self.app.users else None
            if spawner is None or not spawner.active:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.1)
