"""The chart: lint, render, Kubernetes schemas, upstream value schemas, safe defaults.

The upstream charts cannot be downloaded here, so our templates are rendered from a copy of the
chart without ``dependencies`` and the umbrella's ``jupyterhub:`` / ``dask-gateway:`` values are
checked against those charts' own value schemas (``tests/data``). With internet access (CI), set
``PDS_HELM_DEPS=1`` to also run ``helm dependency build`` and validate the full render.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pds_kernel.extract.spec import parse_spec
from pds_kernel.k8s.config import parse_k8s_config
from pds_kernel.registry.spec import parse_registry
from pds_kernel.sandbox.spec import home_volume_name

from .conftest import (
    CHART,
    DATA,
    HUB_HOST_VALUES,
    UPSTREAM_CHARTS,
    chart_with_upstream,
    helm_available,
    helm_bin,
    upstream_charts_available,
)

pytestmark = pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")

K8S_VERSION = "1.31.0"
EXAMPLE = CHART / "examples" / "multi-project.yaml"
VALUE_SETS = {"default": [], "multi-project": [EXAMPLE]}
#: Custom resources of dask-gateway's traefik proxy: dask-gateway's chart renders them, and ours
#: (templates/gateway-dashboards.yaml, checked against traefik's CRDs by test_gateway_dashboard_route.py).
CUSTOM_KINDS = {"IngressRoute", "Middleware", "TLSOption", "IngressRouteTCP", "Certificate"}
#: The chart's marker that the pds-harden post-renderer takes out (templates/post-renderer.yaml): a
#: kind no cluster knows, so that a release installed without the post-renderer stops
#: (tests/security/test_redteam21_pods.py checks that it never comes out of the post-renderer).
UNAPPLIED_KINDS = CUSTOM_KINDS | {"PostRendererRequired"}


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120)


def render(chart: Path, values: list[Path], *extra: str) -> list[dict]:
    args = ["template", "pds", str(chart), "--namespace", "pds", "-f", str(HUB_HOST_VALUES)]
    for v in values:
        args += ["-f", str(v)]
    result = helm(*args, *extra)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict]]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


def merged_values(*files: Path) -> dict:
    def merge(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            out = dict(a)
            for k, v in b.items():
                out[k] = merge(a.get(k), v) if k in a else v
            return out
        return b

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in (HUB_HOST_VALUES, *files):
        values = merge(values, yaml.safe_load(f.read_text()))
    return values


TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def mounts_token(container: dict) -> bool:
    """Whether ``container`` mounts its pod's ServiceAccount token (the pods mount none themselves)."""
    return any(m["mountPath"] == TOKEN_DIR for m in container.get("volumeMounts", []))


