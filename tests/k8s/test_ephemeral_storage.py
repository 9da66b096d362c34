"""What every pod of the platform may write on its node's disk (pds_kernel/k8s/storage.py): the real
helm render of the whole release, KubeSpawner's own pod generation, dask-gateway's own worker and
scheduler pods, and the gate's Job manifests. Every container has an ``ephemeral-storage`` limit
no smaller than its pod's emptyDirs, and every emptyDir a ``sizeLimit``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dask_gateway_server.backends.kubernetes import KubeClusterConfig
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.models import User

from pds_kernel.airlock.rebuild_job import build_rebuild_job
from pds_kernel.errors import InvalidInput
from pds_kernel.k8s.config import K8sConfig
from pds_kernel.k8s.jobs import isolated_job
from pds_kernel.k8s.storage import LOG_MIB, quantity_mib

from .conftest import CHART, chart_with_upstream, chart_without_dependencies, helm_available, upstream_charts_available
from .test_chart import helm, render
from .test_gateway import options_for
from .test_spawner import make_spawner, spawn_manifest

EXAMPLE = CHART / "examples" / "multi-project.yaml"
POD_KINDS = {"Deployment", "Job", "CronJob", "DaemonSet", "StatefulSet", "Pod", "ReplicaSet"}


def pod_spec(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]


def assert_bounded(name: str, spec: dict) -> None:
    """Every emptyDir of the pod has a size; every container may write at most its limit, no less
    than the emptyDirs it mounts and room for its log."""
    sized = {}
    for volume in spec.get("volumes") or []:
        if "emptyDir" in volume:
            size = (volume["emptyDir"] or {}).get("sizeLimit")
            assert size, f"{name}: the emptyDir {volume['name']} has no sizeLimit"
            sized[volume["name"]] = quantity_mib(size)
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        limit = ((container.get("resources") or {}).get("limits") or {}).get("ephemeral-storage")
        assert limit, f"{name}/{container['name']}: no ephemeral-storage limit"
        mounted = {m["name"] for m in container.get("volumeMounts") or []}
        assert quantity_mib(limit) >= sum(v for k, v in sized.items() if k in mounted), f"{name}/{container['name']}"


@pytest.fixture(scope="module")
def values(tmp_path_factory) -> Path:
    """The example, with the Jobs it leaves out: an ingest and a package approval."""
    path = tmp_path_factory.mktemp("values") / "values.yaml"
    path.write_text(json.dumps({"ingest": {"enabled": True, "delivery": "2026-03"},
                                "packages": {"approve": ["texttable==1.7.0"]}}))
    return path


@pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")
def test_every_pod_of_the_release_is_bounded_on_its_nodes_disk(tmp_path_factory, values):
    """The whole release as helm renders it (with the jupyterhub and dask-gateway charts when they
    are beside the checkout): ours, the hub, the proxy, the gateway, the image pullers, the Jobs."""
    if upstream_charts_available():
        chart = chart_with_upstream(tmp_path_factory.mktemp("release"))
    else:
        chart = chart_without_dependencies(tmp_path_factory.mktemp("chart"))
    docs = render(chart, [EXAMPLE, values])
    pods = {f"{d['kind']}/{d['metadata']['name']}": pod_spec(d) for d in docs if d["kind"] in POD_KINDS}
    assert any(name.startswith("Job/pds-package-") for name in pods), sorted(pods)
    assert any(name.startswith("Job/pds-ingest") for name in pods)
    if upstream_charts_available():
        assert {"Deployment/hub", "Deployment/proxy", "Deployment/api-dask-gateway"} <= set(pods)
    for name, spec in pods.items():
        assert_bounded(name, spec)


@pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")
@pytest.mark.parametrize("key", ["airlock", "packages", "ingest", "extractBuild"])
def test_resources_without_an_ephemeral_storage_limit_are_refused_at_render(tmp_path, key, values):
    """An operator's resources that drop the limit do not render (deny by default)."""
    chart = chart_without_dependencies(tmp_path)
    override = tmp_path / "override.yaml"
    # null removes the default's key: what an operator's own resources without it come to
    override.write_text(json.dumps({key: {"resources": {"limits": {"ephemeral-storage": None}}}}))
    result = helm("template", "pds", str(chart), "-f", str(EXAMPLE), "-f", str(values), "-f", str(override))
    assert result.returncode != 0
    assert f"{key}.resources.limits.ephemeral-storage is required" in result.stderr


@pytest.mark.asyncio
async def test_kubespawners_workspace_pod_is_bounded(settings, runtime, registry, kubeconfig):
    """KubeSpawner's own manifest through the platform's hooks: /tmp's size, the extract check's
    record (1 MiB) and the log."""
    k8s = K8sConfig(tmp_size="2Gi")
    pod = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study"], "alpha-study", k8s=k8s))
    assert_bounded("workspace", pod["spec"])
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["ephemeral-storage"] == f"{2048 + 1 + LOG_MIB}Mi"


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_dask_gateways_own_cluster_pods_are_bounded(runtime, registry, role):
    """The pods dask-gateway's own controller builds from the platform's overrides: its CPU and
    memory, and the ephemeral-storage merged in."""
    alice = User("alice/alpha-study", groups=["alpha-study", "beta-study"])
    config = KubeClusterConfig(**options_for(runtime, alice, {})[1])
    controller = KubeController(gateway_instance="dask-gateway", api_url="http://unused:8000/api")
    pod = controller.make_pod("pds", "0123abcd", config, is_worker=role == "worker")
    assert_bounded(f"dask-{role}", pod["spec"])
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert {"cpu", "memory", "ephemeral-storage"} <= set(limits)


def test_the_gates_jobs_are_bounded_and_an_unsized_empty_dir_is_refused():
    cfg = K8sConfig(namespace="pds")
    job = build_rebuild_job(cfg, name="pds-rebuild-diab-2024-0123456789ab", project="diab-2024",
                            work=".rebuilds/diab-2024-abcd1234", memory_bytes=3 << 30, timeout_seconds=180,
                            copies=["0.parquet"])
    assert_bounded("rebuild", job["spec"]["template"]["spec"])
    container = {"name": "c", "image": "i", "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}
    with pytest.raises(InvalidInput, match="has no sizeLimit"):
        isolated_job(cfg, name="j", project="diab-2024", component="model-check", container=container,
                     volumes=[{"name": "tmp", "emptyDir": {}}], timeout_seconds=60)
