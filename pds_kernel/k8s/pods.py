"""Pure builders: a :class:`~pds_kernel.sandbox.spec.WorkspaceSpec` translated into pod pieces.

Nothing here decides who may do what (the registry did, before the spec existed) and nothing
talks to a cluster: every function takes plain values and returns plain JSON-shaped dicts in the
Kubernetes API's camelCase, so tests compare dicts and the hub hook converts at the edge.

The invariants a workspace pod must satisfy, whatever JupyterHub, KubeSpawner or z2jh values put
in it before (:func:`apply_workspace_invariants` is the last word):

* volumes: the project's extract claim read-only at ``/data``, its imports claim read-only at
  ``/imports``, the (user, project) home claim at
  ``/home/jovyan``, and a size-limited pod-local scratch ``/tmp`` (emptyDir, because the root
  filesystem is read-only); nothing else, no sidecars, and one init container only: ours,
  ``verify-extract`` (:func:`extract_check_container`), which checks the extract exactly as the
  notebook container mounts it against what the audit trail recorded at its publication, and
  keeps the pod from starting otherwise; it records the fingerprint of the tree it verified in a
  small emptyDir (``/srv/pds/extract-check``, read-only in the notebook container), and the
  notebook's start refuses a ``/data`` that is not that tree; while the notebook runs, its one
  probe, a liveness probe (:func:`extract_watch_probe`), compares ``/data`` with that record again
  and has the kubelet kill it on a change;
* the notebook server started by :mod:`pds_kernel.sandbox.notebook_server` (the lockdown and its
  settings, as in the local sandbox), with no other arguments and no ``JUPYTER*``/``PYTHON*``
  variable from the chart's values;
* the project's labels, image, CPU/memory limits (requests = limits) and optional GPU, and an
  ``ephemeral-storage`` limit: ``/tmp``'s size and room for the log (:mod:`.storage`);
* restricted security (non-root, no privilege escalation, all capabilities dropped, seccomp
  RuntimeDefault, read-only root filesystem), no service-account token, no host namespaces;
* no DNS resolver unless enabled: the hub, the dask-gateway proxy, the airlock and the package
  index (``PIP_INDEX_URL``) are reached at the addresses Kubernetes injects
  (``$(HUB_SERVICE_HOST)``...), expanded by the kubelet.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidInput
from ..extract.tree import CHECKED_ENV
from ..registry.names import check_label_safe_user_name
from ..sandbox.notebook_server import server_command
from ..sandbox.spec import (
    DATA_MOUNT,
    HOME_MOUNT,
    IMPORTS_MOUNT,
    WorkspaceSpec,
    extract_volume_name,
    home_volume_name,
    imports_volume_name,
)
from .config import K8sConfig
from .storage import with_ephemeral_storage

#: KubeSpawner's name for the notebook container.
NOTEBOOK_CONTAINER = "notebook"
#: dask-gateway's name for a worker pod's container.
DASK_WORKER_CONTAINER = "dask-worker"
#: The cohort-link Job's linking container (:mod:`pds_kernel.airlock.cohort_link_job`).
COHORT_LINK_CONTAINER = "cohort-link"
SCRATCH_MOUNT = "/tmp"
#: The commands dask-gateway runs in the worker image for a cluster's scheduler and workers.
#: No dashboard (dask-gateway appends ``--dashboard-address :8787``; ``--no-dashboard`` wins): on
#: Kubernetes a dashboard would reach the browser through dask-gateway's proxy, outside the
#: workspace's served-bytes budget. The scheduler still listens on 8787 (distributed starts its
#: HTTP server whatever the flag): :data:`NO_HTTP_ROUTES` leaves it nothing to serve. Code run on
#: the scheduler could undo both, so the chart also closes the port (templates/networkpolicies.yaml)
#: and refuses the route (templates/gateway-dashboards.yaml).
SCHEDULER_CMD = ("dask", "scheduler", "--no-dashboard")
WORKER_CMD = ("dask", "worker", "--no-dashboard")
#: Environment of a cluster's pods: the scheduler's HTTP server serves no page (distributed's
#: defaults are its info pages, JSON, Prometheus metrics and a proxy to the workers' ports).
NO_HTTP_ROUTES = {"DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": "[]"}
#: The notebook image's Python (on its PATH).
NOTEBOOK_PYTHON = "python"
#: The notebook container's command: the same launcher as the local sandbox's.
NOTEBOOK_COMMAND = server_command(NOTEBOOK_PYTHON)
#: A workspace pod's annotation: the build its ``verify-extract`` checks (the hub tells a change of
#: the claim from a newer publication by it: :func:`pds_kernel.k8s.pod_status.stopped_on_change`).
EXTRACT_BUILD_ANNOTATION = "pds.extract-build"
#: Label keys written on every project pod (and selected by the chart's NetworkPolicies).
PROJECT_LABEL = "pds.project"
COMPONENT_LABEL = "pds.component"


# ---- small pieces --------------------------------------------------------------------------------
def service_env_prefix(service: str) -> str:
    """The prefix of the variables Kubernetes injects for a Service (``proxy-public`` →
    ``PROXY_PUBLIC``)."""
    return service.upper().replace("-", "_")


def service_address(service: str, *, dns: bool, port: int | None = None) -> str:
    """``host:port`` of a Service as a workspace reaches it.

    Without DNS this is ``$(NAME_SERVICE_HOST):$(NAME_SERVICE_PORT)``: the kubelet expands such
    references in container env values from the Service variables of the pod's namespace.
    """
    if dns:
        return service if port is None else f"{service}:{port}"
    prefix = service_env_prefix(service)
    return f"$({prefix}_SERVICE_HOST):$({prefix}_SERVICE_PORT)"


def cpu_quantity(cores: float) -> str:
    return f"{max(1, round(cores * 1000))}m"


def memory_quantity(mb: int) -> str:
    return f"{int(mb)}Mi"


def build_labels(spec: WorkspaceSpec, component: str = "workspace") -> dict[str, str]:
    check_label_safe_user_name(spec.user)  # the ``pds.user`` label: refused with what to do, not by the API
    labels = dict(spec.labels)
    labels[PROJECT_LABEL] = spec.project
    labels[COMPONENT_LABEL] = component
    return labels


def gpu_granted(spec: WorkspaceSpec, cfg: K8sConfig) -> bool:
    """A GPU only when the platform enables GPUs *and* the registry grants one to the project."""
    return bool(cfg.gpu.enabled and spec.gpu)


def build_pod_security_context(cfg: K8sConfig) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": cfg.uid,
        "runAsGroup": cfg.gid,
        "fsGroup": cfg.gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_container_security_context(cfg: K8sConfig) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": cfg.uid,
        "runAsGroup": cfg.gid,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_resources(cpu: float, mem_mb: int, *, gpu_resource: str | None = None) -> dict[str, Any]:
    """Requests equal limits: a project gets what the registry grants, never more, never less."""
    limits: dict[str, Any] = {"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem_mb)}
    if gpu_resource:
        limits[gpu_resource] = "1"
    return {"limits": dict(limits), "requests": dict(limits)}


def extract_volume(spec: WorkspaceSpec) -> dict[str, Any]:
    return {"name": "extract", "persistentVolumeClaim": {
        "claimName": extract_volume_name(spec.project), "readOnly": True}}


def extract_mount() -> dict[str, Any]:
    """The published extract, read-only at ``/data``. The project's claim is laid out as the
    builder writes it (``builds/<id>/``, ``spec.yaml``, and the ``extract`` link to the published
    build): only ``extract`` is mounted; the kubelet resolves the link inside the volume when the
    container starts, so a pod keeps the build it started with."""
    return {"name": "extract", "mountPath": DATA_MOUNT, "readOnly": True, "subPath": "extract"}


#: The init container that verifies the extract before the notebook container starts.
EXTRACT_CHECK_CONTAINER = "verify-extract"
#: A workspace pod's folder (emptyDir) where ``verify-extract`` records the fingerprint of the tree it
#: verified; the notebook container reads it (read-only) before it serves (``$PDS_EXTRACT_CHECKED``).
EXTRACT_CHECKED_DIR = "/srv/pds/extract-check"
EXTRACT_CHECKED_FILE = f"{EXTRACT_CHECKED_DIR}/fingerprint"


#: A Dask worker container's command: dask's own (dask-gateway's arguments) started only on the
#: extract its pod's ``verify-extract`` container checked (:mod:`pds_kernel.extract.checked_start`).
CHECKED_START = (NOTEBOOK_PYTHON, "-I", "-m", "pds_kernel.extract.checked_start")


#: The notebook container's liveness probe (:mod:`pds_kernel.extract.pod_watch`): ``/data`` is still
#: the tree ``verify-extract`` recorded, or the kubelet kills the notebook.
EXTRACT_WATCH = (NOTEBOOK_PYTHON, "-I", "-m", "pds_kernel.extract.pod_watch", DATA_MOUNT,
                 "--record", EXTRACT_CHECKED_FILE)


def watch_deadline(timeout_seconds: int) -> str:
    """The seconds the probe's own walk may take (``--deadline``): a fifth of the kubelet's timeout,
    at least one second and at most five, is left for the interpreter's start and the probe's
    answer, so that a slow walk ends with the probe's own message, never in the kubelet's silent
    timeout (:mod:`pds_kernel.extract.pod_watch`); half a second for a one-second timeout."""
    margin = min(5.0, max(1.0, timeout_seconds / 5))
    return f"{max(0.5, timeout_seconds - margin):g}"


def extract_watch_command(cfg: K8sConfig) -> list[str]:
    """:data:`EXTRACT_WATCH` with its walk bounded below the probe's timeout (:func:`watch_deadline`)."""
    return [*EXTRACT_WATCH, "--deadline", watch_deadline(cfg.extract_watch_timeout_seconds)]


