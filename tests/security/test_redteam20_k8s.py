"""Red team 20E: the production manifests, attacked from a researcher's workspace pod or one of her
Dask worker pods, and by an operator who sets values carelessly.

The whole release is rendered by the real ``helm`` (our chart with the offline copies of Zero to
JupyterHub 4.4.0 and dask-gateway 2026.3.0, as ``tests/k8s/test_netpol_release.py`` does), the
NetworkPolicies are evaluated by the suite's evaluator (``tests/k8s/test_netpol.py``, ipBlocks
matching pod IPs: the worst case), and the workspace and Dask pods are made by KubeSpawner's and
dask-gateway's own pod generation with the PDS hooks. Tried: egress to the cloud metadata address,
the internet, private ranges and the Kubernetes API; another project's pods, also with a project
id that is a prefix of another's; the hub's and the gate's ports beyond their one; RBAC reaching a
user pod's identity; host namespaces, hostPath, privileged containers and exposed Services on every
pod of the release; the extract claim writable or another project's; and the values an operator
may set on the upstream charts (``singleuser.networkPolicy.egressAllowRules`` / ``egress`` /
``ingress`` / ``allowedIngressPorts``, ``singleuser.extraEnv`` with ``valueFrom``,
``singleuser.serviceAccountName``, ``singleuser.cloudMetadata.blockWithIptables`` and other
KubeSpawner extras, the gateway backend's ``extraPodConfig``, ``networkPolicy.enabled: false``).

Got through before: every one of those values rendered without a word. An ``egressAllowRules``
rule or an ``egress`` entry opened that egress (the internet, the metadata endpoint, the cluster
DNS) to every workspace, since NetworkPolicies add up; ``networkPolicy.enabled: false`` left every
Dask pod with no policy at all; a Secret in ``singleuser.extraEnv`` (or ``KubeSpawner.environment``)
reached the notebook's environment, the hub's pod hook keeping it; and ``serviceAccountName`` ran
workspaces under another ServiceAccount (a cloud identity or RoleBinding it carries). The chart now
refuses them (``pds.checkUserPodValues``) and the pod hook drops ``valueFrom`` variables and the
ServiceAccount name. ``workspace.dns: true`` lets a workspace resolve every name through the
cluster DNS (a DNS tunnel): with ``networkPolicy.dns.nameFilter: cilium`` it now resolves only the
Services it needs, and without Cilium the chart refuses it. dask-gateway's API server, controller
and traefik ran as their images' user with the runtime's capabilities and no seccomp profile (a
strict expected failure here until red team 21): the release now goes through the chart's
post-renderer ``pds-harden`` (ADR 18), and this file checks it as installed.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from release_chart_support import release_chart_fixture  # noqa: F401  (fixture)

from pds_kernel.extract.mount_check import ExpectedMount
from pds_kernel.k8s.pods import build_cluster_overrides
from pds_kernel.sandbox.spec import build_workspace_spec, extract_volume_name
from pds_kernel.settings import Settings
from tests.k8s.conftest import (  # noqa: F401  (fixtures)
    HUB_HOST_VALUES,
    chart_with_upstream,
    helm_available,
    kubeconfig,
    registry,
    upstream_charts_available,
)
from tests.k8s.post_renderer import helm_home, render_hardened
from tests.k8s.test_chart import EXAMPLE, helm, render
from tests.k8s.test_netpol import (
    K8S,
    NS,
    OUTSIDE,
    PODS,
    A,
    B,
    External,
    can_reach,
    project_pods,
    reachable_probes,
    tcp,
)
from tests.k8s.test_netpol_release import allowed, dns_patterns, resolver_queries, worker_scheduler_host
from tests.k8s.test_spawner import make_spawner, spawn_manifest

pytestmark = pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")

USER_PODS = [k for k in PODS if "/" in k]
#: the Kubernetes API's Service address and an API server endpoint, beside test_netpol's outside
KUBE_API = [External("kube-api", "10.96.0.1"), External("apiserver", "10.0.0.1")]


@pytest.fixture(scope="module")
def releases(chart) -> dict[str, list[dict]]:
    return {"default": render(chart, []), "multi-project": render(chart, [EXAMPLE])}


@pytest.fixture(autouse=True)
def ipblocks_match_pods(monkeypatch):
    """The worst case for isolation: an ipBlock rule also matches pod addresses (Calico)."""
    from tests.k8s import test_netpol

    monkeypatch.setattr(test_netpol, "IPBLOCK_MATCHES_PODS", True)


def values_file(tmp_path, values: dict):
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return path


def refusal(chart, tmp_path, values: dict) -> str:
    """helm's error for the release with ``values`` on top of the example (it must not render)."""
    result = helm("template", "pds", str(chart), "--namespace", NS, "-f", str(HUB_HOST_VALUES),
                  "-f", str(EXAMPLE), "-f", str(values_file(tmp_path, values)))
    assert result.returncode != 0, "the release rendered"
    return result.stderr


