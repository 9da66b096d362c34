"""Link an external cohort list in a short Kubernetes Job (gate side; the pod runs
``python -m pds_kernel.k8s cohort-link PROJECT``).

The gate is long-running and faces the internet: it never holds a project's pseudonymisation key
nor the trusted third party's NIR correspondence. On Kubernetes it creates one Job per cohort
import (:func:`build_link_job`, the only place its manifest is written), waits for it, reads a
bounded result from its log, and deletes it. The Job acts as ``service:cohort-link`` and sees:

- the **project's key only**: the file ``keys/<project>.key`` of the key store's claim, by sub-path,
  read-only (not the other projects' keys, not the tombstones);
- the **correspondence**: ``nir_correspondence.parquet`` of the claim ``pds-ttp``, read-only;
- the **staged raw list**: one file of the staging claim (``<project>/<request>/raw/<file>``), by
  sub-path, read-only, at :data:`LIST_PATH`: the linking container has nothing else of the claim;
- its **output directory** :data:`OUT_DIR`: a pod-local emptyDir the size of the largest output the
  gate accepts (``max_output_bytes``), its only writable place with the emptyDir ``/tmp``;
- the project's published extract at ``/data`` (read-only), to count the linked people in it.

**The extract is the published one.** As in a workspace pod (ADR 0011), the pod's first init
container is ``verify-extract`` (:func:`~pds_kernel.k8s.pods.extract_check_container`), which
checks the mounted extract against ``expected`` (what the audit trail recorded at its publication,
read by the gate) and records the verified tree's fingerprint in a 1 MiB emptyDir; the linker
(``python -m pds_kernel.k8s cohort-link``) compares its own ``/data`` with that record before it
reads anything (:func:`pds_kernel.extract.tree.require_checked`). A refusal of either fails the
pod: :func:`run_link_job` reads it from the pod's status and raises
:class:`~pds_kernel.k8s.pod_status.ExtractMismatch` (the import is refused with the reason; the
caller audits ``extract.mount_refused``).

The staging claim holds every project's staged files: a linker that writes without bound (a flaw
of the CSV or Parquet readers exploited by the list) fills its own pod's folders, bounded by their
sizes and the pod's ``ephemeral-storage``, never the claim. The linking container is the pod's
init container (:data:`CONTAINER`); once it has ended, its second container (the gate's code,
:func:`.rebuild_collect.collect_container`, as in the rebuild's Job) copies only ``cohort.csv`` and
``match_report.json``, regular files, no link followed, at most ``max_output_bytes`` in all, to
``<project>/<request>/link`` of the claim (created empty by the gate just before), mounted by
sub-path in that container only.

Isolation as the model-check Job (:mod:`pds_kernel.modelcheck.k8s_job`): the project's labels with
``pds.component: cohort-link`` (only ``pds-projects-default-deny`` selects it: no ingress, no egress,
no resolver), no service-account token, no service links, non-root, no privilege escalation, all
capabilities dropped, seccomp ``RuntimeDefault``, read-only root filesystem, ``backoffLimit: 0``,
``activeDeadlineSeconds`` = ``cohort_link.timeout_seconds``. Paths are fixed by the command; the
manifest is the only thing that says what is mounted, and it accepts only staged paths of the
request it is made for.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import PurePosixPath
from typing import Any

from ..errors import InvalidInput, NotFound, PdsError, PermissionDenied, Unavailable
from ..extract.tree import CHECKED_ENV
from ..k8s.config import K8sConfig, load_k8s_config
from ..k8s.jobs import isolated_job, run_job
from ..k8s.pod_status import ExtractMismatch
from ..k8s.pods import (
    COHORT_LINK_CONTAINER,
    EXTRACT_CHECKED_FILE,
    build_resources,
    extract_check_container,
    extract_checked_mount,
    extract_checked_volume,
    extract_mount,
)
from ..registry.names import check_project_id
from ..sandbox.spec import extract_volume_name
from .cohort_intake import COHORT_OUTPUT, REPORT_OUTPUT
from .rebuild_collect import DEST_VOLUME, SOURCE_VOLUME, collect_container
from .staging import check_request_id

CONTAINER = COHORT_LINK_CONTAINER
COMPONENT = "cohort-link"
STAGING_CLAIM = "pds-staging"
KEYS_CLAIM = "pds-keys"  #: laid out as ``keys/<project>.key`` (the chart's PDS_PATHS__KEYS)
TTP_CLAIM = "pds-ttp"
CORRESPONDENCE = "nir_correspondence.parquet"
#: fixed paths in the pod (``python -m pds_kernel.k8s cohort-link`` reads and writes only these)
LINK_ROOT = PurePosixPath("/srv/pds/cohort-link")
LIST_PATH = LINK_ROOT / "list.csv"
OUT_DIR = LINK_ROOT / "out"
#: where the second container sees the request's ``link/`` on the staging claim
COPIES_DIR = LINK_ROOT / "copies"
#: what the second container copies to the claim: the linker's two files, nothing else
OUTPUTS = (REPORT_OUTPUT, COHORT_OUTPUT)
KEYS_DIR = PurePosixPath("/srv/pds/key-store/keys")
TTP_DIR = PurePosixPath("/srv/pds/ttp")
EXTRACT_DIR = PurePosixPath("/data")
#: directories of a request in the staging claim: the raw list (read), the Job's output (written)
RAW_DIR = "raw"
LINK_DIR = "link"
#: the last line of the pod's log starting with this is the result (a JSON object)
RESULT_MARKER = "PDS-COHORT-LINK-RESULT "
MAX_LOG_BYTES = 64 * 1024
_STORED = re.compile(r"^[0-9]{1,4}-r[0-9]{1,4}-[^/\x00]{1,255}$")


def job_name(request_id: str) -> str:
    return f"pds-cohort-link-{check_request_id(request_id)[:20]}-{secrets.token_hex(3)}"


def check_staged_list(project: str, request_id: str, raw: str) -> PurePosixPath:
    """``raw`` as ``<project>/<request>/raw/<stored file>`` inside the staging claim, or refused:
    the Job mounts exactly this file and nothing else of the claim."""
    path = PurePosixPath(raw)
    parts = path.parts
    if (path.is_absolute() or len(parts) != 4 or parts[:3] != (project, request_id, RAW_DIR)
            or not _STORED.fullmatch(parts[3]) or parts[3] in {".", ".."} or "\\" in raw or str(path) != raw):
        raise InvalidInput(f"{raw[:120]!r} is not a staged cohort list of request {request_id} of {project}")
    return path


def build_link_job(cfg: K8sConfig, *, name: str, project: str, request_id: str, raw: str,
                   timeout_seconds: int, max_output_bytes: int, expected, cpu: float = 1.0, mem_mb: int = 2048,
                   scratch_mb: int = 256) -> dict[str, Any]:
    """The Job that links the staged list ``raw`` (relative to the staging claim) of ``request_id``;
    at most ``max_output_bytes`` of its output reach the claim. ``expected``: the audit trail's
    record of the extract's publication (:func:`pds_kernel.extract.mount_check.expected_mount`),
    which its ``verify-extract`` container checks the mounted extract against first."""
    check_project_id(project)
    check_request_id(request_id)
    raw_path = check_staged_list(project, request_id, raw)
    if not 0 < int(max_output_bytes) <= 1 << 40:
        raise InvalidInput(f"a cohort link's output is bounded: {max_output_bytes!r} bytes is not a bound")
    link = {
        "name": CONTAINER,
        "image": cfg.cohort_link_image,
        "imagePullPolicy": cfg.pull_policy,
        "command": ["python", "-I", "-m", "pds_kernel.k8s", "cohort-link", project],
        "env": [{"name": "HOME", "value": "/tmp"},
                {"name": "PDS_PATHS__KEYS", "value": str(KEYS_DIR)},
                {"name": "PDS_PATHS__TTP", "value": str(TTP_DIR)},
                {"name": "PDS_PATHS__STATE", "value": "/tmp/pds-state"},
                {"name": "POLARS_MAX_THREADS", "value": str(max(1, int(cpu)))},
                # its start compares /data with what the pod's verify-extract checked
                {"name": CHECKED_ENV, "value": EXTRACT_CHECKED_FILE}],
        "resources": build_resources(cpu, mem_mb),
        "volumeMounts": [
            {"name": "key", "mountPath": str(KEYS_DIR / f"{project}.key"), "subPath": f"keys/{project}.key",
             "readOnly": True},
            {"name": "ttp", "mountPath": str(TTP_DIR / CORRESPONDENCE), "subPath": CORRESPONDENCE, "readOnly": True},
            {"name": "list", "mountPath": str(LIST_PATH), "subPath": str(raw_path), "readOnly": True},
            {"name": SOURCE_VOLUME, "mountPath": str(OUT_DIR)},
            extract_mount(),
            extract_checked_mount(),
            {"name": "scratch", "mountPath": "/tmp"},
        ],
    }
    collect = collect_container(cfg.cohort_link_image, cfg.pull_policy, source=OUT_DIR, dest=COPIES_DIR,
                                dest_path=f"{project}/{request_id}/{LINK_DIR}", names=list(OUTPUTS),
                                max_bytes=max_output_bytes)
    volumes = [
        {"name": "key", "persistentVolumeClaim": {"claimName": KEYS_CLAIM, "readOnly": True}},
        {"name": "ttp", "persistentVolumeClaim": {"claimName": TTP_CLAIM, "readOnly": True}},
        {"name": "list", "persistentVolumeClaim": {"claimName": STAGING_CLAIM, "readOnly": True}},
        {"name": DEST_VOLUME, "persistentVolumeClaim": {"claimName": STAGING_CLAIM}},
        {"name": "extract", "persistentVolumeClaim": {"claimName": extract_volume_name(project), "readOnly": True}},
        # the output, pod-local: a MiB more than the bound, for the filesystem's own blocks
        {"name": SOURCE_VOLUME, "emptyDir": {"sizeLimit": f"{-(-int(max_output_bytes) // 2**20) + 1}Mi"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": f"{int(scratch_mb)}Mi"}},
        extract_checked_volume(),
    ]
    check = extract_check_container(expected, cfg, cfg.cohort_link_image, record=True)
    return isolated_job(cfg, name=name, project=project, component=COMPONENT, init_containers=[check, link],
                        container=collect, volumes=volumes, timeout_seconds=timeout_seconds)


#: errors of the pod that are the list's (or the project's) fault, passed on as they are
_POD_ERRORS = {cls.__name__: cls for cls in (InvalidInput, NotFound, PermissionDenied)}


def parse_link_log(text: str) -> dict:
    """The Job's result (``{"report", "cohort_sha256"}``) from the last :data:`RESULT_MARKER` line.

    A result ``{"error", "kind"}`` (the pod refused the list) raises that error again (an unknown
    kind as :class:`Unavailable`); a log without a usable result raises :class:`Unavailable`."""
    lines = [line for line in (text or "").splitlines() if line.startswith(RESULT_MARKER)]
    if not lines:
        raise Unavailable("the cohort list could not be linked: the cohort-link Job gave no result")
    try:
        result = json.loads(lines[-1][len(RESULT_MARKER):])
    except ValueError:
        raise Unavailable("the cohort list could not be linked: the cohort-link Job's result is not JSON") from None
    if isinstance(result, dict) and isinstance(result.get("error"), str):
        raise _POD_ERRORS.get(str(result.get("kind")), Unavailable)(result["error"][:400])
    if not isinstance(result, dict) or not isinstance(result.get("report"), dict) \
            or not isinstance(result.get("cohort_sha256"), str):
        raise Unavailable("the cohort list could not be linked: the Job's result is not {report, cohort_sha256}")
    return result


def run_link_job(settings, project: str, request_id: str, raw: str, *, max_output_bytes: int, expected,
                 cfg: K8sConfig | None = None) -> dict:
    """Run the Job for the staged list ``raw`` and return its parsed result; any failure raises
    :class:`Unavailable` with a reason (never a partial result). At most ``max_output_bytes`` of
    its output reach the request's ``link/``. A pod that refused the project's extract (not the
    one ``expected`` describes) raises :class:`~pds_kernel.k8s.pod_status.ExtractMismatch`: the
    linker did not run on it, or stopped before it read it."""
    limits = settings.cohort_link
    try:
        cfg = cfg or load_k8s_config()
        manifest = build_link_job(cfg, name=job_name(request_id), project=project, request_id=request_id, raw=raw,
                                  timeout_seconds=limits.timeout_seconds, max_output_bytes=max_output_bytes,
                                  expected=expected, cpu=limits.cpu, mem_mb=limits.mem_mb)
        outcome = asyncio.run(run_job(manifest, container=CONTAINER, timeout=limits.timeout_seconds,
                                      limit_bytes=MAX_LOG_BYTES))
    except PdsError:
        raise
    except Exception as exc:  # no API server, no permission, a bad configuration: refuse
        raise Unavailable(f"the cohort list could not be linked: the cohort-link Job could not run on "
                          f"Kubernetes ({type(exc).__name__}: {str(exc)[:200]}); try again later or ask an "
                          "admin") from None
    if outcome.extract_refused is not None:
        raise ExtractMismatch(project, manifest["metadata"]["name"], outcome.extract_refused)
    if outcome.log is None:
        raise Unavailable(f"the cohort list could not be linked: {outcome.problem} (a project needs its extract "
                          "built, and so its key, before a list can be linked)")
    result = parse_link_log(outcome.log)  # the pod's own refusal, if any, is raised here
    if not outcome.succeeded:
        raise Unavailable("the cohort list could not be linked: the cohort-link Job failed (deadline or error)")
    return result
