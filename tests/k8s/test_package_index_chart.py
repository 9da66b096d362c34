"""The package index in the chart: a read-only server behind a Service, approval Jobs from the
values with egress to the mirror only, and a workspace pod pointed at the index."""

from __future__ import annotations

import pytest
import yaml

from pds_kernel.k8s.config import K8sConfig
from pds_kernel.k8s.pods import build_workspace_env
from pds_kernel.sandbox.spec import build_workspace_spec
from pds_kernel.settings import Settings

from .conftest import chart_without_dependencies, helm_available
from .test_chart import pod_specs, render

pytestmark = pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packages")
    values = tmp / "packages.yaml"
    values.write_text(yaml.safe_dump({"packages": {
        "approve": ["texttable==1.7.0"], "upstreamIndex": "https://mirror.example.org/pypi/simple",
        "mirrorPeers": [{"ipBlock": {"cidr": "10.30.0.8/32"}}]}}))
    return render(chart_without_dependencies(tmp), [values])


def _one(docs, kind, name=None, component=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
             and (component is None or d["metadata"]["labels"].get("pds.component") == component)]
    assert len(found) == 1, (kind, name, component, [d["metadata"]["name"] for d in found])
    return found[0]


def test_index_serves_its_claim_read_only_behind_a_service(docs):
    deployment = _one(docs, "Deployment", "pds-packages")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:3] == ["python", "-m", "pds_kernel.packages.index"]
    assert container["volumeMounts"] == [{"name": "packages", "mountPath": "/srv/pds/packages", "readOnly": True}]
    assert pod["volumes"] == [{"name": "packages", "persistentVolumeClaim": {"claimName": "pds-packages",
                                                                              "readOnly": True}}]
    assert "env" not in container  # no database, no secret: it reads the wheelhouse only
    service = _one(docs, "Service", "pds-packages")
    assert service["spec"]["ports"][0]["port"] == 8080
    policy = _one(docs, "NetworkPolicy", "pds-packages")
    assert policy["spec"]["egress"] == [] and policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_approval_job_reaches_the_mirror_only(docs):
    job = _one(docs, "Job", component="package-approval")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "pds_kernel.k8s", "package-approve", "texttable==1.7.0"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PDS_PACKAGES__UPSTREAM_INDEX"] == "https://mirror.example.org/pypi/simple"
    assert env["PDS_PATHS__PACKAGES"] == "/srv/pds/packages"
    egress = _one(docs, "NetworkPolicy", "pds-package-approval")["spec"]["egress"]
    ip_blocks = [peer["ipBlock"]["cidr"] for rule in egress for peer in rule["to"] if "ipBlock" in peer]
    assert ip_blocks == ["10.30.0.8/32"]
    assert {"port": 443, "protocol": "TCP"} in next(r["ports"] for r in egress
                                                     if any("ipBlock" in p for p in r["to"]))
    for name, spec in pod_specs([job]):
        assert spec["securityContext"]["runAsNonRoot"] is True, name


def test_approval_job_scans_with_the_gates_signatures_read_only(docs, tmp_path):
    """Every wheel is scanned before it is served (pds_kernel/packages/scan.py): the Job reads the
    gate's ClamAV signatures from the same claim, read-only; without the claim it gets an empty
    folder, so every approval is refused rather than served unscanned."""
    job = _one(docs, "Job", component="package-approval")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["PDS_AIRLOCK__CLAMAV_DATABASE"] == "/srv/pds/clamav"
    assert {"name": "clamav", "mountPath": "/srv/pds/clamav", "readOnly": True} in container["volumeMounts"]
    assert {"name": "clamav", "emptyDir": {"sizeLimit": "1Mi"}} in pod["volumes"]
    values = tmp_path / "claim.yaml"
    values.write_text(yaml.safe_dump({"airlock": {"clamavDatabaseClaim": "clamav-signatures"},
                                      "packages": {"approve": ["texttable==1.7.0"]}}))
    job = _one(render(chart_without_dependencies(tmp_path), [values]), "Job", component="package-approval")
    assert {"name": "clamav", "persistentVolumeClaim": {"claimName": "clamav-signatures", "readOnly": True}} \
        in job["spec"]["template"]["spec"]["volumes"]


def test_workspace_pip_points_at_the_index_service():
    spec = build_workspace_spec(Settings(), type("P", (), {"id": "alpha-study", "cpu_limit": 1.0,
                                                           "mem_limit_mb": 1024, "dask_workers": 1,
                                                           "gpu": False})(), "alice")
    env = build_workspace_env(spec, K8sConfig())
    assert env["PIP_INDEX_URL"] == "http://$(PDS_PACKAGES_SERVICE_HOST):$(PDS_PACKAGES_SERVICE_PORT)/simple/"
    assert not any(name.startswith("PYTHON") for name in env)
