"""Run the model check as a Kubernetes Job of the project (gate side; the pod runs :mod:`.in_pod`).

On Kubernetes the gate cannot start a bubblewrap sandbox (its own pod is restricted) and does not
see the researchers' homes, so it creates one Job per model file (:func:`build_check_job`, the
only place its manifest is written) with the isolation of a workspace pod (pds_kernel.k8s.pods):

- the project's labels (``pds.project``, ``pds.component: model-check``): the chart's
  ``pds-projects-default-deny`` NetworkPolicy selects it and no other policy opens anything for
  that component, so the pod has no ingress and no egress at all; no DNS resolver either;
- no service-account token, no service links, no host namespaces; non-root (the workspace uid),
  no privilege escalation, all capabilities dropped, seccomp ``RuntimeDefault``, read-only root
  filesystem; requests = limits = the project's CPU and memory;
- read-only mounts only: the project's extract (``/data``, as workspaces), the staged model file
  (one file of the staging claim, by sub-path) and the author's home claim; a size-limited
  emptyDir ``/tmp`` is the only writable place;
- ``backoffLimit: 0`` and ``activeDeadlineSeconds`` = ``model_check.timeout_seconds``; the gate
  deletes the Job when it has its result (``ttlSecondsAfterFinished`` cleans up after a gate
  that died meanwhile).

The result comes back as the last line of the pod's log (:data:`.in_pod.RESULT_MARKER`), read
with a byte limit and validated like the local sandbox's files. The gate's service account needs
create/get/delete on Jobs, list on Pods and get on ``pods/log`` in its namespace (the chart's
``pds-airlock`` Role).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import time
from pathlib import PurePosixPath
from typing import Any

from ..k8s.config import K8sConfig, load_k8s_config
from ..k8s.jobs import isolated_job, run_job
from ..k8s.pod_status import ExtractMismatch
from ..k8s.pods import (
    build_resources,
    extract_check_container,
    extract_mount,
)
from ..sandbox.spec import extract_volume_name, home_volume_name
from .in_pod import AUTHOR_HOME, MODEL_DIR, RESULT_MARKER
from .sandbox import MAX_PLOT_BYTES, MAX_REPORT_BYTES, PNG_MAGIC, CheckRun

CONTAINER = "model-check"
COMPONENT = "model-check"
#: the claim the airlock stages submitted files on (the chart's ``pds-staging``)
STAGING_CLAIM = "pds-staging"
#: what the gate reads of the pod's log, at most (the report, the plot in base64, and slack)
MAX_LOG_BYTES = MAX_REPORT_BYTES + (MAX_PLOT_BYTES * 4) // 3 + 64 * 1024
#: the job's JSON travels as one argument of the container's command (Linux: 128 KiB per argument)
MAX_JOB_ARGUMENT = 100_000


def job_name(request_id: str, index: int) -> str:
    """``pds-model-check-<request>-<index>-<random>``, at most 63 characters."""
    return f"pds-model-check-{request_id[:20].lower()}-{index}-{secrets.token_hex(3)}"


def build_check_job(cfg: K8sConfig, *, name: str, project: str, author: str, cpu: float, mem_mb: int,
                    staged: str, model_name: str, job: dict[str, Any], timeout_seconds: int,
                    scratch_mb: int, expected) -> dict[str, Any]:
    """The Job that checks one model: ``staged`` is the model's path inside the staging claim,
    ``model_name`` the file name it gets in the pod, ``job`` what :mod:`.in_pod` reads. Its
    ``verify-extract`` init container checks the mounted extract against ``expected`` (the audit
    trail's record of its publication) first, as in a workspace pod."""
    model_path = str(MODEL_DIR / model_name)
    container = {
        "name": CONTAINER,
        "image": cfg.model_check_image,
        "imagePullPolicy": cfg.pull_policy,
        "command": ["python", "-I", "-m", "pds_kernel.modelcheck.in_pod",
                    json.dumps({**job, "model": model_path}, sort_keys=True)],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PDS_PROJECT", "value": project},
                {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"}],
        "resources": build_resources(cpu, mem_mb),
        "volumeMounts": [
            extract_mount(),
            {"name": "model", "mountPath": model_path, "subPath": staged, "readOnly": True},
            {"name": "home", "mountPath": str(AUTHOR_HOME), "readOnly": True},
            {"name": "scratch", "mountPath": "/tmp"},
        ],
    }
    volumes = [
        {"name": "extract", "persistentVolumeClaim": {"claimName": extract_volume_name(project), "readOnly": True}},
        {"name": "model", "persistentVolumeClaim": {"claimName": STAGING_CLAIM, "readOnly": True}},
        {"name": "home", "persistentVolumeClaim": {"claimName": home_volume_name(project, author), "readOnly": True}},
        {"name": "scratch", "emptyDir": {"sizeLimit": f"{int(scratch_mb)}Mi"}},
    ]
    return isolated_job(cfg, name=name, project=project, component=COMPONENT, container=container,
                        volumes=volumes, timeout_seconds=timeout_seconds,
                        init_containers=[extract_check_container(expected, cfg, cfg.model_check_image)])


def parse_pod_log(text: str) -> tuple[dict | None, bytes | None, str | None]:
    """(report, plot, problem) from the pod's log: its last :data:`RESULT_MARKER` line, a JSON
    object whose report is an object of at most :data:`MAX_REPORT_BYTES` and whose plot is a PNG
    of at most :data:`MAX_PLOT_BYTES` (otherwise dropped)."""
    lines = [line for line in text.splitlines() if line.startswith(RESULT_MARKER)]
    if not lines:
        return None, None, "the check wrote no readable report"
    try:
        result = json.loads(lines[-1][len(RESULT_MARKER):])
    except ValueError:
        return None, None, "the check's report is not JSON"
    report = result.get("report") if isinstance(result, dict) else None
    if not isinstance(report, dict):
        return None, None, "the check's report is not a JSON object"
    if len(json.dumps(report)) > MAX_REPORT_BYTES:
        return None, None, "the check's report is larger than the gate reads"
    plot = None
    if isinstance(result.get("plot_png"), str) and len(result["plot_png"]) <= (MAX_PLOT_BYTES * 4) // 3 + 4:
        try:
            plot = base64.b64decode(result["plot_png"], validate=True)
        except (binascii.Error, ValueError):
            plot = None
        if plot is not None and (len(plot) > MAX_PLOT_BYTES or not plot.startswith(PNG_MAGIC)):
            plot = None
    return report, plot, None


def run_check_job(settings, project_info, author: str, request_id: str, index: int, staged_relative: str,
                  model_name: str, job: dict[str, Any], *, expected, cfg: K8sConfig | None = None) -> CheckRun:
    """Run the check of one model as a Job of the project and read its result: a failure is a
    :class:`CheckRun` with its ``problem`` (the model goes to review); a pod whose
    ``verify-extract`` container refused the extract raises
    :class:`~pds_kernel.k8s.pod_status.ExtractMismatch` (the check did not run on it: the caller
    audits it and sends the model to a checker, as for an extract refused before the Job)."""
    limits = settings.model_check
    start = time.monotonic()
    size = len(json.dumps(job, sort_keys=True))
    if size > MAX_JOB_ARGUMENT:
        return CheckRun(None, None, None, 0.0, f"the model's declaration takes {size} bytes, more than a check Job "
                                               f"takes ({MAX_JOB_ARGUMENT}): declare fewer or shorter features")
    try:
        cfg = cfg or load_k8s_config()
        scratch_mb = (limits.max_input_bytes + limits.max_model_bytes) // 2**20 + 256
        manifest = build_check_job(cfg, name=job_name(request_id, index), project=project_info.id, author=author,
                                   cpu=project_info.cpu_limit, mem_mb=project_info.mem_limit_mb,
                                   staged=str(PurePosixPath(staged_relative)), model_name=model_name, job=job,
                                   timeout_seconds=limits.timeout_seconds, scratch_mb=scratch_mb,
                                   expected=expected)
        outcome = asyncio.run(run_job(manifest, container=CONTAINER, timeout=limits.timeout_seconds,
                                      limit_bytes=MAX_LOG_BYTES))
    except Exception as exc:  # no API server, no permission, a bad configuration: review
        return CheckRun(None, None, None, time.monotonic() - start,
                        f"the check Job could not run on Kubernetes ({type(exc).__name__}: {str(exc)[:200]})")
    seconds = time.monotonic() - start
    if outcome.extract_refused is not None:
        raise ExtractMismatch(project_info.id, manifest["metadata"]["name"], outcome.extract_refused)
    if outcome.log is None:
        return CheckRun(None, None, None, seconds, outcome.problem)
    report, plot, problem = parse_pod_log(outcome.log)
    return CheckRun(0 if outcome.succeeded else 1, report, plot, seconds,
                    problem or (None if outcome.succeeded else "the check's pod failed (deadline or error)"))
