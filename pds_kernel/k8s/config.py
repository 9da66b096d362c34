"""``K8sConfig``: what the Kubernetes path needs besides the registry, read once from the chart.

The chart renders this as JSON into the ``pds-config`` ConfigMap (key ``k8s.json``). The hub reads
it from a mounted file (``$PDS_K8S_CONFIG_FILE``), the dask-gateway server from an environment
variable (``$PDS_K8S_CONFIG``, the chart maps the ConfigMap key into it, because the dask-gateway
chart has no extra volumes). Parsing is strict: an unknown key is an error naming where, so a typo
in Helm values never silently turns a protection off.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..registry.names import check_project_id

#: Kubernetes Service names (DNS-1035 labels).
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
#: A container image reference; no whitespace, no shell metacharacters.
IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")
#: the longest wait between two checks of a running workspace's extract (a larger value would all
#: but turn them off)
MAX_WATCH_SECONDS = 300
#: the most restarts, the longest window, of a crash loop (pds_kernel.k8s.restarts): larger values
#: would let a workspace restart unseen by anyone but the audit trail for hours
MAX_RESTART_LIMIT = 20
MAX_RESTART_WINDOW = 86400
#: the longest a workspace's dask_client() waits for its first worker
MAX_WORKER_WAIT = 3600
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


@dataclass(frozen=True)
class Services:
    """Names of the in-namespace Services a workspace may reach (fixed names, see the chart)."""

    hub: str = "hub"  #: z2jh hub API (port 8081)
    proxy: str = "proxy-public"  #: z2jh public proxy
    gateway_proxy: str = "traefik-dask-gateway"  #: dask-gateway traefik (API and scheduler TLS)
    gateway_api: str = "api-dask-gateway"  #: dask-gateway API server
    airlock: str = "pds-airlock"  #: the airlock service of this chart
    packages: str = "pds-packages"  #: the package index of this chart (approved wheels, port 8080)


@dataclass(frozen=True)
class Gpu:
    """Optional GPUs for AI workloads; off by default, and then no pod ever requests one."""

    enabled: bool = False
    resource: str = "nvidia.com/gpu"  #: extended resource name requested (limit 1)
    node_selector: Mapping[str, str] = field(default_factory=lambda: {"pds.gpu": "true"})
    tolerations: tuple[Mapping[str, Any], ...] = (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    )
    #: notebook and worker image of projects granted a GPU ("" = the default images); a project's own
    #: image wins (images/notebook-gpu: CUDA PyTorch and XGBoost)
    image: str = ""


@dataclass(frozen=True)
class K8sConfig:
    namespace: str = "default"
    notebook_image: str = "registry.example.org/pds/notebook:0.1.0"
    worker_image: str = "registry.example.org/pds/dask-worker:0.1.0"
    #: the image of the gate's model-check Jobs (images/model-check: sacroml and the loaders)
    model_check_image: str = "registry.example.org/pds/model-check:0.1.0"
    #: the image of the gate's cohort-link Jobs (the platform image: pds_kernel, polars)
    cohort_link_image: str = "registry.example.org/pds/hub:0.1.0"
    #: the image of the gate's rebuild Jobs (the gate's own image: pds_kernel with pyarrow, Pillow,
    #: openpyxl and pypdfium2, so the Job rebuilds exactly as the gate's code says)
    rebuild_image: str = "registry.example.org/pds/hub:0.1.0"
    project_images: Mapping[str, str] = field(default_factory=dict)  #: project id → image
    pull_policy: str = "IfNotPresent"
    uid: int = 1000
    gid: int = 100
    home_storage_class: str = ""  #: "" = the cluster's default storage class
    home_size: str = "10Gi"
    tmp_size: str = "1Gi"  #: size limit of the pod-local scratch ``/tmp`` (emptyDir)
    dns: bool = False  #: False: workspace pods get no resolver; services are reached by IP
    gateway_prefix: str = "/services/dask-gateway"
    worker_threads: int = 1
    #: seconds between the checks, in a running workspace pod, that ``/data`` is still the tree its
    #: ``verify-extract`` container checked (the notebook's liveness probe: pds_kernel.extract.pod_watch)
    extract_watch_seconds: int = 10
    #: a check that takes longer fails, and ends the notebook like a change (storage too slow to
    #: ``lstat`` every file of the extract in that time needs more)
    extract_watch_timeout_seconds: int = 30
    #: a notebook container restarted by the kubelet this many times within ``restart_window_seconds``
    #: (out of memory, exited, its liveness probe unanswered) is a crash loop: the hub stops the
    #: server and tells the researcher why (pds_kernel.k8s.restarts); each restart is audited
    restart_limit: int = 3
    restart_window_seconds: int = 600
    #: how long a workspace's ``dask_client()`` waits for the first Dask worker of its cluster before
    #: it gives up and says why (pds_kernel.dask_workers)
    dask_worker_wait_seconds: int = 120
    services: Services = field(default_factory=Services)
    gpu: Gpu = field(default_factory=Gpu)

    def notebook_image_for(self, project: str, gpu: bool = False) -> str:
        """The project's own image, else the GPU image when a GPU is granted, else the default."""
        return self.project_images.get(project) or (gpu and self.gpu.image) or self.notebook_image

    def worker_image_for(self, project: str, gpu: bool = False) -> str:
        """Workers run the project's notebook environment when the project pins an image, the GPU
        image (notebook and worker in one) when a GPU is granted."""
        return self.project_images.get(project) or (gpu and self.gpu.image) or self.worker_image


def _keys(where: str, data: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where}: expected a mapping")
    unknown = set(data) - allowed
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    return data


