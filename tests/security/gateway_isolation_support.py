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