def pod_specs(docs: list[dict]):
    for d in docs:
        if d["kind"] in {"Deployment", "Job"}:
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def test_chart_pins_the_agreed_upstream_versions():
    deps = {d["name"]: d for d in yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]}
    assert deps["jupyterhub"]["version"] == "4.4.0"
    assert deps["jupyterhub"]["repository"] == "https://hub.jupyter.org/helm-chart/"
    assert deps["dask-gateway"]["version"] == "2026.3.0"
    assert deps["dask-gateway"]["repository"] == "https://helm.dask.org/"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_strict(chart, name):
    args = ["lint", "--strict", str(chart), "-f", str(HUB_HOST_VALUES)]
    for v in VALUE_SETS[name]:
        args += ["-f", str(v)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes(rendered, name):
    docs = rendered[name]
    assert docs
    for doc in docs:
        if doc["kind"] not in UNAPPLIED_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_multi_project_renders_per_project_resources(rendered):
    docs = rendered["multi-project"]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for project in ("diabetes-2024", "imaging-ai-2025"):
        assert ("PersistentVolumeClaim", f"extract-{project}") in names
        for component in ("workspace", "dask-scheduler", "dask-worker"):
            assert ("NetworkPolicy", f"pds-{project}-{component}") in names
    assert ("PersistentVolumeClaim", home_volume_name("imaging-ai-2025", "bob")) in names
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    assert [n for n in jobs if n.startswith("pds-extract-")] == [
        n for n in jobs if n.startswith("pds-extract-diabetes-2024-")]  # only the project with a spec
    assert len([n for n in jobs if n.startswith("pds-ingest-2026-03-")]) == 1
    assert ("ConfigMap", "pds-extract-spec-diabetes-2024") in names
    # the extract build is the only pod that writes the project's claim; it mounts the lake read-only
    job = next(j for n, j in jobs.items() if n.startswith("pds-extract-"))
    mounts = {m["name"]: m for m in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["lake"].get("readOnly") is True and mounts["spec"].get("readOnly") is True
    assert "readOnly" not in mounts["project"]
    assert mounts["project"]["mountPath"] == "/srv/pds/projects/diabetes-2024"


def test_example_extract_spec_is_valid():
    """The example's spec parses with the builder's own parser, and its ConfigMap holds it verbatim."""
    example = yaml.safe_load(EXAMPLE.read_text())
    project = next(p for p in example["projects"] if "extract" in p)
    spec = parse_spec(project["extract"]["spec"], "example")
    assert spec.project == project["id"]


def test_extract_spec_config_map_is_verbatim(rendered):
    example = yaml.safe_load(EXAMPLE.read_text())
    text = next(p for p in example["projects"] if "extract" in p)["extract"]["spec"]
    cm = next(d for d in rendered["multi-project"] if d["metadata"]["name"] == "pds-extract-spec-diabetes-2024")
    assert cm["data"]["spec.yaml"] == text
    job = next(d for d in rendered["multi-project"]
               if d["kind"] == "Job" and d["metadata"]["name"].startswith("pds-extract-"))
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--spec-sha256") + 1] == parse_spec(text).sha256


def test_config_map_feeds_registry_and_k8s_config(rendered):
    cm = next(d for d in rendered["multi-project"] if d["kind"] == "ConfigMap")
    spec = parse_registry(yaml.safe_load(cm["data"]["registry.yaml"]), "registry.yaml")
    assert [p.id for p in spec.projects] == ["diabetes-2024", "imaging-ai-2025"]
    assert spec.projects[1].gpu is True and spec.projects[1].cpu == 8
    k8s = parse_k8s_config(json.loads(cm["data"]["k8s.json"]))
    assert k8s.gpu.enabled is True
    assert k8s.notebook_image_for("imaging-ai-2025") == "registry.example.org/pds/notebook-gpu:0.1.0"
    assert k8s.namespace == "pds" and k8s.dns is False
    default = next(d for d in rendered["default"] if d["kind"] == "ConfigMap")
    assert parse_k8s_config(json.loads(default["data"]["k8s.json"])).gpu.enabled is False
    # images/notebook-gpu for projects granted a GPU (the example's GPU project pins its own image)
    assert k8s.gpu.image == parse_k8s_config(json.loads(default["data"]["k8s.json"])).gpu.image \
        == "registry.example.org/pds/notebook-gpu:0.1.0"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_our_pods_are_restricted(rendered, name):
    for pod_name, spec in pod_specs(rendered[name]):
        # the airlock's gate alone holds a token: its ServiceAccount creates the model-check Jobs of
        # the namespace (Role pds-airlock, tests/k8s/test_model_check_job.py); mounted in its container
        # only, never by the pod (tests/k8s/test_chart_clamd.py)
        token = (pod_name == "pds-airlock" and spec.get("serviceAccountName") == "pds-airlock")
        assert spec["automountServiceAccountToken"] is False, pod_name
        assert [c["name"] for c in spec["containers"] if mounts_token(c)] == (["airlock"] if token else []), pod_name
        assert spec["securityContext"]["runAsNonRoot"] is True, pod_name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", pod_name
        assert not spec.get("initContainers"), pod_name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, pod_name
            assert sc["capabilities"]["drop"] == ["ALL"], pod_name
            assert sc["readOnlyRootFilesystem"] is True, pod_name
            assert "limits" in c["resources"], pod_name


@pytest.mark.parametrize("bad", [
    {"projects": [{"id": "Bad_Id", "title": "x", "start": "2024-01-01", "end": "2025-01-01"}]},
    {"projects": [{"id": "ok-id", "title": "x", "start": "2024-01-01", "end": "2025-01-01", "typo": 1}]},
    {"workspace": {"uid": 0}},
    {"networkPolicy": {"enabled": "yes"}},
    {"images": {"notebook": {"name": "x; rm -rf /", "tag": "1"}}},
])
def test_values_schema_rejects_bad_values(chart, tmp_path, bad):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(f))
    assert result.returncode != 0
    assert "schema" in result.stderr.lower() or "values don't meet" in result.stderr.lower()


# ---- home claims: the helm helper and the Python rule agree, and never collide ----------------------
COLLIDING = [("abc", "def-x"), ("abc-def", "x"), ("proj", "jean.dupont"), ("proj", "jean_dupont"),
             ("proj", "jean-dupont"), ("proj", "a-"), ("proj", "a."), ("proj", "a_")]


def test_home_claims_agree_with_python_and_never_collide(chart, tmp_path):
    projects: dict[str, list] = {}
    for project, user in COLLIDING:
        projects.setdefault(project, []).append({"user": user, "role": "researcher", "expires": "2030-01-01"})
    values = {"projects": [{"id": p, "title": p, "start": "2024-01-01", "end": "2030-12-31", "members": m}
                           for p, m in projects.items()]}
    f = tmp_path / "homes.yaml"
    f.write_text(yaml.safe_dump(values))
    claims = {(d["metadata"]["labels"]["pds.project"], d["metadata"]["name"]) for d in render(chart, [f])
              if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["labels"].get("pds.component") == "home"}
    expected = {(p, home_volume_name(p, u)) for p, u in COLLIDING}
    assert claims == expected
    names = [home_volume_name(p, u) for p, u in COLLIDING]
    assert len(set(names)) == len(names)
    assert home_volume_name("abc", "def-x") != home_volume_name("abc-def", "x")
    for name in names:
        assert len(name) <= 253 and name.startswith("home-")
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                      "metadata": {"name": name},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}},
                                     K8S_VERSION, strict=True)


