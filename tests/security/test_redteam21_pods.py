"""Red team 21K: the pods of the production release that the upstream charts leave without a securityContext, attacked by an operator's values and through the manifests the post-renderer receives.

dask-gateway 2026.3.0's chart has no value for the securityContext of its API server, its
controller and its traefik proxy: they ran as their images' user, with the container runtime's
default capabilities and no seccomp profile (red team 20 recorded it as a strict expected
failure). The release now goes through the chart's Helm post-renderer ``pds-harden``
(``helm/plugins/pds-harden``, ADR 18), installed here with ``helm plugin install`` into a Helm home
of the test's own and run by the real ``helm`` over the whole release (the offline copies of Zero
to JupyterHub 4.4.0 and dask-gateway 2026.3.0).

Tried: values that the dask-gateway chart writes into its pod manifests unquoted (image names and
tags, ServiceAccount names) carrying YAML of the attacker's choosing (a privileged
container, added capabilities, root, the host's PID namespace); the same manifests with the chart's
own check of those values taken out, so that only the post-renderer stands; other charts' pods
loosened by their own values; manifests the post-renderer cannot read or that are not this chart's;
and installing without the post-renderer. Got through before: every one of those values rendered,
and a tag's YAML reached the pod as written.
"""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml
from release_chart_support import release_chart_fixture  # noqa: F401  (fixture)

from tests.k8s.conftest import chart_with_upstream, helm_available, upstream_charts_available
from tests.k8s.post_renderer import MARKER_KIND, helm_home, render_hardened, run_plugin, template
from tests.k8s.test_chart import K8S_VERSION, render
from tests.security.test_redteam20_k8s import pod_specs, refusal, values_file

pytestmark = pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")

GATEWAY_PODS = {"api-dask-gateway", "controller-dask-gateway", "traefik-dask-gateway"}
#: what a container line of the dask-gateway chart is indented by, and a pod spec's key
CONTAINER, POD = " " * 10, " " * 6


@pytest.fixture(scope="module")
def unchecked(tmp_path_factory):
    """The release without the chart's check of the values the dask-gateway chart writes unquoted
    (an older chart, or an edited one): the post-renderer alone stands."""
    if not upstream_charts_available():
        pytest.skip("upstream charts missing (PDS_UPSTREAM_CHARTS)")
    chart = chart_with_upstream(tmp_path_factory.mktemp("unchecked"))
    checks = chart / "templates" / "checks.yaml"
    checks.write_text(checks.read_text().replace('{{- include "pds.checkGatewayScalars" . -}}', ""))
    return chart


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return helm_home(tmp_path_factory.mktemp("helm"))


def injected(part: str, lines: list[str], indent: str = CONTAINER) -> dict:
    """An image tag of dask-gateway's ``part`` that ends its line and goes on with ``lines``."""
    return {"dask-gateway": {part: {"image": {"tag": "2026.3.0\n" + "\n".join(indent + line for line in lines)}}}}


def refused_by_post_renderer(env, chart, tmp_path, values: dict) -> str:
    result = template(env, chart, [values_file(tmp_path, values)])
    assert result.returncode != 0, "the release rendered"
    assert "nothing was sent to the cluster" in result.stderr  # the reason reached helm's own stderr
    return result.stderr


def gateway_pod(docs, name: str) -> dict:
    return next(spec for pod, spec in pod_specs(docs) if pod == name)


# ---- installing without the post-renderer -------------------------------------------------------------
def test_a_release_without_the_post_renderer_holds_a_kind_no_cluster_knows(chart, env):
    """Forgetting ``--post-renderer pds-harden`` at an upgrade: the marker reaches Kubernetes, which
    has no such kind (Helm stops before applying anything); with it, the marker is gone."""
    plain = [d for d in render(chart, []) if d["kind"] == MARKER_KIND]
    assert [d["metadata"]["name"] for d in plain] == ["run-helm-with-post-renderer-pds-harden"]
    with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):
        kubernetes_validate.validate(plain[0], K8S_VERSION, strict=True)
    assert not [d for d in render_hardened(env, chart, []) if d["kind"] == MARKER_KIND]


