"""Why a workspace's notebook container ended, read from its pod's status, for the hub's audit.

The kubelet restarts a workspace pod's notebook container whenever it ends (``restartPolicy:
OnFailure``): killed out of memory, exited, or killed because its liveness probe (the extract
watch, :mod:`pds_kernel.extract.pod_watch`) failed or did not answer in time. Each time the
researcher's kernels die; JupyterHub, which sees only a server that answers again, says nothing.
The extract refusal (:func:`~pds_kernel.k8s.pod_status.failed_extract_check`) has its own path and
keeps precedence; every other end is read here:

* :func:`notebook_end`: the notebook container's ended run, from its ``state`` (ended, not yet
  restarted) or ``lastState`` (restarted), with its cause in plain words (:func:`cause_of`);
* :class:`RestartLog`: one server's ends as the hub saw them, each (pod uid, run) counted once,
  and whether they make a crash loop (``restart_limit`` within ``restart_window_seconds`` of
  :class:`~pds_kernel.k8s.config.K8sConfig`);
* :func:`restart_event`, :func:`ended_event`, :func:`crash_loop_event`: the audit entries
  (``workspace.restart``, ``workspace.stop``) and :func:`notice`, what the researcher is told;
  :func:`notice_of_entry` builds the same sentence again from such an entry's recorded fields, so
  a hub that starts again (:meth:`pds_kernel.hub.notices.WorkspaceNotices.seed`) still tells it.

The pod's status is input. The kubelet writes ``reason``, ``exitCode`` and ``finishedAt``, but the
termination ``message`` is whatever the container wrote in ``/dev/termination-log``: the
researcher's own processes may write there. So only validated fields are used: the reason must be
a word, the exit code an integer, the time an RFC 3339 instant, the pod's name and uid their
formats, the memory limit a quantity; the message goes to the audit entry only, cut to
:data:`~pds_kernel.k8s.pod_status.MAX_MESSAGE` characters without control characters, and never to
the cause or the researcher's page. The researcher can still choose how their own notebook ends
(exit with any code, write a message): that only changes how their own restart is described, and
every end is audited all the same. Pure: no cluster, no audit trail.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..events import AuditEvent, Outcome
from ..extract.pod_watch import UNFINISHED_PREFIX
from .pod_status import POD_NAME, POD_UID, clean_message, pod_message
from .pods import NOTEBOOK_CONTAINER, watch_deadline

#: the kubelet's reason of a container killed for its memory limit
OOM_REASON = "OOMKilled"
#: the exit codes of a container the kubelet killed (SIGKILL, SIGTERM)
KILLED_EXITS = (137, 143)
#: what the kubelet writes as a reason: one word
_REASON = re.compile(r"[A-Za-z]{1,40}")
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_QUANTITY = re.compile(r"([0-9]{1,12})(Ki|Mi|Gi|Ti|k|M|G|T)?")
_UNITS = {"Ki": "KiB", "Mi": "MiB", "Gi": "GiB", "Ti": "TiB", "k": "kB", "M": "MB", "G": "GB", "T": "TB",
          None: "bytes"}
#: a memory limit as :func:`memory_limit` writes it for people
_LIMIT = re.compile(r"[0-9]{1,12} (?:KiB|MiB|GiB|TiB|kB|MB|GB|TB|bytes)")
#: the ``cause_kind`` of an end: what the researcher is advised to do depends on it
OUT_OF_MEMORY, WATCH_TIMEOUT, WATCH_UNFINISHED, EXITED = "memory", "watch-timeout", "watch-unfinished", "exited"
ADVICE = {
    OUT_OF_MEMORY: "ask the project's data manager for a larger profile (more memory), or use less: lazy "
                   "polars frames, smaller Dask partitions",
    WATCH_TIMEOUT: "the storage of the project's extract answered too slowly to be checked; if it happens "
                   "again, ask an administrator (workspace.extractWatchTimeoutSeconds)",
    WATCH_UNFINISHED: "the storage of the project's extract answered too slowly to be checked; if it happens "
                      "again, ask an administrator (workspace.extractWatchTimeoutSeconds)",
    EXITED: "start it again; if it keeps ending, an administrator can read why in the audit trail "
            "(pds audit show --action workspace.restart)",
}
#: the uids whose counts a :class:`RestartLog` keeps (one per start of the server; a few suffice)
KEPT_PODS = 8
#: the cause of the ``workspace.stop`` that ends a crash loop (:data:`pds_kernel.hub.notices.STOP_NOTICES`)
CRASH_LOOP_CAUSE = "restarted repeatedly"


@dataclass(frozen=True)
class NotebookEnd:
    """One ended run of a workspace pod's notebook container (validated fields only)."""

    pod: str
    uid: str
    run: int  #: the container's restart count when the run ended
    restarted: bool  #: the kubelet restarted it (read from ``lastState``), or not yet (``state``)
    reason: str  #: the kubelet's word ("" when missing or not a word)
    exit_code: int | None
    finished_at: str  #: RFC 3339, "" when missing or malformed
    message: str  #: the termination message, bounded and on one line: only recorded
    cause: str  #: in plain words, from the validated fields only
    cause_kind: str
    memory_limit: str = ""  #: the notebook container's limit, for people ("4 GiB"), or ""
    watch_timeout: int = 0  #: the extract watch's liveness timeout the cause was read against


