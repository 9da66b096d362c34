"""Red team 9: an administrator renames their own hub user on the Kubernetes hub.

The local hub refuses JupyterHub's rename (``PATCH /hub/api/users/NAME`` with a new ``name``,
allowed by ``admin:users``) since an administrator who renamed their own hub user, whose login
cookie and tokens they hold, to a researcher's name was then taken for that researcher
(test_hub_identity). The Kubernetes hub's authenticator did not install that handler: a registry
administrator, who holds ``admin:users`` there too through the ``pds:admins`` group, renamed their
own hub user to bob's name and their token then spoke as bob (bob's projects at the next refresh,
his workspaces to start). Got through before; the Kubernetes hub refuses renames the same way,
audited.
"""

from __future__ import annotations

import json

import pytest
from k8s_watcher_support import watcher_world_fixture  # noqa: F401  (the world fixture)
from tornado.httpclient import AsyncHTTPClient

from pds_kernel.hub.oidc import ADMIN_GROUP

pytestmark = pytest.mark.asyncio


async def test_an_administrator_cannot_rename_their_hub_user_to_a_researchers(world):
    hub, registry, runtime = world
    registry.upsert_user("admin", "ada", email="ada@example.org", is_admin=True)
    ada = hub.sign_in("ada", [ADMIN_GROUP])
    token = ada.new_api_token(note="ada's own")
    assert "users" in (await hub.whoami(token))["scopes"]  # no admin:users any more (red team 18)
    response = await AsyncHTTPClient().fetch(
        f"{hub.api_url}/users/ada", method="PATCH", body=json.dumps({"name": "bob"}),
        headers={"Authorization": f"token {token}"}, raise_error=False)
    assert response.code == 403, response.body[:300]
    assert (await hub.whoami(token))["name"] == "ada"
    (refused,) = [e for e in runtime.audit.entries(action="hub.user.rename") if e.actor == "ada"]
    assert refused.outcome == "denied" and refused.target == "user:ada" and refused.details["to"] == "bob"
    # every other field goes to JupyterHub's handler, which refuses it too since red team 18: an
    # administrator edits no hub user on Kubernetes (no admin:users, whose admin:auth_state would
    # show the identity provider's tokens the hub keeps)
    response = await AsyncHTTPClient().fetch(
        f"{hub.api_url}/users/ada", method="PATCH", body=json.dumps({"name": "ada"}),
        headers={"Authorization": f"token {token}"}, raise_error=False)
    assert response.code == 403 and b"admin:users" in response.body, response.body[:300]
