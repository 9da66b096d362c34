"""The rate limit of the sockets served to a workspace (pds_kernel/sandbox/rate.py), and the gate
socket's bridge (pds_kernel/sandbox/http_bridge.py) through a real Unix socket to a real upstream.
The floods from a real sandbox are in tests/security/test_socket_rate_attacks.py."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from pds_kernel.sandbox.http_bridge import GateBridge
from pds_kernel.sandbox.rate import SocketThrottle, ThrottleReport, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_serves_its_burst_then_its_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == 1
    clock.now += 0.5  # one token back at 2 a second
    assert bucket.take() and not bucket.take()
    clock.now += 60  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


@pytest.mark.parametrize("rate, burst", [(0, 10), (-1, 10), (5, 0)])
def test_a_limit_that_limits_nothing_or_everything_is_refused(rate, burst):
    with pytest.raises(ValueError, match="hub.socket_requests_per_second"):
        TokenBucket(rate, burst)


def test_refusals_are_recorded_once_a_window_and_all_counted():
    clock, records = Clock(), []
    report = ThrottleReport(records.append, window=60, clock=clock)
    hub = SocketThrottle("hub.sock", 1.0, 1, report, clock=clock)
    gate = SocketThrottle("gate.sock", 1.0, 1, report, clock=clock)
    assert hub.allow() and gate.allow()
    for _ in range(500):
        assert not hub.allow() and not gate.allow()
    assert len(records) == 1 and records[0]["refused"] == {"hub.sock": 1}
    clock.now += 61
    for _ in range(3):
        hub.allow()
    assert len(records) == 2
    # what the first window refused after its record, and the first refusal of the second
    assert records[1]["refused"] == {"hub.sock": 500, "gate.sock": 500}


async def _through_gate_bridge(data: bytes, rate: float = 100.0, burst: int = 100) -> bytes:
    """Send ``data`` on one connection through a real GateBridge to an upstream that answers
    every request head with ``200`` (bodies read by Content-Length); everything read back."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    path = Path(tempfile.mkdtemp(prefix="pds-gb-")) / "gate.sock"
    bridge = GateBridge(path, "127.0.0.1", server.sockets[0].getsockname()[1],
                        throttle=SocketThrottle("gate.sock", rate, burst))
    await bridge.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(data)
        await writer.drain()
        writer.write_eof()  # no more requests: the bridge ends the connection once all are answered
        out = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return out
    finally:
        await bridge.stop()
        server.close()


GET = b"GET /services/airlock/api/me HTTP/1.1\r\nHost: 127.0.0.1:8082\r\n\r\n"
UPLOAD = (b"POST /services/airlock/api/requests HTTP/1.1\r\nHost: 127.0.0.1:8082\r\n"
          b"Content-Length: 300000\r\n\r\n" + b"x" * 300_000)


def test_the_gate_socket_forwards_requests_and_streams_bodies():
    out = asyncio.run(_through_gate_bridge(GET + UPLOAD + GET, rate=100, burst=100))
    assert out.count(b"HTTP/1.1 200 OK") == 3, out[:300]


def test_pipelined_requests_past_the_burst_get_429_with_retry_after():
    out = asyncio.run(_through_gate_bridge(GET * 20, rate=0.5, burst=5))
    assert out.count(b"HTTP/1.1 200 OK") == 5, out[:400]
    assert out.endswith(b"retry in 2 s (the platform limits the rate of requests a workspace makes to "
                        b"the host's services)\n") and b"HTTP/1.1 429 Too Many Requests" in out
    assert b"Retry-After: 2\r\n" in out


@pytest.mark.parametrize("data, status", [
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 40\r\n\r\nx", b"400"),
    (b"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", b"400"),
    (b"GET /x HTTP/1.1\r\n folded: line\r\n\r\n", b"400"),
    (b"GET /x HTTP/1.1\nHost: x\n\n", b"403"),
    (b"GET /x HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n", b"403"),
])
def test_the_gate_socket_refuses_what_it_cannot_frame(data, status):
    """A request whose end the bridge cannot tell as the gate would is never forwarded."""
    out = asyncio.run(_through_gate_bridge(data))
    assert out.startswith(b"HTTP/1.1 " + status) and b"200 OK" not in out, out[:300]
