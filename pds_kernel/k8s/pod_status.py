"""What a pod's status says of its ``verify-extract`` init container (ADR 0011), for the hub and the gate.

Every pod that mounts a project's extract (a workspace, a Dask worker, a model check, a cohort
link) first runs the ``verify-extract`` init container (:func:`pds_kernel.k8s.pods.extract_check_container`): it
exits non-zero, with the reason in its termination message, when the extract it sees is not the
one the audit trail says was published, and Kubernetes never starts the pod's main container. A
workspace's notebook container also exits (:data:`~pds_kernel.extract.tree.REFUSED_EXIT`) before
it serves when its ``/data`` is not the tree that init container verified
(:func:`pds_kernel.extract.tree.refuse_unless_checked`), and so do a Dask worker's start and the
cohort-link Job's linker (:data:`CHECKED_STARTS`). Either way nothing runs on that extract,
but nothing tells the one who waits for it: a workspace pod (``restartPolicy: OnFailure``) is
restarted again and again, a Job's pod fails. :func:`failed_extract_check` reads that from the
pod's status, as the API server sends it (JSON, as KubeSpawner's reflector keeps it and as
:func:`pds_kernel.k8s.jobs.run_job` serialises the pods it lists); :class:`ExtractMismatch` is the
refusal the hub and the gate raise then, and the audit entry they write
(``extract.mount_refused``).

A workspace that was running when its pod found its extract changed (the notebook's liveness
probe, :mod:`pds_kernel.extract.pod_watch`, wrote the refusal in its termination message and had
the kubelet kill it; its restart refused the tree) is no refusal of a spawn: the hub stops it and
writes :func:`stopped_on_change`. :func:`extract_refusal` says which container refused and at
which run, for the hub's audit of Dask worker pods (:mod:`pds_kernel.k8s.worker_refusals`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..events import AuditEvent, Outcome
from ..extract.mount_check import ExtractRefused, latest_publication
from ..extract.mount_watch import CHANGED_CAUSE, REPUBLISHED_CAUSE
from .pods import (
    COHORT_LINK_CONTAINER,
    DASK_WORKER_CONTAINER,
    EXTRACT_BUILD_ANNOTATION,
    EXTRACT_CHECK_CONTAINER,
    NOTEBOOK_CONTAINER,
)

#: What the researcher (or the model's checker) is told; the pod's own message goes to the audit trail.
MISMATCH = ("the project's extract does not match its publication; an administrator must re-publish it "
            "or run `pds extract verify`")
#: what the audit entry keeps of the pod's termination message (written by the pod: only recorded)
MAX_MESSAGE = 400
#: The audit reason of a running workspace stopped because its pod found its extract changed
#: (:mod:`pds_kernel.extract.pod_watch`); the researcher's next start is refused by ``verify-extract``.
CHANGED_WHILE_RUNNING = ("the extract it mounts changed while the workspace ran (its pod found a file written, "
                         "replaced, added or removed since its start's check); its next start is refused until an "
                         "administrator re-publishes the extract or runs `pds extract verify`")
#: The audit reason of the same stop when the refusal came from a container where the researcher's
#: code runs (the notebook: its extract watch writes the refusal there, but so could her code), not
#: from ``verify-extract``: a report the next start's ``verify-extract`` confirms or not.
CHANGED_WHILE_RUNNING_REPORTED = (
    "the workspace's notebook container reported the extract it mounts changed while it ran (its extract "
    "watch writes that report, but the researcher's code runs in the same container and could write it "
    "too): not confirmed until its next start's verify-extract refuses the extract, or `pds extract "
    "verify` finds it changed; if the extract is intact, the next start works")
#: containers whose start compares their ``/data`` with what ``verify-extract`` checked
#: (:func:`~pds_kernel.extract.tree.refuse_unless_checked`, :func:`~pds_kernel.extract.tree.require_checked`)
CHECKED_STARTS = (NOTEBOOK_CONTAINER, DASK_WORKER_CONTAINER, COHORT_LINK_CONTAINER)


#: a pod's name (a DNS subdomain)
POD_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
#: a pod's uid (the API server's UUID)
POD_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: what a message written by a pod may not carry into an audit entry, a log line or a page
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

#: how a container's termination message begins when it refused the extract (written in
#: ``/dev/termination-log`` by :func:`~pds_kernel.extract.tree.refuse_to_start`)
REFUSAL_PREFIX = "the project's extract is refused"


@dataclass(frozen=True)
class Refusal:
    """Which container of a pod refused the extract, how (its ``terminated`` state), and at which
    run: the container's restart count when that run ended (the kubelet reports an ended run as
    ``state`` at count *n*, then as ``lastState`` at *n + 1* once it restarted it)."""

    container: str
    terminated: dict[str, Any]
    run: int


def _terminated(statuses, names, refused) -> Refusal | None:
    for container in statuses if isinstance(statuses, list) else []:
        if not isinstance(container, Mapping) or container.get("name") not in names:
            continue
        count = container.get("restartCount")
        count = count if isinstance(count, int) and count >= 0 else 0
        for key, run in (("state", count), ("lastState", max(count - 1, 0))):
            state = container.get(key)
            terminated = state.get("terminated") if isinstance(state, Mapping) else None
            if isinstance(terminated, Mapping) and refused(terminated):
                return Refusal(str(container["name"]), dict(terminated), run)
    return None


def _start_refused(terminated: Mapping[str, Any]) -> bool:
    """A container refused its ``/data``: its start (:func:`~pds_kernel.extract.tree.refuse_unless_checked`,
    exit :data:`~pds_kernel.extract.tree.REFUSED_EXIT`), or its liveness probe
    (:mod:`pds_kernel.extract.pod_watch`), which writes the same message before the kubelet kills the
    container (exit 137 or 143: the signal's)."""
    code = terminated.get("exitCode")
    return (isinstance(code, int) and code != 0
            and str(terminated.get("message") or "").startswith(REFUSAL_PREFIX))


def extract_refusal(pod: Mapping[str, Any] | None) -> Refusal | None:
    """What :func:`failed_extract_check` reads, with the container and its run."""
    status = pod.get("status") if isinstance(pod, Mapping) else None
    status = status if isinstance(status, Mapping) else {}
    inits, mains = status.get("initContainerStatuses"), status.get("containerStatuses")
    return (_terminated(inits, (EXTRACT_CHECK_CONTAINER,), lambda t: t.get("exitCode") != 0)
            or _terminated(inits, CHECKED_STARTS, _start_refused)
            or _terminated(mains, CHECKED_STARTS, _start_refused))


def failed_extract_check(pod: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``terminated`` state (``exitCode``, ``reason``, ``message``) of ``pod``'s (the API's JSON)
    ``verify-extract`` init container when it ended with a non-zero exit code, or of its notebook
    container (or a Dask worker's, or the cohort-link Job's linker: :data:`CHECKED_STARTS`) when
    its start refused the extract it was given (not the one ``verify-extract`` checked) or its
    liveness probe found it changed and had it killed, now or before the kubelet restarted it
    (``lastState``); None otherwise (yet)."""
    refusal = extract_refusal(pod)
    return refusal.terminated if refusal is not None else None


class ExtractMismatch(ExtractRefused):
    """A pod's ``verify-extract`` container refused the extract mounted in it: nothing runs on it."""

    def __init__(self, project: str, pod: str, terminated: Mapping[str, Any]):
        self.project, self.pod = project, pod
        code = terminated.get("exitCode")
        self.exit_code = code if isinstance(code, int) else None
        self.pod_message = pod_message(terminated)
        super().__init__(MISMATCH)

    def audit_event(self, actor: str, **details: Any) -> AuditEvent:
        """The ``extract.mount_refused`` entry of this refusal (``details``: what the pod was for)."""
        return AuditEvent(actor=actor, action="extract.mount_refused", target=f"project:{self.project}",
                          project=self.project, outcome=Outcome.DENIED,
                          details={**details, "pod": self.pod, "exit_code": self.exit_code,
                                   "pod_message": self.pod_message, "reason": MISMATCH})


def pod_message(terminated: Mapping[str, Any]) -> str:
    """What an audit entry keeps of a container's ``terminated`` state (written by the pod: only recorded)."""
    return str(terminated.get("message") or terminated.get("reason") or "")[:MAX_MESSAGE]


def clean_message(message: str) -> str:
    """A pod's termination message as an audit entry or a log line keeps it (bounded, one line)."""
    return _CONTROL.sub(" ", message)


def stopped_on_change(audit, user: str, server: str, pod: Mapping[str, Any],
                      terminated: Mapping[str, Any]) -> AuditEvent:
    """The ``workspace.stop`` entry of a running workspace whose pod (the API's JSON) found its
    extract changed (:func:`failed_extract_check` of its status): the cause the local hub's watcher
    writes (:data:`~pds_kernel.extract.mount_watch.CHANGED_CAUSE`), checked at the pod; or, when the
    audit trail's latest publication of the project is not the build the pod checked (its
    :data:`~pds_kernel.k8s.pods.EXTRACT_BUILD_ANNOTATION`), :data:`REPUBLISHED_CAUSE`: a publication
    removes the build it replaces, and the next start mounts the new one. ``confirmed`` says whether
    the refusal came from ``verify-extract`` (no researcher code runs there) or is the notebook
    container's report, which her code could have written (``reported_by``: the container)."""
    meta = pod.get("metadata") or {}
    mounted = (meta.get("annotations") or {}).get(EXTRACT_BUILD_ANNOTATION)
    try:
        latest = latest_publication(audit, server).details["build_id"]
    except ExtractRefused:
        latest = None
    refusal = extract_refusal(pod)
    reported_by = refusal.container if refusal is not None else ""
    confirmed = reported_by == EXTRACT_CHECK_CONTAINER  # the init container runs none of the researcher's code
    cause, reason = CHANGED_CAUSE, CHANGED_WHILE_RUNNING if confirmed else CHANGED_WHILE_RUNNING_REPORTED
    if isinstance(mounted, str) and mounted and latest not in (None, mounted):
        cause = REPUBLISHED_CAUSE
        reason = (f"a newer publication of the extract (build {latest}) removed the build the workspace "
                  f"mounted ({mounted[:40]}); its next start mounts the new one")
    code = terminated.get("exitCode")
    return AuditEvent(actor="hub", action="workspace.stop", target=f"user:{user}", project=server,
                      details={"server": server, "cause": cause, "reason": reason, "checked_at": "pod",
                               "reported_by": reported_by, "confirmed": confirmed,
                               "pod": str(meta.get("name") or ""), "exit_code": code if isinstance(code, int) else None,
                               "pod_message": pod_message(terminated)})