def extract_watch_probe(cfg: K8sConfig) -> dict[str, Any]:
    """Every ``cfg.extract_watch_seconds``, the kubelet runs :func:`extract_watch_command` in the
    notebook container (its very ``/data``, its read-only record); one failure (the tree changed,
    the record cannot be read, the walk failed or outlasted its deadline, or the probe did not answer
    within ``cfg.extract_watch_timeout_seconds``) kills the container at once (SIGKILL one second
    after SIGTERM). Its restart's launcher then refuses a changed tree, and the hub stops the server,
    audited (:mod:`pds_kernel.hub.kube_spawner`); any other restart is audited with its cause
    (:mod:`pds_kernel.k8s.restarts`). ``failureThreshold`` stays 1: a second chance for a slow walk
    would be one more period of a changed tree served (docs/adr/0011)."""
    return {"exec": {"command": extract_watch_command(cfg)}, "initialDelaySeconds": 0,
            "periodSeconds": cfg.extract_watch_seconds, "timeoutSeconds": cfg.extract_watch_timeout_seconds,
            "failureThreshold": 1, "successThreshold": 1, "terminationGracePeriodSeconds": 1}


def extract_checked_volume() -> dict[str, Any]:
    return {"name": "extract-check", "emptyDir": {"sizeLimit": "1Mi"}}


