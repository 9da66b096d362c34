"""A workspace creates and uses a Dask cluster of its project through the real ``dask-gateway-server``
(local process backend: the scheduler and workers run) behind the real JupyterHub.

The attacks on the same setup (another project's clusters) are in
tests/security/test_gateway_isolation.py.
"""

from __future__ import annotations

import gc
import os
import time

import pytest
from distributed import Client

from pds_kernel.permissions import hub_groups_unconfirmed, left_hub_group
from pds_kernel.project_end import ProjectEnd

from .gateway_processes import GatewayWorld, collected_here

pytestmark = [pytest.mark.functional, pytest.mark.slow]


#: The gateway checks its running clusters against the registry every second here (10 s by default),
#: and stops those whose person's groups the hub has not told for 8 s (15 minutes by default).
CHECK_EVERY_SECOND = ("\nc.WorkspaceAuthenticator.cluster_check_interval = 1.0\n"
                      "c.WorkspaceAuthenticator.hub_silence_limit = 8.0\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with GatewayWorld(tmp_path_factory.mktemp("gw"), extra_config=CHECK_EVERY_SECOND) as w:
        yield w


@pytest.fixture(autouse=True)
def _collected_after_each_test():
    """No automatic collection during a test (k8s/gateway_processes.collected_here)."""
    with collected_here():
        yield


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


def test_halt_stops_the_running_clusters_of_the_project_and_refuses_new_ones(world):
    """alice's beta-study workspace computes on its cluster; an administrator halts beta-study
    (``pds project halt``'s service): the gateway stops the cluster within its check interval,
    audited, and refuses a new one until the project is resumed. alpha-study is untouched."""
    world.registry.upsert_user("admin", "root", email="root@example.org", is_admin=True)
    end = ProjectEnd(world.runtime, world.registry)
    with world.gateway.client(world.token("alice", "beta-study")) as gw, \
            world.gateway.client(world.token("bob", "alpha-study")) as other:
        cluster, kept = gw.new_cluster(), other.new_cluster()
        try:
            cluster.scale(1)
            with Client(cluster, timeout=30) as client:
                client.wait_for_workers(1, timeout=60)
                assert client.submit(sum, range(4)).result(timeout=30) == 6
                end.halt("root", "beta-study", "suspected breach")
                deadline = time.monotonic() + 20
                while gw.list_clusters() and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert gw.list_clusters() == [], "the halted project's cluster still runs"
                with pytest.raises(Exception):  # noqa: B017  (the scheduler is gone: any failure)
                    client.submit(sum, range(5)).result(timeout=10)
            stops = [e for e in world.runtime.audit.entries(action="dask.cluster.stop")
                     if e.details.get("cluster") == cluster.name]
            assert len(stops) == 1 and stops[0].project == "beta-study"
            assert "halted" in stops[0].details["reason"] and stops[0].actor == "dask-gateway"
            with pytest.raises(Exception, match="halted"):
                gw.new_cluster()
            assert [c.name for c in other.list_clusters()] == [kept.name], "another project's cluster"
        finally:
            end.resume("root", "beta-study", "checked")
            kept.shutdown()
            cluster.shutdown()


def test_workspace_client_on_kubernetes_shows_no_dashboard_link(world, monkeypatch):
    """``ws.dask_client()`` as a workspace pod runs it (the pod's DASK_GATEWAY__* variables, its
    server's token): a working client whose cluster offers no dashboard link (the gateway proxy
    refuses the route on Kubernetes, tests/k8s/test_gateway_dashboard_route.py)."""
    import dask.config

    from pds_kernel import workspace as ws

    monkeypatch.setenv("DASK_GATEWAY__ADDRESS", world.gateway.address)
    monkeypatch.setenv("DASK_GATEWAY__PROXY_ADDRESS", f"gateway://{world.gateway.proxy_tcp}")
    monkeypatch.setenv("DASK_GATEWAY__AUTH__TYPE", "jupyterhub")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", world.token("alice", "alpha-study"))
    dask.config.refresh()
    try:
        client = ws.dask_client(1)
        try:
            assert client.dashboard_link is None and client.cluster.dashboard_link is None
            assert client.submit(sum, range(3)).result(timeout=60) == 3
        finally:
            client.close()
            client.cluster.close()  # shutdown_on_close: stops the cluster
    finally:
        monkeypatch.undo()
        dask.config.refresh()
    with world.gateway.client(world.token("alice", "alpha-study")) as gw:
        assert gw.list_clusters() == []
    del client
    # dask_gateway's Gateway.__del__ fails on a closed client (its loop is gone): let it fail now,
    # not when a later collection runs it inside pytest's own compile at session end
    gc.collect()


def test_a_cluster_stops_once_its_person_is_out_of_the_projects_hub_group(world):
    """The identity provider takes bob out of alpha-study; the hub learns it at his next sign-in or
    refresh and stops his workspace (tests/security/test_redteam18_k8s_idp_withdrawal.py). His Dask
    cluster ran on: the gateway's watcher read the registry alone, which still lists him (red team
    18, got through before). Now it asks the hub for his groups too and stops it, audited; alice's
    cluster of the same project runs on."""
    with world.gateway.client(world.token("bob", "alpha-study")) as gw, \
            world.gateway.client(world.token("alice", "alpha-study")) as other:
        cluster, kept = gw.new_cluster(), other.new_cluster()
        try:
            world.hub.call(_signed_in(world.hub.hub, "bob", []))  # his groups as that sign-in computed them
            deadline = time.monotonic() + 20
            while gw.list_clusters() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert gw.list_clusters() == [], "the cluster runs on"
            (stop,) = [e for e in world.runtime.audit.entries(action="dask.cluster.stop")
                       if e.details.get("cluster") == cluster.name]
            assert stop.details["reason"] == left_hub_group("bob", "alpha-study")
            assert [c.name for c in other.list_clusters()] == [kept.name]
        finally:
            world.hub.call(_signed_in(world.hub.hub, "bob", ["alpha-study"]))
            kept.shutdown()
            cluster.shutdown()


def test_a_cluster_stops_once_the_hub_has_not_told_its_persons_groups_for_too_long(world):
    """The hub stops answering (its event loop held): before, the gateway's watcher stopped nothing
    for as long as the hub stayed silent, so a withdrawal by the identity provider went unseen
    (red team 18's residual); each ask also waited for the hub with no bound, holding the registry's
    stops of the same pass. Now each ask waits half the silence limit at most, and a cluster whose
    person's groups have gone untold for the limit (8 s here) stops, audited with the reason."""
    with world.gateway.client(world.token("bob", "alpha-study")) as gw:
        cluster = gw.new_cluster()
        try:
            world.hub.loop.call_soon_threadsafe(time.sleep, 14)  # the hub answers nobody for 14 s
            deadline, stops = time.monotonic() + 40, []
            while not stops and time.monotonic() < deadline:
                time.sleep(0.5)
                stops = [e for e in world.runtime.audit.entries(action="dask.cluster.stop")
                         if e.details.get("cluster") == cluster.name]
            assert stops, "the cluster ran on while the hub was silent"
            reason, expected = stops[0].details["reason"], hub_groups_unconfirmed("bob", "alpha-study", 8)
            assert reason.split(" s that ")[1] == expected.split(" s that ")[1], reason  # the seconds vary
            deadline = time.monotonic() + 30
            while gw.list_clusters() and time.monotonic() < deadline:  # the hub answers again
                time.sleep(0.2)
            assert gw.list_clusters() == []
        finally:
            cluster.shutdown()


async def _signed_in(hub, name: str, groups: list[str]) -> None:
    hub.sign_in(name, groups)
