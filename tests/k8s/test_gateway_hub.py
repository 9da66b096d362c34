"""A workspace's token through the real JupyterHub and the real dask-gateway API server (no cluster).

tests/security/test_gateway_isolation.py runs the same hub with the real ``dask-gateway-server``
and its local process backend (schedulers and workers that run).

In process, on loopback:

* JupyterHub 5.5 in Kubernetes mode without Kubernetes (:mod:`k8s_hub`);
* the dask-gateway API server (``DaskGateway`` with its aiohttp routes) configured as the chart's
  config file does, then by :func:`pds_kernel.k8s.gateway.configure_gateway`; only the part of
  ``KubeBackend`` that creates ``DaskCluster`` objects is replaced by :class:`MemoryBackend`,
  which keeps clusters per user name as ``KubeBackend`` does;
* the real ``dask_gateway`` client, authenticating with the workspace's token.
"""

from __future__ import annotations

import socket
import time
import uuid
from datetime import date

import pytest
import pytest_asyncio
from aiohttp import ClientResponseError, web
from aiohttp.test_utils import make_mocked_request
from dask_gateway import Gateway, JupyterHubAuth
from dask_gateway_server import models
from dask_gateway_server.app import DaskGateway
from dask_gateway_server.auth import JupyterHubAuthenticator
from dask_gateway_server.backends.base import Backend
from jupyterhub import orm, roles
from traitlets import Type
from traitlets.config import Config

from pds_kernel.airlock.web.identity import workspace_project
from pds_kernel.audit import AuditTrail
from pds_kernel.hub.common import ADMIN_ROLE
from pds_kernel.hub.oidc import ADMIN_GROUP
from pds_kernel.hub.origins import WORKSPACE_LABEL
from pds_kernel.k8s.config import K8sConfig
from pds_kernel.k8s.gateway import WorkspaceAuthenticator, configure_gateway

from .conftest import HUB_HOST
from .k8s_hub import GATEWAY, LOG_FORMAT, Hub, start_hub, start_notebook_stand_in

pytestmark = pytest.mark.asyncio

AIRLOCK_SCOPES = {"access:services!service=airlock"}  # what the airlock's HubOAuth requires


@pytest_asyncio.fixture
async def hub(settings, runtime, registry, kubeconfig, tmp_path):
    notebook, notebook_url = start_notebook_stand_in()
    app, server, api_url = await start_hub(settings, f"sqlite:///{tmp_path}/hub.sqlite", tmp_path,
                                           notebook_url)
    yield Hub(app, api_url, app.services)
    server.stop()
    notebook.stop()
    app.db.close()


# ---- dask-gateway ------------------------------------------------------------------------------
class MemoryBackend(Backend):
    """Stands in for KubeBackend's Kubernetes calls: clusters are created through the real
    ``process_cluster_options`` and kept in memory per ``user.name``, the key KubeBackend uses
    (``DaskCluster.spec.username`` → ``username_to_clusters``)."""

    cluster_config_class = Type("dask_gateway_server.backends.kubernetes.backend.KubeClusterConfig",
                                klass="dask_gateway_server.backends.base.ClusterConfig", config=True)

    async def setup(self, app):
        await super().setup(app)
        self.clusters: dict[str, models.Cluster] = {}

    async def start_cluster(self, user, cluster_options):
        options, config = await self.process_cluster_options(user, cluster_options)
        name = uuid.uuid4().hex
        self.clusters[name] = models.Cluster(
            name=name, username=user.name, token="", options=options, config=config.to_dict(),
            status=models.ClusterStatus.PENDING, start_time=int(time.time() * 1000))
        return name

    async def stop_cluster(self, cluster_name, failed=False):
        cluster = self.clusters.get(cluster_name)
        if cluster is not None:
            cluster.status = models.ClusterStatus.STOPPED

    async def get_cluster(self, cluster_name, wait=False):
        return self.clusters.get(cluster_name)

    async def list_clusters(self, username=None, statuses=None):
        wanted = set(statuses or [models.ClusterStatus.PENDING, models.ClusterStatus.RUNNING])
        return [c for c in self.clusters.values()
                if c.status in wanted and (username is None or c.username == username)]