def kind(docs, name: str) -> list[dict]:
    return [d for d in docs if d["kind"] == name]


def pod_specs(docs):
    for d in docs:
        spec = None
        if d["kind"] in {"Deployment", "Job", "DaemonSet", "StatefulSet"}:
            spec = d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            spec = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if spec is not None:
            yield d["metadata"]["name"], spec


def single(values: dict) -> dict:
    return {"jupyterhub": {"singleuser": values}}


# ---- the operator's values on z2jh's singleuser policy: refused --------------------------------------
@pytest.mark.parametrize("rule", ["cloudMetadataServer", "dnsPortsCloudMetadataServer", "dnsPortsKubeSystemNamespace",
                                  "dnsPortsPrivateIPs", "nonPrivateIPs", "privateIPs"])
def test_an_egress_allow_rule_for_workspaces_is_refused(chart, tmp_path, rule):
    """Each would open, to every workspace, what its name says (z2jh's singleuser policy selects them)."""
    err = refusal(chart, tmp_path, single({"networkPolicy": {"egressAllowRules": {rule: True}}}))
    assert f"egressAllowRules.{rule} is true" in err


def test_an_extra_egress_rule_for_workspaces_is_refused(chart, tmp_path):
    err = refusal(chart, tmp_path, single({"networkPolicy": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}}))
    assert "singleuser.networkPolicy.egress is not empty" in err


@pytest.mark.parametrize("values", [{"allowedIngressPorts": [8888]},
                                    {"ingress": [{"from": [{"podSelector": {}}]}]}], ids=["ports", "rule"])
def test_extra_ingress_into_workspaces_is_refused(chart, tmp_path, values):
    err = refusal(chart, tmp_path, single({"networkPolicy": values}))
    assert "would let other pods into every workspace" in err


def test_turning_the_project_policies_off_is_refused(chart, tmp_path):
    """Before, the Dask pods of every project were left with no NetworkPolicy at all."""
    assert "no NetworkPolicy" in refusal(chart, tmp_path, {"networkPolicy": {"enabled": False}})


@pytest.mark.parametrize("env", [{"DB": {"valueFrom": {"secretKeyRef": {"name": "pds-database", "key": "url"}}}},
                                 [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "pds-database", "key": "url"}}}]],
                         ids=["map", "list"])
def test_a_secret_in_the_workspaces_environment_is_refused(chart, tmp_path, env):
    assert "valueFrom" in refusal(chart, tmp_path, single({"extraEnv": env}))


def test_another_service_account_for_workspaces_is_refused(chart, tmp_path):
    assert "serviceAccountName is set" in refusal(chart, tmp_path, single({"serviceAccountName": "hub"}))


# ---- what reaches the pod hook anyway (hub.config, KubeSpawner traits): the last word ----------------
PRIVILEGED_INIT = {"name": "block-cloud-metadata", "image": "jupyterhub/k8s-network-tools:4.4.0",
                   "command": ["iptables", "-A", "OUTPUT", "-d", "169.254.169.254", "-j", "DROP"],
                   "securityContext": {"privileged": True, "runAsUser": 0,
                                       "capabilities": {"add": ["NET_ADMIN"]}}}


