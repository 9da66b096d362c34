"""dask-gateway cluster options: project image, limits, read-only extract, labels, GPU opt-in; the
project is the calling workspace's (identity ``<user>/<project>``, see test_gateway_hub.py for the
same through the real hub and gateway API)."""

from __future__ import annotations

import pytest
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.models import User
from traitlets.config import Config

from pds_kernel.audit import AuditTrail
from pds_kernel.errors import PermissionDenied
from pds_kernel.k8s.config import Gpu, K8sConfig
from pds_kernel.k8s.gateway import configure_gateway, offered_project, workspace_identity

K8S = K8sConfig(project_images={"beta-study": "registry.example.org/pds/notebook-gpu:1"})


class FakeNoClusters:
    """A gateway backend's listing where no workspace runs a cluster yet (the options count them)."""

    async def list_clusters(self, username=None, statuses=None):
        return []


def options_for(runtime, user: User, request: dict, k8s: K8sConfig = K8S):
    """The cluster options a fresh workspace is offered, and what ``request`` makes of them (from
    plain tests and from coroutines alike: the options' count is awaited on a loop of its own)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    c = Config()
    configure_gateway(c, runtime=runtime, k8s=k8s).ledger.backend = FakeNoClusters()
    with ThreadPoolExecutor(1) as pool:
        options = pool.submit(asyncio.run, c.Backend.cluster_options(user)).result()
    parsed = options.parse_options(request)
    return options, options.get_configuration(parsed, user)


def test_member_gets_project_cluster(runtime, registry):
    alice = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    options, overrides = options_for(runtime, alice, {"project": "alpha-study"})
    assert offered_project(options.get_specification()) == "alpha-study"
    assert options_for(runtime, alice, {})[1] == overrides  # no option: the workspace's project
    config = KubeClusterConfig(**overrides)  # dask-gateway accepts every override
    assert config.image == "registry.example.org/pds/dask-worker:0.1.0"
    assert config.worker_cores_limit == 2.0 and config.worker_memory_limit == 4096 * 2**20
    assert config.cluster_max_workers == 3
    assert config.worker_extra_pod_labels == {"pds.project": "alpha-study", "pds.user": "alice",
                                              "pds.component": "dask-worker"}
    assert config.scheduler_extra_pod_labels["pds.component"] == "dask-scheduler"
    pod = config.worker_extra_pod_config
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "extract", "persistentVolumeClaim": {"claimName": "extract-alpha-study", "readOnly": True}} in pod["volumes"]
    mounts = config.worker_extra_container_config["volumeMounts"]
    assert {"name": "extract", "mountPath": "/data", "readOnly": True, "subPath": "extract"} in mounts
    assert config.worker_extra_container_config["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "volumes" not in config.scheduler_extra_pod_config or all(
        v["name"] != "extract" for v in config.scheduler_extra_pod_config["volumes"])
    assert "nvidia.com/gpu" not in str(overrides)


def test_project_image_for_workers(runtime, registry):
    alice = User("alice/beta-study", groups=["alpha-study", "beta-study"])
    _, overrides = options_for(runtime, alice, {"project": "beta-study"})
    assert overrides["image"] == "registry.example.org/pds/notebook-gpu:1"
    assert overrides["worker_cores_limit"] == 4.0


def test_gpu_only_when_platform_enables_it(runtime, registry):
    beta = User("alice/beta-study", groups=["alpha-study", "beta-study"])
    _, off = options_for(runtime, beta, {"project": "beta-study"})
    assert "nvidia.com/gpu" not in str(off)
    k8s = K8sConfig(gpu=Gpu(enabled=True))
    _, on = options_for(runtime, beta, {"project": "beta-study"}, k8s)
    assert on["worker_extra_container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1",
                                                                          "ephemeral-storage": "1281Mi"}
    assert on["worker_extra_pod_config"]["nodeSelector"] == {"pds.gpu": "true"}
    alpha_user = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    _, alpha = options_for(runtime, alpha_user, {"project": "alpha-study"}, k8s)
    assert "nvidia.com/gpu" not in str(alpha)


def denied(runtime, action="dask.cluster.authorise") -> list:
    return [e for e in AuditTrail(runtime.sessions).entries() if e.outcome == "denied" and e.action == action]


@pytest.mark.parametrize("name,groups,project", [
    ("bob", ["alpha-study"], "beta-study"),     # not a member
    ("carol", ["alpha-study"], "alpha-study"),  # expired
    ("dave", [], "alpha-study"),                # nobody
])
def test_non_members_are_refused(runtime, registry, name, groups, project):
    c = Config()
    configure_gateway(c, runtime=runtime, k8s=K8S)
    user = User(f"{name}/{project}", groups=groups)
    options = c.Backend.cluster_options(user)
    with pytest.raises(PermissionDenied):
        options.get_configuration(options.parse_options({"project": project}), user)
    assert [(e.actor, e.project) for e in denied(runtime)] == [(name, project)]


def test_a_workspace_cannot_start_another_projects_cluster(runtime, registry):
    """alice is in both projects, but her alpha workspace gets no beta cluster (audited)."""
    c = Config()
    configure_gateway(c, runtime=runtime, k8s=K8S)
    alice_in_alpha = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    options = c.Backend.cluster_options(alice_in_alpha)
    with pytest.raises(PermissionDenied, match="its project alpha-study"):
        options.get_configuration(options.parse_options({"project": "beta-study"}), alice_in_alpha)
    assert [(e.actor, e.project) for e in denied(runtime)] == [("alice", "beta-study")]


@pytest.mark.parametrize("name", ["alice", "alice/", "alice/BAD", "service:airlock", "alice/alpha-study/x"])
def test_identities_without_a_workspace_are_refused(runtime, registry, name):
    """E.g. the stock JupyterHubAuthenticator's plain user names: no project, no cluster."""
    c = Config()
    configure_gateway(c, runtime=runtime, k8s=K8S)
    user = User(name, groups=["alpha-study"])
    options = c.Backend.cluster_options(user)
    assert offered_project(options.get_specification()) == ""
    with pytest.raises(PermissionDenied, match="not a workspace identity"):
        options.get_configuration(options.parse_options({"project": "alpha-study"}), user)
    assert len(denied(runtime)) == 1


