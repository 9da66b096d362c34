"""The hub socket of a workspace: a Unix-socket listener that forwards to the hub API only the
requests a notebook server needs (:mod:`.hub_policy`), one request at a time, at the socket's rate
(:class:`~.http_bridge.HttpBridge`).

The first refused request gets ``403`` and the connection is closed (written only where the
stream of responses is quiet, see :mod:`.http_bridge`). Each refusal is reported to
``on_refusal(method, path, reason)`` (the spawner audits it), at most :data:`REPORTS_PER_MINUTE`
times a minute per socket; the rest are counted and reported with the next one, so a loop of
refused requests cannot flood the audit trail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from .http_bridge import HttpBridge
from .hub_policy import HubApiPolicy, RequestHead, RequestRefused, parse_head
from .rate import SocketThrottle

log = logging.getLogger(__name__)

#: Refusals reported (audited) per minute and socket; more are counted, not dropped silently.
REPORTS_PER_MINUTE = 20
#: the most characters of a refused path an audit entry keeps (the sandbox chose it: the trail is
#: read outside the workspace; tests/security/test_redteam12_logs.py)
AUDITED_PATH_CHARS = 40

RefusalCallback = Callable[[str, str, str, int], None]


class HubApiBridge(HttpBridge):
    """:class:`~.http_bridge.HttpBridge` for the hub API, with its request filter (see module doc)."""

    label = "hub"

    def __init__(self, unix_path: str | Path, host: str, port: int, policy: HubApiPolicy,
                 on_refusal: RefusalCallback | None = None, throttle: SocketThrottle | None = None) -> None:
        super().__init__(unix_path, host, port, throttle=throttle)
        self.policy = policy
        self.on_refusal = on_refusal
        self._window_start = 0.0
        self._reported = 0
        self._suppressed = 0

    def check(self, raw: bytes) -> RequestHead:
        head = parse_head(raw)
        self.policy.check(head)
        return head

    def report(self, refused: RequestRefused) -> None:
        super().report(refused)
        if self.on_refusal is None:
            return
        now = time.monotonic()
        if now - self._window_start >= 60:
            self._window_start, self._reported = now, 0
        if self._reported >= REPORTS_PER_MINUTE:
            self._suppressed += 1
            return
        self._reported += 1
        suppressed, self._suppressed = self._suppressed, 0
        try:
            self.on_refusal(refused.method, refused.path[:AUDITED_PATH_CHARS], refused.reason, suppressed)
        except Exception:  # the refusal stands even if it cannot be reported; say so loudly
            log.exception("%s: could not report a refused request", self)

    def __repr__(self) -> str:
        return f"HubApiBridge({self.unix_path} -> {self.host}:{self.port}, user {self.policy.user})"