def extract_checked_mount(*, read_only: bool = True) -> dict[str, Any]:
    """The ``extract-check`` folder: written by ``verify-extract``, read (read-only) by the container
    that then starts on ``/data``."""
    mount = {"name": "extract-check", "mountPath": EXTRACT_CHECKED_DIR}
    return {**mount, "readOnly": True} if read_only else mount


def extract_check_container(expected, cfg: K8sConfig, image: str, *, record: bool = False) -> dict[str, Any]:
    """``python -I -m pds_kernel.extract.tree /data ...`` in ``image`` (the notebook's, or the Dask
    workers' for their pods: both hold ``pds_kernel``), with the notebook container's very mount of
    the extract (same claim, same ``subPath``, read-only), no network
    and the restricted security context. ``expected``: the hub's
    :class:`~pds_kernel.extract.mount_check.ExpectedMount` (from the audit trail, which the pod
    cannot reach). It exits non-zero, and the pod never starts, unless the extract is the one
    published: re-hashed up to ``expected.hash_max_bytes``, else in its recorded state. With
    ``record`` (a workspace pod) it writes the verified tree's fingerprint to
    :data:`EXTRACT_CHECKED_FILE`, which the notebook container compares with its own mount before
    it serves (:func:`pds_kernel.extract.tree.refuse_unless_checked`)."""
    argv = [NOTEBOOK_PYTHON, "-I", "-m", "pds_kernel.extract.tree", DATA_MOUNT,
            "--manifest-sha256", expected.manifest_sha256, "--hash-max-bytes", str(expected.hash_max_bytes)]
    if expected.fingerprint:
        argv += ["--fingerprint", expected.fingerprint]
    mounts, volumes = [extract_mount()], []
    if record:
        argv += ["--record", EXTRACT_CHECKED_FILE]
        mounts.append(extract_checked_mount(read_only=False))
        volumes.append(extract_checked_volume())
    return {
        "name": EXTRACT_CHECK_CONTAINER,
        "image": image,
        "imagePullPolicy": cfg.pull_policy,
        "command": argv,
        "args": [],
        "env": [],
        "volumeMounts": mounts,
        # it writes nothing but its log (and its record): the log's allowance of node disk
        "resources": with_ephemeral_storage(build_resources(1.0, 256), volumes),
        "securityContext": build_container_security_context(cfg),
        "terminationMessagePolicy": "File",
    }


