"""A workspace creates and uses a Dask cluster of its project through the real ``dask-gateway-server``
(local process backend: the scheduler and workers run) behind the real JupyterHub.

The attacks on the same setup (another project's clusters) are in
tests/security/test_gateway_isolation.py.
"""

from __future__ import annotations

import os

import pytest
from distributed import Client

from .gateway_processes import GatewayWorld

pytestmark = [pytest.mark.functional, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with GatewayWorld(tmp_path_factory.mktemp("gw")) as w:
        yield w


def test_workspace_creates_scales_uses_and_stops_a_cluster_of_its_project(world):
    with world.gateway.client(world.token("alice", "alpha-study")) as gw:
        cluster = gw.new_cluster()  # the project option defaults to the workspace's
        try:
            row = world.gateway.cluster_rows()[cluster.name]
            assert row["username"] == "alice/alpha-study"
            cluster.scale(1)
            with Client(cluster, timeout=30) as client:
                client.wait_for_workers(1, timeout=60)
                # the worker runs with the project's environment from build_cluster_overrides
                assert set(client.run(os.getenv, "PDS_PROJECT").values()) == {"alpha-study"}
                assert client.submit(sum, range(10)).result(timeout=30) == 45
                workers = client.scheduler_info()["workers"].values()
                assert [w["memory_limit"] for w in workers] == [4096 * 2**20]  # the project's limit
            assert [c.name for c in gw.list_clusters()] == [cluster.name]
        finally:
            cluster.shutdown()
        assert gw.list_clusters() == []
