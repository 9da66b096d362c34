"""The rate limit of the sockets the hub serves a workspace (``hub.sock``, ``gate.sock``,
``packages.sock``): a token bucket per socket, and one audit entry per workspace and window.

The 64 connections a socket serves at once bound what a workspace costs the hub in descriptors,
not in time: a kernel that opens and closes connections, or sends requests, in a tight loop kept
the hub's event loop (every user's pages, API and proxy) busy: 14,000 connections in 8 s on each
socket made the hub's own API answer in 0.44 s (90th percentile) instead of 0.01 s. Each socket now has a bucket of
``hub.socket_request_burst`` tokens, refilled at ``hub.socket_requests_per_second``; each new
connection takes one, and so does each further request on a kept-alive connection where the host
side reads requests. Past the bucket, a request is answered ``429`` with a ``Retry-After`` and its
connection closed (every served socket speaks HTTP; a plain byte forwarder, which cannot answer,
closes the connection at once).

Refusing is not free: a kernel that opens and closes connections in a loop made the hub spend its
time accepting and closing them (the hub's API still answered in 0.26 s, 90th percentile, with a
refusal per connection). So the sockets are served by :class:`PacedUnixServer`: after a refused
connection it closes those already waiting (:data:`BACKLOG` at most, unread) and accepts nothing
for :data:`REFUSAL_PAUSE` seconds; the rest of a flood fails to connect, at the sandbox's cost.

The refusals are audited once per workspace and :data:`WINDOW` (``workspace.socket.throttled``):
the first refusal of a window is recorded at once, with what was refused since the last record;
the others are counted, never dropped, and reported with the next window's first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds between two audit entries of one workspace's refusals.
WINDOW = 60.0
#: Seconds a served socket accepts nothing after it refused a connection (rate or connections).
REFUSAL_PAUSE = 0.25
#: Connections waiting to be accepted on a served socket (past them a client cannot connect).
BACKLOG = 32


class TokenBucket:
    """``burst`` tokens at most, ``rate`` more each second; :meth:`take` spends one if there is one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a rate limit needs a rate above 0 and a burst of at least 1 (got {rate}/s, "
                             f"burst {burst}): fix hub.socket_requests_per_second and hub.socket_request_burst")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def retry_after(self) -> int:
        """Whole seconds until the next token (at least 1): the ``Retry-After`` of a refusal."""
        self._refill()
        return max(1, math.ceil((1 - self._tokens) / self.rate))


#: record(details) writes the audit entry of a window (the spawner's ``workspace.socket.throttled``).
Recorder = Callable[[dict], None]


class ThrottleReport:
    """The refusals of one workspace's sockets: ``record`` is called at the first refusal of each
    :data:`WINDOW`, with the socket refused and the refusals of every socket since the last call."""

    def __init__(self, record: Recorder | None, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.record = record
        self.window = window
        self._clock = clock
        self._next = -math.inf  #: clock time from which the next refusal is recorded
        self._counted: dict[str, int] = {}

    def refused(self, socket_name: str, limit: TokenBucket, count: int = 1) -> None:
        self._counted[socket_name] = self._counted.get(socket_name, 0) + count
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.window
        counted, self._counted = self._counted, {}
        log.warning("workspace socket %s over its rate (%s/s, burst %d): refused %s since the last record",
                    socket_name, limit.rate, limit.burst, counted)
        if self.record is None:
            return
        try:
            self.record({"socket": socket_name, "refused": counted, "requests_per_second": limit.rate,
                         "burst": limit.burst, "window_seconds": self.window})
        except Exception:  # the refusal stands even if it cannot be recorded; say so loudly
            log.exception("could not record the refusals of socket %s", socket_name)


class SocketThrottle:
    """The bucket of one served socket, reporting to its workspace's :class:`ThrottleReport`."""

    def __init__(self, name: str, rate: float, burst: int, report: ThrottleReport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.bucket = TokenBucket(rate, burst, clock)
        self.report = report

    def allow(self) -> bool:
        """One more connection or request: ``False`` (reported) when the bucket is empty."""
        if self.bucket.take():
            return True
        if self.report is not None:
            self.report.refused(self.name, self.bucket)
        return False

    def retry_after(self) -> int:
        return self.bucket.retry_after()

    def count_refused(self, count: int) -> None:
        """``count`` connections closed unread (a flood's, waiting while the socket refused)."""
        if count and self.report is not None:
            self.report.refused(self.name, self.bucket, count)


def too_many_requests(retry_after: int, what: str = "this workspace's socket") -> bytes:
    """A complete ``429`` response that closes the connection."""
    body = (f"too many requests on {what}: retry in {retry_after} s (the platform limits the rate "
            "of requests a workspace makes to the host's services)\n").encode()
    return (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Retry-After: " + str(retry_after).encode() + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body)


#: accept(reader, writer, throttled) -> whether the connection was taken without a refusal.
AcceptCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bool], bool]


class PacedUnixServer:
    """Accept connections on the listening Unix socket ``sock`` and hand each to ``accept`` with
    whether it came past the ``throttle``'s rate; after a refused one (``accept`` says so), close
    the connections waiting and accept nothing for :data:`REFUSAL_PAUSE` seconds. Closed like an
    :class:`asyncio.Server`."""

    def __init__(self, sock: socket.socket, accept: AcceptCallback, throttle: SocketThrottle | None,
                 limit: int) -> None:
        self._sock = sock
        self._accept = accept
        self._throttle = throttle
        self._limit = limit
        sock.setblocking(False)
        sock.listen(BACKLOG)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # out of descriptors, say: wait rather than spin
                log.warning("%s: accept failed: %s", self._sock.getsockname(), exc)
                await asyncio.sleep(REFUSAL_PAUSE)
                continue
            throttled = self._throttle is not None and not self._throttle.allow()
            try:
                reader, writer = await asyncio.open_unix_connection(sock=conn, limit=self._limit)
            except OSError:
                conn.close()
                continue
            if not self._accept(reader, writer, throttled):
                closed = self._close_waiting()
                if self._throttle is not None:
                    self._throttle.count_refused(closed)
                await asyncio.sleep(REFUSAL_PAUSE)

    def _close_waiting(self) -> int:
        """Close the connections waiting to be accepted, unread; how many."""
        closed = 0
        while closed < BACKLOG:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # BlockingIOError: none waiting
                break
            conn.close()
            closed += 1
        return closed

    def close(self) -> None:
        self._task.cancel()
        self._sock.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._task, return_exceptions=True)