def imports_volume(spec: WorkspaceSpec) -> dict[str, Any]:
    """The project's imports claim (``imports-<project>``), written only by the gate."""
    return {"name": "imports", "persistentVolumeClaim": {
        "claimName": imports_volume_name(spec.project), "readOnly": True}}


def imports_mount() -> dict[str, Any]:
    """Approved imports, read-only at ``/imports``: the whole claim (no sub-path), so an import the
    gate releases while the pod runs appears in it at once, with ``MANIFEST.json``."""
    return {"name": "imports", "mountPath": IMPORTS_MOUNT, "readOnly": True}


def scratch_volume(cfg: K8sConfig) -> dict[str, Any]:
    return {"name": "scratch", "emptyDir": {"sizeLimit": cfg.tmp_size}}


def scratch_mount() -> dict[str, Any]:
    return {"name": "scratch", "mountPath": SCRATCH_MOUNT}


def build_workspace_volumes(spec: WorkspaceSpec, cfg: K8sConfig) -> list[dict[str, Any]]:
    return [
        extract_volume(spec),
        {"name": "home", "persistentVolumeClaim": {"claimName": home_volume_name(spec.project, spec.user)}},
        imports_volume(spec),
        scratch_volume(cfg),
        extract_checked_volume(),
    ]


def build_workspace_mounts() -> list[dict[str, Any]]:
    return [extract_mount(), {"name": "home", "mountPath": HOME_MOUNT}, imports_mount(), scratch_mount(),
            extract_checked_mount()]


