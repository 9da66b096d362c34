"""The hub's KubeSpawner on Kubernetes: a workspace pod whose extract is refused stops the spawn at once.

A workspace pod runs the ``verify-extract`` init container before its notebook
(:func:`pds_kernel.k8s.pods.extract_check_container`, ADR 0011). When it refuses the mounted
extract (the files changed after the hub checked the audit trail, the ``extract`` link points
elsewhere), the kubelet restarts it with a growing back-off (the pod's ``restartPolicy`` is
``OnFailure``) and the pod stays ``Pending``: KubeSpawner's wait for a running pod
(``is_pod_running``, polled with ``exponential_backoff`` by ``KubeSpawner._start``) would wait
out the whole ``start_timeout`` and tell the researcher only that the pod did not start.

:class:`PdsKubeSpawner` reads the pod's status at each of those polls: once the init container
has ended with a non-zero exit code (:func:`pds_kernel.k8s.pod_status.failed_extract_check`), it
writes ``extract.mount_refused`` to the audit trail (with the pod's termination message) and
raises :class:`~pds_kernel.k8s.pod_status.ExtractMismatch`: JupyterHub ends the spawn there,
deletes the pod (``Spawner.stop``) and shows the researcher "Spawn failed: the project's extract
does not match its publication; an administrator must re-publish it or run `pds extract verify`".

While the server runs, its notebook container's liveness probe compares ``/data`` with what
``verify-extract`` checked (:mod:`pds_kernel.extract.pod_watch`): on a change the probe writes the
refusal in the container's termination message, the kubelet kills the notebook, and its restart
refuses the changed tree. KubeSpawner's ``poll`` would then call the
server running (the pod stays ``Running``, its notebook in back-off) or stopped without a word.
:meth:`PdsKubeSpawner.poll` reads the kill, or that refusal, in the pod's status (the same
:func:`~pds_kernel.k8s.pod_status.failed_extract_check`; a ``verify-extract`` that fails when the
pod's sandbox is re-created counts too), writes ``workspace.stop`` with ``cause: extract changed``
(as the local hub's watcher), once per pod, and reports the server stopped: JupyterHub removes its
route and stops it (the pod is deleted). Its next start is refused by ``verify-extract``. When the
audit trail's latest publication is not the build the pod checked, the cause is ``extract
republished`` instead (a publication removes the build it replaces; the next start mounts the new
one).

Every other end of the notebook container is read from the pod's status too
(:mod:`pds_kernel.k8s.restarts`): out of memory, an exit, the extract watch unanswered or unable to
finish in time. The refusal keeps precedence. :meth:`PdsKubeSpawner.poll` audits each end once per
(pod uid, run): ``workspace.restart`` with its cause when the kubelet restarted the notebook (the
server runs on, its kernels lost), ``workspace.stop`` when the hub reads it ended before any
restart (KubeSpawner then reports the server stopped). ``restart_limit`` restarts within
``restart_window`` seconds (the chart's ``workspace.restartLimit``, ``workspace.restartWindowSeconds``)
are a crash loop: the server is stopped, audited ``workspace.stop`` with ``cause: restarted
repeatedly``. Each time the researcher's home page says why (:mod:`pds_kernel.hub.notices`).

The hub runs each workspace as its own hub user, ``<person>@<project>`` (ADR 17): every entry and
notice names the person (:attr:`PdsKubeSpawner.person`), as the home page and the audit trail do.
KubeSpawner names the pod from the hub user (``jupyter-{user_server}``, its ``safe`` slugs: the
``@`` is escaped and a hash keeps two names apart); the home claim keeps its name of before
(``pds_kernel.hub.kubernetes``, set in the pre-spawn hook).
"""

from __future__ import annotations

import time

from kubespawner import KubeSpawner
from traitlets import Any, Integer

from ..extract.tree import REFUSED_EXIT
from ..k8s import restarts
from ..k8s.pod_status import ExtractMismatch, failed_extract_check, stopped_on_change
from ..workspace_names import person_of

#: what ``poll`` answers for a server stopped after a crash loop (JupyterHub: "exited with code 1")
RESTARTED_EXIT = 1


