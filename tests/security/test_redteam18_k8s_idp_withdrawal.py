"""Red team, eighteenth round, Kubernetes: the identity provider withdraws a person, her workspace runs on.

On Kubernetes a person works in a project while the registry *and* the identity provider (her
``pds-project-<id>`` group) say so; withdrawing either is documented as enough. The registry's side
reached running workspaces (the membership watcher); the provider's did not. Tried here, on the
real JupyterHub in Kubernetes mode with its real proxy and watcher, the provider on loopback:

* the provider takes alice out of the project's group while her workspace runs, and she keeps
  using it (her refreshes go on: the hub re-read the provider's groups only at a new sign-in, never
  at a refresh, since it kept no tokens; and even then, the projection of her roles and the stops
  at sign-in and refresh read the registry alone);
* the provider takes her out of the sign-in group altogether;
* the same, while she makes no request of her own: her workspace's token (its activity reports,
  the gate, the gateway) was refreshed against the groups her last sign-in left;
* the provider's tokens kept for alice answer, at a refresh, for another account (the name of the
  refreshed model is replaced by JupyterHub with hers: the other account's groups would be hers);
* her hub groups lose the project (a sign-in elsewhere computed them) while the workspace runs:
  the watcher read the registry alone;
* once the hub keeps the provider's tokens: an administrator reads them in a person's user model
  (JupyterHub's ``admin:users``, which administrators held, includes ``admin:auth_state``).

All six got through before (the last against the first fix): the workspace ran on, her role on its
hub user stayed, and her refresh (the first three) was accepted. Now the hub keeps the provider's tokens (``enable_auth_state``,
encrypted with z2jh's CryptKeeper keys) so each refresh asks the provider again
(``PdsOAuthenticator.refresh_user``); a refresh refuses another account or a person out of every
sign-in group, and the sign-in and refresh stop what the new groups no longer allow and withdraw the
role (:func:`pds_kernel.hub.common.stop_revoked_servers`, ``groups``); the watcher stops a workspace
whose person is out of the project's hub group (``workspaces_need_hub_groups``); administrators on
Kubernetes hold ``admin:users``'s parts but ``admin:auth_state``
(:data:`pds_kernel.hub.kubernetes.K8S_ADMIN_SCOPES`). The controls: bob, whom the provider keeps,
works on; an administrator still lists users.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from jupyterhub import orm
from k8s_watcher_support import (  # noqa: F401  (the world fixture)
    INTERVAL,
    running_alpha,
    stopped_within,
    watcher_world_fixture,
)
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from pds_kernel.hub.oidc import ADMIN_GROUP
from pds_kernel.permissions import left_hub_group
from pds_kernel.workspace_names import workspace

pytestmark = pytest.mark.asyncio

STOP_WITHIN = 20 * INTERVAL + 5


def person(hub, name: str):
    return hub.app.users[orm.User.find(hub.app.db, name)]


async def refresh(hub, name: str) -> int:
    """A request of ``name``'s (her JupyterLab checking her token) once ``auth_refresh_age`` has
    passed: JupyterHub refreshes her through the authenticator. The answer's status."""
    user = person(hub, name)
    user._auth_refreshed = None
    try:
        await hub.whoami(user.new_api_token(note="her JupyterLab's"))
    except HTTPClientError as exc:
        return exc.code
    return 200


async def stops(runtime, name: str, seconds: float = 5) -> list:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        found = [e for e in runtime.audit.entries(action="workspace.stop") if e.target == f"user:{name}"]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


def holds_role(hub, name: str, project: str) -> bool:
    return orm.Role.find(hub.app.db, workspace(name, project).role) is not None


async def test_a_project_group_the_provider_withdrew_stops_the_workspace_at_her_refresh(world):
    hub, _, runtime = world
    alice, bob = await running_alpha(hub, "alice"), await running_alpha(hub, "bob")
    hub.idp.directory["alice"].remove("pds-project-alpha-study")
    assert await refresh(hub, "alice") == 200  # still signed in: she may keep her other projects
    assert await stopped_within(alice, STOP_WITHIN), "her workspace runs on"
    (entry,) = await stops(runtime, "alice")
    assert entry.project == "alpha-study" and entry.details["reason"] == left_hub_group("alice", "alpha-study")
    assert not holds_role(hub, "alice", "alpha-study")
    assert [e.project for e in runtime.audit.entries(action="hub.workspace.withdraw")] == ["alpha-study"]
    assert "alpha-study" not in {g.name for g in person(hub, "alice").groups}
    # the control: bob, whom the provider keeps in the group, refreshes and works on
    assert await refresh(hub, "bob") == 200
    await asyncio.sleep(3 * INTERVAL)
    assert bob.active and holds_role(hub, "bob", "alpha-study")