def build_workspace_env(spec: WorkspaceSpec, cfg: K8sConfig, airlock_pages: str = "") -> dict[str, str]:
    """Where the workspace finds the gateway and the airlock, and its default Dask options.
    ``airlock_pages``: the gate's pages on their own host (pds_kernel.hub.origins), for the links
    the workspace shows."""
    s = cfg.services
    gateway = service_address(s.gateway_proxy, dns=cfg.dns, port=80)
    package_index = f"http://{service_address(s.packages, dns=cfg.dns, port=8080)}/simple/"
    return {
        "PDS_PROJECT": spec.project,
        # dask_client() waits this long for its cluster's first worker (pds_kernel.dask_workers)
        "PDS_DASK_WORKER_WAIT_SECONDS": str(cfg.dask_worker_wait_seconds),
        "PDS_AIRLOCK_URL": f"http://{service_address(s.airlock, dns=cfg.dns, port=8080)}",
        **({"PDS_AIRLOCK_PAGES": airlock_pages} if airlock_pages else {}),
        # pip: the platform's package index only (the image's /etc/pip.conf says the rest)
        "PIP_INDEX_URL": package_index,
        "PDS_PACKAGE_INDEX_URL": package_index,
        "PIP_CONFIG_FILE": "/etc/pip.conf",
        "DASK_GATEWAY__ADDRESS": f"http://{gateway}{cfg.gateway_prefix}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{gateway}",
        "DASK_GATEWAY__PUBLIC_ADDRESS": cfg.gateway_prefix,
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        "DASK_GATEWAY__CLUSTER__OPTIONS__PROJECT": spec.project,
        "DASK_TEMPORARY_DIRECTORY": SCRATCH_MOUNT,
        "HOME": HOME_MOUNT,
        # the notebook's start compares /data with what its pod's verify-extract checked
        CHECKED_ENV: EXTRACT_CHECKED_FILE,
    }


