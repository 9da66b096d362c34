"""Red team, eleventh round: holding the gate's connections open, over raw sockets.

Red team 10 bounded the time a refused body may take; what was left (docs/isolation.md,
"Connections held open at the gate"): headers could take an hour (Tornado's default idle timeout),
an accepted body as long as its client liked, and one client could hold as many connections as the
gate's process could open. Now headers and idle connections get ``gate.idle_seconds``, an accepted
body must arrive at ``gate.body_min_bytes_per_second`` after ``gate.body_grace_seconds``, and at
most ``gate.max_connections`` are open in all, ``gate.max_connections_per_peer`` from one peer
(pds_kernel/airlock/web/connections.py). What an adversary tries: headers a byte at a time, an
authenticated upload below the minimum rate, a huge declared length then silence, a chunked body
trickled, many connections from one client and from several, the Unix socket. Each test asserts
the attack fails, and that normal uploads still pass.

One got through the first version of the pace: a cut whose audit entry could not be written (the
database gone away) left its connection open until Tornado's backstop, the whole declared length
at the minimum rate (here a day); now the connection closes whatever the audit trail does.

The gate is served as ``run_service`` serves it (``make_server``: the caps and the production
``server_options()``) on loopback, with small settings so that each attack is cut in seconds
(tests/security/gate_connections_support.py).
"""

from __future__ import annotations

import socket
import time

import pytest
import requests
from gate_connections_support import (
    PREFIX,
    SMALL,
    closed_within,
    gate_registry_fixture,  # noqa: F401  (fixture)
    multipart,
    serve_gate,
    small_gate_fixture,  # noqa: F401  (fixture)
    small_settings_fixture,  # noqa: F401  (fixture: the settings with SMALL gate settings)
    upload_head,
)
from gate_support import PROJECT

from pds_kernel.airlock.web import server_options
from pds_kernel.airlock.web.connections import make_server
from pds_kernel.errors import InvalidInput
from pds_kernel.settings import Gate, load_settings

ME = f"GET {PREFIX}api/me HTTP/1.1\r\nHost: x\r\nAuthorization: token fake-alice\r\n\r\n".encode()


def _requests_of(gate) -> list:
    return gate.service.list_page("alice", project=PROJECT, scope="mine").to_dict()["requests"]


def _cuts(gate) -> list:
    return list(gate.service.runtime.audit.entries(action="airlock.body.too_slow"))


def _nothing_kept(gate) -> None:
    assert not gate.staged_files(), gate.staged_files()
    assert not _requests_of(gate)
    assert not list(gate.service.runtime.audit.entries(action="airlock.request.create"))


# ---- headers ------------------------------------------------------------------------------------
def test_headers_sent_a_byte_at_a_time_are_cut_at_the_idle_deadline(small_gate):
    """Slowloris: a request line, then one header byte every 0.3 s (never the blank line): the
    connection closes at ``idle_seconds`` (2 s here; it was an hour), nothing answered but a close."""
    with small_gate.connect() as sock:
        sock.sendall(f"GET {PREFIX}api/me HTTP/1.1\r\nHost: x\r\n".encode())
        took, answer = closed_within(sock, 10, drip=b"X", every=0.3)
    assert took < SMALL.idle_seconds + 2, f"headers trickled for {took:.1f} s and still open"
    assert b"HTTP/1.1 2" not in answer


def test_a_connection_idle_after_a_request_is_closed(small_gate):
    """Keep-alive with nothing more to say: closed at the idle deadline, not held."""
    with small_gate.connect() as sock:
        sock.sendall(ME)
        took, answer = closed_within(sock, 10)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert took < SMALL.idle_seconds + 2, f"an idle connection stayed {took:.1f} s"


def test_a_connection_that_sends_nothing_is_closed(small_gate):
    with small_gate.connect() as sock:
        took, answer = closed_within(sock, 10)
    assert took < SMALL.idle_seconds + 2 and answer == b""