async def test_her_workspaces_token_alone_brings_the_providers_withdrawal(world):
    """She makes no request of her own (a long computation, no page open); her workspace's token
    still reaches the hub (its activity reports, the gate, the gateway ask about it). Its refresh
    read her groups as her last sign-in left them, and the token stayed valid: got through before
    its fix. Now a due refresh of hers runs first, through the same request."""
    hub, _, runtime = world
    alice = await running_alpha(hub, "alice")
    token = alice.api_token
    hub.idp.directory["alice"].remove("pds-project-alpha-study")
    person(hub, "alice")._auth_refreshed = None  # her own refresh is due
    hub.workspace_user(person(hub, "alice"), "alpha-study")._auth_refreshed = None
    with pytest.raises(HTTPClientError) as refused:
        await hub.whoami(token)
    assert refused.value.code == 403
    assert await stopped_within(alice, STOP_WITHIN)
    (entry,) = await stops(runtime, "alice")
    assert entry.details["reason"] == left_hub_group("alice", "alpha-study")


async def test_a_person_the_provider_no_longer_lets_sign_in_loses_her_workspaces(world):
    hub, _, runtime = world
    alice = await running_alpha(hub, "alice")
    hub.idp.directory["alice"] = ["staff"]
    assert await refresh(hub, "alice") == 403
    assert await stopped_within(alice, STOP_WITHIN)
    assert await stops(runtime, "alice") and not holds_role(hub, "alice", "alpha-study")
    refused = [e for e in runtime.audit.entries(action="hub.login") if e.outcome == "denied"]
    assert [e.details["reason"] for e in refused] == ["not in an IdP sign-in group any more"]


async def test_tokens_that_answer_for_another_account_end_the_session(world):
    hub, _, runtime = world
    alice = await running_alpha(hub, "alice")
    hub.sign_in("bob", ["alpha-study"])
    hub.idp.claimed_names["alice"] = "bob"  # the provider's account behind alice's tokens now says "bob"
    assert await refresh(hub, "alice") == 403
    assert await stopped_within(alice, STOP_WITHIN)
    refused = [e for e in runtime.audit.entries(action="hub.login") if e.outcome == "denied"]
    assert [e.details["reason"] for e in refused] == ["the identity provider's tokens now name another account"]


async def test_the_watcher_stops_a_workspace_whose_person_left_the_projects_hub_group(world):
    hub, _, runtime = world
    alice, bob = await running_alpha(hub, "alice"), await running_alpha(hub, "bob")
    hub.sign_in("alice", [])  # her groups as a sign-in elsewhere computed them
    assert await stopped_within(alice, STOP_WITHIN), "the watcher read the registry alone"
    (entry,) = await stops(runtime, "alice")
    assert entry.details["checked_at"] == "watcher"
    assert entry.details["reason"] == left_hub_group("alice", "alpha-study")
    await asyncio.sleep(3 * INTERVAL)
    assert bob.active


async def test_an_administrator_reads_no_persons_identity_provider_tokens(world):
    """The hub now keeps each person's IdP tokens (auth state) to refresh her groups. JupyterHub's
    ``admin:users``, which administrators held, includes ``admin:auth_state``: ada read alice's
    access token in alice's user model (got through before its fix), and could ask a token with
    that scope alone. Administrators on Kubernetes now hold ``admin:users``'s other parts only."""
    hub, registry, _ = world
    await running_alpha(hub, "alice")
    registry.upsert_user("admin", "ada", email="ada@example.org", is_admin=True)
    token = hub.sign_in("ada", [ADMIN_GROUP]).new_api_token(note="ada's own")
    headers = {"Authorization": f"token {token}"}
    seen = await AsyncHTTPClient().fetch(f"{hub.api_url}/users/alice", headers=headers)
    listed = await AsyncHTTPClient().fetch(f"{hub.api_url}/users", headers=headers)
    assert b"auth_state" not in seen.body and b"access_token" not in seen.body
    assert b"access_token" not in listed.body and b"alice" in listed.body  # she still lists users
    asked = await AsyncHTTPClient().fetch(
        f"{hub.api_url}/users/ada/tokens", method="POST", headers=headers, raise_error=False,
        body=json.dumps({"scopes": ["admin:auth_state"], "note": "read their tokens"}))
    assert asked.code == 400 and b"not held" in asked.body, asked.body[:300]
