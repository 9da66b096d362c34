"""NetworkPolicy semantics of the rendered chart, checked by a small evaluator.

The evaluator follows the Kubernetes rules: a pod selected by no policy of a type is open for that
direction; a pod selected by at least one is closed except what some rule of some selecting policy
allows (policies add up). A connection needs the source's egress *and* the destination's ingress.
Only our chart's policies are evaluated (z2jh's own policies add nothing for project pods: their
egress allow rules are all off in our values, see test_chart).

The pods carry the labels the real code gives them: Dask schedulers and workers are made by
dask-gateway 2026.3.0's own ``KubeController.make_pod`` from our cluster overrides (so they carry
``app.kubernetes.io/name: dask-gateway`` like the gateway's own pods), the gateway API, proxy
(traefik) and controller pods carry the labels of the dask-gateway chart's templates, and the
workspaces those of our pod builder plus KubeSpawner's and z2jh's.

The matrix is checked on every probe port (not only one per destination), for the chart's default
values with two projects, and for the multi-project example (which sets a database peer).
"""

from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import yaml

from pds_kernel.extract.mount_check import ExpectedMount
from pds_kernel.k8s.config import parse_k8s_config
from pds_kernel.k8s.pods import build_cluster_overrides, build_labels
from pds_kernel.sandbox.spec import build_workspace_spec
from pds_kernel.settings import Settings

from .conftest import HUB_HOST_VALUES, chart_without_dependencies, helm_available
from .test_chart import EXAMPLE, render

pytestmark = pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")

NS = "pds"
RELEASE = "pds"  # render() installs the release as "pds"


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict
    ip: str
    namespace: str = NS
    namespace_labels: dict = field(default_factory=dict)
    named_ports: dict = field(default_factory=dict)  #: container port names → numbers (z2jh's rules use names)


#: Whether an ``ipBlock`` peer also matches pod IPs. Kubernetes leaves it to the network plugin
#: (Calico matches them; others only see the node's IP after SNAT), so a rule meant for outside
#: addresses (z2jh's "private IPs" egress of the hub and proxy) may or may not reach pods. Tests
#: check isolation with True (the worst case) and required paths with False.
IPBLOCK_MATCHES_PODS = False


@dataclass(frozen=True)
class External:
    name: str
    ip: str