@pytest_asyncio.fixture
async def gateway(hub, runtime, tmp_path, monkeypatch):
    c = Config()
    # what the dask-gateway chart's dask_gateway_config.py sets for gateway.auth.type=jupyterhub
    # (the token comes from the Deployment's environment) ...
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub.service_tokens[GATEWAY])
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
    c.JupyterHubAuthenticator.jupyterhub_api_url = hub.api_url  # apiUrl
    c.JupyterHubAuthenticator.jupyterhub_service_name = GATEWAY  # jupyterhubServiceName
    # ... then gateway.extraConfig
    context = configure_gateway(c, runtime=runtime, k8s=K8sConfig())
    c.DaskGateway.backend_class = MemoryBackend
    c.DaskGateway.address = "127.0.0.1:0"
    c.Application.log_format = LOG_FORMAT
    config_file = tmp_path / "dask_gateway_config.py"
    config_file.write_text("")
    app = DaskGateway(config=c)
    app.config_file = str(config_file)
    app.initialize([])
    assert isinstance(app.authenticator, WorkspaceAuthenticator)
    assert app.authenticator.context is context
    await app.authenticator.setup(app.app)
    await app.backend.setup(app.app)
    runner = web.AppRunner(app.app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}", app
    await runner.cleanup()
    await app.backend.cleanup()
    await app.authenticator.cleanup()


def client(address: str, token: str) -> Gateway:
    return Gateway(address=address, auth=JupyterHubAuth(api_token=token), asynchronous=True)


def gateway_request(token: str):
    return make_mocked_request("GET", "/api/v1/clusters/", headers={"Authorization": f"jupyterhub {token}"})


async def stock_authenticator(hub) -> JupyterHubAuthenticator:
    auth = JupyterHubAuthenticator(jupyterhub_api_url=hub.api_url, jupyterhub_service_name=GATEWAY,
                                   jupyterhub_api_token=hub.service_tokens[GATEWAY])
    await auth.setup(None)
    return auth


# ---- gap 1: the workspace token reaches the gateway ----------------------------------------------
async def test_workspace_token_has_default_server_scopes_plus_gateway(hub):
    alice = hub.sign_in("alice", ["alpha-study", "beta-study"])
    token = await hub.start_server(alice, "alpha-study")
    stored = orm.APIToken.find(hub.app.db, token)
    assert stored.user.name == "alice@alpha-study"  # the workspace user (ADR 17)
    assert set(stored.scopes) == {"users:activity!user", "access:servers!server=alice@alpha-study/alpha-study",
                                  "access:services!service=dask-gateway"}
    pod = hub.workspace_user(alice, "alpha-study").spawners["alpha-study"].pod_manifest
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_TOKEN"] == token  # the token dask_gateway.JupyterHubAuth reads
    model = await hub.whoami(token)
    assert "access:services!service=dask-gateway" in model["scopes"]
    assert not {"access:services", "access:services!service=airlock"} & set(model["scopes"])


async def test_a_workspace_is_on_its_users_host_and_links_to_the_gate_on_its_own(hub):
    """The chart's subdomain_host (k8s_hub): JupyterHub serves alice's workspace of alpha-study at its
    own host (its workspace user's, ADR 17), and the workspace shows links to the gate's host
    (pds_kernel.hub.origins, test_chart_hub_host.py)."""
    alice = hub.sign_in("alice", ["alpha-study"])
    await hub.start_server(alice, "alpha-study")
    runs = hub.workspace_user(alice, "alpha-study")
    label, domain = runs.host.removeprefix("https://").split(".", 1)
    assert hub.app.subdomain_host == HUB_HOST and domain == "pds.example.org" and WORKSPACE_LABEL.fullmatch(label)
    pod = runs.spawners["alpha-study"].pod_manifest
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["PDS_AIRLOCK_PAGES"] == "https://airlock--service.pds.example.org/services/airlock/"
    assert env["JUPYTERHUB_HOST"] == HUB_HOST  # where the workspace's own sign-in goes


async def test_stock_gateway_authenticator_accepts_the_workspace_token(hub):
    alice = hub.sign_in("alice", ["alpha-study", "beta-study"])
    token = await hub.start_server(alice, "alpha-study")
    # JupyterHub 5.5's default server token (the built-in 'server' role), as before the fix
    bare = await hub.start_server(alice, "beta-study", token_scopes=[])
    assert set(orm.APIToken.find(hub.app.db, bare).scopes) == {
        "users:activity!user", "access:servers!server=alice@beta-study/beta-study"}
    auth = await stock_authenticator(hub)
    try:
        user = await auth.authenticate(gateway_request(token))
        assert user.name == "alice@alpha-study"  # the workspace user (ADR 17): our authenticator maps it
        with pytest.raises(web.HTTPUnauthorized):
            await auth.authenticate(gateway_request(bare))
    finally:
        await auth.cleanup()


