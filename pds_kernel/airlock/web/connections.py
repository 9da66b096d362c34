"""How long and how many connections a client may hold at the gate (settings ``gate``).

* Headers: a connection has ``gate.idle_seconds`` to send a request's headers, and may stay idle
  that long between requests (Tornado's ``idle_connection_timeout``, an hour by default, bounds
  both); past it the connection closes.
* Bodies: a body must arrive at ``gate.body_min_bytes_per_second`` on average, after a grace of
  ``gate.body_grace_seconds`` (:class:`BodyPace`, which the handlers start once a request is
  accepted: :class:`.handlers.BaseHandler`); a slower one is cut, and nothing of it kept. A body the handlers never see (a route that does not stream it)
  has the time of the largest body such a route takes.
* Connections: at most ``gate.max_connections`` open at once, and ``gate.max_connections_per_peer``
  from one TCP peer address (:class:`GateServer`); a connection past either is closed as soon as it
  is accepted. The hub's proxy is one peer (every browser and API user), and so is the gate's Unix
  socket (its peers, the hub's socket relays, have no address).
"""

from __future__ import annotations

import logging
import resource
import time
from collections import Counter
from collections.abc import Callable

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from ...settings import Gate
from .bodies import MAX_SMALL_BODY

log = logging.getLogger(__name__)

#: Seconds between two warnings of connections refused over a cap (a flood must not flood the log).
REFUSAL_LOG_SECONDS = 60.0
#: Descriptors the gate needs beyond its connections (database, staged files, scans, its log).
SPARE_DESCRIPTORS = 128


def body_seconds(gate: Gate, size: int) -> float:
    """The longest a body of ``size`` bytes may take to arrive: the grace, then the minimum rate."""
    return gate.body_grace_seconds + size / gate.body_min_bytes_per_second


def server_options(gate: Gate | None = None) -> dict:
    """Options of the HTTP server in front of the gate's application: bodies of routes that do not
    stream (unknown paths, the OAuth callback) are capped small and get the time of a small body;
    each handler of the gate raises both per request (:class:`.handlers.BoundedBody`). Headers and
    idle connections get ``gate.idle_seconds``."""
    gate = gate or Gate()
    return {"max_body_size": MAX_SMALL_BODY,
            "idle_connection_timeout": gate.idle_seconds,
            "body_timeout": body_seconds(gate, MAX_SMALL_BODY)}


def peer_of(address) -> str:
    """The peer a connection counts against: its TCP address (never a header: a client writes
    those), or ``unix`` for the Unix socket."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return "unix"


class GateServer(HTTPServer):
    """Tornado's HTTP server, counting open connections in all and per peer; one past either cap
    is closed at once, and the refusals are logged at most once a :data:`REFUSAL_LOG_SECONDS`."""

    def initialize(self, request_callback, *, max_connections: int, max_connections_per_peer: int,
                   **kwargs) -> None:
        super().initialize(request_callback, **kwargs)
        self.max_connections = max_connections
        self.max_connections_per_peer = max_connections_per_peer
        self.open_per_peer: Counter[str] = Counter()
        self._peer_of_stream: dict[object, str] = {}
        self.refused = 0  #: connections refused since the start
        self._unlogged = 0
        self._logged_at = -REFUSAL_LOG_SECONDS

    def handle_stream(self, stream, address) -> None:
        peer = peer_of(address)
        total = len(self._peer_of_stream)
        if total >= self.max_connections or self.open_per_peer[peer] >= self.max_connections_per_peer:
            stream.close()
            self._refused(peer, total)
            return
        self._peer_of_stream[stream] = peer
        self.open_per_peer[peer] += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn) -> None:
        super().on_close(server_conn)
        peer = self._peer_of_stream.pop(server_conn.stream, None)
        if peer is not None:
            self.open_per_peer[peer] -= 1
            if self.open_per_peer[peer] <= 0:
                del self.open_per_peer[peer]

    def _refused(self, peer: str, total: int) -> None:
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < REFUSAL_LOG_SECONDS:
            return
        log.warning("gate: closed %d new connection(s) over the cap since the last warning (this one from "
                    "%s, which holds %d; %d open in all). At most %d in all and %d per peer "
                    "(settings gate.max_connections, gate.max_connections_per_peer): if these are real "
                    "users behind one proxy, raise gate.max_connections_per_peer; else find the client "
                    "of %s", self._unlogged, peer, self.open_per_peer[peer], total, self.max_connections,
                    self.max_connections_per_peer, peer)
        self._unlogged = 0
        self._logged_at = now


def make_server(app, gate: Gate | None = None) -> GateServer:
    """The gate's server as :func:`..run_service` runs it (behind the hub's proxy: ``xheaders``)."""
    gate = gate or Gate()
    return GateServer(app, xheaders=True, max_connections=gate.max_connections,
                      max_connections_per_peer=gate.max_connections_per_peer, **server_options(gate))


def check_descriptors(gate: Gate) -> None:
    """Warn when the process may open fewer files than the connection cap needs."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < gate.max_connections + SPARE_DESCRIPTORS:
        log.warning("gate: this process may open %d files, fewer than gate.max_connections (%d) plus %d for "
                    "its database and files: raise its limit (ulimit -n) or lower gate.max_connections",
                    soft, gate.max_connections, SPARE_DESCRIPTORS)


class BodyPace:
    """The pace of one accepted body of ``size`` bytes (declared; a chunked body: the largest the
    operation takes): by ``t`` seconds after :meth:`start`, at least
    ``body_min_bytes_per_second * (t - body_grace_seconds)`` bytes must have arrived, so all of
    them within :func:`body_seconds`. Checked when the bytes received so far stop sufficing (a
    timer, so that a stalled body is cut too); behind, ``on_slow(seconds)`` is called once."""

    def __init__(self, gate: Gate, size: int, received: Callable[[], int], on_slow: Callable[[float], None]):
        self.gate = gate
        self.size = size
        self.received = received
        self.on_slow = on_slow
        self._start = 0.0
        self._timer = None

    def start(self) -> None:
        loop = IOLoop.current()
        self._start = loop.time()
        self._timer = loop.call_at(self._start + self.gate.body_grace_seconds, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            IOLoop.current().remove_timeout(self._timer)
            self._timer = None

    def _check(self) -> None:
        loop = IOLoop.current()
        due = self._start + body_seconds(self.gate, min(self.received(), self.size))
        if loop.time() < due:
            self._timer = loop.call_at(due, self._check)
            return
        self._timer = None
        self.on_slow(loop.time() - self._start)