@pytest.mark.asyncio
async def test_the_pod_hook_leaves_no_secret_identity_host_or_privilege(settings, runtime, registry, kubeconfig):  # noqa: F811
    """What z2jh's values become on KubeSpawner (``cloudMetadata.blockWithIptables``: a privileged
    init container; ``extraContainers``, ``extraVolumes``, ``extraPodConfig``, ``extraEnv``,
    ``serviceAccountName``), set where the chart's check does not look (``hub.config``)."""
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    spawner.init_containers = [PRIVILEGED_INIT]
    spawner.extra_containers = [{"name": "sidecar", "image": "x/y:1", "securityContext": {"privileged": True}}]
    spawner.volumes = [{"name": "host", "hostPath": {"path": "/"}}]
    spawner.volume_mounts = [{"name": "host", "mountPath": "/host"}]
    spawner.extra_pod_config = {"hostNetwork": True, "hostPID": True}
    spawner.service_account = "hub"
    spawner.automount_service_account_token = True
    spawner.environment = {"DB": {"valueFrom": {"secretKeyRef": {"name": "pds-database", "key": "url"}}},
                           "PLAIN": "kept"}
    pod = await spawn_manifest(spawner)
    spec = pod["spec"]
    assert [c["name"] for c in spec["containers"]] == ["notebook"]
    assert not any(c["securityContext"].get("privileged") or c["securityContext"].get("capabilities", {}).get("add")
                   for c in spec["containers"] + spec["initContainers"])
    assert not any("hostPath" in v for v in spec["volumes"])
    assert not (spec["hostNetwork"] or spec["hostPID"] or spec["hostIPC"])
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert "DB" not in env and env["PLAIN"]["value"] == "kept"
    assert not any("valueFrom" in e for c in spec["containers"] + spec["initContainers"] for e in c.get("env") or [])