async def test_airlock_still_tells_the_workspace_from_the_user(hub):
    """The gateway scope does not make a workspace token pass for the user at the airlock."""
    alice = hub.sign_in("alice", ["alpha-study", "beta-study"])
    token = await hub.start_server(alice, "alpha-study")
    assert workspace_project(await hub.whoami(token), AIRLOCK_SCOPES) == (True, "alpha-study")
    personal = alice.new_api_token(note="made on the token page")  # scopes: inherit
    assert workspace_project(await hub.whoami(personal), AIRLOCK_SCOPES) == (True, None)


# ---- gap 3: nothing depends on the users present at hub start -------------------------------------
async def test_member_added_after_hub_start_reaches_the_gateway(hub, registry, gateway):
    address, _ = gateway
    registry.upsert_user("admin", "erin", email="erin@example.org")
    registry.add_member("admin", "alpha-study", "erin", "researcher", date(2030, 6, 30))
    erin = hub.sign_in("erin", ["alpha-study"])
    token = await hub.start_server(erin, "alpha-study")
    assert "access:services!service=dask-gateway" in orm.APIToken.find(hub.app.db, token).scopes
    async with client(address, token) as gw:
        name = await gw.submit()
        assert [c.name for c in await gw.list_clusters()] == [name]


# ---- gap 2: a cluster belongs to the workspace that created it --------------------------------------
async def test_clusters_are_bound_to_the_calling_workspace(hub, gateway, runtime):
    address, app = gateway
    alice = hub.sign_in("alice", ["alpha-study", "beta-study"])
    token_a = await hub.start_server(alice, "alpha-study")
    token_b = await hub.start_server(alice, "beta-study")
    async with client(address, token_a) as from_a, client(address, token_b) as from_b:
        alpha = await from_a.submit()  # no option: the workspace's project
        beta = await from_b.submit(project="beta-study")
        assert app.backend.clusters[alpha].username == "alice/alpha-study"
        assert app.backend.clusters[alpha].config["image"] == "registry.example.org/pds/dask-worker:0.1.0"
        assert app.backend.clusters[alpha].options == {"project": "alpha-study"}
        assert [c.name for c in await from_a.list_clusters()] == [alpha]
        assert [c.name for c in await from_b.list_clusters()] == [beta]
        for attempt in (from_a.get_cluster(beta), from_a.scale_cluster(beta, 2),
                        from_a.stop_cluster(beta)):
            with pytest.raises(ClientResponseError) as refused:
                await attempt
            assert refused.value.status == 403
        assert app.backend.clusters[beta].status == models.ClusterStatus.PENDING  # not stopped
        # asking from A for a B cluster is refused, and the attempt is audited
        with pytest.raises(ValueError, match="must be for its project alpha-study"):
            await from_a.submit(project="beta-study")
        assert len(app.backend.clusters) == 2
    denied = [e for e in AuditTrail(runtime.sessions).entries()
              if e.outcome == "denied" and e.action == "dask.cluster.authorise"]
    assert [(e.actor, e.project) for e in denied] == [("alice", "beta-study")]


async def test_the_gateway_checks_the_persons_hub_groups(hub, gateway, runtime):
    """A workspace user holds no group: the gateway reads its person's with its own token (the
    ``pds-gateway`` role); her identity provider withdrawing the project's group refuses clusters."""
    address, app = gateway
    alice = hub.sign_in("alice", ["alpha-study"])
    token = await hub.start_server(alice, "alpha-study")
    assert await app.authenticator.person_groups("alice") == ["alpha-study"]
    assert await app.authenticator.person_groups("nobody") == []
    async with client(address, token) as gw:
        await gw.submit()
        hub.sign_in("alice", [])  # her next sign-in: the IdP no longer grants alpha-study
        with pytest.raises(ValueError, match="hub group"):  # the hub's refresh is not due yet: the gateway refuses
            await gw.submit()
        hub.workspace_user(alice, "alpha-study")._auth_refreshed = None  # as if auth_refresh_age had passed
        with pytest.raises(ClientResponseError) as refused:  # the hub refuses the token itself
            await gw.submit()
        assert refused.value.status == 401


