"""What the hub has to tell a researcher about their workspaces, shown on their home page.

A workspace can end without the researcher asking: the hub stopped it (her access ended, its home
went over its quota, its extract changed or was re-published, its notebook was restarted too often:
:mod:`pds_kernel.hub.expiry`, :mod:`pds_kernel.hub.common`, :class:`pds_kernel.hub.kube_spawner.PdsKubeSpawner`),
or on Kubernetes the kubelet restarted its notebook (out of memory, exited, its extract watch
unanswered: :mod:`pds_kernel.k8s.restarts`). JupyterHub forgets a stopped server's spawner and shows
nothing of why it stopped; the hub keeps here the latest notice per (user, server), until that
server starts again, and the home page shows it (:func:`pds_kernel.hub.pages.make_template_vars`,
``templates/home.html``: Jinja escapes it).

A stop's notice is a fixed sentence per cause of its ``workspace.stop`` entry (:data:`STOP_NOTICES`),
seen as the hub writes the entry (:meth:`HubContext.record <pds_kernel.hub.common.HubContext.record>`)
and, when a hub starts, read back from the audit trail's newest entries (:meth:`WorkspaceNotices.seed`:
the last :data:`NOTICE_DAYS` days), so a hub restart or upgrade does not forget why a workspace
stopped; entries another process writes (`pds hub sync`) are read at the hub's next membership check
(:meth:`WorkspaceNotices.catch_up`, :class:`pds_kernel.hub.expiry.MembershipWatcher`). On
Kubernetes a notebook's end (``workspace.restart``, or a ``workspace.stop`` read from the pod) tells
the richer sentence of :func:`pds_kernel.k8s.restarts.notice_of_entry`, built again from the entry's
validated fields, live and at a hub's start alike.
Bounded (:data:`MAX_NOTICES`, oldest dropped): a notice is a courtesy, the audit trail is the record.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ..extract.mount_watch import CHANGED_CAUSE, REPUBLISHED_CAUSE
from ..k8s.restarts import CRASH_LOOP_CAUSE, notice_of_entry

#: notices kept at most (a few per active user)
MAX_NOTICES = 10_000
#: the longest notice kept (they are built by the hub from validated fields; this is a last bound)
MAX_LENGTH = 600
#: stops older than this are not told (a hub start reads the audit trail this far back)
NOTICE_DAYS = 7
#: the newest entries of each action (:data:`ACTIONS`) a hub start reads
SEED_ENTRIES = 5_000
#: the audit actions that change a workspace's notice
ACTIONS = ("workspace.start", "workspace.stop", "workspace.restart")
#: a server name the page may show (a project id: :data:`pds_kernel.registry.names.PROJECT_ID`)
_SERVER = re.compile(r"[a-z][a-z0-9-]{1,38}[a-z0-9]")

#: What the home page says of a workspace the hub stopped, by the cause of its ``workspace.stop``
#: entry; a cause not listed (or a stop by its user) tells nothing.
STOP_NOTICES = {
    "access revoked": "the registry no longer lets you work in this project (your membership ended or was "
                      "revoked, the project was halted or closed, or your account was disabled). Ask the "
                      "project's data manager if this is a mistake",
    "home over quota": "your home in this project went over its size limit. Ask an administrator to free "
                       "space or raise the limit: a start is refused until then",
    CHANGED_CAUSE: "the project's extract changed while it ran (or its notebook reported so), so nothing more "
                   "was read from it. An administrator checks the extract (pds extract verify); if your next "
                   "start is refused, wait until it is published again",
    REPUBLISHED_CAUSE: "a newer version of the project's extract was published. Start it again to work "
                       "on the new version",
    CRASH_LOOP_CAUSE: "its notebook kept ending and was restarted too often (each cause is on record). "
                            "Start it again; if it keeps ending, ask an administrator",
}


def stop_notice(server: str, cause: object) -> str | None:
    """The home page's sentence for a stop of ``server`` by the hub with ``cause`` (None: none)."""
    text = STOP_NOTICES.get(cause) if isinstance(cause, str) else None
    return f"Your workspace {server} was stopped: {text}." if text else None


class WorkspaceNotices:
    """The latest notice of each (user, server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notices: dict[tuple[str, str], str] = {}
        self._read_to: int | None = None  #: the newest entry :meth:`seed` or :meth:`catch_up` read

    def tell(self, user: str, server: str, text: str) -> None:
        with self._lock:
            self._notices.pop((user, server), None)
            while len(self._notices) >= MAX_NOTICES:
                self._notices.pop(next(iter(self._notices)))
            self._notices[user, server] = text[:MAX_LENGTH]

    def clear(self, user: str, server: str) -> None:
        with self._lock:
            self._notices.pop((user, server), None)

    def observe(self, actor: str, action: str, target: str, server: str, details: object) -> None:
        """Keep, replace or drop the notice of (user, server) after an audit entry about that
        server: a start drops it; a restart of its notebook, or a stop by the hub (any actor but the
        user), tells the notebook's end (Kubernetes) or the fixed sentence of its cause
        (:data:`STOP_NOTICES`); any other stop drops it."""
        if action not in ACTIONS or not isinstance(target, str):
            return
        user = target.removeprefix("user:")
        if user == target or not isinstance(server, str) or not _SERVER.fullmatch(server):
            return
        cause = details.get("cause") if isinstance(details, Mapping) else None
        text = None
        if action != "workspace.start" and actor != user:
            text = notice_of_entry(action, server, details) or (
                stop_notice(server, cause) if action == "workspace.stop" else None)
        if action == "workspace.restart" and text is None:
            return  # an entry this hub cannot read again: the notice stays as it was
        if text:
            self.tell(user, server, text)
        else:
            self.clear(user, server)

    def seed(self, audit, now: datetime | None = None) -> None:
        """What a new hub process tells: the newest starts, stops and restarts of the audit trail,
        oldest first, from the last :data:`NOTICE_DAYS` days."""
        self._read(audit, None, (now or datetime.now(UTC)) - timedelta(days=NOTICE_DAYS))

    def catch_up(self, audit, now: datetime | None = None) -> None:
        """Read the starts, stops and restarts written since the last read, by this process or
        another (``pds hub sync``): the same notices as if this process had written them."""
        after = self._read_to
        if after is None:
            self.seed(audit, now)
        else:
            self._read(audit, after, (now or datetime.now(UTC)) - timedelta(days=NOTICE_DAYS))

    def _read(self, audit, after: int | None, since: datetime) -> None:
        entries = [e for action in ACTIONS
                   for e in audit.entries(action=action, limit=SEED_ENTRIES, newest=True, after=after)]
        for entry in sorted(entries, key=lambda e: e.seq):
            self._read_to = max(self._read_to or 0, entry.seq)
            try:
                written = datetime.fromisoformat(entry.time)
            except (TypeError, ValueError):
                continue
            if written.tzinfo is not None and written >= since:
                self.observe(entry.actor, entry.action, entry.target, entry.project, entry.details)
        if self._read_to is None:
            self._read_to = 0

    def for_user(self, user: str) -> dict[str, str]:
        """Server name → notice, of ``user`` only."""
        with self._lock:
            return {server: text for (owner, server), text in self._notices.items() if owner == user}
