"""The NetworkPolicies of the whole release, upstream charts' included, the DNS of Dask schedulers
and workers limited to what dask-gateway needs (networkPolicy.dns.nameFilter), and no pod reaching
a scheduler's dashboard port (issue #11; the route itself: test_gateway_dashboard_route.py).

z2jh renders its own policies (hub, proxy, and ``singleuser``, which selects our workspace pods
too): policies add up, so the project matrix of test_netpol.py must hold with them as well.

The whole release (our chart with the upstream z2jh and dask-gateway charts, offline copies) is
rendered by the real ``helm``. The names a Dask pod must resolve are read from what the release
itself renders (the gateway's ``api_url`` in dask-gateway's ConfigMap) and from dask-gateway's own
``KubeController`` (the worker's scheduler address), never written here by hand. Cilium's DNS
``matchPattern`` semantics (``*`` = any run of DNS characters except ``.``) are evaluated by
:func:`cilium_pattern_matches`; a real Cilium is not run here.
"""

from __future__ import annotations

import re

import pytest
import yaml

from .conftest import chart_with_upstream, helm_available, upstream_charts_available
from .test_chart import EXAMPLE, render
from .test_netpol import (
    NS,
    OURS,
    OUTSIDE,
    PODS,
    UPSTREAM,
    A,
    B,
    can_reach,
    expected_matrix,
    labels_match,
    reachable_probes,
)

