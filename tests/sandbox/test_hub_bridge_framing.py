"""The hub socket's 403 for a refused request never lands inside the answer to a request forwarded
before it (a pipelined attack in CI once got a 200 head cut by the 403: no token was created, but
the client could not read the refusal). The upstream here is a plain TCP server that answers the
allowed request in pieces with pauses, which the real hub cannot be made to do on demand."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from pds_kernel.sandbox import http_bridge
from pds_kernel.sandbox.hub_bridge import HubApiBridge
from pds_kernel.sandbox.hub_policy import HubApiPolicy

TOKEN = "a" * 32
ALLOWED = b"GET /hub/api/ HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n"
REFUSED = (b"POST /hub/api/users/alice/tokens HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"
           b"Authorization: token " + TOKEN.encode() + b"\r\nContent-Length: 2\r\n\r\n{}")
BODY = b'{"version": "5.4.3"}' * 50
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


async def _exchange(pieces: list[tuple[float, bytes]], refuse_after: int = 0) -> bytes:
    """Send ALLOWED then REFUSED on one connection through a real bridge to an upstream that
    answers the first request with ``pieces`` (pause in seconds, bytes); everything read back.
    REFUSED is sent once ``refuse_after`` bytes of the answer have come back."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for pause, data in pieces:
                await asyncio.sleep(pause)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return  # the bridge closed this connection while an answer was still being sent
        await reader.read()  # keep-alive: open until the bridge closes its side
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = Path(tempfile.mkdtemp(prefix="pds-hb-")) / "hub.sock"
    bridge = HubApiBridge(path, "127.0.0.1", port, HubApiPolicy.for_token("alice", TOKEN))
    await bridge.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(ALLOWED)
        await writer.drain()
        out = await asyncio.wait_for(reader.readexactly(refuse_after), 20) if refuse_after else b""
        await asyncio.sleep(0.02)  # the allowed request is forwarded first
        writer.write(REFUSED)
        await writer.drain()
        out += await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return out
    finally:
        await bridge.stop()
        server.close()
        await server.wait_closed()


def _statuses(raw: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"(?m)^HTTP/1\.[01] (\d{3}) ", raw)]


def test_the_403_waits_for_an_answer_sent_in_pieces():
    """The refused request comes while the answer is half sent (its head cut mid-line) and the
    upstream pauses before each next piece: the 403 comes after the whole answer, as a second
    response the client can read."""
    half = len(ANSWER) // 2
    raw = asyncio.run(_exchange([(0.0, ANSWER[:40]), (0.1, ANSWER[40:half]), (0.1, ANSWER[half:])],
                                refuse_after=40))
    assert raw.startswith(ANSWER), raw[:200]
    rest = raw[len(ANSWER):]
    assert rest.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"refused by the workspace hub socket" in rest


def test_an_answer_still_flowing_closes_the_connection_without_a_403(monkeypatch):
    """An upstream that never stops sending within the wait (a trickle every 0.1 s): the connection
    is closed with no 403 at all, rather than one written into the middle of the answer."""
    monkeypatch.setattr(http_bridge, "QUIET_WAIT", 1.0)
    trickle = [(0.0, ANSWER[:30])] + [(0.1, b" ")] * 40
    raw = asyncio.run(_exchange(trickle, refuse_after=30))
    assert raw.startswith(ANSWER[:30])
    assert b"403" not in raw and b"refused" not in raw


def test_a_refusal_with_no_answer_in_flight_is_a_plain_403():
    """The upstream answers nothing (yet): the 403 is the whole output."""
    raw = asyncio.run(_exchange([(5.0, ANSWER)]))
    assert _statuses(raw) == [403]
    assert raw.startswith(b"HTTP/1.1 403 Forbidden\r\n")