# ---- bodies of accepted requests -----------------------------------------------------------------
def test_a_slow_authenticated_upload_is_cut_and_nothing_is_stored(small_gate):
    """alice's token is valid, her upload well-formed, but 100 bytes every 0.5 s (200 B/s, under
    the 1 KiB/s minimum): cut within the grace and a little, no request, no staged file, and the cut
    is in the audit trail with the client and the user."""
    body = multipart({"project": PROJECT, "justification": "slow"}, {"t.csv": b"group,n\nA,120\n" * 500})
    with small_gate.connect() as sock:
        sock.sendall(upload_head(len(body)))
        start = time.monotonic()
        sent = 0
        answer = b""
        while time.monotonic() - start < 10 and sent < len(body):
            try:
                sock.sendall(body[sent:sent + 100])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 100
            took, part = closed_within(sock, 0.5)
            answer += part
            if took < 0.5:
                break
        took = time.monotonic() - start
    assert sent < len(body), "the whole slow body was taken"
    assert took < SMALL.body_grace_seconds + 3, f"a body at 200 B/s held the connection {took:.1f} s"
    assert b"HTTP/1.1 2" not in answer
    _nothing_kept(small_gate)
    (cut,) = _cuts(small_gate)
    assert cut.actor == "alice" and cut.outcome == "denied"
    assert cut.details["client"] == cut.details["peer"] == "127.0.0.1"
    assert cut.details["declared_bytes"] == str(len(body))
    assert 0 < cut.details["received_bytes"] < len(body)


def test_a_huge_declared_length_then_silence_is_cut_after_the_grace(small_gate):
    """100 MiB declared (within the upload limit: no 413), the first bytes, then nothing: the
    whole body would have 100 MiB / 1 KiB/s (a day) by its deadline, but the pace cuts it as soon
    as what arrived no longer suffices, here after the 1 s grace."""
    with small_gate.connect() as sock:
        sock.sendall(upload_head(100 * 1024 * 1024) + b"--b0undary\r\n")
        took, answer = closed_within(sock, 10)
    assert took < SMALL.body_grace_seconds + 2, f"a stalled 100 MiB body held the connection {took:.1f} s"
    assert answer == b""
    _nothing_kept(small_gate)
    assert len(_cuts(small_gate)) == 1


def test_a_chunked_upload_trickled_is_cut(small_gate):
    """No Content-Length: chunks of one byte every 0.2 s. A chunked body gets the pace of the
    largest body the operation takes, checked as it comes: cut after the grace. The client names
    another address in ``X-Real-IP`` (the proxy's header): the audit keeps the TCP peer too."""
    with small_gate.connect() as sock:
        sock.sendall(upload_head(None, extra="X-Real-IP: 10.9.9.9\r\n"))
        took, answer = closed_within(sock, 10, drip=b"1\r\nx\r\n", every=0.2)
    assert took < SMALL.body_grace_seconds + 2.5, f"a chunked trickle held the connection {took:.1f} s"
    assert b"HTTP/1.1 2" not in answer
    _nothing_kept(small_gate)
    (cut,) = _cuts(small_gate)
    assert cut.details["declared_bytes"] == "chunked"
    assert (cut.details["client"], cut.details["peer"]) == ("10.9.9.9", "127.0.0.1")


def test_a_slow_body_is_cut_even_when_its_cut_cannot_be_audited(small_gate, monkeypatch):
    """The audit trail refuses the entry (a database gone away): the connection still closes. Got
    through before its fix (open past 10 s: the cut raised before closing)."""
    def refuse(event):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(small_gate.service.runtime.audit, "record", refuse)
    with small_gate.connect() as sock:
        sock.sendall(upload_head(100 * 1024 * 1024))
        took, answer = closed_within(sock, 10, drip=b"x", every=0.3)
    assert took < SMALL.body_grace_seconds + 2.5, f"the cut waited on the audit trail: {took:.1f} s"
    assert answer == b""


def test_a_review_body_trickled_by_a_checker_is_cut_and_no_verdict_recorded(small_gate):
    """Not only uploads: a JSON action of a valid checker, trickled, is cut the same way."""
    view = small_gate.submit()
    head = (f"POST {PREFIX}api/requests/{view.id}/reviews HTTP/1.1\r\nHost: x\r\nAuthorization: token fake-olga\r\n"
            "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n").encode()
    with small_gate.connect() as sock:
        sock.sendall(head)
        took, _ = closed_within(sock, 10, drip=b" ", every=0.2)
    assert took < SMALL.body_grace_seconds + 3
    assert small_gate.service.get_request("olga", view.id).complete_reviews == 0


def test_an_upload_above_the_minimum_rate_arrives_whole(small_gate):
    """About 4 KiB/s for 2 s (four times the minimum): never cut, the request is created."""
    body = multipart({"project": PROJECT, "justification": "paced", "submit": "false"},
                     {"notes.txt": b"a paced upload of notes\n" * 350})
    with small_gate.connect() as sock:
        sock.sendall(upload_head(len(body)))
        for i in range(0, len(body), 800):
            sock.sendall(body[i:i + 800])
            time.sleep(0.2)
        took, answer = closed_within(sock, 5)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert len(_requests_of(small_gate)) == 1 and not _cuts(small_gate)