pytestmark = [pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`"),
              pytest.mark.skipif(not upstream_charts_available(), reason="upstream charts missing")]

DASK = ("scheduler", "worker", "worker2")
OUTSIDE_NAMES = ["exfil-6c6963652e636f6d.attacker.example", "api-dask-gateway.pds.attacker.example",
                 "kubernetes.default.svc.cluster.local", "pds-airlock.pds.svc.cluster.local",
                 "api-dask-gateway.other.svc.cluster.local", "x.api-dask-gateway.pds.svc.cluster.local"]


def cilium_pattern_matches(pattern: str, name: str) -> bool:
    """Cilium's DNS matchPattern: ``*`` matches any run of valid DNS characters but not ``.``
    (a lone ``*`` would match everything; the chart never renders one)."""
    assert pattern != "*"
    regex = "".join("[-a-zA-Z0-9_]*" if ch == "*" else re.escape(ch) for ch in pattern.rstrip("."))
    return re.fullmatch(regex, name.rstrip("."), flags=re.IGNORECASE) is not None


def resolver_queries(host: str, namespace: str = NS, domain: str = "cluster.local") -> list[str]:
    """The names a pod's resolver asks for ``host`` (ClusterFirst: ndots 5, search list)."""
    search = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
    return [f"{host}.{s}" for s in search] + [host]


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, list[dict]]:
    chart = chart_with_upstream(tmp_path_factory.mktemp("release"))
    cilium = tmp_path_factory.mktemp("values") / "cilium.yaml"
    cilium.write_text(yaml.safe_dump({"networkPolicy": {"dns": {"nameFilter": "cilium"}}}))
    return {"plain": render(chart, [EXAMPLE]), "cilium": render(chart, [EXAMPLE, cilium])}


def kind(docs, name: str) -> list[dict]:
    return [d for d in docs if d["kind"] == name]


def gateway_api_host(docs) -> str:
    """The host in ``c.KubeBackend.api_url`` of the rendered dask-gateway configuration."""
    for doc in kind(docs, "ConfigMap") + kind(docs, "Secret"):
        for text in (doc.get("data") or {}).values():
            found = re.search(r"KubeBackend\.api_url = 'http://([^:/']+)", str(text))
            if found:
                return found.group(1)
    raise AssertionError("no KubeBackend.api_url in the rendered release")


def worker_scheduler_host(cluster: str) -> str:
    """The scheduler address dask-gateway's controller gives a worker (tls://<host>:8786)."""
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
    from dask_gateway_server.backends.kubernetes.controller import KubeController

    controller = KubeController(gateway_instance="dask-gateway", api_url="http://unused:8000/api")
    command = controller.get_worker_command(NS, cluster, KubeClusterConfig())
    address = next(a for a in command if a.startswith("tls://"))
    return address.removeprefix("tls://").rsplit(":", 1)[0]


def dns_patterns(docs, project: str, component: str) -> list[str]:
    """The DNS patterns the Cilium policies allow the pod (project, component)."""
    labels = {"pds.project": project, "pds.component": component}
    patterns = []
    for policy in kind(docs, "CiliumNetworkPolicy"):
        if labels_match(policy["spec"]["endpointSelector"], labels):
            for rule in policy["spec"]["egress"]:
                for to_port in rule["toPorts"]:
                    patterns += [d["matchPattern"] for d in to_port["rules"]["dns"]]
    return patterns


def allowed(patterns: list[str], name: str) -> bool:
    return any(cilium_pattern_matches(p, name) for p in patterns)


# ---- the whole release: upstream policies add nothing to project pods ----------------------------------
def test_upstream_policies_are_rendered(releases):
    names = {p["metadata"]["name"] for p in kind(releases["plain"], "NetworkPolicy")}
    assert {"hub", "proxy", "singleuser"} <= names  # z2jh's, with our values


def release_matrix() -> dict:
    """test_netpol.py's matrix (the example sets a database peer), plus what z2jh's singleuser
    policy adds unconditionally: a workspace reaches the hub proxy's HTTP port, i.e. the public
    entry point, from inside (routes to the hub, the services and, with their owners' credentials
    only, user servers)."""
    matrix = dict(expected_matrix(database=True))
    for project in (A, B):
        matrix[f"{project}/workspace", "proxy"] = frozenset({(8000, "TCP")})
    return matrix


def test_hub_and_proxy_reach_the_gateway_proxy_without_relying_on_ipblocks(releases, monkeypatch):
    """Upstream to upstream, but ours to configure: dashboards and the gateway service route."""
    from . import test_netpol

    monkeypatch.setattr(test_netpol, "IPBLOCK_MATCHES_PODS", False)
    policies = kind(releases["plain"], "NetworkPolicy")
    for src in ("hub", "proxy"):
        assert reachable_probes(policies, src, "gateway-proxy") >= {(8000, "TCP")}, src


@pytest.fixture(params=[False, True], ids=["ipblock-skips-pods", "ipblock-matches-pods"])
def ipblock_mode(request, monkeypatch):
    """Both ways a network plugin may treat z2jh's ipBlock rules for pod IPs (test_netpol.py)."""
    from . import test_netpol

    monkeypatch.setattr(test_netpol, "IPBLOCK_MATCHES_PODS", request.param)
    return request.param


@pytest.mark.parametrize("src", OURS + UPSTREAM)
def test_full_matrix_with_every_policy_of_the_release(releases, ipblock_mode, src):
    """Neither more (isolation) nor less (the hub and proxy reach the airlock, workspaces the
    hub) than test_netpol.py's matrix, with z2jh's policies added, whatever the network plugin
    does with ipBlocks."""
    policies = kind(releases["plain"], "NetworkPolicy")
    expected, wrong = release_matrix(), []
    for dst in list(PODS) + list(OUTSIDE):
        if dst == src or (src in UPSTREAM and dst not in OURS):
            continue  # traffic between the upstream charts' pods is theirs to govern
        want, got = expected.get((src, dst), frozenset()), reachable_probes(policies, src, dst)
        if got != want:
            wrong.append(f"{src} → {dst}: expected {sorted(want)}, got {sorted(got)}")
    assert not wrong, "\n".join(wrong)


# ---- the Dask dashboard (issue #11): nothing reaches it, dask-gateway's own path stays open ------------
def gateway_route_ports(cluster: str) -> tuple[int, int]:
    """The scheduler ports of the two routes dask-gateway's own controller creates for a cluster:
    the HTTP IngressRoute ``/clusters/<ns>.<name>/`` (the dashboard a browser would open) and the
    TLS-passthrough IngressRouteTCP (Dask clients)."""
    from dask_gateway_server.backends.kubernetes.controller import KubeController

    controller = KubeController(gateway_instance="dask-gateway", api_url="http://unused:8000/api")
    http = controller.make_ingressroute(cluster, NS)["spec"]["routes"][0]["services"]
    tls = controller.make_ingressroutetcp(cluster, NS)["spec"]["routes"][0]["services"]
    assert len(http) == len(tls) == 1
    return http[0]["port"], tls[0]["port"]


def test_no_pod_reaches_a_schedulers_dashboard_port(releases, ipblock_mode):
    """The gateway proxy's dashboard route leads to a closed port whatever listens on it (code run
    on the scheduler may serve anything there), and no other pod of the release (the hub, the
    proxy, a workspace, another scheduler...) reaches it either; the scheduler port stays open to
    the gateway proxy (clients' TLS route) and to the project's own workspace and workers."""
    dashboard, scheduler = gateway_route_ports("4f1e2d3c4b5a69788796a5b4c3d2e1f0")
    assert dashboard != scheduler
    policies = kind(releases["plain"], "NetworkPolicy")
    for project in (A, B):
        target = PODS[f"{project}/scheduler"]
        reached = [src for src in PODS if src != f"{project}/scheduler"
                   and can_reach(policies, PODS[src], target, dashboard)]
        assert not reached, f"{project}'s dashboard port {dashboard} reached from {reached}"
        for src in ("gateway-proxy", f"{project}/workspace", f"{project}/worker", f"{project}/worker2"):
            assert can_reach(policies, PODS[src], target, scheduler), f"{src} → {project} scheduler"


@pytest.mark.parametrize("relay", ["gateway-proxy", "proxy", "hub"])
def test_browser_facing_relays_reach_no_scheduler_port_but_the_tls_one(releases, ipblock_mode, relay):
    """A researcher's code can move a web server to any port of the scheduler: the relays that
    answer a browser reach none of them, except the gateway proxy's TLS route (SNI-routed, from
    its TCP entry point, which the browser cannot open: traefik's Service is ClusterIP and the hub
    proxy forwards HTTP only)."""
    policies = kind(releases["plain"], "NetworkPolicy")
    expected = {(gateway_route_ports("0123abcd")[1], "TCP")} if relay == "gateway-proxy" else set()
    for project in (A, B):
        assert reachable_probes(policies, relay, f"{project}/scheduler") == expected


# ---- default: plain NetworkPolicies, any name -------------------------------------------------------
def test_without_a_name_filter_dask_pods_reach_only_the_cluster_dns(releases):
    docs = releases["plain"]
    assert not kind(docs, "CiliumNetworkPolicy")
    policies = kind(docs, "NetworkPolicy")
    for project in (A, B):
        for pod in DASK:
            assert reachable_probes(policies, f"{project}/{pod}", "dns") == {(53, "UDP"), (53, "TCP")}
            assert not reachable_probes(policies, f"{project}/{pod}", "internet")


# ---- nameFilter: cilium ---------------------------------------------------------------------------
def test_with_cilium_no_networkpolicy_opens_dns_to_dask_pods(releases):
    """The plain rule would allow every name whatever the Cilium rules say (policies add up)."""
    policies = kind(releases["cilium"], "NetworkPolicy")
    for project in (A, B):
        for pod in DASK:
            assert not reachable_probes(policies, f"{project}/{pod}", "dns"), (project, pod)
        # what the Dask pods need besides DNS is unchanged
        assert reachable_probes(policies, f"{project}/worker", f"{project}/scheduler") == {(8786, "TCP"), (8789, "TCP")}
        assert reachable_probes(policies, f"{project}/scheduler", "gateway-api") == {(8000, "TCP")}


def test_cilium_policies_select_exactly_each_projects_dask_pods(releases):
    policies = kind(releases["cilium"], "CiliumNetworkPolicy")
    assert len(policies) == 2 * 2  # two projects × (scheduler, worker)
    for policy in policies:
        selected = {k for k, pod in PODS.items() if labels_match(policy["spec"]["endpointSelector"], pod.labels)}
        project = policy["metadata"]["labels"]["pds.project"]
        assert selected and all(k.startswith(f"{project}/") for k in selected), policy["metadata"]["name"]
        assert not any(k.endswith("/workspace") for k in selected)
        for rule in policy["spec"]["egress"]:
            peers = rule["toEndpoints"]
            assert peers == [{"matchLabels": {
                "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "kube-system",
                "k8s:k8s-app": "kube-dns"}}]
            assert [p["port"] for tp in rule["toPorts"] for p in tp["ports"]] == ["53"]


def test_scheduler_resolves_the_gateway_api_and_nothing_else(releases):
    docs = releases["cilium"]
    host = gateway_api_host(docs)
    assert host == f"api-dask-gateway.{NS}"
    patterns = dns_patterns(docs, A, "dask-scheduler")
    queries = resolver_queries(host)
    assert allowed(patterns, queries[1])  # host.<ns>.svc.cluster.local: the answer
    assert allowed(patterns, queries[0])  # the search miss asked first: refused would stop the lookup
    for name in OUTSIDE_NAMES + [f"{worker_scheduler_host('0123abcd')}.svc.cluster.local"]:
        assert not allowed(patterns, name), name


def test_worker_resolves_its_schedulers_service_and_nothing_else(releases):
    docs = releases["cilium"]
    host = worker_scheduler_host("4f1e2d3c4b5a69788796a5b4c3d2e1f0")
    patterns = dns_patterns(docs, B, "dask-worker")
    queries = resolver_queries(host)
    assert allowed(patterns, queries[0]) and allowed(patterns, queries[1])
    for name in OUTSIDE_NAMES + [f"{gateway_api_host(docs)}.svc.cluster.local"]:
        assert not allowed(patterns, name), name


def test_pattern_evaluator_sanity():
    assert cilium_pattern_matches("dask-*.pds.svc.cluster.local", "dask-abc.pds.svc.cluster.local.")
    assert not cilium_pattern_matches("dask-*.pds.svc.cluster.local", "dask-a.b.pds.svc.cluster.local")
    assert not cilium_pattern_matches("api.pds.svc.cluster.local", "apixpds.svc.cluster.local")