def test_home_claim_name_is_readable_and_bounded():
    longest = home_volume_name("p" + "a" * 38 + "z", "u" * 63)
    assert len(longest) <= 253
    assert home_volume_name("alpha-study", "jean.dupont").startswith("home-alpha-study-jean-dupont-")


def test_example_gives_the_upstream_pods_the_pull_secret():
    """Our own pods use images.pullSecrets; the hub, user pods, gateway, Dask pods, controller and
    traefik come from the upstream charts and need theirs (see docs/deploy-kubernetes.md)."""
    values = merged_values(EXAMPLE)
    secret = values["images"]["pullSecrets"][0]["name"]
    assert secret in values["jupyterhub"]["imagePullSecrets"]
    gateway = values["dask-gateway"]
    for where in (gateway["gateway"], gateway["gateway"]["backend"], gateway["controller"], gateway["traefik"]):
        assert {"name": secret} in where["imagePullSecrets"]


# ---- the umbrella's values for the upstream charts -------------------------------------------------
def partial_schema(schema: dict) -> dict:
    """Upstream schemas require keys their own values.yaml always sets; ours are overrides."""
    schema = copy.deepcopy(schema)

    def strip(node):
        if isinstance(node, dict):
            node.pop("required", None)
            for v in node.values():
                strip(v)
        elif isinstance(node, list):
            for v in node:
                strip(v)

    strip(schema)
    return schema