def rewrite_hub_urls(env: list[dict[str, Any]], hub_api_url: str, cfg: K8sConfig) -> list[dict[str, Any]]:
    """Point every env value that names the hub's address at the injected Service address."""
    if cfg.dns or not hub_api_url:
        return env
    parts = urlsplit(hub_api_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    target = f"{parts.scheme}://{service_address(cfg.services.hub, dns=False)}"
    out = []
    for item in env:
        value = item.get("value")
        if isinstance(value, str) and value.startswith(origin):
            item = {**item, "value": target + value[len(origin):]}
        out.append(item)
    return out


def is_server_config_variable(name: str) -> bool:
    """Variables that could move the notebook server's configuration (the launcher drops them
    too; they are not even written into the pod)."""
    return (name.startswith(("JUPYTER", "PYTHON")) and not name.startswith("JUPYTERHUB_")
            and name != "JUPYTER_RUNTIME_DIR")


def merge_env(env: list[dict[str, Any]], overrides: dict[str, str]) -> list[dict[str, Any]]:
    """Existing variables first (order matters for ``$(VAR)`` references), ours replace theirs."""
    kept = [e for e in env if e.get("name") not in overrides]
    return kept + [{"name": k, "value": v} for k, v in overrides.items()]


# ---- the last word on a workspace pod -------------------------------------------------------------
def apply_workspace_invariants(pod: dict[str, Any], spec: WorkspaceSpec, cfg: K8sConfig, *, extract,
                               hub_api_url: str = "", airlock_pages: str = "") -> dict[str, Any]:
    """Return a copy of ``pod`` (API dict) that satisfies every workspace invariant. ``extract``:
    what the audit trail says may be mounted (:func:`pds_kernel.extract.mount_check.expected_mount`)."""
    pod = copy.deepcopy(pod)
    meta = pod.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **build_labels(spec)}
    meta["annotations"] = {**(meta.get("annotations") or {}), EXTRACT_BUILD_ANNOTATION: extract.build_id}
    ps = pod.setdefault("spec", {})
    notebook = next((c for c in ps.get("containers") or [] if c.get("name") == NOTEBOOK_CONTAINER), None)
    if notebook is None:
        raise InvalidInput("the workspace pod has no notebook container")
    gpu = gpu_granted(spec, cfg)

    notebook["image"] = cfg.notebook_image_for(spec.project, gpu=gpu)
    notebook["command"] = list(NOTEBOOK_COMMAND)
    notebook["args"] = []
    notebook["imagePullPolicy"] = cfg.pull_policy
    notebook["volumeMounts"] = build_workspace_mounts()
    notebook.pop("volumeDevices", None)
    notebook.pop("envFrom", None)
    notebook["resources"] = with_ephemeral_storage(
        build_resources(spec.cpu_limit, spec.mem_limit_mb, gpu_resource=cfg.gpu.resource if gpu else None),
        build_workspace_volumes(spec, cfg))
    notebook["securityContext"] = build_container_security_context(cfg)
    # the only probe: no startup probe may hold the liveness probe back (pds_kernel.extract.pod_watch)
    notebook["livenessProbe"] = extract_watch_probe(cfg)
    notebook.pop("startupProbe", None)
    notebook.pop("readinessProbe", None)
    # literal values only: a ``valueFrom`` (singleuser.extraEnv, KubeSpawner.environment) would hand
    # the researcher's code a Secret of the namespace (the database URL, the audit key...)
    env = [e for e in notebook.get("env") or [] if not is_server_config_variable(str(e.get("name", "")))
           and "valueFrom" not in e]
    env = rewrite_hub_urls(env, hub_api_url, cfg)
    notebook["env"] = merge_env(env, build_workspace_env(spec, cfg, airlock_pages))

    ps["containers"] = [notebook]
    # the namespace's default ServiceAccount: another one (singleuser.serviceAccountName) may carry
    # a cloud identity or a RoleBinding the researcher's code would use
    for key in ("ephemeralContainers", "hostAliases", "serviceAccount", "serviceAccountName"):
        ps.pop(key, None)
    ps["initContainers"] = [extract_check_container(extract, cfg, notebook["image"], record=True)]
    ps["volumes"] = build_workspace_volumes(spec, cfg)
    ps["securityContext"] = build_pod_security_context(cfg)
    ps["automountServiceAccountToken"] = False
    ps["enableServiceLinks"] = True
    ps["hostNetwork"] = ps["hostPID"] = ps["hostIPC"] = False
    ps["shareProcessNamespace"] = False
    if cfg.dns:
        ps["dnsPolicy"] = "ClusterFirst"
        ps.pop("dnsConfig", None)
    else:
        # No resolver: a name lookup fails at once instead of leaking through the cluster DNS.
        ps["dnsPolicy"] = "None"
        ps["dnsConfig"] = {"nameservers": ["127.0.0.1"], "searches": [], "options": [{"name": "ndots", "value": "0"}]}
    selector = {k: v for k, v in (ps.get("nodeSelector") or {}).items() if k not in cfg.gpu.node_selector}
    tolerations = [t for t in ps.get("tolerations") or [] if t not in cfg.gpu.tolerations]
    if gpu:
        selector.update(cfg.gpu.node_selector)
        tolerations.extend(dict(t) for t in cfg.gpu.tolerations)
    ps["nodeSelector"] = selector
    ps["tolerations"] = tolerations
    return pod