def test_only_the_dask_gateway_pods_change(chart, env):
    plain = dict(pod_specs(render(chart, [])))
    hardened = dict(pod_specs(render_hardened(env, chart, [])))
    assert plain.keys() == hardened.keys()
    changed = {pod for pod in plain if plain[pod] != hardened[pod]}
    assert changed == GATEWAY_PODS
    for pod in GATEWAY_PODS:
        spec = hardened[pod]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, pod
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, pod
        assert {k: v for k, v in spec.items() if k != "securityContext" and k != "containers"} == \
            {k: v for k, v in plain[pod].items() if k != "securityContext" and k != "containers"}


# ---- a securityContext smuggled through the values the dask-gateway chart writes unquoted ---------------
SMUGGLED = {
    "gateway-tag": injected("gateway", ["securityContext:", "  privileged: true", "  capabilities: {add: [SYS_ADMIN]}"]),
    "controller-tag": injected("controller", ["securityContext: {runAsUser: 0, runAsNonRoot: false}"]),
    "traefik-name": {"dask-gateway": {"traefik": {"image": {"name": "\n".join(
        ["traefik", POD + "hostNetwork: true", POD + "initContainers:", POD + "  - name: sneaky",
         POD + "    image: docker.io/traefik"])}}}},
    "controller-name": {"dask-gateway": {"controller": {"image": {"name": "\n".join(
        ["x", POD + "initContainers:", POD + "  - name: sneaky", POD + "    securityContext: {privileged: true}",
         POD + "    image: ghcr.io/dask/dask-gateway-server"])}}}},
    "service-account": {"dask-gateway": {"rbac": {"gateway": {"serviceAccountName": "x\n" + POD + "hostPID: true"}}}},
}


@pytest.mark.parametrize("values", SMUGGLED.values(), ids=SMUGGLED.keys())
def test_yaml_in_a_value_the_gateway_chart_writes_unquoted_is_refused(chart, tmp_path, values):
    assert "it must be one word" in refusal(chart, tmp_path, values)


# ---- the same with the chart's check taken out: the post-renderer alone ------------------------------
LOOSENED = {
    "privileged": (injected("gateway", ["securityContext:", "  privileged: true",
                                        "  capabilities: {add: [SYS_ADMIN]}"]), "privileged to true"),
    "root": (injected("controller", ["securityContext: {runAsUser: 0, allowPrivilegeEscalation: true}"]),
             "runAsUser to 0"),
    "capabilities": (injected("gateway", ["securityContext: {capabilities: {add: [NET_ADMIN], drop: [ALL]}}"]),
                     "securityContext.capabilities"),
    "unconfined": (injected("controller", ["securityContext: {seccompProfile: {type: Unconfined}}"]),
                   "seccompProfile"),
    "selinux": (injected("gateway", ["securityContext: {seLinuxOptions: {type: spc_t}}"]),
                "securityContext.seLinuxOptions"),
    "host-pid": (injected("gateway", ["hostPID: true", "initContainers:", "  - name: sneaky",
                                      "    image: busybox:1"], indent=POD), "sets hostPID"),
    "privileged-init-container": (SMUGGLED["controller-name"], "container sneaky of Deployment controller-dask-gateway"),
}


@pytest.mark.parametrize(("values", "reason"), LOOSENED.values(), ids=LOOSENED.keys())
def test_a_loosened_dask_gateway_pod_is_refused_by_the_post_renderer(env, unchecked, tmp_path, values, reason):
    plain = render(unchecked, [values_file(tmp_path, values)])  # without it, the YAML reaches the pod
    assert any(sc for pod, spec in pod_specs(plain) if pod in GATEWAY_PODS
               for sc in [spec.get("hostPID")] + [c.get("securityContext") for c in
                                                  spec["containers"] + (spec.get("initContainers") or [])])
    err = refused_by_post_renderer(env, unchecked, tmp_path, values)
    assert "pds-harden: " in err and reason in err, err


