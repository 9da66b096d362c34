"""Attacks on per-project Dask isolation through the real dask-gateway (docs/adr/0005).

The attacker holds alice's ``alpha-study`` workspace (its hub token, the TLS credentials of its own
cluster, a shell on the machine that can reach every loopback port); the target is the cluster of
another project, ``beta-study`` (alice is a member of both: the hardest case, the same person in
two projects). Every cluster is keyed by ``<user>/<project>`` (pds_kernel/k8s/gateway.py). The real
``dask-gateway-server`` runs with its local process backend: schedulers are real processes with
their own TLS credentials, reached through the gateway's SNI-routing proxy.
"""

from __future__ import annotations

import pytest
import requests
from aiohttp import ClientResponseError
from dask_gateway.client import ClusterStatus, GatewayClusterError
from distributed import Client
from gateway_isolation_support import (
    ALPHA,
    BETA,
    CONNECT_TIMEOUT,
    SMUGGLED,
    beta_as_its_owner_sees_it,
    dashboard_through_the_proxy,
    make_scene,
    requested_workers,
    serve_and_announce_a_page,
)

from pds_kernel.audit import AuditTrail

pytestmark = [pytest.mark.functional, pytest.mark.slow]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from k8s.gateway_processes import GatewayWorld

    with GatewayWorld(tmp_path_factory.mktemp("gwi")) as world:
        scene, clusters = make_scene(world)
        try:
            yield scene
        finally:
            for cluster in clusters:
                cluster.close()
            del clusters  # what they leave to the collector is finalised when the world stops


@pytest.fixture(autouse=True)
def _collected_after_each_test():
    """No automatic collection during a test: dask_gateway clients it leaves to the collector are
    finalised after it, in its own thread (k8s/gateway_processes.collected_here)."""
    from k8s.gateway_processes import collected_here

    with collected_here():
        yield


def refused(exc_info) -> int:
    return exc_info.value.response.status_code if hasattr(exc_info.value, "response") else 0


def test_list_clusters_of_another_project(scene):
    with scene.gateway.client(scene.alpha_token) as gw:
        names = [c.name for c in gw.list_clusters()]
    assert names == [scene.alpha_cluster]
    assert scene.beta.name not in names


def test_fetch_connection_details_of_another_projects_cluster(scene):
    """The details include the cluster's TLS key: refused."""
    with scene.gateway.client(scene.alpha_token) as gw, pytest.raises(Exception) as denied:
        gw.connect(scene.beta.name)
    assert "403" in str(denied.value) or "404" in str(denied.value)


def test_shutdown_another_projects_cluster(scene):
    with scene.gateway.client(scene.alpha_token) as gw, pytest.raises(Exception, match="403|404"):
        gw.stop_cluster(scene.beta.name)
    assert beta_as_its_owner_sees_it(scene).status == ClusterStatus.RUNNING


def test_scale_another_projects_cluster(scene):
    before = requested_workers(scene, scene.beta.name)
    with scene.gateway.client(scene.alpha_token) as gw, pytest.raises(Exception, match="403|404"):
        gw.scale_cluster(scene.beta.name, 3)
    assert requested_workers(scene, scene.beta.name) == before == 0


def test_create_a_cluster_with_options_claiming_the_other_project(scene):
    with scene.gateway.client(scene.alpha_token) as gw:
        with pytest.raises((ValueError, GatewayClusterError), match=f"must be for its project {ALPHA}"):
            gw.submit(project=BETA)
        assert [c.name for c in gw.list_clusters()] == [scene.alpha_cluster]
    denied = [e for e in AuditTrail(scene.world.runtime.sessions).entries()
              if e.action == "dask.cluster.authorise" and e.outcome == "denied"]
    assert [(e.actor, e.project) for e in denied][-1] == ("alice", BETA)


def test_connect_to_the_other_scheduler_through_the_proxy_with_own_credentials(scene):
    """SNI names beta's cluster; the TLS credentials are alpha's (the only ones alpha has)."""
    address = f"gateway://{scene.gateway.proxy_tcp}/{scene.beta.name}"
    with pytest.raises((OSError, TimeoutError)):
        Client(address, security=scene.alpha_security, timeout=CONNECT_TIMEOUT)


def test_connect_straight_to_the_other_scheduler_port_with_own_credentials(scene):
    """Bypassing the proxy: the scheduler's own port (on Kubernetes the NetworkPolicy also drops it)."""
    assert scene.beta.scheduler_address.startswith("tls://")
    with pytest.raises((OSError, TimeoutError)):
        Client(scene.beta.scheduler_address, security=scene.alpha_security, timeout=CONNECT_TIMEOUT)


def test_connect_to_the_other_scheduler_port_without_tls(scene):
    address = scene.beta.scheduler_address.replace("tls://", "tcp://")
    with pytest.raises((OSError, TimeoutError)):
        Client(address, timeout=CONNECT_TIMEOUT)