# ---- Dask clusters (dask-gateway KubeClusterConfig overrides) ---------------------------------------
def build_cluster_overrides(spec: WorkspaceSpec, cfg: K8sConfig, *, extract, scheduler_cpu: float = 1.0,
                            scheduler_mem_mb: int = 2048) -> dict[str, Any]:
    """The ``KubeClusterConfig`` overrides for one project's Dask cluster.

    Workers get the project's image, limits (one worker = the project's CPU/memory), the extract
    read-only at ``/data`` and labels; the scheduler gets labels and the same restricted security
    but no data. These replace (not extend) whatever the chart's defaults set, so they must be
    complete. dask-gateway appends lists (volumes) to its own (the TLS credentials secret).
    ``extract``: what the audit trail says may be mounted; each worker pod verifies it first (the
    ``verify-extract`` init container, as the notebook pod does), records the verified tree's
    fingerprint in its ``extract-check`` folder, and the worker container starts dask's own command
    (dask-gateway's arguments, unchanged) through :data:`CHECKED_START`, which refuses a ``/data``
    that is not that tree. While the worker runs, the notebook's liveness probe watches its
    ``/data`` too (:func:`extract_watch_probe`).
    """
    gpu = gpu_granted(spec, cfg)
    csc = build_container_security_context(cfg)
    base_pod = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": build_pod_security_context(cfg),
    }
    worker_image = cfg.worker_image_for(spec.project, gpu=gpu)
    worker_pod = {**copy.deepcopy(base_pod),
                  "volumes": [extract_volume(spec), scratch_volume(cfg), extract_checked_volume()],
                  "initContainers": [extract_check_container(extract, cfg, worker_image, record=True)]}
    worker_container: dict[str, Any] = {
        # dask-gateway writes the worker's command as the container's args: they follow this
        "command": list(CHECKED_START),
        "env": [{"name": CHECKED_ENV, "value": EXTRACT_CHECKED_FILE}],
        "securityContext": csc,
        "volumeMounts": [extract_mount(), scratch_mount(), extract_checked_mount()],
        # while it runs, as the notebook: a change of the claim ends the worker (its restart refuses)
        "livenessProbe": extract_watch_probe(cfg),
    }
    if gpu:
        worker_pod["nodeSelector"] = dict(cfg.gpu.node_selector)
        worker_pod["tolerations"] = [dict(t) for t in cfg.gpu.tolerations]
        worker_container["resources"] = {"limits": {cfg.gpu.resource: "1"}, "requests": {cfg.gpu.resource: "1"}}
    # dask-gateway merges these resources into its CPU and memory ones
    worker_container["resources"] = with_ephemeral_storage(worker_container.get("resources"), worker_pod["volumes"])
    scheduler_pod = {**copy.deepcopy(base_pod), "volumes": [scratch_volume(cfg)]}
    scheduler_container = {"securityContext": copy.deepcopy(csc), "volumeMounts": [scratch_mount()],
                           "resources": with_ephemeral_storage(None, scheduler_pod["volumes"])}
    mem_bytes = int(spec.mem_limit_mb) * 2**20
    return {
        # distributed ≥ 2025 ships only the ``dask`` command: dask-gateway's defaults
        # (dask-scheduler / dask-worker) do not exist in the worker image
        "scheduler_cmd": list(SCHEDULER_CMD),
        "worker_cmd": list(WORKER_CMD),
        "image": worker_image,
        "image_pull_policy": cfg.pull_policy,
        "worker_cores": float(spec.cpu_limit),
        "worker_cores_limit": float(spec.cpu_limit),
        "worker_memory": mem_bytes,
        "worker_memory_limit": mem_bytes,
        "worker_threads": max(1, min(cfg.worker_threads, int(spec.cpu_limit) or 1)),
        "scheduler_cores": scheduler_cpu,
        "scheduler_cores_limit": scheduler_cpu,
        "scheduler_memory": scheduler_mem_mb * 2**20,
        "scheduler_memory_limit": scheduler_mem_mb * 2**20,
        "cluster_max_workers": spec.dask_workers,
        # dask-gateway counts the scheduler within these caps
        "cluster_max_cores": float(spec.cpu_limit) * spec.dask_workers + scheduler_cpu,
        "cluster_max_memory": mem_bytes * spec.dask_workers + scheduler_mem_mb * 2**20,
        "environment": {"PDS_PROJECT": spec.project, "DASK_TEMPORARY_DIRECTORY": SCRATCH_MOUNT,
                        **NO_HTTP_ROUTES},
        "worker_extra_pod_labels": build_labels(spec, "dask-worker"),
        "scheduler_extra_pod_labels": build_labels(spec, "dask-scheduler"),
        "worker_extra_pod_config": worker_pod,
        "worker_extra_container_config": worker_container,
        "scheduler_extra_pod_config": scheduler_pod,
        "scheduler_extra_container_config": scheduler_container,
    }