def memory_limit(pod: Mapping[str, Any]) -> str:
    """The notebook container's memory limit in the pod's spec, for people ("8 GiB"), or ""."""
    spec = pod.get("spec") if isinstance(pod, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    for container in containers if isinstance(containers, list) else []:
        if isinstance(container, Mapping) and container.get("name") == NOTEBOOK_CONTAINER:
            limits = (container.get("resources") or {}).get("limits") if isinstance(container.get("resources"),
                                                                                     Mapping) else None
            value = limits.get("memory") if isinstance(limits, Mapping) else None
            match = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
            if match is None:
                return ""
            number, unit = int(match.group(1)), match.group(2)
            if unit == "Mi" and number >= 1024 and number % 1024 == 0:
                number, unit = number // 1024, "Gi"
            return f"{number} {_UNITS[unit]}"
    return ""


def cause_of(reason: str, exit_code: int | None, message: str, *, limit: str,
             watch_timeout: int) -> tuple[str, str]:
    """``(cause, cause_kind)`` of an end: out of memory (the kubelet's reason), the extract watch's
    own deadline (its message: :data:`~pds_kernel.extract.pod_watch.UNFINISHED_PREFIX`), a kill
    without any message (the liveness probe's timeout: the kubelet killed it), or the exit code."""
    if reason == OOM_REASON:
        return f"out of memory (limit {limit})" if limit else "out of memory", OUT_OF_MEMORY
    if message.startswith(UNFINISHED_PREFIX):
        return (f"the extract watch could not finish its check of /data within "
                f"{watch_deadline(watch_timeout)} s (slow storage or a loaded node)"), WATCH_UNFINISHED
    if exit_code in KILLED_EXITS and not message:
        return f"the extract watch did not answer within {watch_timeout} s (liveness probe timeout)", WATCH_TIMEOUT
    if exit_code is None:
        return "ended without an exit code", EXITED
    return f"exited with code {exit_code}", EXITED


def notebook_end(pod: Mapping[str, Any] | None, *, watch_timeout: int) -> NotebookEnd | None:
    """The notebook container's latest ended run in ``pod`` (the API's JSON, as KubeSpawner's
    reflector keeps it): its ``state`` when it ended and was not restarted yet, else its
    ``lastState``; None when it never ended, or when the pod lacks a valid name or uid."""
    if not isinstance(pod, Mapping):
        return None
    meta, status = pod.get("metadata"), pod.get("status")
    if not isinstance(meta, Mapping) or not isinstance(status, Mapping):
        return None
    name, uid = meta.get("name"), meta.get("uid")
    if not (isinstance(name, str) and POD_NAME.fullmatch(name) and isinstance(uid, str) and POD_UID.fullmatch(uid)):
        return None
    statuses = status.get("containerStatuses")
    for container in statuses if isinstance(statuses, list) else []:
        if not isinstance(container, Mapping) or container.get("name") != NOTEBOOK_CONTAINER:
            continue
        count = container.get("restartCount")
        count = count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < 2**31 else 0
        for key, run, restarted in (("state", count, False), ("lastState", count - 1, True)):
            state = container.get(key)
            ended = state.get("terminated") if isinstance(state, Mapping) else None
            if isinstance(ended, Mapping) and run >= 0:
                return _end(pod, name, uid, run, restarted, ended, watch_timeout)
        return None
    return None


def _end(pod, name: str, uid: str, run: int, restarted: bool, ended: Mapping[str, Any],
         watch_timeout: int) -> NotebookEnd:
    reason = ended.get("reason")
    reason = reason if isinstance(reason, str) and _REASON.fullmatch(reason) else ""
    code = ended.get("exitCode")
    code = code if isinstance(code, int) and not isinstance(code, bool) and -2**31 <= code < 2**31 else None
    finished = ended.get("finishedAt")
    finished = finished if isinstance(finished, str) and _INSTANT.fullmatch(finished) else ""
    raw = ended.get("message")
    message = clean_message(pod_message({"message": raw if isinstance(raw, str) else ""}))
    limit = memory_limit(pod)
    cause, kind = cause_of(reason, code, message, limit=limit, watch_timeout=watch_timeout)
    return NotebookEnd(pod=name, uid=uid, run=run, restarted=restarted, reason=reason, exit_code=code,
                       finished_at=finished, message=message, cause=cause, cause_kind=kind,
                       memory_limit=limit, watch_timeout=watch_timeout)


class RestartLog:
    """One server's notebook ends as the hub saw them (one per start: :meth:`reset`).

    :meth:`observe` counts an end once per (pod uid, run), whether the hub read it before or after
    the kubelet's restart; a pod read for the first time after the log's start counts every run it
    ended (a new pod of the same name is a new uid: its count starting again at 0 hides nothing),
    except when the log did not see the server start (the hub restarted while it ran): then only
    the latest end counts, so that ends before the hub's restart do not make a crash loop now.
    :meth:`looping`: ``limit`` ends within the last ``window`` seconds.
    """

    def __init__(self, limit: int, window: float, *, saw_start: bool = False):
        self.limit, self.window = limit, window
        self.saw_start = saw_start
        self._runs: dict[str, int] = {}  #: pod uid -> the highest run counted
        self._times: deque[float] = deque(maxlen=limit)
        self.stopped = False  #: the crash loop was acted on (once per start)

    def reset(self) -> None:
        """The server starts (again): nothing of before counts."""
        self._runs.clear()
        self._times.clear()
        self.saw_start, self.stopped = True, False

    def observe(self, end: NotebookEnd, now: float) -> int:
        """Count ``end`` seen at ``now`` (monotonic seconds): how many ends it adds (0: counted before)."""
        last = self._runs.get(end.uid)
        if last is not None and end.run <= last:
            return 0
        if last is None:
            added = end.run + 1 if self.saw_start else 1
            while len(self._runs) >= KEPT_PODS:
                self._runs.pop(next(iter(self._runs)))
        else:
            added = end.run - last
        self._runs[end.uid] = end.run
        for _ in range(min(added, self.limit)):
            self._times.append(now)
        return added

    def looping(self, now: float) -> bool:
        """``limit`` ends within ``window`` seconds before ``now``."""
        return len(self._times) >= self.limit and now - self._times[0] <= self.window


def _details(server: str, end: NotebookEnd) -> dict[str, Any]:
    return {"server": server, "pod": end.pod, "pod_uid": end.uid, "restarts": end.run + 1 if end.restarted else end.run,
            "reason": end.reason, "exit_code": end.exit_code, "finished_at": end.finished_at, "cause": end.cause,
            "cause_kind": end.cause_kind, "memory_limit": end.memory_limit, "watch_timeout": end.watch_timeout,
            "pod_message": end.message}


def restart_event(user: str, server: str, end: NotebookEnd, added: int) -> AuditEvent:
    """``workspace.restart``: the kubelet restarted the notebook (``added`` > 1: the hub's polls
    missed some restarts in between; their causes are not known)."""
    return AuditEvent(actor="hub", action="workspace.restart", target=f"user:{user}", project=server,
                      outcome=Outcome.FAILED, details={**_details(server, end), "unseen_restarts": max(added - 1, 0)})


def ended_event(user: str, server: str, end: NotebookEnd) -> AuditEvent:
    """``workspace.stop``: the notebook ended and the hub saw it before any restart (JupyterHub then
    stops the server)."""
    return AuditEvent(actor="hub", action="workspace.stop", target=f"user:{user}", project=server,
                      details={**_details(server, end), "checked_at": "pod"})


def duration(seconds: float) -> str:
    """``600`` → "10 minutes"."""
    seconds = int(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def crash_loop_event(user: str, server: str, end: NotebookEnd, limit: int, window: float) -> AuditEvent:
    """``workspace.stop`` of a server whose notebook was restarted ``limit`` times within ``window``."""
    reason = f"restarted {limit} times in {duration(window)} (the latest: {end.cause})"
    return AuditEvent(actor="hub", action="workspace.stop", target=f"user:{user}", project=server,
                      details={**_details(server, end), "cause": CRASH_LOOP_CAUSE, "reason": reason,
                               "latest_cause": end.cause, "latest_reason": end.reason, "checked_at": "pod",
                               "restart_limit": limit,
                               "restart_window": int(window)})


def notice(server: str, end: NotebookEnd, *, stopped: bool, limit: int = 0, window: float = 0) -> str:
    """What the researcher's home page says (built from validated fields only)."""
    advice = ADVICE[end.cause_kind]
    if stopped and limit:
        return (f"Your workspace {server} was restarted {limit} times in {duration(window)} and was stopped: "
                f"{end.cause}. Its kernels ended; {advice}.")
    when = f" at {end.finished_at.replace('T', ' ').replace('Z', ' UTC')}" if end.finished_at else ""
    if stopped:
        return f"Your workspace {server} stopped{when}: {end.cause}. Its kernels ended; {advice}."
    return f"Your workspace {server} was restarted{when}: {end.cause}. Its kernels ended; {advice}."


def _bounded_int(value: object, low: int, high: int) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else None


def notice_of_entry(action: str, server: str, details: object) -> str | None:
    """:func:`notice` again, from a ``workspace.restart`` or ``workspace.stop`` entry that
    :func:`restart_event`, :func:`ended_event` or :func:`crash_loop_event` wrote; None for any
    other entry. The entry's fields are input (whoever writes the database could have written
    them): each is validated as :func:`notebook_end` validates the pod's, the cause is worked out
    again by :func:`cause_of` (the recorded text is never shown), and the termination message only
    decides between causes, as it does live."""
    if action not in ("workspace.restart", "workspace.stop") or not isinstance(details, Mapping):
        return None
    if details.get("cause_kind") not in ADVICE or not isinstance(details.get("pod_uid"), str):
        return None
    crash_loop = action == "workspace.stop" and details.get("cause") == CRASH_LOOP_CAUSE
    reason = details.get("latest_reason" if crash_loop else "reason")  # a crash loop's "reason" is its sentence
    code, finished = details.get("exit_code"), details.get("finished_at")
    limit, message = details.get("memory_limit"), details.get("pod_message")
    watch_timeout = _bounded_int(details.get("watch_timeout"), 1, 86_400)
    if watch_timeout is None:
        return None
    reason = reason if isinstance(reason, str) and _REASON.fullmatch(reason) else ""
    cause, kind = cause_of(reason, _bounded_int(code, -2**31, 2**31 - 1), message if isinstance(message, str) else "",
                           limit=limit if isinstance(limit, str) and _LIMIT.fullmatch(limit) else "",
                           watch_timeout=watch_timeout)
    end = NotebookEnd(pod="", uid="", run=0, restarted=action == "workspace.restart", reason=reason,
                      exit_code=None, message="", cause=cause, cause_kind=kind,
                      finished_at=finished if isinstance(finished, str) and _INSTANT.fullmatch(finished) else "")
    if action == "workspace.restart":
        return notice(server, end, stopped=False)
    if not crash_loop:
        return notice(server, end, stopped=True)
    restarts = _bounded_int(details.get("restart_limit"), 1, 1_000)
    window = _bounded_int(details.get("restart_window"), 1, 7 * 86_400)
    if restarts is None or window is None:
        return None
    return notice(server, end, stopped=True, limit=restarts, window=window)
