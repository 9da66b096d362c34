"""Red team 21A: the Dask cluster boundary, attacked through the real dask-gateway-server behind the real JupyterHub.

The world is tests/k8s/gateway_processes.py's (schedulers and workers are real processes, reached
through the gateway's own proxy); the gateway's watcher runs every second here.

The attacker holds alice's ``alpha-study`` workspace (its hub token, code on her kernel, on her
cluster's scheduler and workers); the targets are her ``beta-study`` cluster (another project of the
same person), the project's limits, and the lifetime the platform gives a cluster. Attacks already
made elsewhere (listing, connecting to, scaling and stopping another project's cluster with the
workspace token, the dashboard route, revocation) are not repeated: see test_gateway_isolation.py
and test_revocation_attacks_dask.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests
from dask_gateway.client import ClusterStatus, GatewayClusterError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.timeout(300)]

ALPHA, BETA = "alpha-study", "beta-study"
ALPHA_WORKERS = 3  # the registry's dask_workers of alpha-study (tests/k8s/conftest.py::two_projects)
CHECK_EVERY_SECOND = "\nc.WorkspaceAuthenticator.cluster_check_interval = 1.0\n"


class Scene:
    """alice's two clusters, and what code on her alpha cluster's scheduler reads of its environment."""

    def __init__(self, world):
        self.world = world
        self.alpha_token, self.beta_token = world.token("alice", ALPHA), world.token("alice", BETA)
        with world.gateway.client(self.beta_token) as gw:
            self.beta = gw.new_cluster(shutdown_on_close=False)
        with world.gateway.client(self.alpha_token) as gw:
            self.alpha = gw.new_cluster(shutdown_on_close=False)
        with self.alpha.get_client(set_as_default=False) as client:
            self.alpha_env, self.alpha_http_port = client.run_on_scheduler(scheduler_environment())

    @property
    def gateway(self):
        return self.world.gateway

    def post(self, path: str, token: str | None, body=None, auth: str = "jupyterhub", method: str = "POST"):
        headers = {"Authorization": f"{auth} {token}"} if token else {}
        return requests.request(method, f"{self.gateway.address}{path}", json=body, headers=headers, timeout=20)

    def names_of(self, username: str) -> list[str]:
        return sorted(n for n, r in self.gateway.cluster_rows().items()
                      if r["username"] == username and r["target"] <= 3)  # not stopping


def scheduler_environment():
    """For ``client.run_on_scheduler`` (a closure: pickled by value, the scheduler cannot import
    this module): the scheduler's ``DASK_GATEWAY_*`` variables and the port of its HTTP server."""

    def read(dask_scheduler=None) -> tuple[dict[str, str], int]:
        import os

        return ({k: v for k, v in os.environ.items() if k.startswith("DASK_GATEWAY")},
                dask_scheduler.http_server.port)

    return read


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from k8s.gateway_processes import GatewayWorld

    with GatewayWorld(tmp_path_factory.mktemp("rt21"), extra_config=CHECK_EVERY_SECOND) as world:
        scene = Scene(world)
        try:
            yield scene
        finally:
            for cluster in (scene.alpha, scene.beta):
                cluster.shutdown()


@pytest.fixture
def collected():
    """For the tests that make dask_gateway clients: no automatic collection during the test, a
    collection after it (k8s/gateway_processes.collected_here; not for every test: it takes a
    second on a busy machine)."""
    from k8s.gateway_processes import collected_here

    with collected_here():
        yield


def denials(scene, actor: str) -> list:
    return [e for e in scene.world.runtime.audit.entries(action="dask.cluster.authorise")
            if e.outcome == "denied" and e.actor == actor]


# ---- naming the other project's cluster ---------------------------------------------------------------
def test_list_clusters_in_every_status(scene):
    """The list filtered by every status (stopped and failed clusters included): only the workspace's own."""
    response = scene.post("/api/v1/clusters/?status=pending,running,stopping,stopped,failed",
                          scene.alpha_token, method="GET")
    assert response.status_code == 200
    assert scene.beta.name not in response.json()
    assert all(c["name"] not in scene.names_of(f"alice/{BETA}") for c in response.json().values())


#: beta's cluster named by another spelling of its path: capitals, a trailing slash, a dot segment,
#: an encoded slash.
RESPELLED = ["{name}".upper(), "{name}/", "x/../{name}", "x%2F..%2F{name}"]


@pytest.mark.parametrize("form", RESPELLED)
def test_other_projects_cluster_under_another_spelling(scene, form):
    """Its report (and TLS key) fetched from alpha's workspace: never served."""
    path = form.replace("{NAME}", "{name}").format(name=scene.beta.name)
    response = scene.post(f"/api/v1/clusters/{path}", scene.alpha_token, method="GET")
    assert response.status_code in (403, 404), response.text[:200]
    assert "tls_key" not in response.text