def test_a_large_upload_at_normal_speed_succeeds(small_gate):
    """A 40 MiB upload (a text file of the request) at loopback speed: taken whole, staged."""
    big = (b"x" * 1023 + b"\n") * (40 * 1024)
    r = small_gate.api("alice", "POST", "requests", data={"project": PROJECT, "justification": "big",
                                                          "submit": "false"},
                       files=[("files", ("notes.txt", big, "text/plain"))])
    assert r.status_code == 201, (r.status_code, r.text[:300])
    assert sum(p.stat().st_size for p in small_gate.staged_files()) >= len(big)
    assert not _cuts(small_gate)


# ---- connections at once -------------------------------------------------------------------------
def _is_closed(sock: socket.socket, wait: float = 0.5) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _closed_ones(socks: list[socket.socket], wait: float = 0.5) -> list[socket.socket]:
    """Those of ``socks`` the gate closed within ``wait`` seconds (all looked at together)."""
    time.sleep(wait)
    closed = []
    for sock in socks:
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                closed.append(sock)
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed.append(sock)
        sock.setblocking(True)
    return closed


def test_connections_over_the_per_peer_cap_are_closed_at_once(small_gate):
    """Twenty connections from one client, none sending: the eight the cap allows stay open, the
    others are closed as soon as they are accepted; once the client lets go of its eight, a normal
    request from it is answered."""
    socks = [small_gate.connect() for _ in range(20)]
    try:
        closed = _closed_ones(socks)
        assert len(closed) == 20 - SMALL.max_connections_per_peer, len(closed)
        assert small_gate.server.open_per_peer["127.0.0.1"] == SMALL.max_connections_per_peer
        assert small_gate.server.refused == len(closed)
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    while small_gate.server.open_per_peer["127.0.0.1"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert small_gate.api("alice", "GET", "me").json() == {"name": "alice"}


def test_a_held_peer_does_not_lock_out_another_peer_until_the_total(small_gate):
    """Eight connections from 127.0.0.1 (its cap) and four from 127.0.0.2 fill the total of
    twelve: a third peer's connection is closed at once; 127.0.0.2 below its own cap was served."""
    held = [small_gate.connect("127.0.0.1") for _ in range(SMALL.max_connections_per_peer)]
    try:
        other = [small_gate.connect("127.0.0.2") for _ in range(4)]
        held += other
        assert not _closed_ones(held, 0.3)
        with small_gate.connect("127.0.0.3") as third:
            assert _is_closed(third, 1), "a connection past the total stayed open"
        assert sum(small_gate.server.open_per_peer.values()) == SMALL.max_connections
    finally:
        for s in held:
            s.close()


def test_connections_cut_by_their_deadlines_free_their_places(small_gate):
    """The cap counts open connections only: eight slowloris connections fill the cap, the idle
    deadline closes them, and the same client is served again."""
    socks = [small_gate.connect() for _ in range(SMALL.max_connections_per_peer)]
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\n")
    try:
        assert not _is_closed(socks[0], 0.2)
        with small_gate.connect() as extra:
            assert _is_closed(extra, 1)
        deadline = time.monotonic() + SMALL.idle_seconds + 3
        while small_gate.server.open_per_peer["127.0.0.1"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert small_gate.server.open_per_peer["127.0.0.1"] == 0
        assert small_gate.api("alice", "GET", "me").json() == {"name": "alice"}
    finally:
        for s in socks:
            s.close()


def test_the_unix_socket_counts_as_one_peer(small_gate, tmp_path):
    """``PDS_AIRLOCK_SOCKET``: its peers (the hub's relays) have no address; together they are one
    peer of the cap (``unix``)."""
    from tornado.netutil import bind_unix_socket

    path = str(tmp_path / "gate.sock")
    small_gate.on_server(lambda: small_gate.server.add_socket(bind_unix_socket(path, mode=0o600)))
    socks = []
    try:
        for _ in range(10):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            socks.append(s)
        closed = _closed_ones(socks)
        assert len(closed) == 10 - SMALL.max_connections_per_peer
        assert small_gate.server.open_per_peer["unix"] == SMALL.max_connections_per_peer
    finally:
        for s in socks:
            s.close()


def test_the_default_caps_serve_a_busy_proxy(runtime, gate_registry):
    """The hub's proxy is one peer for every user: with the default settings, 100 keep-alive
    connections from it at once are all served."""
    with serve_gate(runtime, gate_registry, Gate()) as gate:
        sessions = []
        try:
            for _ in range(100):
                sock = gate.connect()
                sock.sendall(ME)
                sessions.append(sock)
            for sock in sessions:
                sock.settimeout(10)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            assert gate.server.refused == 0
        finally:
            for sock in sessions:
                sock.close()


# ---- the settings --------------------------------------------------------------------------------
def test_the_server_runs_with_the_bounds_in_production():
    """What ``run_service`` runs with: an idle deadline of a minute, not Tornado's hour; a body
    deadline for routes that do not stream; the caps."""
    options = server_options(Gate())
    assert options["idle_connection_timeout"] == 60
    assert 0 < options["body_timeout"] <= 60
    server = make_server(lambda request: None, Gate())
    assert server.conn_params.header_timeout == 60
    assert (server.max_connections, server.max_connections_per_peer) == (512, 256)


@pytest.mark.parametrize("name,value", [("idle_seconds", "0"), ("idle_seconds", "86400"),
                                        ("body_grace_seconds", "0"), ("body_min_bytes_per_second", "10"),
                                        ("max_connections", "0"), ("max_connections_per_peer", "513")])
def test_settings_out_of_range_are_refused_at_load(name, value):
    with pytest.raises(InvalidInput, match=f"gate.{name}"):
        load_settings(environ={f"PDS_GATE__{name.upper()}": value})


def test_requests_session_reuse_is_not_cut(small_gate):
    """A client reusing its connection for several requests, quickly: each is a new request with
    its own deadlines, none cut."""
    with requests.Session() as s:
        for _ in range(5):
            r = s.get(small_gate.base + "api/me", headers={"Authorization": "token fake-alice"}, timeout=10)
            assert r.json() == {"name": "alice"}


# ---- a connection the gate closes after its answer -----------------------------------------------
def _answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line, headers in lower case) of one answer read from ``sock`` (its body read too);
    (b"", b"") when the gate closed the connection before answering."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                   if line.startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n")[0], head.lower()


