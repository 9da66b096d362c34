"""A Unix-socket listener that forwards HTTP/1.1 to a loopback TCP service one checked request at
a time: the base of the workspace's hub socket (:mod:`.hub_bridge`) and gate socket
(:class:`GateBridge`).

Unlike the plain byte forwarders of :mod:`.bridge`, it reads every request head on the connection
(keep-alive and pipelined requests included), checks it (:meth:`HttpBridge.check`), forwards
exactly the checked head and exactly ``Content-Length`` body bytes (streamed, never held whole),
and only then reads the next head. Each request after the first on a connection takes a token of
the socket's rate limit (:mod:`.rate`; the first was taken when the connection was accepted). The
first refused request gets its answer (``403``, ``400``, ``429`` with a ``Retry-After``...) and the
connection is closed. The answer is written only where the stream of responses is quiet (answers
to requests already forwarded have had :data:`QUIET` seconds to arrive), so it never lands inside
another response; if the service is still sending after :data:`QUIET_WAIT` seconds, the connection
is closed without it. A connection accepted past the rate limit gets its ``429`` after its first
request head, and no upstream connection is opened for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from .bridge import CHUNK, UnixToTcp
from .hub_policy import MAX_HEAD, RequestHead, RequestRefused
from .rate import too_many_requests

log = logging.getLogger(__name__)

#: Seconds a connection may stay idle, or take to send one request head, before it is closed.
IDLE_TIMEOUT = 120.0
#: Seconds a connection accepted past the rate limit has to send its request head (then its 429).
THROTTLED_HEAD_TIMEOUT = 5.0
#: Seconds without response bytes that make the response stream quiet (a refusal may then follow).
QUIET = 0.2
#: Seconds a refusal waits for the response stream to be quiet before closing without an answer.
QUIET_WAIT = 3.0
#: Largest request body the gate socket forwards (the gate's own limits are far lower: 100 MiB).
MAX_GATE_BODY = 1024 * 1024 * 1024

_REASONS = {400: "Bad Request", 403: "Forbidden", 411: "Length Required", 413: "Content Too Large"}
_GATE_METHOD = re.compile(rb"[A-Z]{1,16}")
_GATE_TARGET = re.compile(rb"/[\x21-\x7e]{0,8000}")
_GATE_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z\-]{1,100}):([\t\x20-\x7e\x80-\xff]*)")


class Throttled(RequestRefused):
    """Over the socket's rate limit: a ``429`` with ``Retry-After: retry_after``."""

    def __init__(self, retry_after: int, method: str = "", path: str = ""):
        super().__init__("over the socket's rate limit", method, path, status=429)
        self.retry_after = retry_after


