"""Red team, tenth round: the gate's bodies and verdicts as they landed today, over raw sockets.

The gate answers a refused token (API) or a form without a session (pages) only once a body
declared up to 1 MiB has been read and dropped (``BoundedBody.refuse_after_body``), and every
verdict names the SHA-256 of the bytes its reviewer read. What an adversary tries: bodies trickled
without a token to hold the gate's connections open (slowloris), ``Content-Length`` in the forms a
parser may read differently, a refused body that carries a second request, a GET with a body, and
verdicts naming the hash of another file, of another request, of the previous round, or in another
case. Each test asserts the attack fails.

One got through before its fix: a client without a token held a connection open for as long as it
trickled bytes of a body declared under 1 MiB (the server has no body timeout, and the refusal
waited for the body): now the refusal waits at most ``REFUSAL_DRAIN_SECONDS``, then the connection
closes.

The gate is the production application with the production server options on loopback
(tests/security/gate_support.py); its people and tokens are those of tests/airlock.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from urllib.parse import urlparse

import pytest
from gate_support import PREFIX, PROJECT, closed_within, files, gate_fixture, gate_registry_fixture  # noqa: F401  (fixtures)

from pds_kernel.airlock.web import handlers

TABLE_A = b"group,n\nA,120\nB,130\n"
TABLE_B = b"group,n\nA,140\nB,150\n"
SHA_A, SHA_B = hashlib.sha256(TABLE_A).hexdigest(), hashlib.sha256(TABLE_B).hexdigest()


def _address(gate) -> tuple[str, int]:
    url = urlparse(gate.base)
    return url.hostname, url.port


def _exchange(gate, raw: bytes, timeout: float = 15) -> bytes:
    """Send ``raw`` on one connection and read until the gate closes it (or ``timeout``)."""
    with socket.create_connection(_address(gate), timeout=timeout) as sock:
        sock.sendall(raw)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def _statuses(answer: bytes) -> list[int]:
    """The status codes of the responses in ``answer`` (each begins with ``HTTP/1.1 NNN``)."""
    codes = []
    for part in answer.split(b"HTTP/1.1 ")[1:]:
        if part[:3].isdigit():
            codes.append(int(part[:3]))
    return codes


def _trickle_until_closed(gate, head: bytes, limit: float) -> tuple[float, bytes]:
    """Send ``head`` then one byte every 0.2 s; seconds until the gate closed the connection."""
    with socket.create_connection(_address(gate), timeout=2) as sock:
        sock.sendall(head)
        return closed_within(sock, limit, drip=b"x", every=0.2)


def _withdraw_head(token: str, framing: str) -> bytes:
    """The headers of a JSON withdraw with ``token`` and the body framing headers ``framing``."""
    return (f"POST {PREFIX}api/requests/{'a' * 32}/withdraw HTTP/1.1\r\nHost: x\r\nAuthorization: token {token}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n").encode()


def _refused_head(path: str, length: int, *, api: bool = True) -> bytes:
    auth = "Authorization: token revoked-abc\r\n" if api else ""
    ctype = "application/json" if api else "application/x-www-form-urlencoded"
    return (f"POST {PREFIX}{path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


# ---- slowloris: bodies trickled by clients without a token ----------------------------------------
@pytest.mark.parametrize("api", [True, False], ids=["api-refused-token", "page-without-session"])
def test_a_refused_body_trickled_byte_by_byte_is_cut_at_the_drain_deadline(gate, monkeypatch, api):
    """Got through before its fix: the refusal waited for the whole body, and nothing bounded how
    long it took: one byte every 0.2 s kept the connection (and its descriptor) open for as long as
    the client liked (here: past 8 s with nothing answered), without any token."""
    monkeypatch.setattr(handlers, "REFUSAL_DRAIN_SECONDS", 1.5)
    path = "api/requests/" + "a" * 32 + "/reviews" if api else "requests/" + "a" * 32 + "/review"
    took, answer = _trickle_until_closed(gate, _refused_head(path, 1000, api=api), limit=8)
    assert took < 6, f"the gate still held the connection after {took:.1f} s"
    assert b"HTTP/1.1 2" not in answer and b"HTTP/1.1 3" not in answer


def test_many_trickling_connections_are_all_closed_and_the_gate_answers_meanwhile(gate, monkeypatch):
    """Forty connections without a token, each trickling a body: the gate answers a researcher in
    the meantime, and closes every one of them by the deadline."""
    monkeypatch.setattr(handlers, "REFUSAL_DRAIN_SECONDS", 1.5)
    socks = []
    try:
        for _ in range(40):
            sock = socket.create_connection(_address(gate), timeout=5)
            sock.sendall(_refused_head("api/requests", 1024 * 1024) + b"x")
            socks.append(sock)
        assert gate.api("alice", "GET", "me").json() == {"name": "alice"}
        deadline = time.monotonic() + 6
        open_ones = list(socks)
        while open_ones and time.monotonic() < deadline:
            still = []
            for sock in open_ones:
                try:
                    sock.sendall(b"x")
                    sock.settimeout(0.05)
                    if sock.recv(65536) == b"":
                        continue
                    still.append(sock)
                except TimeoutError:
                    still.append(sock)
                except (BrokenPipeError, ConnectionResetError):
                    continue
            open_ones = still
            time.sleep(0.2)
        assert not open_ones, f"{len(open_ones)} of 40 trickling connections still open"
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("api", [True, False], ids=["api-refused-token", "page-without-session"])
def test_a_chunked_body_without_a_token_is_refused_at_once(gate, api):
    """No Content-Length (chunked, trickled): no drain at all, the refusal comes at once and the
    connection closes, whatever the client keeps sending."""
    path = "api/requests" if api else "requests/" + "a" * 32 + "/review"
    auth = "Authorization: token revoked-abc\r\n" if api else ""
    head = (f"POST {PREFIX}{path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n").encode()
    took, answer = _trickle_until_closed(gate, head, limit=8)
    assert took < 3, f"the gate held a chunked body without a token for {took:.1f} s"
    assert _statuses(answer) == [401 if api else 403], answer[:300]


def test_the_drain_deadline_is_short_in_production():
    """The value production runs with (the test above shortens it to be quick)."""
    assert 0 < handlers.REFUSAL_DRAIN_SECONDS <= 60
    assert handlers.REFUSAL_DRAIN_LIMIT <= 1024 * 1024


# ---- Content-Length variants, a second request in a refused body ------------------------------------
PIPELINED = f"GET {PREFIX}api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize("declared", ["+5", "05", "5, 5", "5,6", "-5", "0x5", "5.0", "\u0665", "1e1", " 5 5"],
                         ids=["plus", "leading-zero", "same-twice", "two-values", "negative", "hex", "decimal",
                              "arabic-digit", "exponent", "inner-space"])
@pytest.mark.parametrize("token", ["revoked-abc", "fake-mallory"])
def test_content_length_variants_never_desynchronise_the_connection(gate, declared, token):
    """Each byte stream is one request of 5 body bytes followed by one request without a token: the
    gate answers at most one response each, never a 2xx to the second (it has no token), and never
    reads the body as a request of its own."""
    body = b"GET /"  # five bytes that begin a request line, if the gate miscounted the body
    head = _withdraw_head(token, f"Content-Length: {declared}\r\n")
    answer = _exchange(gate, head + body + PIPELINED)
    codes = _statuses(answer)
    assert len(codes) <= 2 and all(c >= 400 for c in codes), (declared, token, answer[:400])
    assert b'"name"' not in answer


@pytest.mark.parametrize("token", ["revoked-abc", "fake-mallory"])
def test_two_content_length_headers_are_no_way_to_split_a_request(gate, token):
    head = _withdraw_head(token, "Content-Length: 0\r\nContent-Length: 5\r\n")
    answer = _exchange(gate, head + b"GET /" + PIPELINED)
    codes = _statuses(answer)
    assert len(codes) <= 2 and all(c >= 400 for c in codes), answer[:400]
    assert b'"name"' not in answer


@pytest.mark.parametrize("token", ["revoked-abc", "fake-mallory"])
def test_content_length_with_chunked_encoding_is_refused(gate, token):
    """Both framings in one request (the classic desynchronisation of a proxy and its server)."""
    head = _withdraw_head(token, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
    answer = _exchange(gate, head + b"0\r\n\r\n" + PIPELINED)
    assert all(c >= 400 for c in _statuses(answer)) and b'"name"' not in answer, answer[:400]


def test_a_refused_body_holding_a_whole_request_is_never_run(gate):
    """A body declared exactly as long as a full review request by an output checker: the gate
    reads it as bytes to drop, answers one 401, and no verdict is recorded."""
    view = gate.service.create("alice", PROJECT, files(("t.csv", TABLE_A)), "Table 1", {})
    approval = json.dumps({"verdicts": {"0": {"decision": "approve", "sha256": SHA_A}}}).encode()
    inner = (f"POST {PREFIX}api/requests/{view.id}/reviews HTTP/1.1\r\nHost: x\r\nAuthorization: token fake-olga\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(approval)}\r\n\r\n").encode() + approval
    head = (f"POST {PREFIX}api/requests/{view.id}/reviews HTTP/1.1\r\nHost: x\r\nAuthorization: token revoked-abc\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(inner)}\r\nConnection: close\r\n\r\n").encode()
    answer = _exchange(gate, head + inner)
    assert _statuses(answer) == [401], answer[:400]
    after = gate.service.get_request("olga", view.id)
    assert after.complete_reviews == 0 and after.state == "submitted"


@pytest.mark.parametrize("token", [None, "revoked-abc", "fake-mallory"])
def test_a_get_with_a_body_reads_nothing_it_may_not(gate, token):
    """A GET of another project's request with a JSON body: refused as without one (401 after the
    drain for no token, 403/404 for mallory), one response, never the request."""
    view = gate.service.create("alice", PROJECT, files(("t.csv", TABLE_A)), "Table 1 ZZQJUST", {})
    body = b'{"scope": "all"}'
    auth = f"Authorization: token {token}\r\n" if token else ""
    head = (f"GET {PREFIX}api/requests/{view.id} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    answer = _exchange(gate, head + body)
    (code,) = _statuses(answer)
    assert code in (401, 403, 404), answer[:400]
    assert b"ZZQJUST" not in answer and b"t.csv" not in answer


# ---- verdicts: the hash of the bytes read ------------------------------------------------------------
def _two_files(gate):
    return gate.service.create("alice", PROJECT, files(("a.csv", TABLE_A), ("b.csv", TABLE_B)), "Tables 1, 2", {})


def _review(gate, who: str, request_id: str, verdicts: dict):
    return gate.api(who, "POST", f"requests/{request_id}/reviews", json={"verdicts": verdicts})


def test_a_verdict_with_the_hash_of_the_other_file_of_the_request(gate):
    """The two hashes the page shows, swapped: each names bytes that are not that file's."""
    view = _two_files(gate)
    r = _review(gate, "olga", view.id, {"0": {"decision": "approve", "sha256": SHA_B},
                                        "1": {"decision": "approve", "sha256": SHA_A}})
    assert r.status_code == 409, (r.status_code, r.text)
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_a_verdict_with_the_hash_of_a_file_of_another_request(gate):
    """The same name in another request, other bytes: its hash approves nothing here."""
    mine = gate.service.create("alice", PROJECT, files(("t.csv", TABLE_A)), "Table 1", {})
    other = gate.service.create("carol", PROJECT, files(("t.csv", TABLE_B)), "Table 1", {})
    r = _review(gate, "olga", mine.id, {"0": {"decision": "approve", "sha256": SHA_B}})
    assert r.status_code == 409, (r.status_code, r.text)
    assert gate.service.get_request("olga", mine.id).complete_reviews == 0
    assert gate.service.get_request("olga", other.id).complete_reviews == 0