def _image(where: str, value: Any) -> str:
    if not isinstance(value, str) or not IMAGE_REF.fullmatch(value):
        raise InvalidInput(f"{where}: {value!r} is not an image reference")
    return value


def _quantity(where: str, value: Any) -> str:
    if not isinstance(value, str) or not QUANTITY.fullmatch(value):
        raise InvalidInput(f"{where}: {value!r} is not a storage quantity such as 10Gi")
    return value


def parse_k8s_config(data: Any, origin: str = "k8s config") -> K8sConfig:
    """Pure and strict: build a :class:`K8sConfig` from the chart's JSON."""
    known = {f.name for f in fields(K8sConfig)}
    data = _keys(origin, data or {}, known)
    default = K8sConfig()
    values: dict[str, Any] = {}
    for name in ("namespace", "pull_policy", "home_storage_class", "gateway_prefix"):
        if name in data:
            if not isinstance(data[name], str):
                raise InvalidInput(f"{origin}.{name}: expected a string")
            values[name] = data[name]
    if values.get("pull_policy", "IfNotPresent") not in {"Always", "IfNotPresent", "Never"}:
        raise InvalidInput(f"{origin}.pull_policy: use Always, IfNotPresent or Never")
    for name in ("notebook_image", "worker_image", "model_check_image", "cohort_link_image", "rebuild_image"):
        if name in data:
            values[name] = _image(f"{origin}.{name}", data[name])
    images = _keys(f"{origin}.project_images", data.get("project_images") or {},
                   set(data.get("project_images") or {}))
    values["project_images"] = {check_project_id(p): _image(f"{origin}.project_images.{p}", i)
                                for p, i in images.items()}
    for name in ("uid", "gid", "worker_threads", "extract_watch_seconds", "extract_watch_timeout_seconds",
                 "restart_limit", "restart_window_seconds", "dask_worker_wait_seconds"):
        if name in data:
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name != "gid" else 0):
                raise InvalidInput(f"{origin}.{name}: expected a positive integer")
            values[name] = v
    for name, most in (("extract_watch_seconds", MAX_WATCH_SECONDS), ("extract_watch_timeout_seconds", 600)):
        if values.get(name, getattr(default, name)) > most:
            raise InvalidInput(f"{origin}.{name}: at most {most} (a running workspace's extract is checked "
                               "that often: pds_kernel.extract.pod_watch)")
    for name, most in (("restart_limit", MAX_RESTART_LIMIT), ("restart_window_seconds", MAX_RESTART_WINDOW),
                       ("dask_worker_wait_seconds", MAX_WORKER_WAIT)):
        if values.get(name, getattr(default, name)) > most:
            raise InvalidInput(f"{origin}.{name}: at most {most}")
    if values.get("uid", default.uid) == 0:
        raise InvalidInput(f"{origin}.uid: workspaces never run as root")
    for name in ("home_size", "tmp_size"):
        if name in data:
            values[name] = _quantity(f"{origin}.{name}", data[name])
    if "dns" in data:
        if not isinstance(data["dns"], bool):
            raise InvalidInput(f"{origin}.dns: expected true or false")
        values["dns"] = data["dns"]
    services = _keys(f"{origin}.services", data.get("services") or {}, {f.name for f in fields(Services)})
    for key, name in services.items():
        if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
            raise InvalidInput(f"{origin}.services.{key}: {name!r} is not a Service name")
    values["services"] = Services(**services)
    gpu = _keys(f"{origin}.gpu", data.get("gpu") or {}, {"enabled", "resource", "node_selector", "tolerations",
                                                                  "image"})
    gpu_values: dict[str, Any] = {}
    if "enabled" in gpu:
        gpu_values["enabled"] = bool(gpu["enabled"])
    if "resource" in gpu:
        if not isinstance(gpu["resource"], str) or "/" not in gpu["resource"]:
            raise InvalidInput(f"{origin}.gpu.resource: expected an extended resource such as nvidia.com/gpu")
        gpu_values["resource"] = gpu["resource"]
    if "node_selector" in gpu:
        selector = gpu["node_selector"]
        if not isinstance(selector, Mapping) or not all(isinstance(v, str) for v in selector.values()):
            raise InvalidInput(f"{origin}.gpu.node_selector: expected a mapping of label → value")
        gpu_values["node_selector"] = dict(selector)
    if "tolerations" in gpu:
        if not isinstance(gpu["tolerations"], list):
            raise InvalidInput(f"{origin}.gpu.tolerations: expected a list")
        gpu_values["tolerations"] = tuple(dict(t) for t in gpu["tolerations"])
    if "image" in gpu:
        if not isinstance(gpu["image"], str):
            raise InvalidInput(f"{origin}.gpu.image: expected an image reference such as registry/pds/notebook-gpu:1")
        gpu_values["image"] = gpu["image"]
    values["gpu"] = Gpu(**gpu_values)
    return K8sConfig(**values)


def load_k8s_config(environ: Mapping[str, str] | None = None) -> K8sConfig:
    """Read the config from ``$PDS_K8S_CONFIG`` (JSON text) or ``$PDS_K8S_CONFIG_FILE`` (path)."""
    environ = os.environ if environ is None else environ
    if environ.get("PDS_K8S_CONFIG"):
        text, origin = environ["PDS_K8S_CONFIG"], "$PDS_K8S_CONFIG"
    elif environ.get("PDS_K8S_CONFIG_FILE"):
        path = Path(environ["PDS_K8S_CONFIG_FILE"])
        if not path.is_file():
            raise InvalidInput(f"k8s config file {path} does not exist")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    else:
        return K8sConfig()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{origin} is not valid JSON: {exc}") from None
    return parse_k8s_config(data, origin)