EARLY_ANSWERS = {  # answers the gate decides from the headers, before any body
    "a token the gate does not know": (f"GET {PREFIX}api/me HTTP/1.1\r\nHost: x\r\n"
                                       "Authorization: token not-a-token\r\n\r\n"),
    "no token": f"GET {PREFIX}api/me HTTP/1.1\r\nHost: x\r\n\r\n",
    "a page without a session": f"GET {PREFIX}requests HTTP/1.1\r\nHost: x\r\n\r\n",
    "an unknown operation": f"GET {PREFIX}api/nothing HTTP/1.1\r\nHost: x\r\nAuthorization: token fake-alice\r\n\r\n",
    "an unknown query parameter": f"GET {PREFIX}api/me?zz=1 HTTP/1.1\r\nHost: x\r\nAuthorization: token fake-alice\r\n\r\n",
    "a body too large, declared": (f"POST {PREFIX}api/requests HTTP/1.1\r\nHost: x\r\nAuthorization: token fake-alice\r\n"
                                   "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 999999999999\r\n\r\n"),
    "a refused body, never sent": (f"POST {PREFIX}api/requests HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"),
}


@pytest.mark.parametrize("label", sorted(EARLY_ANSWERS))
def test_an_answer_before_the_body_never_leaves_the_proxy_a_dead_connection(small_gate, label):
    """Got through before the fix (the hub airlock journey failed with it, once in CI): the gate
    answered a request without a valid token with a 401 from its headers, then closed the
    connection, without saying so. The hub's proxy keeps its connections to the gate for the next
    request of anyone: it sent another person's review into the closed socket and answered it 503.
    Now an answer either leaves the connection open (the next request on it is answered: a 401,
    403 or 404 of a request without a body) or says ``Connection: close`` (a body refused at once,
    which the gate will not read)."""
    with small_gate.connect() as sock:
        sock.settimeout(10)
        sock.sendall(EARLY_ANSWERS[label].encode())
        status, headers = _answer(sock)
        assert status.startswith(b"HTTP/1.1 4"), (label, status)
        says_close = b"\r\nconnection: close" in headers
        if not says_close:
            try:
                sock.sendall(ME)
                again, _ = _answer(sock)
            except OSError as exc:
                again = repr(exc).encode()
            assert again == b"HTTP/1.1 200 OK", f"{label}: {status!r} kept the connection, then it was closed"
    if label in {"a token the gate does not know", "no token", "a page without a session"}:
        assert not says_close, f"{label}: a request without a body need not cost the client its connection"
