"""Red team, seventeenth round, Kubernetes: a hub user per workspace (ADR 17) attacked on the
Kubernetes hub, its spawner, the Dask gateway and the hub's worker refusals endpoint.

Each workspace is the one server of its own hub user, ``alice@alpha-study`` (server
``alpha-study``), and everything keys on the person and the project behind that name. Tried here:

* a personal token of alice made with her role's scope on her workspace user's server
  (``access:servers!server=alice@alpha-study/alpha-study`` and the gateway's access), to make
  Dask clusters as her workspace without being it;
* the token of a person's own named server from before workspace users (``alice/alpha-study``),
  and starting such a server again on Kubernetes;
* a workspace user's server named after another project (``alice@alpha-study/beta-study``, alice
  being a member of both): its pod, and its token at the gateway;
* another person's workspace user at the worker refusals endpoint, and the person's own path;
* ``al-ice@alpha-study`` and ``al_ice@alpha-study``: their pods' names, ``pds.user`` labels and
  home claims must differ, and each home claim must be the one of before the upgrade;
* a workspace whose person the identity provider withdrew from the project, still holding its
  server's token.

Before the fix the Kubernetes mode still took the hub user for the person: it refused every
workspace user (the registry knows no ``alice@alpha-study``: no pod, no cluster), it still started a
person's own named server (the pre-spawn hook read only the server's name), and the watcher's stop
of such a server still running was answered ``307`` to her new workspace, which it stopped instead,
at every pass. 2 attacks got through (the legacy start, the watcher's redirect); the others failed
already or could not be tried. Each now fails: :func:`pds_kernel.hub.kubernetes.spawner_workspace`,
the person's groups and names in the spawner, :func:`pds_kernel.k8s.gateway.workspace_identity` and
its person's groups, ``PdsOAuthenticator.refresh_workspace``, the worker refusals endpoint's
``workspace_of_server`` and the hub's ``DELETE`` of a still-running named server (``admission``).
"""

from __future__ import annotations

import asyncio
from datetime import date

import k8s_watcher_support as watched
import pytest
import pytest_asyncio
from aiohttp import ClientResponseError
from k8s_watcher_support import watcher_world_fixture  # noqa: F401  (the world fixture)
from tornado import web
from worker_refusal_support import ask, hub_with_refusals

from pds_kernel.audit import AuditTrail
from pds_kernel.errors import PermissionDenied
from pds_kernel.hub.common import MOVED
from pds_kernel.k8s.gateway import workspace_identity
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.sandbox.spec import home_volume_name
from tests.k8s.conftest import kubeconfig, registry, two_projects, use_dummy_kubeconfig  # noqa: F401  (fixtures)
from tests.k8s.dask_worker_pods import checked, listed_worker, start_refused, worker_manifest
from tests.k8s.test_gateway_hub import client, gateway, hub  # noqa: F401  (fixtures)
from tests.k8s.test_spawner import make_spawner, spawn_manifest

GATEWAY_ACCESS = "access:services!service=dask-gateway"
CLUSTER = "c" * 32


# ---- the gateway: only a workspace user's own server's token ----------------------------------------
@pytest.mark.asyncio
async def test_a_personal_token_with_the_workspaces_scope_makes_no_cluster(hub, gateway, runtime):  # noqa: F811
    """alice's role lets her open her workspace user's server; a token of hers limited to it is still
    hers, not the workspace's: refused (the scope names another user than the token's)."""
    address, app = gateway
    alice = hub.sign_in("alice", ["alpha-study"])
    await hub.start_server(alice, "alpha-study")  # her role on alice@alpha-study exists now
    token = alice.new_api_token(note="crafted", scopes=["access:servers!server=alice@alpha-study/alpha-study",
                                                         GATEWAY_ACCESS])
    async with client(address, token) as gw:
        with pytest.raises(ClientResponseError) as refused:
            await gw.list_clusters()
    assert refused.value.status == 401 and not app.backend.clusters
    entries = [e for e in AuditTrail(runtime.sessions).entries() if e.action == "dask.gateway.authenticate"]
    assert [(e.actor, e.outcome) for e in entries] == [("alice", "denied")]


