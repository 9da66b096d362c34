"""What the hub has to tell a researcher about their workspaces, shown on their home page.

A workspace's notebook can end without the researcher asking: the kubelet restarted it (out of
memory, exited, its extract watch unanswered), or the hub stopped it after repeated restarts
(:mod:`pds_kernel.k8s.restarts`, :class:`pds_kernel.hub.kube_spawner.PdsKubeSpawner`). JupyterHub
forgets a stopped server's spawner and shows nothing of why it stopped; the hub keeps here the
latest notice per (user, server), until that server starts again, and the home page shows it
(:func:`pds_kernel.hub.pages.make_template_vars`, ``templates/home.html``: Jinja escapes it).

In memory, per hub process, bounded (:data:`MAX_NOTICES`, oldest dropped): a notice is a courtesy,
the audit trail is the record (``workspace.restart``, ``workspace.stop``); a hub restart forgets it.
"""

from __future__ import annotations

import threading

#: notices kept at most (a few per active user)
MAX_NOTICES = 10_000
#: the longest notice kept (they are built by the hub from validated fields; this is a last bound)
MAX_LENGTH = 600


class WorkspaceNotices:
    """The latest notice of each (user, server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notices: dict[tuple[str, str], str] = {}

    def tell(self, user: str, server: str, text: str) -> None:
        with self._lock:
            self._notices.pop((user, server), None)
            while len(self._notices) >= MAX_NOTICES:
                self._notices.pop(next(iter(self._notices)))
            self._notices[user, server] = text[:MAX_LENGTH]

    def clear(self, user: str, server: str) -> None:
        with self._lock:
            self._notices.pop((user, server), None)

    def for_user(self, user: str) -> dict[str, str]:
        """Server name → notice, of ``user`` only."""
        with self._lock:
            return {server: text for (owner, server), text in self._notices.items() if owner == user}