def test_a_second_security_context_of_traefik_comes_out_hardened(env, unchecked, tmp_path):
    """traefik's template sets its own securityContext after the tag: the smuggled one is a
    duplicate key, which Helm reads as the last one; what leaves the post-renderer is hardened."""
    values = injected("traefik", ["securityContext: {privileged: true, runAsUser: 0}"])
    docs = render_hardened(env, unchecked, [values_file(tmp_path, values)])
    (container,) = gateway_pod(docs, "traefik-dask-gateway")["containers"]
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["runAsUser"] == 1000 and sc["capabilities"] == {"drop": ["ALL"]}


# ---- other charts' pods, loosened by their own values -----------------------------------------------
@pytest.mark.parametrize(("values", "reason"), [
    ({"jupyterhub": {"hub": {"containerSecurityContext": {"runAsUser": 0}}}}, "container hub of Deployment hub"),
    ({"jupyterhub": {"proxy": {"chp": {"containerSecurityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}}}},
     "container chp of Deployment proxy"),
], ids=["hub-root", "proxy-capability"])
def test_a_loosened_pod_of_another_chart_is_refused(env, chart, tmp_path, values, reason):
    err = refused_by_post_renderer(env, chart, tmp_path, values)
    assert reason in err, err


# ---- manifests the post-renderer cannot read, or not this chart's -----------------------------------
MARKER = {"apiVersion": "pds-workspace.invalid/v1", "kind": MARKER_KIND,
          "metadata": {"name": "run-helm-with-post-renderer-pds-harden"}, "spec": {"contract": 1}}
PRIVILEGED_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "api-dask-gateway", "labels": {"app.kubernetes.io/name": "dask-gateway"}},
    "spec": {"template": {"spec": {"containers": [{"name": "gateway", "image": "x:1",
                                                   "securityContext": {"privileged": True}}]}}}}


def stream(*docs) -> str:
    return "".join("---\n" + (d if isinstance(d, str) else yaml.safe_dump(d)) for d in docs)


UNREADABLE = {
    "broken-yaml": (stream(MARKER, "kind: Deployment\nmetadata: {name: [unclosed\n"), "not a YAML mapping"),
    "a-list": (stream(MARKER, "- kind: Pod\n- kind: Pod\n"), "not a YAML mapping"),
    "list-kind": (stream(MARKER, {"apiVersion": "v1", "kind": "List", "items": [PRIVILEGED_DEPLOYMENT]}),
                  "hides them from the check"),
    "no-marker": (stream({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}), "0 PostRendererRequired"),
    "two-markers": (stream(MARKER, MARKER), "2 PostRendererRequired"),
    "newer-contract": (stream({**MARKER, "spec": {"contract": 2}}), "contract 2"),
    "pod-spec-a-string": (stream(MARKER, {**PRIVILEGED_DEPLOYMENT, "spec": {"template": "x"}}), "has no pod spec"),
    # YAML allows an indented document; Helm's separator takes its first indent with it, as here
    "indented-document": (stream(MARKER, "".join("    " + line + "\n" for line in
                                                 yaml.safe_dump(PRIVILEGED_DEPLOYMENT).splitlines())),
                          "not a YAML mapping"),
    "json-document": (stream(MARKER, json.dumps(PRIVILEGED_DEPLOYMENT)), "privileged to true"),
}


@pytest.mark.parametrize(("manifests", "reason"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_manifests_the_post_renderer_cannot_vouch_for_are_refused(env, manifests, reason):
    result = run_plugin(env, manifests)
    assert result.returncode != 0 and not result.stdout.strip(), result.stdout
    assert "pds-harden: " in result.stderr and reason in result.stderr, result.stderr