@pytest.mark.parametrize("sha", [SHA_A.upper(), " " + SHA_A, SHA_A + "\n", "sha256:" + SHA_A, SHA_A[:63],
                                 SHA_A + "0", SHA_A.replace("a", "\uff41"), "", None, 0, [SHA_A]],
                         ids=["upper", "leading-space", "trailing-newline", "prefixed", "short", "long",
                              "fullwidth", "empty", "null", "number", "list"])
def test_a_verdict_hash_in_another_form_is_refused(gate, sha):
    view = gate.service.create("alice", PROJECT, files(("t.csv", TABLE_A)), "Table 1", {})
    r = _review(gate, "olga", view.id, {"0": {"decision": "approve", "sha256": sha}})
    assert r.status_code == 400, (sha, r.status_code, r.text)
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_two_keys_for_one_file_cannot_carry_a_stale_hash_past_the_check(gate):
    """``0`` and ``00`` name the same file: the verdict kept is checked against the current bytes
    (the stale hash kept: refused); whatever is recorded names the current bytes only."""
    view = gate.service.create("alice", PROJECT, files(("t.csv", TABLE_A)), "Table 1", {})
    stale_kept = _review(gate, "olga", view.id, {"0": {"decision": "approve", "sha256": SHA_A},
                                                 "00": {"decision": "approve", "sha256": SHA_B}})
    assert stale_kept.status_code in (400, 409), stale_kept.text
    assert gate.service.get_request("olga", view.id).complete_reviews == 0
    right_kept = _review(gate, "olga", view.id, {"0": {"decision": "approve", "sha256": SHA_B},
                                                 "00": {"decision": "approve", "sha256": SHA_A}})
    if right_kept.status_code == 200:
        (entry,) = [e for e in gate.service.runtime.audit.entries(action="airlock.review.submit")
                    if e.target == f"request:{view.id}" and e.outcome == "ok"]
        assert entry.details["verdicts"] == {"t.csv": {"decision": "approve", "sha256": SHA_A}}
    else:
        assert right_kept.status_code in (400, 409), right_kept.text