#: the workspace of alice in alpha-study is the server alpha-study of the hub user alice@alpha-study (ADR 17)
WS = "alice@alpha-study"
SERVER = [f"users:activity!user={WS}", f"access:servers!server={WS}/alpha-study"]
IDENTIFY = [f"read:users:name!user={WS}", f"read:users:groups!user={WS}"]


def hub_model(*scopes: str, kind: str = "user", name: str = WS) -> dict:
    return {"kind": kind, "name": name, "groups": [], "scopes": [*IDENTIFY, *scopes]}


def test_workspace_identity_from_the_hub_model():
    identity = workspace_identity(hub_model(*SERVER, "access:services!service=dask-gateway"), "dask-gateway")
    assert (identity.person, identity.project, identity.gateway_name) == ("alice", "alpha-study", "alice/alpha-study")
    assert workspace_identity(hub_model(*SERVER, "access:services"), "dask-gateway").project == "alpha-study"


@pytest.mark.parametrize("model,why", [
    (hub_model(*SERVER), "no access to the service"),                                   # JupyterHub's default
    (hub_model(*SERVER, "access:services!service=airlock"), "no access to the service"),
    (hub_model("access:services!service=dask-gateway", f"access:servers!user={WS}"), "exactly one"),
    (hub_model("access:services!service=dask-gateway", *SERVER, f"access:servers!user={WS}"), "exactly one"),
    (hub_model("access:services!service=dask-gateway", *SERVER, f"access:servers!server={WS}/beta-study"),
     "exactly one"),
    (hub_model("access:services!service=dask-gateway", "access:servers!server=bob@alpha-study/alpha-study"),
     "exactly one"),
    (hub_model("access:services!service=dask-gateway", f"access:servers!server={WS}/"), "runs one server"),
    # a person's own named server from before workspace users (its token, until it is stopped)
    (hub_model("access:services!service=dask-gateway", "access:servers!server=alice/alpha-study", name="alice"),
     "not a workspace user"),
    (hub_model("access:services", *SERVER, kind="service", name="airlock"), "only a user"),
])
def test_other_tokens_are_not_workspaces(model, why):
    with pytest.raises(PermissionDenied, match=why):
        workspace_identity(model, "dask-gateway")


def test_no_service_name_refuses_everything():
    with pytest.raises(PermissionDenied, match="no JupyterHub service name"):
        workspace_identity(hub_model(*SERVER, "access:services"), "")