@pytest.mark.asyncio
async def test_a_legacy_named_servers_token_makes_no_cluster(hub, gateway):  # noqa: F811
    """The token a person's own named server held before the upgrade (same scopes as a server's)."""
    address, app = gateway
    alice = hub.sign_in("alice", ["alpha-study"])
    legacy = alice.new_api_token(note="as a server's", scopes=["users:activity!user=alice", GATEWAY_ACCESS,
                                                               "access:servers!server=alice/alpha-study"])
    async with client(address, legacy) as gw:
        with pytest.raises(ClientResponseError) as refused:
            await gw.list_clusters()
    assert refused.value.status == 401 and not app.backend.clusters


@pytest.mark.asyncio
async def test_a_legacy_named_server_does_not_start_again(hub, runtime):  # noqa: F811
    alice = hub.sign_in("alice", ["alpha-study"])
    with pytest.raises(web.HTTPError) as refused:
        await hub.start_server(alice, "alpha-study", legacy=True)
    assert refused.value.status_code == 403 and "its own hub user" in refused.value.log_message
    assert not alice.spawners["alpha-study"].ready


@pytest.mark.parametrize("name,server,why", [
    ("alice@alpha-study", "beta-study", "runs one server"),              # another project's name
    ("bob@alpha-study", "alpha-study", "exactly one"),                   # with alice's scope (below)
    ("alice@alpha-study@x", "alpha-study", "not a workspace user"),      # two separators
    ("alice", "alpha-study", "not a workspace user"),                    # a person's own server
    ("Alice@alpha-study", "alpha-study", "not a workspace user"),        # not a user name
])
def test_models_that_are_not_one_workspaces_are_refused(name, server, why):
    scope_user = "alice@alpha-study" if name == "bob@alpha-study" else name
    model = {"kind": "user", "name": name, "groups": ["alpha-study"],
             "scopes": [GATEWAY_ACCESS, f"access:servers!server={scope_user}/{server}"]}
    with pytest.raises(PermissionDenied, match=why):
        workspace_identity(model, "dask-gateway")


@pytest.mark.asyncio
async def test_a_workspace_withdrawn_by_the_identity_provider_is_refused_by_the_hub(hub, gateway):  # noqa: F811
    """Her server's token outlives her project group; the hub's refresh of the workspace user
    refuses it, so the gateway learns nobody from it."""
    address, _ = gateway
    alice = hub.sign_in("alice", ["alpha-study"])
    token = await hub.start_server(alice, "alpha-study")
    hub.sign_in("alice", [])
    hub.workspace_user(alice, "alpha-study")._auth_refreshed = None
    async with client(address, token) as gw:
        with pytest.raises(ClientResponseError) as refused:
            await gw.list_clusters()
    assert refused.value.status == 401


# ---- the spawner: the person's names, one server per workspace user ----------------------------------
@pytest.mark.asyncio
async def test_a_workspace_user_cannot_run_another_projects_server(settings, runtime, registry, kubeconfig):  # noqa: F811
    """alice is a member of both projects; her workspace user of alpha-study asks for beta-study."""
    spawner = make_spawner(settings, "alice", ["alpha-study", "beta-study"], "beta-study",
                           hub_user="alice@alpha-study")
    assert spawner.profile_list(spawner) == []
    with pytest.raises(web.HTTPError) as refused:
        spawner.run_pre_spawn_hook()
    assert refused.value.status_code == 403
    pod = await spawner.get_pod_manifest()
    with pytest.raises(web.HTTPError):  # the last word too
        await spawner.modify_pod_hook(spawner, pod)
    entries = [e for e in AuditTrail(runtime.sessions).entries() if e.action == "workspace.refused"]
    assert entries and all((e.actor, e.target) == ("alice", "user:alice") for e in entries)


@pytest.mark.asyncio
async def test_lookalike_people_share_no_pod_label_or_home(settings, runtime, registry, kubeconfig):  # noqa: F811
    """``al-ice`` and ``al_ice``: KubeSpawner's slugs of ``al-ice@alpha-study`` and ``al_ice@alpha-study``
    differ by their hash; the labels and claims are the people's own names, as before the upgrade."""
    for name in ("al_ice", "al-ice"):
        registry.upsert_user("admin", name, email=f"{name}@example.org")
        registry.add_member("admin", "alpha-study", name, "researcher", date(2030, 6, 30))
    pods = {}
    for name in ("al_ice", "al-ice"):
        spawner = make_spawner(settings, name, ["alpha-study"], "alpha-study")
        pod = await spawn_manifest(spawner)
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                  if "persistentVolumeClaim" in v}
        assert spawner.pvc_name == claims["home"] == home_volume_name("alpha-study", name)  # the home of before
        assert pod["metadata"]["labels"]["pds.user"] == name and pod["metadata"]["labels"]["pds.project"] == "alpha-study"
        pods[name] = (pod["metadata"]["name"], claims["home"])
    (a_pod, a_home), (b_pod, b_home) = pods["al_ice"], pods["al-ice"]
    assert a_pod != b_pod and a_home != b_home
    for pod_name, _ in pods.values():  # a DNS-1123 name, as the API server requires
        assert len(pod_name) <= 63 and pod_name.replace("-", "").isalnum() and pod_name == pod_name.lower()


