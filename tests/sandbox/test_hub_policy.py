"""The hub socket's request rules (pure): the five requests a notebook server makes pass, framed
as jupyterhub-singleuser frames them; near misses are refused with a reason."""

from __future__ import annotations

import pytest

from pds_kernel.sandbox.hub_policy import MAX_HEAD, HubApiPolicy, RequestRefused, parse_head

TOKEN = "a" * 32
POLICY = HubApiPolicy.for_token("alice", TOKEN, server="diabetes-t2")


def head(request_line: str, *headers: str) -> bytes:
    return ("\r\n".join([request_line, "Host: 127.0.0.1:8081", *headers]) + "\r\n\r\n").encode()


@pytest.mark.parametrize("raw", [
    head("GET /hub/api HTTP/1.1", "Connection: close", "Accept-Encoding: gzip"),
    head("GET /hub/api/ HTTP/1.1"),
    head("GET /hub/api/user HTTP/1.1", "Authorization: token " + "b" * 32),
    head("GET /hub/api/user HTTP/1.1", "Authorization: Bearer " + TOKEN),
    head("POST /hub/api/oauth2/token HTTP/1.1", "Authorization: token " + TOKEN, "Content-Length: 120",
         "Content-Type: application/x-www-form-urlencoded"),
    head("POST /hub/api/users/alice/activity HTTP/1.1", "Authorization: token " + TOKEN,
         "Content-Type: application/json", "Content-Length: 80"),
    head("POST /hub/api/pds/served-bytes/alice/diabetes-t2 HTTP/1.1", "Authorization: token " + TOKEN,
         "Content-Type: application/json", "Content-Length: 30"),
])
def test_the_requests_of_a_notebook_server_pass(raw):
    parsed = parse_head(raw)
    POLICY.check(parsed)
    assert parsed.raw == raw


@pytest.mark.parametrize("raw, reason", [
    (head("POST /hub/login HTTP/1.1", "Content-Length: 3"), "not a request"),
    (head("POST /hub/api/users/alice/tokens HTTP/1.1", "Authorization: token " + TOKEN), "not a request"),
    (head("POST /hub/api/users/bob/activity HTTP/1.1", "Authorization: token " + TOKEN), "another user"),
    (head("POST /hub/api/users/alice/activity HTTP/1.1", "Authorization: token " + "b" * 32), "own token"),
    (head("POST /hub/api/oauth2/token HTTP/1.1"), "own token"),
    (head("POST /hub/api/pds/served-bytes/alice/mi-outcomes HTTP/1.1", "Authorization: token " + TOKEN),
     "another workspace"),
    (head("POST /hub/api/pds/served-bytes/bob/diabetes-t2 HTTP/1.1", "Authorization: token " + TOKEN),
     "another workspace"),
    (head("POST /hub/api/pds/served-bytes/alice/diabetes-t2 HTTP/1.1", "Authorization: token " + "b" * 32),
     "own token"),
    (head("GET /hub/api/pds/served-bytes/alice/diabetes-t2 HTTP/1.1", "Authorization: token " + TOKEN),
     "not a request"),
    (head("GET /hub/api/user HTTP/1.1"), "needs a token"),
    (head("GET /hub/api HTTP/1.1", "Authorization: token " + "b" * 32), "version check"),
    (head("GET /hub/api/user HTTP/1.1", "Authorization: token " + TOKEN, "Content-Length: 4"), "no body"),
    (head("GET /hub/api/user?x=1 HTTP/1.1", "Authorization: token " + TOKEN), "plain absolute path"),
    (head("GET /hub/api/%75ser HTTP/1.1", "Authorization: token " + TOKEN), "plain absolute path"),
    (head("GET /hub/api/users/alice/../../login HTTP/1.1"), "'..'"),
    (head("GET http://h/hub/api/user HTTP/1.1"), "plain absolute path"),
    (head("GET /hub/api/user HTTP/1.0"), "HTTP/1.1"),
    (head("GET /hub/api/user HTTP/1.1", "Cookie: a=b"), "cookie"),
    (head("GET /hub/api/user HTTP/1.1", " folded"), "folding"),
    (head("GET /hub/api/user HTTP/1.1", "Content-Length: 1", "Content-Length: 1"), "repeated"),
    (head("GET /hub/api/user HTTP/1.1", "Content-Length: -1"), "Content-Length"),
    (head("POST /hub/api/oauth2/token HTTP/1.1", "Content-Length: 999999"), "body over"),
    (head("GET /hub/api/user HTTP/1.1", "Authorization: Basic YTpi"), "Authorization"),
    (head("GET /hub/api/user HTTP/1.1", "Connection: Upgrade"), "Connection"),
    (head("GET /hub/api/user HTTP/1.1", "Bad Name: x"), "malformed header"),
    (b"GET /hub/api/user HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", "bare CR, LF"),
    (head("GET /hub/api/user HTTP/1.1", "X-Pad: " + "a" * MAX_HEAD), "over"),
])
def test_near_misses_are_refused_with_a_reason(raw, reason):
    with pytest.raises(RequestRefused) as refused:
        POLICY.check(parse_head(raw))
    assert reason.lower() in refused.value.reason.lower()


def test_a_policy_without_a_known_token_accepts_no_token_as_the_servers():
    blind = HubApiPolicy(user="alice", token_sha256="")
    with pytest.raises(RequestRefused):
        blind.check(parse_head(head("POST /hub/api/users/alice/activity HTTP/1.1",
                                    "Authorization: token " + TOKEN)))