class PdsKubeSpawner(KubeSpawner):
    """KubeSpawner with the PDS refusal of a workspace pod whose extract check failed, and the audit
    of every other end of its notebook container (a crash loop stops the server)."""

    context = Any(None, allow_none=True, config=True,
                  help="the hub's HubContext (pds_kernel.hub.common), set by pds_kernel.hub.kubernetes.configure")
    restart_limit = Integer(3, config=True, help="notebook restarts within restart_window that stop the server")
    restart_window = Integer(600, config=True, help="seconds (see restart_limit)")
    extract_watch_timeout = Integer(30, config=True, help="the liveness probe's timeoutSeconds (said in causes)")
    _change_recorded: tuple = (None, None)
    _restart_log: restarts.RestartLog | None = None

    @property
    def person(self) -> str:
        """The person whose workspace this is (the hub runs it as her workspace user)."""
        return person_of(self.user.name)

    @property
    def restart_log(self) -> restarts.RestartLog:
        """This server's notebook ends as this hub process saw them (new when the hub restarted)."""
        if self._restart_log is None:
            self._restart_log = restarts.RestartLog(self.restart_limit, self.restart_window)
        return self._restart_log

    def start(self):
        """KubeSpawner's start (its future, which its ``progress`` holds on to); what was counted and
        told of the server's previous run is forgotten."""
        self.restart_log.reset()
        if self.context is not None:
            self.context.notices.clear(self.person, self.name or "")
        return super().start()

    def is_pod_running(self, pod):
        """KubeSpawner's test, after refusing (audited) a pod whose ``verify-extract`` container failed,
        while a spawn waits for it. ``poll`` asks too, for a running server: a notebook that would
        not restart on a changed extract is then only not running (no refusal raised in a poll)."""
        terminated = failed_extract_check(pod)
        if terminated is not None and self.pending == "spawn":
            name = ((pod or {}).get("metadata") or {}).get("name") or self.pod_name
            refusal = ExtractMismatch(self.name or "", str(name), terminated)
            if self.context is not None:  # without one (never in configure's hub) it is refused all the same
                self.context.record(refusal.audit_event(self.person, workload="workspace",
                                                        server=self.name or ""))
            raise refusal
        return super().is_pod_running(pod)

    async def poll(self):
        """``None`` while the server runs; :data:`~pds_kernel.extract.tree.REFUSED_EXIT` once its pod
        found its extract changed (audited once per pod); :data:`RESTARTED_EXIT` once its notebook
        was restarted ``restart_limit`` times within ``restart_window`` seconds (each end audited
        once); else KubeSpawner's answer."""
        if not self.pending:
            await self._start_watching_pods()
            pod = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
            terminated = failed_extract_check(pod)
            if terminated is not None:
                self._record_change(pod, terminated)
                return REFUSED_EXIT
            if self._record_ends(pod):
                return RESTARTED_EXIT
        return await super().poll()

    def _record_ends(self, pod) -> bool:
        """Audit the notebook's end not audited yet (:mod:`pds_kernel.k8s.restarts`) and tell the
        researcher; True once the ends make a crash loop (the server is then reported stopped)."""
        log = self.restart_log
        if log.stopped:  # JupyterHub polls again when it learns the server stopped
            return True
        end = restarts.notebook_end(pod, watch_timeout=self.extract_watch_timeout)
        if end is None:
            return False
        now = time.monotonic()
        added = log.observe(end, now)
        if not added:
            return False
        server, user = self.name or "", self.person
        looping = end.restarted and log.looping(now)
        event = restarts.restart_event(user, server, end, added) if end.restarted else \
            restarts.ended_event(user, server, end)
        self.log.warning("%s: the notebook container ended (%s)%s", self._log_name, end.cause,
                         "; the kubelet restarted it" if end.restarted else "")
        if self.context is not None:  # each entry also tells the researcher (pds_kernel.hub.notices)
            self.context.record(event)
            if looping:
                self.context.record(restarts.crash_loop_event(user, server, end, log.limit, log.window))
        if looping:
            log.stopped = True
            self.log.warning("%s: restarted %s times in %s s; stopping it", self._log_name, log.limit, log.window)
        return looping

    def _record_change(self, pod, terminated) -> None:
        meta = (pod or {}).get("metadata") or {}
        key = (meta.get("uid"), meta.get("name"))
        if key == self._change_recorded:  # JupyterHub polls again when it learns the server stopped
            return
        self._change_recorded = key
        self.log.warning("%s: the extract changed while the server ran; stopping it", self._log_name)
        if self.context is not None:
            self.context.record(stopped_on_change(self.context.runtime.audit, self.person, self.name or "",
                                                  pod or {}, terminated))
