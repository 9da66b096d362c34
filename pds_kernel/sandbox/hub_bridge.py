"""The hub socket of a workspace: a Unix-socket listener that forwards to the hub API only the
requests a notebook server needs (:mod:`.hub_policy`), one request at a time.

Unlike the plain byte forwarders of :mod:`.bridge`, this one reads every request head on the
connection (keep-alive and pipelined requests included), checks it, forwards exactly the checked
head and exactly ``Content-Length`` body bytes, and only then reads the next head. The first refused
request gets ``403`` and the connection is closed. The ``403`` is written only where the stream of
responses is quiet (answers to requests already forwarded have had :data:`QUIET` seconds to arrive),
so it never lands inside another response; if the hub is still sending after :data:`QUIET_WAIT`
seconds, the connection is closed without it. Each
refusal is reported to ``on_refusal(method, path, reason)`` (the spawner audits it), at most
:data:`REPORTS_PER_MINUTE` times a minute per socket; the rest are counted and reported with the next
one, so a loop of refused requests cannot flood the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from .bridge import CHUNK, UnixToTcp
from .hub_policy import MAX_HEAD, HubApiPolicy, RequestRefused, parse_head

log = logging.getLogger(__name__)

#: Seconds a connection may stay idle, or take to send one request head, before it is closed.
IDLE_TIMEOUT = 120.0
#: Refusals reported (audited) per minute and socket; more are counted, not dropped silently.
REPORTS_PER_MINUTE = 20
#: Seconds without response bytes that make the response stream quiet (a 403 may then follow).
QUIET = 0.2
#: Seconds a refusal waits for the response stream to be quiet before closing without a 403.
QUIET_WAIT = 3.0

RefusalCallback = Callable[[str, str, str, int], None]


def _forbidden(reason: str) -> bytes:
    body = f"refused by the workspace hub socket: {reason}\n".encode()
    return (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The next request head, line by line up to the empty line; ``None`` at a clean end of stream.

    Every line must end with CRLF: a bare LF (which the hub's parser would accept as a line end) is
    refused at once, so no request can be framed differently here and there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IDLE_TIMEOUT
    head = b""
    while True:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), max(0.0, deadline - loop.time()))
        except asyncio.IncompleteReadError as exc:
            if not exc.partial and not head:
                return None
            raise RequestRefused("incomplete request head") from None
        except asyncio.LimitOverrunError:
            raise RequestRefused(f"request head over {MAX_HEAD} bytes") from None
        except TimeoutError:
            raise RequestRefused("request head not received in time") from None
        if not line.endswith(b"\r\n"):
            raise RequestRefused("bare LF in the request head")
        head += line
        if len(head) > MAX_HEAD:
            raise RequestRefused(f"request head over {MAX_HEAD} bytes")
        if line == b"\r\n":
            if head == b"\r\n":
                raise RequestRefused("empty line before the request line")
            return head


class HubApiBridge(UnixToTcp):
    """:class:`~.bridge.UnixToTcp` for the hub API, with an HTTP request filter (see module doc)."""

    def __init__(self, unix_path: str | Path, host: str, port: int, policy: HubApiPolicy,
                 on_refusal: RefusalCallback | None = None) -> None:
        super().__init__(unix_path, host, port)
        self.reader_limit = MAX_HEAD  # readuntil() raises LimitOverrunError past a head this long
        self.policy = policy
        self.on_refusal = on_refusal
        self._window_start = 0.0
        self._reported = 0
        self._suppressed = 0

    def _report(self, refused: RequestRefused) -> None:
        log.warning("%s refused %s %s: %s", self, refused.method, refused.path[:200], refused.reason)
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
            self.on_refusal(refused.method, refused.path[:200], refused.reason, suppressed)
        except Exception:  # the refusal stands even if it cannot be reported; say so loudly
            log.exception("%s: could not report a refused request", self)

    async def _join(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        responses: asyncio.Task | None = None
        try:
            try:
                upstream_reader, upstream_writer = await self._open_upstream()
            except OSError as exc:
                log.warning("%s: upstream unavailable: %s", self, exc)
                return
            last_response = [0.0]  # loop time of the last response bytes passed to the client
            responses = asyncio.get_running_loop().create_task(
                self._copy(upstream_reader, client_writer, last_response))
            while not responses.done():
                try:
                    raw = await _read_head(client_reader)
                    if raw is None:
                        break
                    head = parse_head(raw)
                    self.policy.check(head)
                except RequestRefused as refused:
                    quiet = await self._until_quiet(responses, last_response)
                    responses.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await responses
                    self._report(refused)
                    if not quiet:  # a 403 now could land inside a response: just close
                        return
                    client_writer.write(_forbidden(refused.reason))
                    with contextlib.suppress(OSError, ConnectionError):
                        await client_writer.drain()
                    return
                body = b""
                if head.content_length:
                    body = await asyncio.wait_for(client_reader.readexactly(head.content_length), IDLE_TIMEOUT)
                upstream_writer.write(head.raw + body)
                await upstream_writer.drain()
            if not responses.done():
                with contextlib.suppress(OSError, RuntimeError):
                    upstream_writer.write_eof()
                await responses
        except (asyncio.IncompleteReadError, ConnectionError, OSError, TimeoutError):
            pass
        finally:
            if responses is not None and not responses.done():
                responses.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await responses
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError, RuntimeError):
                        await writer.wait_closed()

    @staticmethod
    async def _until_quiet(responses: asyncio.Task, last_response: list[float]) -> bool:
        """Wait until no response bytes have passed for :data:`QUIET` seconds (or the responses
        ended); ``False`` if that did not happen within :data:`QUIET_WAIT` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUIET_WAIT
        while not responses.done():
            since = loop.time() - last_response[0]
            if since >= QUIET:
                return True
            if loop.time() + QUIET - since > deadline:
                return False
            await asyncio.wait({responses}, timeout=QUIET - since)
        return True

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    last_response: list[float]) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                last_response[0] = loop.time()
                writer.write(data)
                await writer.drain()
                last_response[0] = loop.time()

    def __repr__(self) -> str:
        return f"HubApiBridge({self.unix_path} -> {self.host}:{self.port}, user {self.policy.user})"