def test_real_backend_refuses_cross_project_options(runtime, registry):
    """dask-gateway's own Backend.process_cluster_options (what POST /clusters runs)."""
    import asyncio

    from dask_gateway_server.backends.base import Backend, PublicException

    c = Config()
    configure_gateway(c, runtime=runtime, k8s=K8S).ledger.backend = FakeNoClusters()
    backend = Backend(config=c, cluster_config_class=KubeClusterConfig)
    alice_in_alpha = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    options, config = asyncio.run(backend.process_cluster_options(alice_in_alpha, {}))
    assert options == {"project": "alpha-study"}
    assert config.worker_extra_pod_labels["pds.project"] == "alpha-study"
    with pytest.raises(PublicException, match="its project alpha-study"):  # the API's 422 reason
        asyncio.run(backend.process_cluster_options(alice_in_alpha, {"project": "beta-study"}))


def test_registry_and_hub_group_must_agree(runtime, registry):
    """A registry member whose IdP group was withdrawn gets no cluster, and it is audited."""
    c = Config()
    configure_gateway(c, runtime=runtime, k8s=K8S)
    alice = User("alice/beta-study", groups=["alpha-study"])
    options = c.Backend.cluster_options(alice)
    from dask_gateway_server.utils import FrozenAttrDict

    with pytest.raises(PermissionDenied):
        options.handler(FrozenAttrDict({"project": "beta-study"}), alice)
    denied = [e for e in AuditTrail(runtime.sessions).entries() if e.outcome == "denied"]
    assert any(e.action == "dask.cluster.authorise" and e.project == "beta-study" for e in denied)


def test_gpu_projects_workers_run_the_gpu_image(runtime, registry):
    """The workers of a project granted a GPU run workspace.gpu.image, unless the project has its own."""
    gpu_image = "registry.example.org/pds/notebook-gpu:0.1.0"
    beta = User("alice/beta-study", groups=["alpha-study", "beta-study"])
    alpha = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    k8s = K8sConfig(gpu=Gpu(enabled=True, image=gpu_image))
    assert options_for(runtime, beta, {"project": "beta-study"}, k8s)[1]["image"] == gpu_image
    assert options_for(runtime, alpha, {"project": "alpha-study"}, k8s)[1]["image"] == K8sConfig().worker_image
    off = K8sConfig(gpu=Gpu(enabled=False, image=gpu_image))
    assert options_for(runtime, beta, {"project": "beta-study"}, off)[1]["image"] == K8sConfig().worker_image
    own = K8sConfig(gpu=Gpu(enabled=True, image=gpu_image), project_images={"beta-study": "r/pds/own:1"})
    assert options_for(runtime, beta, {"project": "beta-study"}, own)[1]["image"] == "r/pds/own:1"


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_cluster_pods_start_without_a_dashboard(runtime, registry, role):
    """The command dask-gateway's own controller builds for the pod (it appends
    ``--dashboard-address :8787``), parsed by distributed's own command line: no dashboard. The
    NetworkPolicies close the port as well (tests/k8s/test_netpol_release.py), since code run on
    the scheduler could start one."""
    from dask_gateway_server.backends.kubernetes.controller import KubeController
    from distributed.cli import dask_scheduler, dask_worker

    alice = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    config = KubeClusterConfig(**options_for(runtime, alice, {})[1])
    controller = KubeController(gateway_instance="dask-gateway", api_url="http://unused:8000/api")
    build = controller.get_scheduler_command if role == "scheduler" else controller.get_worker_command
    command = build("pds", "0123abcd", config)
    assert command[:2] == ["dask", role] and "--dashboard-address" in command
    cli = dask_scheduler.main if role == "scheduler" else dask_worker.main
    with cli.make_context(f"dask {role}", command[2:]) as parsed:
        assert parsed.params["dashboard"] is False
    # distributed still starts the scheduler's HTTP server on 8787: it gets no route to serve
    import dask.config

    env = {e["name"]: e["value"] for e in controller.get_env("pds", "0123abcd", config) if e["name"].startswith("DASK_")}
    assert dask.config.collect_env(env)["distributed"]["scheduler"]["http"]["routes"] == []