async def read_head(reader: asyncio.StreamReader, timeout: float = IDLE_TIMEOUT) -> bytes | None:
    """The next request head, line by line up to the empty line; ``None`` at a clean end of stream.

    Every line must end with CRLF: a bare LF (which the service's parser would accept as a line
    end) is refused at once, so no request can be framed differently here and there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
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


class HttpBridge(UnixToTcp):
    """:class:`~.bridge.UnixToTcp` that forwards one checked request at a time (see module doc).
    Subclasses say what passes (:meth:`check`) and who hears of a refusal (:meth:`report`)."""

    #: the socket's name in the answers it writes ("hub", "gate")
    label = "workspace"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reader_limit = MAX_HEAD  # readuntil() raises LimitOverrunError past a head this long

    def check(self, raw: bytes) -> RequestHead:
        """The parsed head of ``raw`` if it may be forwarded; raises :class:`RequestRefused`."""
        raise NotImplementedError

    def report(self, refused: RequestRefused) -> None:
        """A request was refused (not for the rate: :class:`~.rate.ThrottleReport` hears of those)."""
        # the path is the sandbox's choice, at the socket's rate: its length only (the log is read
        # outside the workspace; the audited refusals, at most 20 a minute, keep 40 characters)
        log.warning("%s refused %s (a path of %d characters): %s", self, refused.method[:10], len(refused.path),
                    refused.reason)

    def refusal(self, refused: RequestRefused) -> bytes:
        """The complete answer to a refused request (it closes the connection)."""
        if isinstance(refused, Throttled):
            return too_many_requests(refused.retry_after, f"the workspace {self.label} socket")
        body = f"refused by the workspace {self.label} socket: {refused.reason}\n".encode()
        reason = _REASONS.get(refused.status, "Forbidden")
        return (f"HTTP/1.1 {refused.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

    async def _throttled(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """A connection accepted past the rate limit: read its first head, answer 429, close."""
        try:
            with contextlib.suppress(RequestRefused):
                if await read_head(client_reader, THROTTLED_HEAD_TIMEOUT) is None:
                    return
            client_writer.write(self.refusal(Throttled(self.throttle.retry_after())))
            with contextlib.suppress(OSError, ConnectionError):
                await client_writer.drain()
        finally:
            await self._close(client_writer)

    async def _join(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._upstream()
        if upstream is None:
            await self._close(client_writer)
            return
        upstream_reader, upstream_writer = upstream
        responses: asyncio.Task | None = None
        try:
            last_response = [0.0]  # loop time of the last response bytes passed to the client
            responses = asyncio.get_running_loop().create_task(
                self._copy(upstream_reader, client_writer, last_response))
            first = True
            while not responses.done():
                try:
                    raw = await read_head(client_reader)
                    if raw is None:
                        break
                    head = self.check(raw)
                    if not first and self.throttle is not None and not self.throttle.allow():
                        raise Throttled(self.throttle.retry_after(), head.method, head.path)
                    first = False
                except RequestRefused as refused:
                    await self._refuse(refused, responses, last_response, client_writer)
                    return
                upstream_writer.write(head.raw)
                await _forward_body(client_reader, upstream_writer, head.content_length)
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
            await self._close(client_writer, upstream_writer)

    async def _refuse(self, refused: RequestRefused, responses: asyncio.Task, last_response: list[float],
                      client_writer: asyncio.StreamWriter) -> None:
        quiet = await self._until_quiet(responses, last_response)
        responses.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await responses
        if not isinstance(refused, Throttled):
            self.report(refused)
        if not quiet:  # an answer now could land inside a response: just close
            return
        client_writer.write(self.refusal(refused))
        with contextlib.suppress(OSError, ConnectionError):
            await client_writer.drain()

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


async def _forward_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int) -> None:
    """Copy exactly ``length`` bytes, a chunk at a time (a 100 MiB upload is never held whole)."""
    while length:
        data = await asyncio.wait_for(reader.readexactly(min(CHUNK, length)), IDLE_TIMEOUT)
        writer.write(data)
        await writer.drain()
        length -= len(data)


def parse_framing(raw: bytes) -> RequestHead:
    """The head of a request to the gate, checked for its framing only (the gate checks the rest):
    CRLF lines, a request line, well-formed fields, at most one ``Content-Length`` and no
    ``Transfer-Encoding`` or ``Upgrade`` (the bridge must know where each request ends)."""
    lines = raw[:-4].split(b"\r\n")
    if any(b"\r" in line or b"\n" in line or b"\x00" in line for line in lines):
        raise RequestRefused("bare CR, LF or NUL in the request head", status=400)
    parts = lines[0].split(b" ")
    if (len(parts) != 3 or not _GATE_METHOD.fullmatch(parts[0]) or not _GATE_TARGET.fullmatch(parts[1])
            or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0")):
        raise RequestRefused("malformed request line", status=400)
    method, path = parts[0].decode(), parts[1].decode()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        match = _GATE_FIELD.fullmatch(line)
        if match is None:
            raise RequestRefused("malformed header field (or obsolete line folding)", method, path, status=400)
        name, value = match.group(1).lower().decode(), match.group(2).strip(b" \t").decode("latin-1")
        if name == "transfer-encoding":
            raise RequestRefused("send a Content-Length, not Transfer-Encoding", method, path, status=411)
        if name == "upgrade":
            raise RequestRefused("the gate socket does not upgrade connections", method, path, status=400)
        if name == "content-length" and name in headers:
            raise RequestRefused("Content-Length repeated", method, path, status=400)
        headers[name] = value
    length = headers.get("content-length", "0")
    # ASCII digits only: str.isdigit() also accepts Latin-1's superscripts, which int() refuses
    if not (length.isascii() and length.isdigit()) or len(length) > 12:
        raise RequestRefused("malformed Content-Length", method, path, status=400)
    if int(length) > MAX_GATE_BODY:
        raise RequestRefused(f"body over {MAX_GATE_BODY} bytes", method, path, status=413)
    return RequestHead(method=method, path=path, headers=headers, content_length=int(length), raw=raw)


class GateBridge(HttpBridge):
    """The gate socket: any request the gate's own checks answer, framed plainly
    (:func:`parse_framing`), at the socket's rate."""

    label = "gate"

    def check(self, raw: bytes) -> RequestHead:
        return parse_framing(raw)

    def __repr__(self) -> str:
        return f"GateBridge({self.unix_path} -> {self.host}:{self.port})"
