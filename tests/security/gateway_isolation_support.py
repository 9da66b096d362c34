"""Support of tests/security/test_gateway_isolation.py: one world for the module (real JupyterHub,
real ``dask-gateway-server`` with its local process backend, see tests/k8s/gateway_processes.py)
with two running clusters: ``alice/alpha-study`` (the attacker's own) and ``alice/beta-study``
(the target, another project of the same person)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s.gateway_processes import GatewayWorld

ALPHA, BETA = "alpha-study", "beta-study"
#: How long an attack on a scheduler may take before it counts as refused (a TLS handshake that
#: fails returns at once; a client left waiting is refused too).
CONNECT_TIMEOUT = "5s"


@dataclass
class Target:
    """The cluster under attack, as the gateway's own database describes it."""

    name: str
    scheduler_address: str  # tls://127.0.0.1:<port>, what a scan of the node would find
    api_address: str  # the scheduler's HTTP API (dask-gateway's control channel)


@dataclass
class Scene:
    world: GatewayWorld
    alpha_token: str  # alice's alpha-study workspace token: the attacker
    alpha_cluster: str
    alpha_security: object  # the TLS credentials the gateway handed to alpha's workspace
    beta_token: str  # alice's beta-study workspace token: the owner of the target
    beta: Target

    @property
    def gateway(self):
        return self.world.gateway


def make_scene(world: GatewayWorld) -> tuple[Scene, list]:
    """Start one cluster in each of alice's workspaces; returns the scene and the clusters to stop."""
    alpha_token, beta_token = world.token("alice", ALPHA), world.token("alice", BETA)
    with world.gateway.client(beta_token) as gw:
        beta_cluster = gw.new_cluster()
    with world.gateway.client(alpha_token) as gw:
        alpha_cluster = gw.new_cluster()
    row = world.gateway.cluster_rows()[beta_cluster.name]
    target = Target(beta_cluster.name, row["scheduler_address"], row["api_address"])
    scene = Scene(world, alpha_token, alpha_cluster.name, alpha_cluster.security, beta_token, target)
    return scene, [alpha_cluster, beta_cluster]


def beta_as_its_owner_sees_it(scene: Scene):
    """The target's report (status, options) as its own workspace reads it from the gateway."""
    with scene.gateway.client(scene.beta_token) as gw:
        return gw.get_cluster(scene.beta.name)


def requested_workers(scene: Scene, cluster: str) -> int:
    return scene.gateway.cluster_rows()[cluster]["count"]


# ---- the Dask dashboard (issue #11) ---------------------------------------------------------------
#: What a researcher's page on the scheduler would serve instead of the dashboard.
SMUGGLED = b"PERSON_ID,AGE\n1a2b3c,57\n"


def dashboard_through_the_proxy(scene: Scene, cluster: str, token: str | None = None, page: str = "status"):
    """What a browser gets asking the gateway proxy for a page of ``cluster``'s dashboard (the
    route dask-gateway gives it, ``/clusters/<name>/status``), with or without a token."""
    import requests

    headers = {"Authorization": f"jupyterhub {token}"} if token else {}
    return requests.get(f"{scene.gateway.address}/clusters/{cluster}/{page}", timeout=10, headers=headers)


def serve_and_announce_a_page(body: bytes, api_address: str):
    """A function for ``client.run_on_scheduler``: serve ``body`` on a new port of the scheduler
    and report that port to the gateway as the cluster's dashboard, with the cluster's own token
    (the scheduler's environment holds it); its other addresses unchanged (``api_address``: the
    scheduler's API, as the gateway has it). Returns (port, HTTP status of the report)."""

    def attack(dask_scheduler=None):
        import json
        import os
        import threading
        import urllib.error
        import urllib.request
        from http.server import BaseHTTPRequestHandler, HTTPServer

        class Page(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        msg = {"scheduler_address": dask_scheduler.address, "api_address": api_address,
               "dashboard_address": f"http://127.0.0.1:{port}", "count": 0,
               "active_workers": [], "closing_workers": [], "closed_workers": []}
        url = f"{os.environ['DASK_GATEWAY_API_URL']}/v1/clusters/{os.environ['DASK_GATEWAY_CLUSTER_NAME']}/heartbeat"
        request = urllib.request.Request(url, data=json.dumps(msg).encode(), method="POST", headers={
            "Authorization": f"token {os.environ['DASK_GATEWAY_API_TOKEN']}",
            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return port, response.status
        except urllib.error.HTTPError as exc:
            return port, exc.code

    return attack