@pytest.mark.parametrize("name", list(VALUE_SETS))
@pytest.mark.parametrize("section,schema_file", [
    ("jupyterhub", "jupyterhub-4.4.0.values.schema.json"),
    ("dask-gateway", "dask-gateway-2026.3.0.values.schema.json"),
])
def test_umbrella_values_match_upstream_schemas(name, section, schema_file):
    schema = partial_schema(json.loads((DATA / schema_file).read_text()))
    values = merged_values(*VALUE_SETS[name])[section]
    jsonschema.validate(values, schema)


def test_upstream_schema_check_catches_a_typo():
    schema = partial_schema(json.loads((DATA / "jupyterhub-4.4.0.values.schema.json").read_text()))
    values = merged_values()["jupyterhub"]
    values["singleuser"]["networkPolicy"]["egressAllowRule"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, schema)


def test_upstream_values_are_safe_by_default():
    values = merged_values()
    hub, single = values["jupyterhub"]["hub"], values["jupyterhub"]["singleuser"]
    assert hub["db"]["type"] == "postgres"
    assert "password" not in hub["db"]
    assert single["cloudMetadata"]["blockWithIptables"] is False
    assert single["networkPolicy"]["enabled"] is True
    assert single["networkPolicy"]["egress"] == []
    assert not any(single["networkPolicy"]["egressAllowRules"].values())
    assert single["storage"]["type"] == "none"
    assert "pds_kernel.hub.kubernetes" in hub["extraConfig"]["pds"]
    gateway = values["dask-gateway"]["gateway"]
    assert gateway["auth"]["type"] == "jupyterhub"
    assert gateway["auth"]["jupyterhub"]["jupyterhubServiceName"] == "dask-gateway"
    assert "apiToken" not in gateway["auth"]["jupyterhub"]  # from the hub Secret, not values
    assert "dask-gateway" in hub["services"]
    assert "pds_kernel.k8s.gateway" in gateway["extraConfig"]["pds"]
    assert values["workspace"]["gpu"]["enabled"] is False
    assert values["workspace"]["dns"] is False


@pytest.fixture(scope="module")
def whole_release(tmp_path_factory) -> Path:
    """The umbrella chart with the real upstream charts (offline copy, or `helm dependency build`)."""
    dest = tmp_path_factory.mktemp("release")
    if upstream_charts_available():
        return chart_with_upstream(dest)
    if os.environ.get("PDS_HELM_DEPS") != "1":
        pytest.skip(f"upstream charts not found at {UPSTREAM_CHARTS} (set PDS_UPSTREAM_CHARTS, "
                    "or PDS_HELM_DEPS=1 with internet to download them)")
    chart = dest / "pds-workspace"
    shutil.copytree(CHART, chart)
    result = helm("dependency", "build", str(chart))
    assert result.returncode == 0, result.stderr
    return chart


@pytest.mark.slow
def test_whole_release_lints_strict(whole_release):
    for values in VALUE_SETS.values():
        args = ["lint", "--strict", str(whole_release), "-f", str(HUB_HOST_VALUES)]
        for v in values:
            args += ["-f", str(v)]
        result = helm(*args)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_full_render_with_dependencies(whole_release):
    for values in VALUE_SETS.values():
        docs = render(whole_release, values)
        for doc in docs:
            if doc["kind"] in UNAPPLIED_KINDS:  # traefik's own resources, the marker: no Kubernetes schema
                continue
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "NetworkPolicy", "Service"} <= kinds
        labels = [d["metadata"].get("labels", {}) for d in docs]
        assert any(la.get("chart") == "jupyterhub-4.4.0" for la in labels)
        assert any(la.get("helm.sh/chart") == "dask-gateway-2026.3.0" for la in labels), labels