def labels_match(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
    return True


def peer_matches(peer: dict, other, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        if isinstance(other, Pod) and not IPBLOCK_MATCHES_PODS:
            return False
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        if not labels_match(peer["namespaceSelector"], {**other.namespace_labels,
                                                        "kubernetes.io/metadata.name": other.namespace}):
            return False
    elif other.namespace != policy_ns:
        return False
    return labels_match(peer.get("podSelector", {}), other.labels) if "podSelector" in peer else True


def port_matches(ports: list | None, port: int, protocol: str, named: dict | None = None) -> bool:
    """``named``: the destination pod's port names (a rule's ``port: http`` means its number)."""
    if not ports:
        return True
    named = named or {}
    return any(named.get(p.get("port"), p.get("port")) in (None, port) and p.get("protocol", "TCP") == protocol
               for p in ports)


def direction_allows(policies, pod, other, port, protocol, direction: str) -> bool:
    """``direction`` is Egress (pod → other) or Ingress (other → pod)."""
    if not isinstance(pod, Pod):
        return True  # outside the cluster: no policy applies
    selecting = [p for p in policies if p["metadata"].get("namespace", NS) == pod.namespace
                 and labels_match(p["spec"]["podSelector"], pod.labels)
                 and direction in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = True if not peers else any(peer_matches(x, other, pod.namespace) for x in peers)
            destination = other if direction == "Egress" else pod
            named = destination.named_ports if isinstance(destination, Pod) else {}
            if peer_ok and port_matches(rule.get("ports"), port, protocol, named):
                return True
    return False


def can_reach(policies, src, dst, port: int, protocol: str = "TCP") -> bool:
    return (direction_allows(policies, src, dst, port, protocol, "Egress")
            and direction_allows(policies, dst, src, port, protocol, "Ingress"))


# ---- the cluster ------------------------------------------------------------------------------
A, B = "diabetes-2024", "imaging-ai-2025"
K8S = parse_k8s_config({"namespace": NS, "notebook_image": "r/nb:1", "worker_image": "r/w:1"})


def dask_pod_labels(project: str, cluster: str, worker: bool) -> dict:
    """The labels dask-gateway 2026.3.0 puts on a scheduler or worker pod made from our overrides."""
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
    from dask_gateway_server.backends.kubernetes.controller import KubeController

    info = SimpleNamespace(id=project, cpu_limit=1.0, mem_limit_mb=1024, dask_workers=2, gpu=False)
    spec = build_workspace_spec(Settings(), info, "alice")
    overrides = build_cluster_overrides(spec, K8S, extract=ExpectedMount(project, "20260101T000000Z-abcdef",
                                                                          "a" * 64, "1" * 64, 1 << 32))
    controller = KubeController(gateway_instance="dask-gateway",  # the umbrella's fullnameOverride
                                api_url=f"http://api-dask-gateway.{NS}:8000/api")
    pod = controller.make_pod(NS, cluster, KubeClusterConfig(**overrides), is_worker=worker)
    return pod["metadata"]["labels"]


def workspace_labels(project: str) -> dict:
    """Our pod builder's labels, plus KubeSpawner's and z2jh's (singleuser.extraLabels)."""
    info = SimpleNamespace(id=project, cpu_limit=1.0, mem_limit_mb=1024, dask_workers=2, gpu=False)
    spec = build_workspace_spec(Settings(), info, "alice")
    return {"app": "jupyterhub", "component": "singleuser-server", "heritage": "jupyterhub",
            "release": RELEASE, "hub.jupyter.org/network-access-hub": "true",
            "hub.jupyter.org/servername": project, "hub.jupyter.org/username": "alice",
            **build_labels(spec, "workspace")}


def gateway_chart_labels(component: str) -> dict:
    """Labels of the dask-gateway chart's own pods (templates/_helpers.tpl ``dask-gateway.labels``
    and each Deployment's component)."""
    return {"app.kubernetes.io/name": "dask-gateway", "helm.sh/chart": "dask-gateway-2026.3.0",
            "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/version": "2026.3.0",
            "app.kubernetes.io/managed-by": "Helm", "gateway.dask.org/instance": "dask-gateway",
            "app.kubernetes.io/component": component}


def project_pods(project: str, n: int) -> dict[str, Pod]:
    cluster = f"{n:02d}c0ffee{n:02d}"
    return {
        f"{project}/workspace": Pod(f"{project}-ws", workspace_labels(project), f"10.1.{n}.1",
                                    named_ports={"notebook-port": 8888}),
        f"{project}/scheduler": Pod(f"{project}-sched", dask_pod_labels(project, cluster, False), f"10.1.{n}.2"),
        f"{project}/worker": Pod(f"{project}-worker", dask_pod_labels(project, cluster, True), f"10.1.{n}.3"),
        f"{project}/worker2": Pod(f"{project}-worker2", dask_pod_labels(project, cluster, True), f"10.1.{n}.4"),
    }


PODS = {
    **project_pods(A, 1), **project_pods(B, 2),
    "hub": Pod("hub", {"app": "jupyterhub", "component": "hub", "release": RELEASE,
                       "hub.jupyter.org/network-access-proxy-api": "true",
                       "hub.jupyter.org/network-access-singleuser": "true"}, "10.1.9.1",
               named_ports={"http": 8081}),
    "proxy": Pod("proxy", {"app": "jupyterhub", "component": "proxy", "release": RELEASE,
                           "hub.jupyter.org/network-access-hub": "true",
                           "hub.jupyter.org/network-access-singleuser": "true"}, "10.1.9.2",
                 named_ports={"http": 8000, "https": 8443, "api": 8001}),
    "gateway-proxy": Pod("traefik", gateway_chart_labels("traefik"), "10.1.9.3"),
    "gateway-api": Pod("api", {**gateway_chart_labels("gateway"), "hub.jupyter.org/network-access-hub": "true"},
                       "10.1.9.4"),
    "gateway-controller": Pod("controller", gateway_chart_labels("controller"), "10.1.9.6"),
    "airlock": Pod("airlock", {"pds.component": "airlock", "app.kubernetes.io/name": "pds-workspace",
                               "app.kubernetes.io/instance": RELEASE,
                               "hub.jupyter.org/network-access-hub": "true"}, "10.1.9.5"),  # templates/airlock.yaml
    "packages": Pod("packages", {"pds.component": "packages", "app.kubernetes.io/name": "pds-workspace",
                                 "app.kubernetes.io/instance": RELEASE}, "10.1.9.8"),
    "job": Pod("extract-job", {"pds.component": "job", "app.kubernetes.io/name": "pds-workspace",
                               "app.kubernetes.io/instance": RELEASE, "pds.project": A}, "10.1.9.7"),
    "dns": Pod("coredns", {"k8s-app": "kube-dns"}, "10.96.0.10", namespace="kube-system"),
    # another namespace's traefik (another dask-gateway release): same labels, other namespace
    "foreign-proxy": Pod("traefik", gateway_chart_labels("traefik"), "10.2.0.3", namespace="other"),
}
DATABASE_IP = "10.20.0.5"  # the example's databasePeers: [{ipBlock: {cidr: 10.20.0.5/32}}]
OUTSIDE = {
    "internet": External("internet", "93.184.216.34"),
    "metadata": External("metadata", "169.254.169.254"),
    "private": External("private", "10.20.0.99"),
    "database": External("database", DATABASE_IP),
}
#: every destination is probed on all of these
PROBES = [(22, "TCP"), (53, "UDP"), (53, "TCP"), (443, "TCP"), (5432, "TCP"), (8000, "TCP"), (8080, "TCP"),
          (8081, "TCP"), (8786, "TCP"), (8787, "TCP"), (8788, "TCP"), (8789, "TCP"), (8888, "TCP"),
          (40000, "TCP")]
ANY = frozenset(PROBES)
DNS = frozenset({(53, "UDP"), (53, "TCP")})


def tcp(*ports: int) -> frozenset:
    return frozenset((p, "TCP") for p in ports)


def expected_matrix(database: bool) -> dict[tuple[str, str], frozenset]:
    """(source, destination) → the probes that must get through; every other probe must not."""
    allowed: dict[tuple[str, str], frozenset] = {}
    for p in (A, B):
        ws, sched, w1, w2 = (f"{p}/{c}" for c in ("workspace", "scheduler", "worker", "worker2"))
        allowed |= {
            (ws, "hub"): tcp(8081), (ws, "gateway-proxy"): tcp(8000, 8786), (ws, "airlock"): tcp(8080),
            (ws, "packages"): tcp(8080),  # the package index (pip), which has no egress
            (ws, sched): tcp(8786),  # never the dashboard port 8787 (issue #11)
            (sched, w1): ANY, (sched, w2): ANY, (w1, w2): ANY, (w2, w1): ANY,
            (w1, sched): tcp(8786, 8789), (w2, sched): tcp(8786, 8789),  # 8789: XGBoost's tracker
            (sched, "gateway-api"): tcp(8000), (sched, "dns"): DNS, (w1, "dns"): DNS, (w2, "dns"): DNS,
            ("hub", ws): tcp(8888), ("proxy", ws): tcp(8888),
            ("gateway-proxy", sched): tcp(8786), ("gateway-api", sched): tcp(8788),
        }
    allowed |= {("hub", "airlock"): tcp(8080), ("proxy", "airlock"): tcp(8080),
                ("airlock", "hub"): tcp(8081), ("airlock", "dns"): DNS, ("job", "dns"): DNS}
    if database:
        allowed |= {("airlock", "database"): tcp(5432), ("job", "database"): tcp(5432)}
    return allowed


def reachable_probes(policies, src: str, dst: str) -> frozenset:
    dst_obj = PODS.get(dst) or OUTSIDE[dst]
    return frozenset(probe for probe in PROBES if can_reach(policies, PODS[src], dst_obj, *probe))


PROJECT_SOURCES = [k for k in PODS if "/" in k]
#: pods of the upstream charts: only their traffic to our pods is ours to check
UPSTREAM = ["hub", "proxy", "gateway-proxy", "gateway-api", "gateway-controller", "foreign-proxy"]
OURS = PROJECT_SOURCES + ["airlock", "packages", "job"]


def defaults_with_two_projects(tmp_path) -> list:
    """The chart's default values plus the example's users and projects, nothing else."""
    example = yaml.safe_load(EXAMPLE.read_text())
    values = tmp_path / "projects-only.yaml"
    values.write_text(yaml.safe_dump({"users": example["users"], "projects": example["projects"]}))
    return [values]


@pytest.fixture(scope="module")
def policy_sets(tmp_path_factory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("netpol")
    chart = chart_without_dependencies(tmp)
    sets = {"default": defaults_with_two_projects(tmp), "multi-project": [EXAMPLE]}
    return {name: [d for d in render(chart, values) if d["kind"] == "NetworkPolicy"]
            for name, values in sets.items()}


@pytest.fixture(scope="module")
def policies(policy_sets):
    return policy_sets["multi-project"]


VALUE_SETS = {"default": False, "multi-project": True}  # name → has a database peer


@pytest.mark.parametrize("name", list(VALUE_SETS))
@pytest.mark.parametrize("src", OURS + UPSTREAM)
def test_full_matrix(policy_sets, name, src):
    policies, expected = policy_sets[name], expected_matrix(VALUE_SETS[name])
    wrong = []
    for dst in list(PODS) + list(OUTSIDE):
        if dst == src:
            continue
        if src in UPSTREAM and dst not in OURS:
            continue  # traffic between the upstream charts' pods is theirs to govern
        want = expected.get((src, dst), frozenset())
        got = reachable_probes(policies, src, dst)
        if got != want:
            wrong.append(f"{src} → {dst}: expected {sorted(want)}, got {sorted(got)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_projects_never_reach_each_other(policy_sets, name):
    policies = policy_sets[name]
    for src in project_pods(A, 1):
        for dst in project_pods(B, 2):
            assert not reachable_probes(policies, src, dst), (src, dst)
            assert not reachable_probes(policies, dst, src), (dst, src)


@pytest.mark.parametrize("name", list(VALUE_SETS))
@pytest.mark.parametrize("src", OURS)
def test_no_internet_private_ranges_or_metadata_on_any_port(policy_sets, name, src):
    for dst in ("internet", "metadata", "private"):
        assert not reachable_probes(policy_sets[name], src, dst), (src, dst)
    for dst in OURS:  # nothing from outside the cluster gets in either
        for probe in PROBES:
            assert not can_reach(policy_sets[name], OUTSIDE["internet"], PODS[dst], *probe), (dst, probe)


def test_database_only_at_its_peer_and_port(policy_sets):
    """Default: no database egress at all. Example: 10.20.0.5:5432 only, not 443 there, not 5432
    anywhere else."""
    for src in ("airlock", "job"):
        assert not reachable_probes(policy_sets["default"], src, "database")
        assert reachable_probes(policy_sets["multi-project"], src, "database") == tcp(5432)
        for dst in ("internet", "metadata", "private"):
            assert not can_reach(policy_sets["multi-project"], PODS[src], OUTSIDE[dst], 5432)


def test_proxy_path_is_the_only_route_between_projects(policies):
    """Traefik routes clients to schedulers by SNI; NetworkPolicies cannot tell the project of a
    TLS stream, so the path workspace → proxy → scheduler is open at the network level for every
    scheduler. What keeps projects apart there is the gateway: JupyterHub auth, per-project cluster
    binding and each cluster's own TLS credentials. The test pins down that such relays are only the
    authenticated application proxies (hub, gateway proxy, gateway API), that the gateway proxy
    leads to schedulers only (on 8786, never to workers or workspaces, never to a dashboard), and that the path a
    project needs (its workspace → proxy → its scheduler) is open."""
    assert can_reach(policies, PODS[f"{A}/workspace"], PODS["gateway-proxy"], 8786)
    assert can_reach(policies, PODS["gateway-proxy"], PODS[f"{A}/scheduler"], 8786)
    relays = set()
    for src in project_pods(A, 1):
        for dst in project_pods(B, 2):
            for mid in PODS:
                if mid in PROJECT_SOURCES or mid == "dns":
                    continue
                if reachable_probes(policies, src, mid) and reachable_probes(policies, mid, dst):
                    relays.add(mid)
    assert relays == {"hub", "gateway-proxy", "gateway-api"}
    for dst in PROJECT_SOURCES:
        got = reachable_probes(policies, "gateway-proxy", dst)
        assert got == (tcp(8786) if dst.endswith("/scheduler") else frozenset()), dst
        assert reachable_probes(policies, "gateway-api", dst) == (tcp(8788) if dst.endswith("/scheduler") else frozenset())
        assert not reachable_probes(policies, "gateway-controller", dst)
        assert not reachable_probes(policies, "foreign-proxy", dst)


def test_evaluator_sees_the_dask_gateway_label(policies):
    """The old scheduler rule (``from: app.kubernetes.io/name: dask-gateway``, no port) admitted
    every project's Dask pods at ingress: with the real labels the evaluator catches it."""
    b_worker, a_sched = PODS[f"{B}/worker"], PODS[f"{A}/scheduler"]
    assert b_worker.labels["app.kubernetes.io/name"] == "dask-gateway"
    assert not direction_allows(policies, a_sched, b_worker, 8786, "TCP", "Ingress")
    broad = copy.deepcopy(policies)
    sched = next(p for p in broad if p["metadata"]["name"] == f"pds-{A}-dask-scheduler")
    sched["spec"]["ingress"].append(
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "dask-gateway"}}}]})
    assert direction_allows(broad, a_sched, b_worker, 8786, "TCP", "Ingress")
    assert direction_allows(broad, a_sched, PODS[f"{B}/scheduler"], 22, "TCP", "Ingress")
    # the controller's egress is not ours: the broad rule alone would let it in on any port
    assert can_reach(broad, PODS["gateway-controller"], a_sched, 22)
    assert not can_reach(policies, PODS["gateway-controller"], a_sched, 22)