# ---- cluster options: what a workspace may ask the gateway to build ---------------------------------
#: Fields of dask-gateway's cluster config a request names beside ``project`` (the pod's image, its
#: environment, its command, the worker cap, a raw pod spec mounting the host).
POD_FIELDS = {
    "image": "attacker/registry:latest",
    "environment": {"PDS_PROJECT": BETA, "LD_PRELOAD": "/home/jovyan/x.so"},
    "worker_cmd": ["sh", "-c", "cat /etc/shadow"],
    "cluster_max_workers": 1000,
    "worker_extra_pod_config": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
}


@pytest.mark.parametrize("field", sorted(POD_FIELDS))
def test_cluster_request_naming_a_pod_field(scene, field):
    """The raw API request (not the client library, which checks the fields itself) names a config
    field beside ``project``: refused before anything is built (only ``project`` is an option)."""
    before = scene.names_of(f"alice/{ALPHA}")
    response = scene.post("/api/v1/clusters/", scene.alpha_token,
                          {"cluster_options": {"project": ALPHA, field: POD_FIELDS[field]}})
    assert response.status_code == 422, response.text[:200]
    assert scene.names_of(f"alice/{ALPHA}") == before


#: The ``project`` option in other shapes: not a string, another case, padded, a look-alike, huge.
PROJECT_SHAPES = {
    "list": [ALPHA], "object": {"id": ALPHA}, "number": 1, "null": None, "upper case": ALPHA.upper(),
    "trailing blank": ALPHA + " ", "zero-width space": ALPHA + "\u200b", "100 kB": "b" * 100_000,
}


@pytest.mark.parametrize("shape", sorted(PROJECT_SHAPES))
def test_project_option_in_another_shape(scene, shape):
    """No cluster is made, and what the audit trail keeps of the refusal is bounded."""
    before = scene.names_of(f"alice/{ALPHA}")
    response = scene.post("/api/v1/clusters/", scene.alpha_token,
                          {"cluster_options": {"project": PROJECT_SHAPES[shape]}})
    assert response.status_code == 422
    assert len(response.reason) < 2000
    assert scene.names_of(f"alice/{ALPHA}") == before
    assert all(len(e.project or "") <= 64 and len(str(e.details)) < 1000 for e in denials(scene, "alice"))


# ---- the project's worker limit ---------------------------------------------------------------------
def test_a_second_cluster_of_the_same_workspace(scene, collected):
    """Each cluster is capped at the project's workers, but a workspace made as many clusters as it
    liked, each with that many workers: 4 clusters of alpha (3 workers each) held 12 workers' worth
    of the project's CPU and memory. Got through before a workspace held one cluster at a time:
    refused, audited, with what to do."""
    with scene.gateway.client(scene.alpha_token) as gw:
        for _ in range(3):
            with pytest.raises((ValueError, GatewayClusterError), match="runs a Dask cluster already"):
                gw.new_cluster(shutdown_on_close=False)
        assert [c.name for c in gw.list_clusters()] == [scene.alpha.name]
    assert "runs a Dask cluster already" in denials(scene, "alice")[-1].details["reason"]


def test_many_clusters_at_once(scene):
    """The same, 6 requests sent together (the check and the creation are not one step on every
    backend): still one cluster, the watcher stops any extra one."""
    import concurrent.futures

    def create(_):
        return scene.post("/api/v1/clusters/", scene.beta_token, {"cluster_options": {"project": BETA}}).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(create, range(6)))
    assert codes.count(201) == 0, codes
    deadline = time.monotonic() + 10
    while len(scene.names_of(f"alice/{BETA}")) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scene.names_of(f"alice/{BETA}") == [scene.beta.name]


def test_scale_past_the_project_limit(scene, collected):
    """scale(1000) and adapt(maximum=1000) on the workspace's own cluster: capped at the project's
    dask_workers (dask-gateway's ``cluster_max_workers``, from the registry)."""
    with scene.gateway.client(scene.alpha_token) as gw:
        gw.scale_cluster(scene.alpha.name, 1000)
        assert scene.gateway.cluster_rows()[scene.alpha.name]["count"] <= ALPHA_WORKERS
        gw.adapt_cluster(scene.alpha.name, minimum=1000, maximum=1000)
        time.sleep(1.5)
        assert scene.gateway.cluster_rows()[scene.alpha.name]["count"] <= ALPHA_WORKERS
        gw.scale_cluster(scene.alpha.name, 0)