async def test_tokens_that_name_no_workspace_are_refused(hub, gateway, runtime):
    address, _ = gateway
    alice = hub.sign_in("alice", ["alpha-study"])
    personal = alice.new_api_token(note="made on the token page")  # inherit: every server of alice
    service = hub.service_tokens["airlock"]
    for token in (personal, service):
        async with client(address, token) as gw:
            with pytest.raises(ClientResponseError) as refused:
                await gw.list_clusters()
            assert refused.value.status == 401
    refused = [e for e in AuditTrail(runtime.sessions).entries() if e.action == "dask.gateway.authenticate"]
    assert [e.actor for e in refused] == ["alice", "airlock"]
    assert all(e.outcome == "denied" for e in refused)


async def test_workspace_of_a_withdrawn_member_gets_no_cluster(hub, gateway, registry):
    """bob's token was valid at the hub, but the registry no longer lets him use beta: the gateway
    refuses while the hub's refresh is not due, then the hub refuses the token (its refresh of the
    workspace user, PdsOAuthenticator.refresh_workspace) and stops the workspace."""
    address, _ = gateway
    registry.add_member("admin", "beta-study", "bob", "researcher", date(2030, 6, 30))
    bob = hub.sign_in("bob", ["alpha-study", "beta-study"])
    token = await hub.start_server(bob, "beta-study")
    await hub.whoami(token)  # the hub refreshed its workspace user now
    registry.remove_member("admin", "beta-study", "bob", "researcher")
    async with client(address, token) as gw:
        with pytest.raises(ValueError, match="researcher"):
            await gw.submit()
        runs = hub.workspace_user(bob, "beta-study")
        runs._auth_refreshed = None  # as if auth_refresh_age had passed
        with pytest.raises(ClientResponseError) as refused:
            await gw.submit()
        assert refused.value.status == 401


# ---- gap 4: administrators come from sign-ins, never from a list loaded at start ---------------------
async def test_hub_start_loads_no_administrator(settings, registry, kubeconfig, tmp_path):
    """Admin grants left in the hub database (e.g. by the earlier configuration, which listed the
    registry's admins in a role) do not survive a start."""
    registry.upsert_user("admin", "alice", email="alice@example.org", is_admin=True)
    db_url = f"sqlite:///{tmp_path}/hub.sqlite"
    app, server, _ = await start_hub(settings, db_url, tmp_path, "http://127.0.0.1:1")
    user = orm.User(name="alice", admin=True)
    app.db.add(user)
    roles.assign_default_roles(app.db, entity=user)
    roles.grant_role(app.db, user, ADMIN_ROLE)
    app.db.commit()
    assert {"admin", ADMIN_ROLE} <= {r.name for r in user.roles}
    server.stop()
    app.db.close()
    again, server, _ = await start_hub(settings, db_url, tmp_path, "http://127.0.0.1:1")
    try:
        alice = orm.User.find(again.db, "alice")
        assert alice.admin is False
        assert {r.name for r in alice.roles} == {"user"}
        assert orm.Role.find(again.db, "admin").users == []
        assert [g.name for g in orm.Role.find(again.db, ADMIN_ROLE).groups] == [ADMIN_GROUP]
    finally:
        server.stop()
        again.db.close()


async def test_administrators_hold_the_narrow_role_through_their_group(hub, registry):
    """A sign-in that puts olga in ADMIN_GROUP (IdP and registry agreeing, see test_oidc.py) gives
    her the pds-admin scopes at once, without a hub restart, never others' servers; the hub's
    next auth refresh (PdsOAuthenticator.refresh_user) takes them away when the registry does."""
    registry.upsert_user("admin", "olga", email="olga@example.org", is_admin=True)
    registry.upsert_user("olga", "root", email="root@example.org", is_admin=True)  # olga may step down: another remains
    olga = hub.sign_in("olga", [ADMIN_GROUP])
    model = await hub.whoami(olga.new_api_token(note="olga's own"))
    assert {"users", "admin:servers", "admin:groups"} <= set(model["scopes"])
    assert not {"admin:users", "admin:auth_state"} & set(model["scopes"])  # the IdP tokens it keeps
    assert not {"access:servers", "tokens", "shares"} & set(model["scopes"])
    assert all(s.endswith("!user=olga") for s in model["scopes"] if s.startswith("access:servers"))
    assert model["admin"] is False and ADMIN_GROUP in model["groups"]
    registry.upsert_user("olga", "olga", email="olga@example.org", is_admin=False)  # she steps down herself
    olga._auth_refreshed = None  # as if auth_refresh_age had passed
    model = await hub.whoami(olga.new_api_token(note="after"))
    assert "users" not in model["scopes"] and ADMIN_GROUP not in model["groups"]