def test_a_workspace_runs_one_cluster_at_a_time(runtime, registry):
    """Red team 21A: a second cluster of the same workspace is refused (audited), and so is any
    cluster when the gateway cannot tell which ones the workspace runs (no backend lent)."""
    from pds_kernel.k8s.gateway import cluster_overrides

    c = Config()
    context = configure_gateway(c, runtime=runtime, k8s=K8S)
    alice = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    assert cluster_overrides(context, "alpha-study", alice, [])["cluster_max_workers"] == 3
    with pytest.raises(PermissionDenied, match=r"runs a Dask cluster already \(c1\)"):
        cluster_overrides(context, "alpha-study", alice, ["c1"])
    options = c.Backend.cluster_options(alice)  # no backend lent: refused
    with pytest.raises(PermissionDenied, match="cannot tell"):
        options.get_configuration(options.parse_options({}), alice)
    assert [e.details["reason"][:40] for e in denied(runtime)] == [
        "this workspace runs a Dask cluster alrea", "the gateway cannot tell which Dask clust"]


def test_the_watcher_keeps_a_workspaces_oldest_cluster():
    """Clusters made by requests sent together, past the creation check: all but the oldest stop."""
    from types import SimpleNamespace as Cluster

    from pds_kernel.k8s.cluster_watch import extra_clusters

    clusters = [Cluster(name="b", username="alice/alpha-study", status=2, start_time=20),
                Cluster(name="a", username="alice/alpha-study", status=1, start_time=10),
                Cluster(name="c", username="alice/alpha-study", status=3, start_time=5),  # stopping
                Cluster(name="d", username="bob/alpha-study", status=2, start_time=30)]
    assert [(name, user) for name, user, _ in extra_clusters(clusters)] == [("b", "alice/alpha-study")]
    assert "(a)" in extra_clusters(clusters)[0][2]


def test_the_watchers_active_statuses_are_dask_gateways_pending_and_running():
    """cluster_watch writes dask-gateway's statuses as numbers (importing its enum would need
    dask-gateway-server wherever the watcher is imported): held to the installed server's enum, so
    an upgrade that renumbers it fails here instead of letting a running cluster look stopped."""
    from types import SimpleNamespace as Cluster

    from dask_gateway_server.models import ClusterStatus

    from pds_kernel.k8s.cluster_watch import ACTIVE_STATUSES, active

    assert ACTIVE_STATUSES == (ClusterStatus.PENDING.value, ClusterStatus.RUNNING.value)
    clusters = [Cluster(name=s.name, status=s) for s in ClusterStatus]
    assert [c.name for c in active(clusters)] == ["PENDING", "RUNNING"]


def test_the_watcher_stops_the_clusters_of_a_workspace_the_hub_no_longer_runs(runtime, registry):
    """alice's alpha workspace runs, her beta one does not: only the beta cluster stops (cause
    ``workspace stopped``); a hub silent about a workspace stops nothing before the silence limit."""
    import asyncio
    from types import SimpleNamespace as Cluster

    from pds_kernel.k8s.cluster_watch import ClusterWatcher

    clusters = {"ca": Cluster(name="ca", username="alice/alpha-study", status=2, start_time=1),
                "cb": Cluster(name="cb", username="alice/beta-study", status=2, start_time=1)}

    class FakeBackend:
        async def list_clusters(self, username=None, statuses=None):
            return [c for c in clusters.values() if c.status == 2]

        async def stop_cluster(self, name, failed=False):
            clusters[name].status = 3

    async def groups_of(person):
        return ["alpha-study", "beta-study"]

    silent = {"on": True}

    async def servers_of(user):
        if silent["on"]:
            raise TimeoutError("the hub does not answer")
        return {"alpha-study"} if user == "alice@alpha-study" else set()

    context = configure_gateway(Config(), runtime=runtime, k8s=K8S)
    watcher = ClusterWatcher(FakeBackend(), context, 1.0, groups_of=groups_of, servers_of=servers_of,
                             hub_silence_limit=60)
    assert asyncio.run(watcher.check_once()) == []  # silent, well under the limit
    silent["on"] = False
    assert asyncio.run(watcher.check_once()) == ["cb"]
    stop = [e for e in AuditTrail(runtime.sessions).entries() if e.action == "dask.cluster.stop"][-1]
    assert (stop.target, stop.project, stop.details["cause"]) == ("user:alice", "beta-study", "workspace stopped")