def _resubmitted(gate):
    """A request whose file was changed after both checkers asked for changes (round 2)."""
    view = gate.service.create("alice", PROJECT, files(("t.csv", TABLE_A)), "Table 1", {})
    for who in ("olga", "omar"):
        gate.service.review(who, view.id, {0: {"decision": "request_changes", "comment": "round it"}})
    gate.service.resubmit("alice", view.id, files(("t.csv", TABLE_B)), [], "rounded", None)
    return view


def test_the_review_form_posted_with_the_previous_rounds_hash(gate):
    """A tab opened at round 1, posted after the resubmission: its sha_0 names the old bytes."""
    view = _resubmitted(gate)
    olga = gate.browser("olga")
    xsrf = gate.xsrf(olga, f"requests/{view.id}")
    r = olga.post(gate.base + f"requests/{view.id}/review", allow_redirects=False, timeout=30,
                  data={"_xsrf": xsrf, "decision_0": "approve", "comment_0": "", "sha_0": SHA_A})
    assert r.status_code == 409, (r.status_code, r.text[:300])
    after = gate.service.get_request("olga", view.id)
    assert after.complete_reviews == 0 and after.round == 2
    api = _review(gate, "omar", view.id, {"0": {"decision": "approve", "sha256": SHA_A}})
    assert api.status_code == 409  # the API too