def test_workspace_has_no_dns(policy_sets):
    for policies in policy_sets.values():
        assert not reachable_probes(policies, f"{A}/workspace", "dns")


def test_dns_for_workspaces_only_when_enabled_and_filtered(tmp_path):
    """workspace.dns needs Cilium's name filter (red team 20E): the DNS rule is then a
    CiliumNetworkPolicy (tests/security/test_redteam20_k8s.py), no NetworkPolicy opens port 53."""
    values = tmp_path / "dns.yaml"
    values.write_text("workspace: {dns: true}\nnetworkPolicy: {dns: {nameFilter: cilium}}\n")
    chart = chart_without_dependencies(tmp_path)
    docs = render(chart, [EXAMPLE, values])
    pols = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert not can_reach(pols, PODS[f"{A}/workspace"], PODS["dns"], 53, "UDP")
    assert any(d["metadata"]["name"] == f"pds-{A}-workspace-dns" for d in docs if d["kind"] == "CiliumNetworkPolicy")
    assert not can_reach(pols, PODS[f"{A}/workspace"], OUTSIDE["internet"], 53, "UDP")
    assert not can_reach(pols, PODS[f"{A}/workspace"], OUTSIDE["internet"], 443)


def test_evaluator_sanity():
    """Without any policy everything is open; a default deny closes both directions."""
    src, dst = PODS[f"{A}/workspace"], OUTSIDE["internet"]
    assert can_reach([], src, dst, 443)
    deny = {"metadata": {"name": "d"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    assert not can_reach([deny], src, dst, 443)
    open_5432 = {"metadata": {"name": "o"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                                                      "egress": [{"ports": [{"port": 5432}]}]}}
    assert can_reach([open_5432], src, OUTSIDE["metadata"], 5432)
    assert not can_reach([open_5432], src, OUTSIDE["metadata"], 443)


# ---- database peers: validated at render time ------------------------------------------------------
@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "169.254.169.254/32", "169.254.0.0/16", "169.0.0.0/8",
                                  "128.0.0.0/1", "169.254.128.0/17"])