def test_drive_the_other_scheduler_api_with_the_workspace_token(scene):
    """dask-gateway's control channel of the scheduler (scale, adapt, shutdown): needs the
    cluster's own token, which only the gateway holds."""
    response = requests.post(f"{scene.beta.api_address}/api/comm", timeout=5,
                             json=[{"op": "close"}],
                             headers={"Authorization": f"token {scene.alpha_token}"})
    assert response.status_code in (401, 403)
    assert beta_as_its_owner_sees_it(scene).status == ClusterStatus.RUNNING


def test_another_users_workspace_token_reaches_alices_cluster(scene):
    """bob is in alpha-study too; alice's alpha cluster is still not his."""
    bob = scene.world.token("bob", ALPHA)
    with scene.gateway.client(bob) as gw:
        assert gw.list_clusters() == []
        with pytest.raises(Exception, match="403|404"):
            gw.connect(scene.alpha_cluster)


def test_personal_token_of_the_same_user(scene):
    """A token made on the hub's token page names no single workspace: refused outright."""
    personal = scene.world.hub.personal_token("alice")
    response = requests.get(f"{scene.gateway.address}/api/v1/clusters/", timeout=10,
                            headers={"Authorization": f"jupyterhub {personal}"})
    assert response.status_code == 401


def test_gateway_api_without_a_token(scene):
    response = requests.get(f"{scene.gateway.address}/api/v1/clusters/", timeout=10)
    assert response.status_code == 401


def test_gateway_api_with_a_forged_token(scene):
    response = requests.get(f"{scene.gateway.address}/api/v1/clusters/{scene.beta.name}", timeout=10,
                            headers={"Authorization": "jupyterhub " + "0" * 32})
    assert response.status_code == 401


def test_withdrawn_member_starts_a_cluster_from_a_running_workspace(scene):
    """dave's workspace and its token were made while he was a member; the registry withdrew him
    since (his hub group is stale until the next auth refresh): the hub's refresh of his workspace
    user refuses the token (401), and the gateway asks the registry besides."""
    from datetime import date

    registry = scene.world.registry
    registry.add_member("admin", ALPHA, "dave", "researcher", date(2030, 6, 30))
    token = scene.world.token("dave", ALPHA)
    registry.remove_member("admin", ALPHA, "dave", "researcher")
    with scene.gateway.client(token) as gw, pytest.raises((ValueError, GatewayClusterError, ClientResponseError),
                                                          match="researcher|Unauthorized"):
        gw.submit()
    assert all(r["username"] != f"dave/{ALPHA}" for r in scene.gateway.cluster_rows().values())


# ---- the Dask dashboard (issue #11): on Kubernetes it would leave through the gateway proxy, unmetered --
#: Pages of a scheduler's dashboard port: the dashboard, distributed's info pages and JSON, its
#: metrics, and its proxy to a worker's port.
DASHBOARD_PAGES = ["status", "info/main/workers.html", "json/counts.json", "metrics", "proxy/8789/127.0.0.1/"]


@pytest.mark.parametrize("page", DASHBOARD_PAGES)
def test_browser_opens_own_clusters_dashboard_through_the_gateway_proxy(scene, page):
    """The researcher's browser asks the gateway proxy for a page of the dashboard route of the
    workspace's own cluster (with the workspace's token, the most a researcher holds): the
    scheduler, started as the PDS cluster options say, serves nothing there. (On Kubernetes the
    route is also refused by the gateway proxy and the port closed by the NetworkPolicies:
    tests/k8s/test_netpol_release.py.)"""
    response = dashboard_through_the_proxy(scene, scene.alpha_cluster, scene.alpha_token, page)
    assert response.status_code == 404, response.text[:200]
    assert b"bokeh" not in response.content.lower() and b"dask" not in response.content.lower()


def test_code_on_the_scheduler_announces_its_own_page_as_the_dashboard(scene):
    """``client.run_on_scheduler`` starts a web server on the scheduler and reports it to the
    gateway as the cluster's dashboard, with the cluster's own token from the scheduler's
    environment: the gateway takes a cluster's addresses only before it runs, so the dashboard
    route does not lead to that page."""
    row = scene.gateway.cluster_rows()[scene.alpha_cluster]
    attack = serve_and_announce_a_page(SMUGGLED, row["api_address"])
    with scene.gateway.client(scene.alpha_token) as gw:
        cluster = gw.connect(scene.alpha_cluster)
        with cluster.get_client(set_as_default=False) as client:
            port, reported = client.run_on_scheduler(attack)
    assert reported == 200, "the report itself is accepted (a heartbeat)"
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).content == SMUGGLED  # the page is up
    assert scene.gateway.cluster_rows()[scene.alpha_cluster]["dashboard_address"] == row["dashboard_address"]
    response = dashboard_through_the_proxy(scene, scene.alpha_cluster, scene.alpha_token)
    assert response.status_code == 404 and SMUGGLED not in response.content