def heartbeat_from_the_scheduler(target: str, count: int, method: str = "POST"):
    """For ``client.run_on_scheduler``: the scheduler's own report to the gateway (its cluster token,
    from its environment), for ``target`` and asking ``count`` workers: the HTTP status."""

    def attack(dask_scheduler=None):
        import json
        import os
        import urllib.error
        import urllib.request

        msg = {"count": count, "active_workers": [], "closing_workers": [], "closed_workers": []}
        url = f"{os.environ['DASK_GATEWAY_API_URL']}/v1/clusters/{target}"
        url += "/heartbeat" if method == "POST" else ""
        request = urllib.request.Request(url, data=json.dumps(msg).encode() if method == "POST" else None,
                                         method=method, headers={
                                             "Authorization": f"token {os.environ['DASK_GATEWAY_API_TOKEN']}",
                                             "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    return attack


def test_scheduler_reports_more_workers_than_the_limit(scene, collected):
    """Code on the scheduler tells the gateway, with the cluster's own token, that it wants 1000
    workers (the report adaptive scaling uses): the gateway keeps the project's cap.

    The report names no worker, so it is only true once the workers an earlier test started have
    stopped: dask-gateway-server answers 500 (an ``assert`` in ``on_cluster_heartbeat``) to a report
    leaving out a worker it holds as running, which made this test fail on a loaded machine."""
    scene.gateway.wait_no_live_workers(scene.alpha.name)
    with scene.alpha.get_client(set_as_default=False) as client:
        status = client.run_on_scheduler(heartbeat_from_the_scheduler(scene.alpha.name, 1000))
    assert status == 200  # its own cluster's report is accepted ...
    assert scene.gateway.cluster_rows()[scene.alpha.name]["count"] <= ALPHA_WORKERS  # ... capped
    with scene.gateway.client(scene.alpha_token) as gw:
        gw.scale_cluster(scene.alpha.name, 0)
    scene.gateway.wait_no_live_workers(scene.alpha.name)


# ---- the cluster's own token, held by its scheduler (and code run there) -----------------------------
@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_cluster_token_on_another_projects_cluster(scene, method):
    """alpha's scheduler sends beta's cluster a heartbeat (its workers' count, which workers closed)
    or a stop, with alpha's cluster token: refused; beta runs on, unscaled."""
    before = scene.gateway.cluster_rows()[scene.beta.name]
    with scene.alpha.get_client(set_as_default=False) as client:
        status = client.run_on_scheduler(heartbeat_from_the_scheduler(scene.beta.name, 1, method))
    assert status in (401, 403)
    after = scene.gateway.cluster_rows()[scene.beta.name]
    assert (after["count"], after["status"], after["target"]) == (before["count"], before["status"], before["target"])


@pytest.mark.parametrize("auth", ["jupyterhub", "token", "Bearer"])
def test_cluster_token_as_a_user_token(scene, auth):
    """The cluster token on the user API (list, create): the gateway shows it to the hub, which
    knows no such token."""
    token = scene.alpha_env["DASK_GATEWAY_API_TOKEN"]
    assert scene.post("/api/v1/clusters/", token, auth=auth, method="GET").status_code == 401
    assert scene.post("/api/v1/clusters/", token, {"cluster_options": {"project": ALPHA}},
                      auth=auth).status_code == 401


# ---- the scheduler's HTTP server, straight to its port ------------------------------------------------
@pytest.mark.parametrize("page", ["health", "json/identity.json", "metrics", "info/main/workers.html",
                                  "api/v1/retire_workers", "sitemap.json"])
def test_scheduler_http_port_without_the_proxy(scene, page):
    """A node's shell reaches the scheduler's HTTP port (on Kubernetes the NetworkPolicy closes it):
    it serves nothing, not even its health or identity; its site map (which distributed always
    serves) names no page but itself."""
    row = scene.gateway.cluster_rows()[scene.alpha.name]
    host = row["scheduler_address"].split("://")[1].rsplit(":", 1)[0]
    response = requests.get(f"http://{host}:{scene.alpha_http_port}/{page}", timeout=5)
    if page == "sitemap.json":
        assert response.json() == {"paths": ["/sitemap.json"]}
    else:
        assert response.status_code == 404, response.text[:200]


# ---- lifetime: a cluster outlives its workspace --------------------------------------------------------
def stop_workspace(world, person: str, project: str) -> None:
    """What the researcher's "Stop" (or the hub's culling) does: the workspace's server stops."""
    async def go():
        from jupyterhub import orm

        app = world.hub.hub.app
        await app.users[orm.User.find(app.db, f"{person}@{project}")].stop(project)
    world.hub.call(go())


def test_cluster_left_running_after_its_workspace_stopped(scene, collected):
    """bob loads data into his alpha cluster's workers (a cluster made without
    ``shutdown_on_close``, or a kernel killed before it could close it), then his workspace stops:
    the cluster ran on with nobody's workspace behind it, its workers holding the data, as long as
    the gateway ran (dask-gateway's ``idle_timeout`` is 0: never; and code on a worker can keep any
    idle timer busy). Got through before the gateway's watcher stopped the clusters of a workspace
    whose server is not running: now within a pass, audited."""
    world = scene.world
    with world.gateway.client(world.token("bob", ALPHA)) as gw:
        cluster = gw.new_cluster(shutdown_on_close=False)
        try:
            stop_workspace(world, "bob", ALPHA)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and \
                    world.gateway.cluster_rows()[cluster.name]["target"] <= 3:
                time.sleep(0.2)
            assert world.gateway.cluster_rows()[cluster.name]["target"] > 3, "still running"
        finally:
            cluster.shutdown()
    stops = [e for e in world.runtime.audit.entries(action="dask.cluster.stop") if e.target == "user:bob"]
    assert stops and "workspace" in stops[-1].details["reason"]
    # alice's workspaces run: their clusters too
    assert scene.names_of(f"alice/{ALPHA}") == [scene.alpha.name]
    with world.gateway.client(scene.beta_token) as gw:
        assert gw.get_cluster(scene.beta.name).status == ClusterStatus.RUNNING