# ---- the worker refusals endpoint: its own workspace only ----------------------------------------------
@pytest_asyncio.fixture
async def refusals(settings, tmp_path, monkeypatch):
    use_dummy_kubeconfig(tmp_path, monkeypatch)
    runtime = Runtime(settings)
    two_projects(Registry.from_runtime(runtime))  # bob in alpha-study too
    pod = listed_worker(worker_manifest(runtime, "alice", "alpha-study", CLUSTER), "a1b2c",
                        "5e3f7a9b-2e3b-4f6a-8b9c-8d7e6f5a4b3c", "Running", [checked()], [start_refused(1)])
    async with hub_with_refusals(settings, tmp_path, runtime, [pod]) as h:
        yield h


@pytest.mark.asyncio
async def test_only_the_workspace_itself_learns_its_refusal(refusals):
    alice = refusals.sign_in("alice", ["alpha-study"])
    own = await refusals.start_server(alice, "alpha-study")
    code, answer = await ask(refusals, own, "alice@alpha-study/alpha-study", CLUSTER)
    assert code == 200 and answer["refused"] is True  # the control
    bobs = await refusals.start_server(refusals.sign_in("bob", ["alpha-study"]), "alpha-study")
    for token, path in [(bobs, "alice@alpha-study/alpha-study"),  # another person's workspace user
                        (own, "alice/alpha-study"),               # the person's own path
                        (own, "alice@alpha-study/beta-study"),    # another server of the workspace user
                        (bobs, "bob@alpha-study/alpha-study")]:   # bob's own: not alice's pods
        code, answer = await ask(refusals, token, path, CLUSTER)
        assert answer.get("refused") is not True, (path, code, answer)
        assert code in (200, 403, 404)
    entries = [e for e in refusals.runtime.audit.entries() if e.action == "dask.cluster.refusals"]
    assert {e.actor for e in entries} <= {"alice", "bob"}  # people, never workspace users
    assert all(e.target in ("user:alice", "user:bob") for e in entries)


# ---- the upgrade: a person's own named server still running -------------------------------------------
@pytest.mark.asyncio
async def test_the_watcher_stops_the_legacy_server_not_the_new_workspace(world):
    """alice's named server of before the upgrade still runs when she starts her workspace (its
    workspace user) from her home page. The watcher stops the legacy server (reason MOVED) through
    ``DELETE /hub/api/users/alice/servers/alpha-study``, which the hub answered ``307`` to her
    workspace user's path: the watcher stopped her new workspace instead, at every pass, and the
    legacy one ran on (got through before the fix)."""
    ws_hub, _, runtime = world
    alice = ws_hub.sign_in("alice", ["alpha-study"])
    legacy = alice.get_spawner("alpha-study", replace_failed=True)
    legacy.pre_spawn_hook = None  # started by the hub of before: no hook of this release ran

    async def as_before(spawner, pod):
        return pod

    legacy.modify_pod_hook = as_before
    # her new workspace runs first, so the watcher's stop of the legacy server always meets it (the
    # other order let a pass stop the legacy server before the new one started, on a loaded machine)
    await ws_hub.start_server(alice, "alpha-study")
    new = ws_hub.workspace_user(alice, "alpha-study").spawners["alpha-study"]
    assert new.active
    await alice.spawn("alpha-study")
    legacy.stop_polling()
    assert await watched.stopped_within(legacy, 30), "the legacy server still runs"  # a bound under load (~1 s idle)
    await asyncio.sleep(3 * watched.INTERVAL)  # more passes
    assert new.active, "the watcher stopped the new workspace"
    moved = await watched.audited_stops(runtime, "alice")
    assert [e.details["reason"] for e in moved] == [MOVED]