def test_imports_claims_are_written_by_the_gate_only(rendered):
    """Each project gets an imports claim; the gate mounts it read-write at paths.imports/<project>
    (workspaces mount it read-only: tests/k8s/test_spawner.py) and ClamAV signatures read-only."""
    docs = rendered["multi-project"]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    gate = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "pds-airlock")
    container = gate["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PDS_PATHS__IMPORTS"] == "/srv/pds/imports"
    assert env["PDS_AIRLOCK__CLAMAV_DATABASE"] == mounts["clamav"]["mountPath"]
    assert mounts["clamav"]["readOnly"] is True
    for project in ("diabetes-2024", "imaging-ai-2025"):
        assert ("PersistentVolumeClaim", f"imports-{project}") in names
        assert mounts[f"imports-{project}"]["mountPath"] == f"/srv/pds/imports/{project}"
    for doc in docs:  # no other pod of ours mounts an imports claim
        if doc["kind"] in {"Job", "Deployment"} and doc["metadata"]["name"] != "pds-airlock":
            volumes = doc["spec"]["template"]["spec"].get("volumes", [])
            assert not [v for v in volumes if v.get("persistentVolumeClaim", {}).get("claimName", "").startswith("imports-")]


# ---- the two-person rule on memberships ------------------------------------------------------------------
def _env_of(docs: list[dict], name: str) -> dict[str, str]:
    """Pod name -> the value of environment variable ``name`` in each of our containers that sets it."""
    found = {}
    for pod_name, spec in pod_specs(docs):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for e in c.get("env", []):
                if e["name"] == name:
                    found[f"{pod_name}/{c['name']}"] = e.get("value")
    return found


def test_the_chart_sets_two_approvals_for_memberships(chart, rendered, tmp_path):
    """Every pod of ours that reaches the registry (the registry-sync Job, the gate, where
    `pds project approve-member` runs) gets ``registry.membership_approvals: 2``; 1 may be chosen,
    anything else is refused by the values schema."""
    for name, docs in rendered.items():
        env = _env_of(docs, "PDS_REGISTRY__MEMBERSHIP_APPROVALS")
        assert any(k.startswith("pds-registry-sync") for k in env) and any(k.startswith("pds-airlock") for k in env), \
            (name, sorted(env))
        assert set(env.values()) == {"2"}, (name, env)
        with_database = _env_of(docs, "PDS_DATABASE__URL")
        assert with_database.keys() <= env.keys(), sorted(with_database.keys() - env.keys())
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump({"registry": {"membershipApprovals": 1}}))
    assert set(_env_of(render(chart, [one]), "PDS_REGISTRY__MEMBERSHIP_APPROVALS").values()) == {"1"}
    for bad in (3, 0, "2"):
        f = tmp_path / "bad.yaml"
        f.write_text(yaml.safe_dump({"registry": {"membershipApprovals": bad}}))
        result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(f))
        assert result.returncode != 0 and "membershipApprovals" in result.stderr, (bad, result.stderr[-500:])


def _notes(chart: Path, values: list[Path]) -> str:
    """What ``helm install`` prints after installing (NOTES.txt), rendered without a cluster."""
    args = ["install", "pds", str(chart), "--namespace", "pds", "--dry-run=client", "-f", str(HUB_HOST_VALUES)]
    for v in values:
        args += ["-f", str(v)]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def test_the_install_notes_say_what_an_administrator_must_do_next(chart, tmp_path):
    """An upgrade to the rebuild Jobs without a route to the API server refused every table and
    figure with nothing at install time saying why; the two-person rule left memberships from the
    values pending without a word. The notes name both, and neither once it is done."""
    notes = _notes(chart, [])
    assert "airlock.modelCheck.apiServerPeers is empty" in notes and "refused" in notes
    assert "pds project approve-member PROJECT USER --role ROLE" in notes
    done = tmp_path / "done.yaml"
    done.write_text(yaml.safe_dump({"registry": {"membershipApprovals": 1}, "airlock": {
        "modelCheck": {"apiServerPeers": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]}}}))
    notes = _notes(chart, [done])
    assert "apiServerPeers is empty" not in notes and "approve-member" not in notes
    process = tmp_path / "process.yaml"
    process.write_text(yaml.safe_dump({"airlock": {"rebuildRunner": "process"}}))
    assert "apiServerPeers is empty" not in _notes(chart, [process])
