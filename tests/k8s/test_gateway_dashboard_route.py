"""dask-gateway's proxy refuses every cluster dashboard (issue #11): templates/gateway-dashboards.yaml.

The whole release is rendered by the real ``helm`` (upstream charts included); the routes a
cluster gets are made by dask-gateway's own ``KubeController``, configured as the rendered
controller ConfigMap says. Which route traefik picks for a path is evaluated here by traefik's
rules for ``PathPrefix`` routers (the highest priority among the matching routers; a router's
default priority is the length of its rule): a real traefik is not run here. Our two resources
are checked against traefik's own CRD schemas (the dask-gateway chart's crds/traefik.yaml).
"""

from __future__ import annotations

import ast
import ipaddress
import re

import jsonschema
import pytest
import yaml

from .conftest import UPSTREAM_CHARTS, chart_with_upstream, helm_available, upstream_charts_available
from .test_chart import EXAMPLE, render

pytestmark = [pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`"),
              pytest.mark.skipif(not upstream_charts_available(), reason="upstream charts missing")]

NS = "pds"
NAME = "pds-refuse-dask-dashboards"
#: the longest cluster name dask-gateway makes (a uuid4 hex) in a 63-character namespace
LONG_NS, CLUSTER = "n" * 63, "4f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> list[dict]:
    return render(chart_with_upstream(tmp_path_factory.mktemp("release")), [EXAMPLE])


def find(docs, kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def controller_settings(docs) -> dict:
    """``c.KubeController.<name> = <value>`` lines of the rendered controller configuration."""
    text = next(t for d in docs if d["kind"] == "ConfigMap"
                for t in (d.get("data") or {}).values() if "c.KubeController." in str(t))
    found = {}
    for name, value in re.findall(r"^c\.KubeController\.(\w+) = (.+?)(?=^c\.|\Z)", text, re.M | re.S):
        found[name] = ast.literal_eval(value.strip())  # Python literals the chart renders
    return found


def cluster_route(docs, namespace: str = NS) -> dict:
    """The IngressRoute dask-gateway's controller creates for a cluster's dashboard."""
    from dask_gateway_server.backends.kubernetes.controller import KubeController

    settings = controller_settings(docs)
    controller = KubeController(gateway_instance=settings["gateway_instance"], api_url=settings["api_url"],
                                proxy_prefix=settings["proxy_prefix"],
                                proxy_web_middlewares=settings["proxy_web_middlewares"])
    return controller.make_ingressroute(CLUSTER, namespace)


def routers(route: dict) -> list[tuple[int, str, dict]]:
    """(priority, path prefix, rule) of each router of an IngressRoute (traefik's default
    priority is the length of the rule)."""
    out = []
    for rule in route["spec"]["routes"]:
        prefix = re.fullmatch(r"PathPrefix\(`([^`]*)`\)", rule["match"])
        assert prefix, f"not a lone PathPrefix rule: {rule['match']}"
        out.append((rule.get("priority") or len(rule["match"]), prefix.group(1), rule))
    return out


def picked(routes: list[dict], path: str) -> tuple[str, dict] | None:
    """The IngressRoute (name, rule) traefik serves ``path`` with: the highest priority match."""
    matching = [(prio, r["metadata"]["name"], rule) for r in routes for prio, prefix, rule in routers(r)
                if path.startswith(prefix)]
    if not matching:
        return None
    prio, name, rule = max(matching, key=lambda m: m[0])
    assert [m[0] for m in matching].count(prio) == 1, f"two routes of priority {prio} for {path}"
    return name, rule


def crd_schema(kind: str) -> dict:
    for doc in yaml.safe_load_all((UPSTREAM_CHARTS / "dask-gateway" / "crds" / "traefik.yaml").read_text()):
        if doc and doc["kind"] == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] == kind:
            version = next(v for v in doc["spec"]["versions"] if v["name"] == "v1alpha1")
            return version["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind}")


def test_our_resources_are_valid_traefik_resources(release):
    for kind in ("IngressRoute", "Middleware"):
        doc = find(release, kind, NAME)
        assert doc["apiVersion"] == "traefik.io/v1alpha1"
        jsonschema.validate(doc, crd_schema(kind))


def test_the_gateways_traefik_reads_them(release):
    """traefik watches only resources carrying its label selector (the chart's Deployment args)."""
    traefik = find(release, "Deployment", "traefik-dask-gateway")
    args = traefik["spec"]["template"]["spec"]["containers"][0]["args"]
    selector = next(a.split("=", 1)[1] for a in args if a.startswith("--providers.kubernetescrd.labelselector="))
    key, value = selector.split("=")
    for kind in ("IngressRoute", "Middleware"):
        assert find(release, kind, NAME)["metadata"]["labels"][key] == value
    assert cluster_route(release)["metadata"]["labels"][key] == value  # the same traefik serves both


def test_the_middleware_admits_no_client(release):
    spec = find(release, "Middleware", NAME)["spec"]
    assert set(spec) == {"ipAllowList"}
    ranges = [ipaddress.ip_network(r) for r in spec["ipAllowList"]["sourceRange"]]
    assert ranges == [ipaddress.ip_network("192.0.2.1/32")]  # TEST-NET-1 (RFC 5737): no client
    assert spec["ipAllowList"]["rejectStatusCode"] == 403


@pytest.mark.parametrize("namespace", [NS, LONG_NS])
@pytest.mark.parametrize("page", ["status", "", "info/main/workers.html", "proxy/8789/10.1.1.3/status",
                                  "individual-plots.json", "api/v1/clusters/"])
def test_every_dashboard_path_of_a_cluster_is_refused(release, namespace, page):
    """Whatever the page, the cluster's own route (to port 8787) is never the one traefik picks."""
    ours = find(release, "IngressRoute", NAME)
    theirs = cluster_route(release, namespace)
    (_, cluster_prefix, _), = routers(theirs)
    api = [d for d in release if d["kind"] == "IngressRoute" and d["metadata"]["name"] != NAME]
    name, rule = picked([ours, theirs, *api], cluster_prefix + page)
    assert name == NAME
    assert rule["middlewares"] == [{"name": NAME}]


@pytest.mark.parametrize("path", ["/api/health", "/api/v1/clusters/", "/api/v1/clusters/pds.abc",
                                  "/api/v1/options", "/api/v1/clusters/pds.abc/scale"])
def test_the_gateway_api_stays_routed(release, path):
    """Cluster create/list/scale/stop go to the gateway's API service, not to the refusal."""
    prefix = controller_settings(release)["proxy_prefix"]
    routes = [d for d in release if d["kind"] == "IngressRoute"] + [cluster_route(release)]
    name, rule = picked(routes, prefix + path)
    assert name != NAME
    assert rule["services"][0]["name"] == "api-dask-gateway" and rule["services"][0]["port"] == 8000
