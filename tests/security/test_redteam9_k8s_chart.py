"""Red team 9: a chart value that widens the membership watcher's token.

The hub's ``pds-watcher`` service holds ``admin:servers`` and nothing else: its token, made at each
start and kept in the hub's process, stops servers and can neither list users nor read tokens
(test_k8s_membership_watcher). :func:`pds_kernel.hub.kubernetes.configure` refused a chart
``hub.loadRoles`` role *named* like one of its own, and a ``hub.services`` entry named
``pds-watcher``; but a chart role of another name may list ``pds-watcher`` among its
``services``, and JupyterHub grants it to the service. Here the widened token then lists every user
of the real hub. Got through before; configure now refuses such a role.
"""

from __future__ import annotations

import pytest
from k8s_watcher_support import watched_hub
from tornado.httpclient import AsyncHTTPClient

from pds_kernel.errors import InvalidInput
from pds_kernel.hub.kubernetes import WATCHER_SERVICE, configure
from pds_kernel.k8s.config import K8sConfig
from tests.k8s.conftest import z2jh_hub_config
from tests.k8s.k8s_hub import chart_services

pytestmark = pytest.mark.asyncio

WIDENING = [
    {"name": "ops", "scopes": ["admin:users", "read:users", "tokens"], "services": [WATCHER_SERVICE]},
    {"name": "ops", "scopes": ["admin:users"], "services": ["dask-gateway", WATCHER_SERVICE]},
    {"name": "ops", "scopes": ["admin:users"], "services": (WATCHER_SERVICE,)},
]


@pytest.mark.parametrize("role", WIDENING, ids=["alone", "among-others", "tuple"])
async def test_a_chart_role_cannot_be_granted_to_the_watchers_service(settings, tmp_path, monkeypatch, role):
    refused = f"{WATCHER_SERVICE}.*hub.loadRoles|hub.loadRoles.*{WATCHER_SERVICE}"
    c = z2jh_hub_config()
    c.JupyterHub.services = chart_services()
    c.JupyterHub.load_roles = [role]
    with pytest.raises(InvalidInput, match=refused):
        configure(c, settings=settings, k8s=K8sConfig())
    if role is WIDENING[0]:  # the real hub: it does not start (before, its watcher's token listed every user)
        with pytest.raises(InvalidInput, match=refused):
            async with watched_hub(settings, tmp_path, monkeypatch, load_roles=[role]) as hub:
                token = hub.service_tokens[WATCHER_SERVICE]
                response = await AsyncHTTPClient().fetch(f"{hub.api_url}/users", raise_error=False,
                                                         headers={"Authorization": f"token {token}"})
                assert response.code in (403, 404), "the watcher's token lists the hub's users"


async def test_the_watchers_token_stays_narrow_beside_a_chart_role(settings, tmp_path, monkeypatch):
    """The control: a chart role for another service is kept, and the watcher's token still lists
    nobody on the real hub."""
    ops = {"name": "ops", "scopes": ["list:users", "read:users"], "services": ["dask-gateway"]}
    async with watched_hub(settings, tmp_path, monkeypatch, load_roles=[ops]) as hub:
        token = hub.service_tokens[WATCHER_SERVICE]
        response = await AsyncHTTPClient().fetch(f"{hub.api_url}/users", raise_error=False,
                                                 headers={"Authorization": f"token {token}"})
        assert response.code in (403, 404), response.body[:200]
        gateway = hub.service_tokens["dask-gateway"]
        response = await AsyncHTTPClient().fetch(f"{hub.api_url}/users", raise_error=False,
                                                 headers={"Authorization": f"token {gateway}"})
        assert response.code == 200  # the chart's role reached its own service