def test_database_peer_overlapping_link_local_is_refused(tmp_path, cidr):
    values = tmp_path / "db.yaml"
    values.write_text(json.dumps({"networkPolicy": {"databasePeers": [{"ipBlock": {"cidr": cidr}}]}}))
    chart = chart_without_dependencies(tmp_path)
    from .test_chart import helm

    result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(values))
    assert result.returncode != 0
    assert "overlaps 169.254.0.0/16" in result.stderr, result.stderr


@pytest.mark.parametrize("peer", [
    {"ipBlock": {"cidr": "10.20.0.5"}},                                   # no prefix
    {"ipBlock": {"cidr": "2001:db8::/32"}},                               # IPv6: give selectors instead
    {"ipBlock": {"cidr": "10.20.0.5/32"}, "podSelector": {}},             # one kind of peer per item
    {},
])
def test_database_peer_schema(tmp_path, peer):
    values = tmp_path / "db.yaml"
    values.write_text(json.dumps({"networkPolicy": {"databasePeers": [peer]}}))
    chart = chart_without_dependencies(tmp_path)
    from .test_chart import helm

    result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(values))
    assert result.returncode != 0 and "schema" in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("peer,ip,ok", [
    ({"ipBlock": {"cidr": "10.0.0.0/8"}}, "10.20.0.5", True),
    ({"ipBlock": {"cidr": "169.255.0.0/16"}}, "169.255.1.1", True),
    ({"ipBlock": {"cidr": "169.253.0.0/16"}}, "169.254.169.254", False),
])
def test_database_peer_accepted(tmp_path, peer, ip, ok):
    values = tmp_path / "db.yaml"
    values.write_text(json.dumps({"networkPolicy": {"databasePeers": [peer]}}))
    chart = chart_without_dependencies(tmp_path)
    pols = [d for d in render(chart, [values]) if d["kind"] == "NetworkPolicy"]
    assert can_reach(pols, PODS["airlock"], External("db", ip), 5432) is ok
    assert not can_reach(pols, PODS["airlock"], OUTSIDE["metadata"], 5432)