@pytest.mark.parametrize("fields", [
    {"decision_0": "approve", "sha_0": [SHA_A, SHA_B]},  # twice: the stale one first
    {"decision_0": "approve", "sha_0": [SHA_B, SHA_A]},  # twice: the stale one last
    {"decision_0": "approve", "sha_00": SHA_B},  # the hash under another spelling of the index
    {"decision_00": "approve", "sha_0": SHA_A},  # the decision under another spelling, the old hash
], ids=["sha-twice-stale-first", "sha-twice-stale-last", "sha-other-spelling", "decision-other-spelling"])
def test_the_review_form_with_doubled_or_respelled_hash_fields(gate, fields):
    """Fields doubled or respelled to slip the round-1 hash in beside the right one: nothing is
    recorded unless the one hash read is the current file's (here the current bytes are B)."""
    view = _resubmitted(gate)
    olga = gate.browser("olga")
    xsrf = gate.xsrf(olga, f"requests/{view.id}")
    r = olga.post(gate.base + f"requests/{view.id}/review", allow_redirects=False, timeout=30,
                  data={"_xsrf": xsrf, **fields})
    after = gate.service.get_request("olga", view.id)
    if r.status_code == 302:  # taken: then it was for the bytes olga's form names last, the current ones
        audit = [e for e in gate.service.runtime.audit.entries(action="airlock.review.submit")
                 if e.target == f"request:{view.id}" and e.actor == "olga" and e.outcome == "ok"
                 and e.details["round"] == 2]
        assert audit and all(v["sha256"] == SHA_B for e in audit for v in e.details["verdicts"].values())
    else:
        assert r.status_code in (400, 409), (r.status_code, r.text[:300])
        assert after.complete_reviews == 0


# ---- handlers that would run before their body ----------------------------------------------------
def test_a_handler_method_from_a_mixin_is_refused_at_class_creation():
    """A method that a mixin placed before the gate's base brings in would run before (or without)
    ``read_body``, past a refusal still waiting for its body: the class is refused when defined."""
    class Early:
        async def post(self):  # pragma: no cover - never runs
            return None

    with pytest.raises(TypeError, match="must be defined on a BoundedBody subclass"):
        type("Smuggled", (Early, handlers.ApiHandler), {})


def test_every_handler_of_the_gate_runs_after_its_body():
    """Every HTTP method of every handler class of the gate's application (API and pages) is the
    wrapped one: none reads a request before its body arrived and passed the checks."""
    from tornado.web import RequestHandler

    from pds_kernel.airlock.web import make_app, pages  # noqa: F401  (pages: its classes register)
    from tests.airlock.airlock_web import FakeIdentity

    app = make_app(None, FakeIdentity(), prefix=PREFIX, service=object())
    classes = {rule.target for rule in app.wildcard_router.rules if isinstance(rule.target, type)}
    gate_classes = [c for c in classes if issubclass(c, handlers.BoundedBody)]
    assert len(gate_classes) >= 15, gate_classes
    for cls in gate_classes:
        for name in handlers._METHODS:
            method = getattr(cls, name)
            assert method is getattr(RequestHandler, name) or getattr(method, "after_body", False), (cls, name)
