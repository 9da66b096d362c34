"""Red team, revocation of the Dask channel: a cluster made before the researcher lost the project
keeps no access. The real ``dask-gateway-server`` behind the real JupyterHub (tests/k8s/
gateway_processes.py: schedulers and workers are real processes reached through the gateway's
proxy), checking its clusters against the registry every second here (``cluster_check_interval``;
``hub.membership_check_seconds``, 10 s, in production).
"""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from dask_gateway.client import GatewayClusterError
from distributed import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.timeout(300)]

ALPHA, BETA = "alpha-study", "beta-study"
CHECK_EVERY_SECOND = "\nc.WorkspaceAuthenticator.cluster_check_interval = 1.0\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from k8s.gateway_processes import GatewayWorld

    with GatewayWorld(tmp_path_factory.mktemp("rvk"), extra_config=CHECK_EVERY_SECOND) as w:
        w.registry.upsert_user("admin", "root", is_admin=True)
        w.registry.upsert_user("root", "root2", is_admin=True)
        yield w


@pytest.fixture(autouse=True)
def _collected_after_each_test():
    """No automatic collection during a test: dask_gateway clients it leaves to the collector are
    finalised after it, in its own thread (k8s/gateway_processes.collected_here)."""
    from k8s.gateway_processes import collected_here

    with collected_here():
        yield


def wait_gone(gw, limit: float = 15) -> float:
    started = time.monotonic()
    while gw.list_clusters() and time.monotonic() - started < limit:
        time.sleep(0.2)
    return time.monotonic() - started


def stops_of(world, user: str) -> list:
    return [e for e in world.runtime.audit.entries(action="dask.cluster.stop") if e.target == f"user:{user}"]


def test_removed_researcher_keeps_computing_on_a_cluster_made_before(world):
    """bob computes on his alpha cluster; he is removed from alpha: the cluster stops, his
    connected client computes nothing more, the TLS credentials he kept reach nothing, his
    gateway session lists nothing and makes no new cluster."""
    with world.gateway.client(world.token("bob", ALPHA)) as gw:
        cluster = gw.new_cluster()
        try:
            cluster.scale(1)
            security, name = cluster.security, cluster.name
            with Client(cluster, timeout=30) as client:
                client.wait_for_workers(1, timeout=60)
                assert client.submit(sum, range(4)).result(timeout=30) == 6
                world.registry.remove_member("root", ALPHA, "bob")
                took = wait_gone(gw)
                assert gw.list_clusters() == [], f"still running {took:.0f} s after the removal"
                with pytest.raises(Exception):  # noqa: B017  (the scheduler is gone: any failure)
                    client.submit(sum, range(5)).result(timeout=10)
            with pytest.raises((OSError, TimeoutError)):
                Client(f"gateway://{world.gateway.proxy_tcp}/{name}", security=security, timeout="5s")
            with pytest.raises((ValueError, GatewayClusterError), match="researcher"):
                gw.new_cluster()
        finally:
            cluster.shutdown()
    stops = stops_of(world, "bob")
    assert len(stops) == 1 and "no longer an active researcher" in stops[0].details["reason"]
    assert any(e.outcome == "denied" and e.actor == "bob"
               for e in world.runtime.audit.entries(action="dask.cluster.authorise"))


def test_member_expired_at_midnight_keeps_a_cluster(world):
    """alice's beta membership ends yesterday (shortened: no second administrator needed); her
    beta cluster stops, her alpha cluster (another project, still hers) runs on."""
    with world.gateway.client(world.token("alice", BETA)) as beta, \
            world.gateway.client(world.token("alice", ALPHA)) as alpha:
        doomed, kept = beta.new_cluster(), alpha.new_cluster()
        try:
            world.registry.add_member("root", BETA, "alice", "researcher", date.today() - timedelta(days=1))
            took = wait_gone(beta)
            assert beta.list_clusters() == [], f"still running {took:.0f} s after the expiry"
            assert [c.name for c in alpha.list_clusters()] == [kept.name]
        finally:
            kept.shutdown()
            doomed.shutdown()
    stops = [e for e in stops_of(world, "alice") if e.project == BETA]
    assert len(stops) == 1 and stops[0].details["cluster"] == doomed.name


def delete_hub_tokens(world, user: str) -> int:
    """What revoking an account (or stopping its server) does at the hub: its tokens are deleted."""
    async def drop():
        from jupyterhub import orm

        db = world.hub.hub.app.db
        owner = orm.User.find(db, user)
        tokens = db.query(orm.APIToken).filter(orm.APIToken.user_id == owner.id).all()
        for token in tokens:
            db.delete(token)
        db.commit()
        return len(tokens)
    return world.hub.call(drop())


def test_deleted_workspace_token_keeps_a_gateway_session(world):
    """erin's workspace token is deleted at the hub (her account revoked; the registry still lists
    her): the gateway client she holds, whose session cookie the gateway set a moment before, lists,
    connects to and makes clusters with it."""
    world.registry.upsert_user("root", "erin")
    world.registry.add_member("root", ALPHA, "erin", "researcher", date(2030, 6, 30))
    with world.gateway.client(world.token("erin", ALPHA)) as gw:
        cluster = gw.new_cluster()
        try:
            assert [c.name for c in gw.list_clusters()] == [cluster.name]
            assert delete_hub_tokens(world, f"erin@{ALPHA}") >= 1
            with pytest.raises(Exception):  # noqa: B017  (the hub no longer knows the token)
                world.hub.call(world.hub.whoami(world.token("erin", ALPHA)))
            with pytest.raises(Exception, match="401|Unauthorized"):
                gw.list_clusters()
            with pytest.raises(Exception, match="401|Unauthorized"):
                gw.connect(cluster.name)
            with pytest.raises(Exception, match="401|Unauthorized"):
                gw.new_cluster()
        finally:
            cluster.shutdown()


def test_regranted_member_pending_approval_makes_a_cluster(world):
    """bob (removed above) is granted alpha again by one administrator under the two-person rule:
    his workspace token makes no cluster until a second administrator approves; then it does."""
    from pds_kernel.registry import Registry

    two_person = Registry(world.runtime.sessions, world.runtime.audit, membership_approvals=2)
    two_person.add_member("root", ALPHA, "bob", "researcher", date(2030, 6, 30))
    with world.gateway.client(world.token("bob", ALPHA)) as gw:
        with pytest.raises((ValueError, GatewayClusterError), match="pending"):
            gw.new_cluster()
        assert gw.list_clusters() == []
        two_person.approve_member("root2", ALPHA, "bob", "researcher")
        cluster = gw.new_cluster()
        cluster.shutdown()
