"""NetworkPolicy semantics of the rendered chart, checked by a small evaluator.

The evaluator follows the Kubernetes rules: a pod selected by no policy of a type is open for that
direction; a pod selected by at least one is closed except what some rule of some selecting policy
allows (policies add up). A connection needs the source's egress *and* the destination's ingress.
Only our chart's policies are evaluated (z2jh's own policies add nothing for project pods: their
egress allow rules are all off in our values, see test_chart).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from .conftest import helm_available
from .test_chart import EXAMPLE, render

pytestmark = pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")

NS = "pds"


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict
    ip: str
    namespace: str = NS
    namespace_labels: dict = field(default_factory=dict)


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
        if isinstance(other, Pod):
            return False  # cluster pod IPs are not matched by ipBlock in practice for our test ranges
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


def port_matches(ports: list | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports)


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
            if peer_ok and port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def can_reach(policies, src, dst, port: int, protocol: str = "TCP") -> bool:
    return (direction_allows(policies, src, dst, port, protocol, "Egress")
            and direction_allows(policies, dst, src, port, protocol, "Ingress"))


# ---- the cluster ------------------------------------------------------------------------------
def project_pods(project: str, n: int) -> dict[str, Pod]:
    return {
        f"{project}/workspace": Pod(f"{project}-ws", {"pds.project": project, "pds.component": "workspace",
                                                      "component": "singleuser-server", "app": "jupyterhub"}, f"10.1.{n}.1"),
        f"{project}/scheduler": Pod(f"{project}-sched", {"pds.project": project, "pds.component": "dask-scheduler",
                                                         "app.kubernetes.io/component": "dask-scheduler"}, f"10.1.{n}.2"),
        f"{project}/worker": Pod(f"{project}-worker", {"pds.project": project, "pds.component": "dask-worker",
                                                       "app.kubernetes.io/component": "dask-worker"}, f"10.1.{n}.3"),
    }


A, B = "diabetes-2024", "imaging-ai-2025"
PODS = {
    **project_pods(A, 1), **project_pods(B, 2),
    "hub": Pod("hub", {"app": "jupyterhub", "component": "hub"}, "10.1.9.1"),
    "proxy": Pod("proxy", {"app": "jupyterhub", "component": "proxy"}, "10.1.9.2"),
    "gateway-proxy": Pod("traefik", {"app.kubernetes.io/name": "dask-gateway", "app.kubernetes.io/component": "traefik"}, "10.1.9.3"),
    "gateway-api": Pod("api", {"app.kubernetes.io/name": "dask-gateway", "app.kubernetes.io/component": "gateway"}, "10.1.9.4"),
    "airlock": Pod("airlock", {"pds.component": "airlock", "app.kubernetes.io/name": "pds-workspace"}, "10.1.9.5"),
    "dns": Pod("coredns", {"k8s-app": "kube-dns"}, "10.96.0.10", namespace="kube-system"),
}
OUTSIDE = {
    "internet": External("internet", "93.184.216.34"),
    "metadata": External("metadata", "169.254.169.254"),
    "private": External("private", "10.20.0.99"),
}
#: port used to test "can reach" for each destination
PORT = {"workspace": 8888, "scheduler": 8786, "worker": 40000, "hub": 8081, "proxy": 8000,
        "gateway-proxy": 8000, "gateway-api": 8000, "airlock": 8080, "dns": 53}


def port_of(name: str) -> int:
    return PORT[name.split("/")[-1]]


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    from .test_chart import chart_without_dependencies

    chart = chart_without_dependencies(tmp_path_factory.mktemp("netpol"))
    return [d for d in render(chart, [EXAMPLE]) if d["kind"] == "NetworkPolicy"]


def reach(policies, src: str, dst: str) -> bool:
    dst_obj = PODS.get(dst) or OUTSIDE[dst]
    port = 443 if dst in OUTSIDE else port_of(dst)
    protocol = "UDP" if dst == "dns" else "TCP"
    return can_reach(policies, PODS[src], dst_obj, port, protocol)


# Expected matrix: (source, destination) pairs that must be reachable; everything else must not.
ALLOWED = set()
for p, q in ((A, B), (B, A)):
    ALLOWED |= {
        (f"{p}/workspace", "hub"), (f"{p}/workspace", "gateway-proxy"), (f"{p}/workspace", "airlock"),
        (f"{p}/workspace", f"{p}/scheduler"),
        (f"{p}/scheduler", f"{p}/worker"), (f"{p}/worker", f"{p}/scheduler"), (f"{p}/worker", f"{p}/worker"),
        (f"{p}/scheduler", "gateway-api"), (f"{p}/scheduler", "dns"), (f"{p}/worker", "dns"),
        ("hub", f"{p}/workspace"), ("proxy", f"{p}/workspace"),
        ("gateway-proxy", f"{p}/scheduler"), ("gateway-api", f"{p}/scheduler"),
    }
ALLOWED |= {("hub", "airlock"), ("proxy", "airlock"), ("airlock", "hub"), ("airlock", "dns")}
PROJECT_SOURCES = [k for k in PODS if "/" in k]
PLATFORM = ["hub", "proxy", "gateway-proxy", "gateway-api", "airlock"]


@pytest.mark.parametrize("src", PROJECT_SOURCES + PLATFORM)
def test_full_matrix(policies, src):
    wrong = []
    for dst in list(PODS) + list(OUTSIDE):
        if dst == src:
            continue
        if src in PLATFORM and dst in PLATFORM + ["dns"] + list(OUTSIDE) and src != "airlock":
            continue  # platform components outside our policies (upstream charts govern them)
        expected = (src, dst) in ALLOWED
        if reach(policies, src, dst) != expected:
            wrong.append(f"{src} → {dst}: expected {'allowed' if expected else 'denied'}")
    assert not wrong, "\n".join(wrong)


def test_projects_never_reach_each_other(policies):
    for src in project_pods(A, 1):
        for dst in project_pods(B, 2):
            assert not reach(policies, src, dst)
            assert not reach(policies, dst, src)


@pytest.mark.parametrize("src", PROJECT_SOURCES)
def test_no_internet_private_ranges_or_metadata(policies, src):
    for dst in OUTSIDE:
        assert not reach(policies, src, dst), (src, dst)


def test_workspace_has_no_dns(policies):
    assert not reach(policies, f"{A}/workspace", "dns")


def test_dns_for_workspaces_only_when_enabled(tmp_path):
    from .test_chart import chart_without_dependencies

    values = tmp_path / "dns.yaml"
    values.write_text("workspace: {dns: true}\n")
    chart = chart_without_dependencies(tmp_path)
    pols = [d for d in render(chart, [EXAMPLE, values]) if d["kind"] == "NetworkPolicy"]
    assert can_reach(pols, PODS[f"{A}/workspace"], PODS["dns"], 53, "UDP")
    assert not can_reach(pols, PODS[f"{A}/workspace"], OUTSIDE["internet"], 443)


def test_evaluator_sanity():
    """Without any policy everything is open; a default deny closes both directions."""
    src, dst = PODS[f"{A}/workspace"], OUTSIDE["internet"]
    assert can_reach([], src, dst, 443)
    deny = {"metadata": {"name": "d"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    assert not can_reach([deny], src, dst, 443)
