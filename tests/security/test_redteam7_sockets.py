"""Red team 7 of the workspace's HTTP sockets (:mod:`pds_kernel.sandbox.http_bridge`): framing tricks
through the real bridges to a real Tornado server (the gate and the hub are Tornado applications).

The bridge forwards one checked request at a time, each after the first taking a token of the
socket's rate. An attack gets through when the service behind sees a request the bridge did not
check and count (a request smuggled in a body the two frame differently), or when a request makes
the bridge fail instead of refusing it.

* ``Content-Length: ²`` (a superscript two: a Latin-1 byte that Python's ``str.isdigit`` calls a
  digit and ``int`` refuses) on the gate socket made the bridge's connection task die on a
  ``ValueError``: no answer, no refusal reported, a traceback in the hub's log for every such
  request. It GOT THROUGH the bridge's refusal path; now it is refused ``400`` like any malformed
  length.
* the rest failed already and stay as regression tests: a request hidden after a short
  ``Content-Length`` (refused by the hub socket's policy; counted by the gate socket's rate),
  ``Transfer-Encoding`` with a length, lengths in other notations, pipelined HTTP/1.0 requests past
  the burst.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from pds_kernel.sandbox.http_bridge import GateBridge
from pds_kernel.sandbox.hub_bridge import HubApiBridge
from pds_kernel.sandbox.hub_policy import HubApiPolicy
from pds_kernel.sandbox.rate import SocketThrottle

TOKEN = "server-token-of-alice"
HIDDEN = b"GET /hub/api/users HTTP/1.1\r\nHost: x\r\nAuthorization: token " + TOKEN.encode() + b"\r\n\r\n"


class _Seen(tornado.web.RequestHandler):
    """Records every request the service receives, answers 200."""

    def initialize(self, seen: list) -> None:
        self.seen = seen

    def _record(self, *_args) -> None:
        self.seen.append((self.request.method, self.request.path, len(self.request.body)))
        self.finish("ok")

    get = post = head = _record


async def _through(bridge_class, data: bytes, *, burst: int = 100, policy: HubApiPolicy | None = None):
    """``data`` sent on one connection through a real bridge to a real Tornado server: (what came
    back, the requests the server saw, the refusals the bridge reported)."""
    seen: list = []
    app = tornado.web.Application([(r"/.*", _Seen, {"seen": seen})])
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    path = Path(tempfile.mkdtemp(prefix="pds-rt7-")) / "bridge.sock"
    throttle = SocketThrottle("test.sock", 0.01, burst)
    if bridge_class is HubApiBridge:
        bridge = HubApiBridge(path, "127.0.0.1", port, policy, throttle=throttle)
    else:
        bridge = GateBridge(path, "127.0.0.1", port, throttle=throttle)
    reported = []
    bridge.report = reported.append
    await bridge.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        out = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return out, seen, reported
    finally:
        await bridge.stop()
        server.stop()


def _gate(data: bytes, **kwargs):
    return asyncio.run(_through(GateBridge, data, **kwargs))


def _hub(data: bytes):
    policy = HubApiPolicy.for_token("alice", TOKEN, "diab")
    return asyncio.run(_through(HubApiBridge, data, policy=policy))


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b2", "\u00b3"])
def test_a_content_length_of_superscript_digits_on_the_gate_socket(length):
    """GOT THROUGH before: the bridge's task died on int('²'); now a 400, reported."""
    data = f"POST /services/airlock/api/requests HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")
    out, seen, reported = _gate(data + b"xx")
    assert out.startswith(b"HTTP/1.1 400 Bad Request") and b"malformed Content-Length" in out, out[:200]
    assert seen == [] and [r.reason for r in reported] == ["malformed Content-Length"]


@pytest.mark.parametrize("length", ["+2", "-2", "0x2", "2.0", "2 2", " 2,2", "1e1", "\u0662"])
def test_other_notations_of_a_length_on_the_gate_socket(length):
    data = f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nxx".encode()
    out, seen, _reported = _gate(data)
    assert out.startswith(b"HTTP/1.1 400 Bad Request"), out[:200]
    assert seen == []


def test_a_request_hidden_after_a_short_length_on_the_hub_socket():
    """An allowed request whose body is declared short: the rest (a request the policy refuses)
    is read by the bridge as the next request, checked and refused; Tornado never sees it."""
    allowed = (b"POST /hub/api/oauth2/token HTTP/1.1\r\nHost: x\r\nAuthorization: token " + TOKEN.encode()
               + b"\r\nContent-Length: 4\r\n\r\n")
    out, seen, reported = _hub(allowed + b"code" + HIDDEN)
    assert [(m, p) for m, p, _ in seen] == [("POST", "/hub/api/oauth2/token")]
    assert out.count(b"HTTP/1.1 200 OK") == 1 and b"HTTP/1.1 403 Forbidden" in out
    assert [r.path for r in reported] == ["/hub/api/users"]


def test_transfer_encoding_beside_a_length_on_either_socket():
    smuggle = (b"POST /hub/api/oauth2/token HTTP/1.1\r\nHost: x\r\nAuthorization: token " + TOKEN.encode()
               + b"\r\nContent-Length: " + str(len(b"0\r\n\r\n" + HIDDEN)).encode()
               + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN)
    for out, seen, _ in (_hub(smuggle), _gate(smuggle)):
        assert seen == [] and b" 200 OK" not in out


def test_every_request_the_gate_sees_was_counted():
    """Requests hidden in bodies and pipelined after them: Tornado sees exactly the requests the
    bridge framed, and each past the first took a token (a burst of 3 here: the 4th is refused)."""
    body = HIDDEN * 3
    post = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    out, seen, _ = _gate(post + HIDDEN * 3, burst=3)
    assert [(m, p, n) for m, p, n in seen] == [("POST", "/x", len(body)), ("GET", "/hub/api/users", 0),
                                              ("GET", "/hub/api/users", 0)]
    assert out.count(b"HTTP/1.1 200 OK") == 3 and b"HTTP/1.1 429 Too Many Requests" in out


def test_pipelined_http_1_0_keep_alive_requests_past_the_burst():
    request = b"GET /x HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    out, seen, _ = _gate(request * 10, burst=2)
    assert len(seen) <= 2 and b"200 OK" in out
