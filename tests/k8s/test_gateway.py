"""dask-gateway cluster options: project image, limits, read-only extract, labels, GPU opt-in."""

from __future__ import annotations

import pytest
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.models import User
from traitlets.config import Config

from pds_kernel.audit import AuditTrail
from pds_kernel.errors import PermissionDenied
from pds_kernel.k8s.config import Gpu, K8sConfig
from pds_kernel.k8s.gateway import configure_gateway, project_choices

K8S = K8sConfig(project_images={"beta-study": "registry.example.org/pds/notebook-gpu:1"})


def options_for(runtime, user: User, request: dict, k8s: K8sConfig = K8S):
    c = Config()
    configure_gateway(c, runtime=runtime, k8s=k8s)
    options = c.Backend.cluster_options(user)
    parsed = options.parse_options(request)
    return options, options.get_configuration(parsed, user)


def test_member_gets_project_cluster(runtime, registry):
    alice = User("alice", groups=["alpha-study", "beta-study"])
    options, overrides = options_for(runtime, alice, {"project": "alpha-study"})
    assert project_choices(options.get_specification()) == ["alpha-study", "beta-study"]
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
    assert {"name": "extract", "mountPath": "/data", "readOnly": True} in mounts
    assert config.worker_extra_container_config["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "volumes" not in config.scheduler_extra_pod_config or all(
        v["name"] != "extract" for v in config.scheduler_extra_pod_config["volumes"])
    assert "nvidia.com/gpu" not in str(overrides)


def test_project_image_for_workers(runtime, registry):
    alice = User("alice", groups=["alpha-study", "beta-study"])
    _, overrides = options_for(runtime, alice, {"project": "beta-study"})
    assert overrides["image"] == "registry.example.org/pds/notebook-gpu:1"
    assert overrides["worker_cores_limit"] == 4.0


def test_gpu_only_when_platform_enables_it(runtime, registry):
    alice = User("alice", groups=["alpha-study", "beta-study"])
    _, off = options_for(runtime, alice, {"project": "beta-study"})
    assert "nvidia.com/gpu" not in str(off)
    k8s = K8sConfig(gpu=Gpu(enabled=True))
    _, on = options_for(runtime, alice, {"project": "beta-study"}, k8s)
    assert on["worker_extra_container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert on["worker_extra_pod_config"]["nodeSelector"] == {"pds.gpu": "true"}
    _, alpha = options_for(runtime, alice, {"project": "alpha-study"}, k8s)
    assert "nvidia.com/gpu" not in str(alpha)


@pytest.mark.parametrize("name,groups,project", [
    ("bob", ["alpha-study"], "beta-study"),     # not a member: not even a choice
    ("carol", ["alpha-study"], "alpha-study"),  # expired
    ("dave", [], "alpha-study"),                # nobody
])
def test_non_members_are_refused(runtime, registry, name, groups, project):
    c = Config()
    configure_gateway(c, runtime=runtime, k8s=K8S)
    user = User(name, groups=groups)
    options = c.Backend.cluster_options(user)
    assert project not in project_choices(options.get_specification())
    with pytest.raises((PermissionDenied, ValueError)):
        options.get_configuration(options.parse_options({"project": project}), user)


def test_registry_and_hub_group_must_agree(runtime, registry):
    """A registry member whose IdP group was withdrawn gets no cluster, and it is audited."""
    c = Config()
    configure_gateway(c, runtime=runtime, k8s=K8S)
    alice = User("alice", groups=["alpha-study"])
    options = c.Backend.cluster_options(alice)
    assert project_choices(options.get_specification()) == ["alpha-study"]
    from dask_gateway_server.utils import FrozenAttrDict

    with pytest.raises(PermissionDenied):
        options.handler(FrozenAttrDict({"project": "beta-study"}), alice)
    denied = [e for e in AuditTrail(runtime.sessions).entries() if e.outcome == "denied"]
    assert any(e.action == "dask.cluster.authorise" and e.project == "beta-study" for e in denied)