def test_the_gateways_worker_pod_config_cannot_loosen_a_dask_pod():
    """``dask-gateway.gateway.backend.worker.extraPodConfig`` (hostNetwork, a token, a hostPath) and
    ``extraContainerConfig`` (privileged) from the chart: the project's overrides replace them."""
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
    from dask_gateway_server.backends.kubernetes.controller import KubeController
    from traitlets.config import Config

    c = Config()
    loose_pod = {"hostNetwork": True, "automountServiceAccountToken": True,
                 "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}
    c.KubeClusterConfig.worker_extra_pod_config = loose_pod
    c.KubeClusterConfig.scheduler_extra_pod_config = loose_pod
    c.KubeClusterConfig.worker_extra_container_config = {"securityContext": {"privileged": True}}
    c.KubeClusterConfig.scheduler_extra_container_config = {"securityContext": {"privileged": True}}
    info = SimpleNamespace(id=A, cpu_limit=1.0, mem_limit_mb=1024, dask_workers=2, gpu=False)
    spec = build_workspace_spec(Settings(), info, "alice")
    extract = ExpectedMount(A, "20260101T000000Z-abcdef", "a" * 64, "1" * 64, 1 << 32)
    overrides = build_cluster_overrides(spec, K8S, extract=extract)
    controller = KubeController(gateway_instance="dask-gateway", api_url=f"http://api-dask-gateway.{NS}:8000/api")
    for worker in (True, False):
        pod = controller.make_pod(NS, "0123abcd", KubeClusterConfig(config=c, **overrides), is_worker=worker)
        ps = pod["spec"]
        assert not ps.get("hostNetwork") and ps["automountServiceAccountToken"] is False, worker
        assert not any("hostPath" in v for v in ps["volumes"]), worker
        assert not any(c.get("securityContext", {}).get("privileged") for c in ps["containers"]), worker
        if worker:  # the extract: the project's own claim, read-only, and mounted read-only
            claims = {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"].get("readOnly")
                      for v in ps["volumes"] if "persistentVolumeClaim" in v}
            assert claims == {extract_volume_name(A): True}
            mounts = [m for c in ps["containers"] for m in c["volumeMounts"] if m["name"] == "extract"]
            assert mounts and all(m["readOnly"] for m in mounts)


# ---- the network of the rendered release -----------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "multi-project"])
def test_no_user_pod_reaches_metadata_internet_private_ranges_or_the_kubernetes_api(releases, name):
    policies = kind(releases[name], "NetworkPolicy")
    for src in USER_PODS:
        for dst in [OUTSIDE["metadata"], OUTSIDE["internet"], OUTSIDE["private"], *KUBE_API]:
            reached = [p for p in [(80, "TCP"), (443, "TCP"), (53, "UDP"), (6443, "TCP"), (8080, "TCP")]
                       if can_reach(policies, PODS[src], dst, *p)]
            assert not reached, (src, dst.name, reached)


def test_user_pods_reach_the_hub_and_the_gate_on_their_one_port(releases):
    """z2jh's hub policy admits every pod labelled network-access-hub; workspaces carry it, on 8081
    only; Dask pods reach neither the hub nor the gate; only workspaces reach the package index."""
    policies = kind(releases["multi-project"], "NetworkPolicy")
    for project in (A, B):
        ws = f"{project}/workspace"
        assert reachable_probes(policies, ws, "hub") == tcp(8081)
        assert reachable_probes(policies, ws, "airlock") == tcp(8080)
        assert reachable_probes(policies, ws, "packages") == tcp(8080)
        for pod in ("scheduler", "worker"):
            for dst in ("hub", "airlock", "packages", "proxy", "job"):
                assert not reachable_probes(policies, f"{project}/{pod}", dst), (pod, dst)


def test_a_project_named_like_a_prefix_of_another_reaches_nothing_of_it(chart, tmp_path):
    """``alpha`` and ``alpha-study``, ``abc`` and ``abc-d``: label selectors match exactly, never by prefix."""
    ids = ["alpha", "alpha-study", "abc", "abc-d"]
    projects = [{"id": p, "title": p, "start": "2024-01-01", "end": "2030-12-31"} for p in ids]
    policies = kind(render(chart, [values_file(tmp_path, {"projects": projects})]), "NetworkPolicy")
    pods = {p: project_pods(p, n) for n, p in enumerate(ids, start=11)}
    from tests.k8s import test_netpol

    for one in ids:
        for other in ids:
            if one == other:
                continue
            for src in pods[one].values():
                for dst in pods[other].values():
                    got = [p for p in test_netpol.PROBES if can_reach(policies, src, dst, *p)]
                    assert not got, (src.name, dst.name, got)
        ws, sched = pods[one][f"{one}/workspace"], pods[one][f"{one}/scheduler"]
        assert can_reach(policies, ws, sched, 8786)  # the control: its own scheduler


# ---- identity, host and exposure of every pod of the release -----------------------------------------
USER_IDENTITIES = [("ServiceAccount", "default"), ("Group", "system:serviceaccounts"),
                   ("Group", f"system:serviceaccounts:{NS}"), ("Group", "system:authenticated"),
                   ("Group", "system:unauthenticated")]


@pytest.mark.parametrize("name", ["default", "multi-project"])
def test_no_rbac_binding_reaches_a_user_pods_identity(releases, name):
    """User pods run as the namespace's default ServiceAccount, with no token: no binding of the
    release names it, nor a group it belongs to."""
    for binding in kind(releases[name], "RoleBinding") + kind(releases[name], "ClusterRoleBinding"):
        for subject in binding.get("subjects") or []:
            assert (subject["kind"], subject["name"]) not in USER_IDENTITIES, binding["metadata"]["name"]
    for account in kind(releases[name], "ServiceAccount"):
        assert account["metadata"]["name"] != "default"


@pytest.mark.parametrize("name", ["default", "multi-project"])
def test_no_pod_of_the_release_uses_the_host_or_privilege(releases, name):
    seen = set()
    for pod, spec in pod_specs(releases[name]):
        seen.add(pod)
        assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC")), pod
        assert not any("hostPath" in v for v in spec.get("volumes") or []), pod
        for c in (spec.get("initContainers") or []) + spec["containers"]:
            sc = c.get("securityContext") or {}
            assert not sc.get("privileged") and sc.get("allowPrivilegeEscalation") is not True, (pod, c["name"])
            assert not (sc.get("capabilities") or {}).get("add"), (pod, c["name"])
            assert not any(p.get("hostPort") for p in c.get("ports") or []), (pod, c["name"])
    assert {"hub", "proxy", "pds-airlock", "pds-packages", "api-dask-gateway", "controller-dask-gateway",
            "traefik-dask-gateway", "continuous-image-puller"} <= seen


@pytest.fixture(scope="module")
def hardened(chart, tmp_path_factory) -> dict[str, list[dict]]:
    """The release as installed: through the chart's post-renderer ``pds-harden`` (ADR 18)."""
    env = helm_home(tmp_path_factory.mktemp("helm"))
    return {"default": render_hardened(env, chart, []), "multi-project": render_hardened(env, chart, [EXAMPLE])}


@pytest.mark.parametrize("name", ["default", "multi-project"])
def test_every_pod_of_the_release_drops_capabilities_and_runs_as_non_root(hardened, name):
    """dask-gateway's chart has no value for the securityContext of its API server, controller and
    traefik: they ran as their images' user, with the runtime's capabilities and no seccomp profile
    until pds-harden gave it to them (red team 21)."""
    seen = set()
    for pod, spec in pod_specs(hardened[name]):
        seen.add(pod)
        for c in (spec.get("initContainers") or []) + spec["containers"]:
            sc = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
            assert sc.get("runAsNonRoot") is True or (sc.get("runAsUser") or 0) > 0, (pod, c["name"])
            assert (sc.get("capabilities") or {}).get("drop") == ["ALL"], (pod, c["name"])
            assert sc.get("allowPrivilegeEscalation") is False, (pod, c["name"])
            assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, (pod, c["name"])
    assert {"api-dask-gateway", "controller-dask-gateway", "traefik-dask-gateway", "hub"} <= seen


@pytest.mark.parametrize("name", ["default", "multi-project"])
def test_nothing_of_the_release_is_exposed_outside_the_cluster(releases, name):
    """No Ingress, NodePort or LoadBalancer: the operator publishes the hub proxy at her ingress."""
    assert not kind(releases[name], "Ingress")
    for service in kind(releases[name], "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]


# ---- DNS of workspaces (workspace.dns) -----------------------------------------------------------------
def test_workspace_dns_without_a_name_filter_is_refused(chart, tmp_path):
    """Through the cluster DNS a workspace would resolve every outside name: a tunnel."""
    assert "workspace.dns" in refusal(chart, tmp_path, {"workspace": {"dns": True}})


def test_workspace_dns_with_cilium_resolves_only_the_services_it_needs(chart, tmp_path):
    docs = render(chart, [EXAMPLE, values_file(tmp_path, {"workspace": {"dns": True},
                                                          "networkPolicy": {"dns": {"nameFilter": "cilium"}}})])
    policies = kind(docs, "NetworkPolicy")
    assert not reachable_probes(policies, f"{A}/workspace", "dns")  # the plain rule would allow every name
    patterns = dns_patterns(docs, A, "workspace")
    for host in ("hub", "proxy-public", "pds-airlock", "pds-packages", "traefik-dask-gateway"):
        assert allowed(patterns, resolver_queries(host)[0]), host  # host.<ns>.svc.cluster.local
    scheduler = resolver_queries(worker_scheduler_host("0123abcd"))  # dask-<cluster>.<ns>
    assert allowed(patterns, scheduler[0]) and allowed(patterns, scheduler[1])
    for outside in ("exfil-6c6963652e636f6d.attacker.example", "kubernetes.default.svc.cluster.local",
                    "hub.pds.attacker.example", "x.hub.pds.svc.cluster.local", "api-dask-gateway.pds.svc.cluster.local"):
        assert not allowed(patterns, outside), outside
