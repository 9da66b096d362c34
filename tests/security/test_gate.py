"""Attacks on the gate (the airlock web service), each made for real against a running gate.

Findings of the attack on the ``make run`` demo (issue #11, items 2, 5 and 6) and more: the author
fetching the contents of an unreleased file by every URL form and in every state, other people
(another researcher, another project, an admin who is not a checker) reading or reviewing,
self-review, double review, peeking at votes, path traversal, and hostile bodies (deep JSON, huge
bodies, wrong types, unknown fields, odd numbers and characters), XSS and CSRF. Each test is one
attempt and asserts that it fails. Fixtures and the marked table: ``gate_support.py``.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests
from gate_support import (  # noqa: F401  (the fixtures gate and gate_registry)
    NIR_LIKE,
    NIR_TABLE,
    PROJECT,
    SECRET_LABEL,
    SECRET_TABLE,
    Spaces,
    gate_fixture,
    gate_registry_fixture,
    leaks,
    spaces,
)

from pds_kernel.airlock.staging import RefusedFiles

pytestmark = pytest.mark.slow

SECRET_SHA = hashlib.sha256(SECRET_TABLE).hexdigest()  #: what a checker who read the default file saw
APPROVAL = json.dumps({"verdicts": {"0": {"decision": "approve", "comment": "x", "sha256": SECRET_SHA}}}).encode()

RAW_FORMS = ["requests/{id}/files/0", "api/requests/{id}/files/0", "requests/{id}/files/00",
             "requests/{id}/files/000000", "requests/{id}/download/0", "api/requests/{id}/download/0",
             "api/requests/{id}/files/0?inline=1", "requests/{id}/files/0?_xsrf=x"]


def fetch(gate, user: str, path: str) -> requests.Response:
    """GET ``path`` as ``user``: through the API (token) or the pages (cookie) as the path says."""
    if path.startswith("api/"):
        return gate.api(user, "GET", path[len("api/"):])
    return gate.browser(user).get(gate.base + path, allow_redirects=False, timeout=60)


def assert_refused(response: requests.Response, allowed=(403, 404, 409)) -> None:
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    assert not leaks(response.content), leaks(response.content)
    assert SECRET_TABLE not in response.content


# ---- the author never gets the contents of an unreleased file ---------------------------------
@pytest.mark.parametrize("form", RAW_FORMS)
def test_author_fetches_the_unreleased_file_by_url(gate, form):
    view = gate.submit()
    assert_refused(fetch(gate, "alice", form.format(id=view.id)), allowed=(400, 403, 404, 409))


def test_author_reads_the_table_on_the_request_page(gate):
    view = gate.submit()
    page = gate.browser("alice").get(gate.base + f"requests/{view.id}", timeout=60)
    assert page.status_code == 200  # the author follows the request: names, sizes, verdicts
    assert "t.csv" in page.text  # no SHA-256 before release: it confirms a guess (test_redteam20_gate.py)
    assert view.files[0].sha256 not in page.text and "SHA-256 shown once released" in page.text
    assert not leaks(page.text), leaks(page.text)
    assert f"files/{view.files[0].index}" not in page.text  # no raw-file link, no <img src>
    control = gate.browser("olga").get(gate.base + f"requests/{view.id}", timeout=60).text
    assert SECRET_LABEL in control  # the checker sees the table: the markers are real


def test_author_reads_cell_values_in_the_check_findings(gate):
    view = gate.submit()
    answer = gate.api("alice", "GET", f"requests/{view.id}")
    assert answer.status_code == 200
    assert not leaks(answer.text), leaks(answer.text)
    data = answer.json()
    assert data["justification"] == "" and data["context"] == {} and data["contents_visible"] is False
    findings = data["files"][0]["check"]["findings"]
    assert findings and all(set(f) <= {"rule", "status", "message", "row", "col", "line"} for f in findings)
    assert "small-cell" in {f["rule"] for f in findings}  # rule + location remain
    checker = gate.api("olga", "GET", f"requests/{view.id}").text
    assert "7 is below" in checker and "ZZQJUSTIFICATION" in checker


def test_author_exfiltrates_through_acro_rule_names_in_the_context(gate):
    """The ACRO record comes from the workspace: its check names would come back as rule names."""
    sha = hashlib.sha256(SECRET_TABLE).hexdigest()
    record = {"sha256": sha, "status": "fail", "label_columns": 1,
              "sdc": {"cells": {"ZZQEXFILTRATED-4-1-5-9": [[0, 0]]}}, "summary": "ZZQSUMMARY"}
    view = gate.submit(context={"acro": {"t.csv": record}})
    answer = gate.api("alice", "GET", f"requests/{view.id}")
    assert answer.status_code == 200 and not leaks(answer.text), leaks(answer.text)
    assert "ZZQ" in gate.api("olga", "GET", f"requests/{view.id}").text


@pytest.mark.parametrize("state", ["withdrawn", "rejected", "revoked", "released"])
def test_author_fetches_the_staged_file_in_a_later_state(gate, state):
    view = gate.submit()
    if state == "withdrawn":
        gate.service.withdraw("alice", view.id, "no longer needed")
    elif state == "rejected":
        gate.service.review("olga", view.id, {0: {"decision": "reject", "comment": "identifies people"}})
        gate.service.review("omar", view.id, {0: {"decision": "reject", "comment": "identifies people"}})
    else:
        gate.approve(view.id)
        gate.service.release("olga", view.id)
        if state == "revoked":
            gate.service.revoke("root", view.id, "released by mistake")
    assert gate.service.get_request("olga", view.id).state == state
    for form in ("requests/{id}/files/0", "api/requests/{id}/files/0"):
        assert_refused(fetch(gate, "alice", form.format(id=view.id)))
    download = fetch(gate, "alice", f"api/requests/{view.id}/download/0")
    if state == "released":  # released bytes come through the download, as designed
        assert download.status_code == 200 and download.content == SECRET_TABLE
    else:
        assert_refused(download)


def test_author_who_is_also_a_checker_of_the_project_reads_their_unreleased_file(gate):
    """bob is a researcher and an output checker of the project: as the author of a request he
    gets no contents by any form, and the author's redacted view, not the checker's."""
    view = gate.submit(author="bob")
    for form in RAW_FORMS:
        assert_refused(fetch(gate, "bob", form.format(id=view.id)), allowed=(400, 403, 404, 409))
    page = gate.browser("bob").get(gate.base + f"requests/{view.id}", timeout=60)
    answer = gate.api("bob", "GET", f"requests/{view.id}")
    assert page.status_code == 200 and answer.status_code == 200
    assert not leaks(page.text) and not leaks(answer.text), (leaks(page.text), leaks(answer.text))
    assert answer.json()["contents_visible"] is False

# ---- other people -----------------------------------------------------------------------------
def test_another_researcher_of_the_project_reads_the_request(gate):
    view = gate.submit()
    for form in ("requests/{id}", "requests/{id}/files/0", "api/requests/{id}", "api/requests/{id}/files/0"):
        assert_refused(fetch(gate, "carol", form.format(id=view.id)), allowed=(403,))


@pytest.mark.parametrize("user", ["mallory", "oscar"])
def test_member_of_another_project_reads_by_request_id(gate, user):
    """IDOR: a researcher and a checker of another project, with the request id in hand."""
    view = gate.submit()
    for form in ("requests/{id}", "requests/{id}/files/0", "api/requests/{id}", "api/requests/{id}/files/0",
                 "api/requests/{id}/download/0"):
        assert_refused(fetch(gate, user, form.format(id=view.id)), allowed=(403,))
    listed = gate.api(user, "GET", "requests", params={"scope": "all"}).json()["requests"]
    assert view.id not in json.dumps(listed)


def test_admin_reads_the_staged_file(gate):
    view = gate.submit()
    for form in ("requests/{id}/files/0", "api/requests/{id}/files/0"):
        assert_refused(fetch(gate, "root", form.format(id=view.id)), allowed=(403,))
    page = gate.browser("root").get(gate.base + f"requests/{view.id}", timeout=60)
    assert page.status_code == 200 and not leaks(page.text)  # metadata only


def test_admin_reviews_and_counts_toward_the_quorum(gate):
    view = gate.submit()
    gate.service.review("olga", view.id, {0: {"decision": "approve", "comment": "exception"}})
    r = gate.api("root", "POST", f"requests/{view.id}/reviews",
                 json={"verdicts": {"0": {"decision": "approve", "comment": "fine by me", "sha256": SECRET_SHA}}})
    assert r.status_code == 403, r.text
    after = gate.service.get_request("olga", view.id)
    assert after.state == "under_review" and after.complete_reviews == 1


def test_admin_releases_an_approved_request(gate, settings):
    view = gate.submit()
    gate.approve(view.id)
    r = gate.api("root", "POST", f"requests/{view.id}/release")
    assert r.status_code == 403, r.text
    assert gate.service.get_request("olga", view.id).state == "approved"
    assert not (settings.paths.outbox / PROJECT / view.id).exists()


def test_admin_finds_requests_in_the_review_queue(gate):
    view = gate.submit()
    queue = gate.api("root", "GET", "requests", params={"scope": "queue"})
    assert queue.status_code == 200 and queue.json()["requests"] == []
    assert [r["id"] for r in gate.api("olga", "GET", "requests", params={"scope": "queue"}).json()["requests"]] \
        == [view.id]
    page = gate.browser("root").get(gate.base + f"requests/{view.id}", timeout=60).text
    assert 'id="review-form"' not in page


def test_checker_reviews_their_own_request(gate):
    view = gate.submit(author="bob")  # bob is a researcher and a checker of the project
    r = gate.api("bob", "POST", f"requests/{view.id}/reviews",
                 json={"verdicts": {"0": {"decision": "approve", "comment": "mine is fine", "sha256": SECRET_SHA}}})
    assert r.status_code == 403, r.text
    assert_refused(fetch(gate, "bob", f"api/requests/{view.id}/files/0"), allowed=(403,))
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_checker_reviews_twice_to_make_the_quorum(gate):
    view = gate.submit()
    body = {"verdicts": {"0": {"decision": "approve", "comment": "exception", "sha256": SECRET_SHA}}}
    assert gate.api("olga", "POST", f"requests/{view.id}/reviews", json=body).status_code == 200
    again = gate.api("olga", "POST", f"requests/{view.id}/reviews", json=body)
    assert again.status_code == 409, again.text
    after = gate.service.get_request("olga", view.id)
    assert after.state == "under_review" and after.complete_reviews == 1


def test_checker_reads_the_other_votes_before_voting(gate):
    view = gate.submit()
    gate.service.review("olga", view.id, {0: {"decision": "reject", "comment": "ZZQVOTE of olga"}})
    api = gate.api("omar", "GET", f"requests/{view.id}").json()
    assert api["reviews_hidden"] is True and api["reviews"] == []
    page = gate.browser("omar").get(gate.base + f"requests/{view.id}", timeout=60).text
    assert "ZZQVOTE" not in page and "ZZQVOTE" not in json.dumps(api)


# ---- addressing: traversal, odd ids and numbers ------------------------------------------------
@pytest.mark.parametrize("path", [
    "requests/{id}/files/..%2f..%2f..%2fpds.db", "requests/{id}/files/%2e%2e", "requests/{id}/files/0%00",
    "requests/{id}/files/0/../../../pds.db", "api/requests/{id}/files/0%2f..%2f1", "api/requests/{id}/files/-1",
    "api/requests/{id}/files/1e3", "api/requests/{id}/files/9999999", "requests/{id}/files/\u0660",
    "requests/..%2f..%2fstaging/files/0", "api/requests/{ID}/files/0", "api/requests/{id}%00/files/0",
])
def test_path_traversal_and_odd_file_numbers(gate, path):
    view = gate.submit()
    url = path.replace("{ID}", view.id.upper()).replace("{id}", view.id)
    r = fetch(gate, "olga", url)  # a checker, who may read this request's files: nothing else
    assert r.status_code in (400, 404), (r.status_code, r.text[:200])
    assert b"SQLite" not in r.content and SECRET_TABLE not in r.content


def test_negative_and_huge_numbers_in_a_review(gate):
    view = gate.submit()
    for key in ("-1", "99999999999999999999999", "1e3", "0x0", " 0", "\u0660", "１"):
        r = gate.api("olga", "POST", f"requests/{view.id}/reviews",
                     json={"verdicts": {key: {"decision": "approve", "comment": "x"}}})
        assert r.status_code == 400 and "error" in r.json(), (key, r.status_code, r.text)
    bad_length = requests.post(gate.base + f"api/requests/{view.id}/withdraw", data=b"",
                               headers={"Authorization": "token fake-alice", "Content-Length": "-5"}, timeout=30)
    assert bad_length.status_code == 400
    assert gate.service.get_request("olga", view.id).state == "submitted"


@pytest.mark.parametrize("name", ["t\u202ecsv.exe", "\uff0e\uff0e\uff0fpds.csv", "../../x.csv", "t.csv\x00.exe",
                                  "%2e%2e%2ft.csv", "t\u0301.csv"])
def test_unicode_and_traversal_in_uploaded_file_names(gate, name, settings):
    r = gate.api("alice", "POST", "requests", data={"project": PROJECT, "justification": "x"},
                 files=[("files", (name, b"a,n\nx,20\n", "text/csv"))])
    assert r.status_code == 400, (r.status_code, r.text)
    assert not any(p.name.endswith(".exe") or p.name == "pds.csv" for p in settings.paths.staging.rglob("*"))


# ---- bodies ------------------------------------------------------------------------------------
def test_deeply_nested_json_review(gate):
    view = gate.submit()
    for body in ("[" * 100_000 + "]" * 100_000,
                 '{"verdicts": {"0": {"decision": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}}}"):
        r = gate.api("olga", "POST", f"requests/{view.id}/reviews", data=body,
                     headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "error" in r.json(), (r.status_code, r.text[:200])
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_deeply_nested_json_context_at_submission(gate):
    context = '{"acro": ' * 3000 + "{}" + "}" * 3000
    r = gate.api("alice", "POST", "requests", data={"project": PROJECT, "justification": "x", "context": context},
                 files=[("files", ("t.csv", b"a,n\nx,20\n", "text/csv"))])
    assert r.status_code == 400 and "nests deeper" in r.json()["error"], r.text[:300]
    wrong = gate.api("alice", "POST", "requests",
                     data={"project": PROJECT, "justification": "x", "context": '{"tables": ["t.csv"]}'},
                     files=[("files", ("t.csv", b"a,n\nx,20\n", "text/csv"))])
    assert wrong.status_code == 400, wrong.text  # was an AttributeError (500) in the checks


def test_huge_body_is_refused_with_413_quickly(gate):
    view = gate.submit()
    started = time.monotonic()
    r = gate.api("olga", "POST", f"requests/{view.id}/reviews", data=Spaces(120 * 1024 * 1024, b"{"),
                 headers={"Content-Type": "application/json"})
    took = time.monotonic() - started
    assert r.status_code == 413 and "at most" in r.json()["error"], (r.status_code, r.text[:200])
    assert took < 30, took
    assert gate.api("olga", "GET", f"requests/{view.id}").status_code == 200  # the gate still serves


def test_huge_chunked_body_without_length(gate):
    view = gate.submit()
    r = gate.api("olga", "POST", f"requests/{view.id}/reviews", data=spaces(120 * 1024 * 1024),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_huge_upload_is_refused_before_staging(gate, settings):
    size = 125 * 1024 * 1024  # over the 100 MB of a request
    r = gate.api("alice", "POST", "requests", data=Spaces(size),
                 headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert not any(p.is_file() for p in settings.paths.staging.rglob("*"))


@pytest.mark.parametrize("ctype,body", [
    ("text/plain", APPROVAL),
    ("application/x-www-form-urlencoded", b"verdicts=0"),
    ("application/xml", b"<verdicts/>"),
    ("", APPROVAL),
])
def test_review_with_a_wrong_content_type(gate, ctype, body):
    view = gate.submit()
    r = gate.api("olga", "POST", f"requests/{view.id}/reviews", data=body, headers={"Content-Type": ctype})
    assert r.status_code in (400, 415), (r.status_code, r.text)
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_compressed_body_bomb(gate):
    import gzip

    view = gate.submit()
    bomb = gzip.compress(b"[" * 10_000_000)
    r = gate.api("olga", "POST", f"requests/{view.id}/reviews", data=bomb,
                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code in (400, 415), (r.status_code, r.text)


@pytest.mark.parametrize("body", [
    {"verdicts": {"0": {"decision": "approve", "comment": "x", "sha256": SECRET_SHA}}, "as_admin": True},
    {"verdicts": {"0": {"decision": "approve", "comment": "x", "sha256": SECRET_SHA, "reviewer": "omar"}}},
    {"verdicts": {"0": {"decision": ["approve"], "comment": "x", "sha256": SECRET_SHA}}},
    {"verdicts": {"0": {"decision": "approve", "comment": {"text": "x"}, "sha256": SECRET_SHA}}},
    {"verdicts": {"0": {"decision": "approve", "comment": "x", "sha256": 12}}},
    {"verdicts": [{"decision": "approve"}]},
    {"verdicts": {"0": {"decision": "approve\u200b", "comment": "x", "sha256": SECRET_SHA}}},
    {"verdicts": {"0": {"decision": "approve", "comment": "x"}}},  # no sha256: which bytes were read?
    {"verdicts": {"0": {"decision": "approve", "comment": "x", "sha256": ""}}},
    {"verdicts": {"0": {"decision": "approve", "comment": "x", "sha256": SECRET_SHA.upper()}}},
])
def test_review_with_unknown_fields_or_wrong_types(gate, body):
    view = gate.submit()
    r = gate.api("olga", "POST", f"requests/{view.id}/reviews", json=body)
    assert r.status_code == 400 and r.json()["error"], (r.status_code, r.text)
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_submission_form_with_unknown_fields(gate):
    r = gate.api("alice", "POST", "requests",
                 data={"project": PROJECT, "justification": "x", "reviews_required": "0", "state": "approved"},
                 files=[("files", ("t.csv", b"a,n\nx,20\n", "text/csv"))])
    assert r.status_code == 400 and "unknown field" in r.json()["error"], r.text
    twice = gate.api("alice", "POST", "requests", data=[("project", PROJECT), ("project", "other-2024"),
                                                        ("justification", "x")],
                     files=[("files", ("t.csv", b"a,n\nx,20\n", "text/csv"))])
    assert twice.status_code == 400, twice.text


def test_control_characters_in_a_reason(gate):
    view = gate.submit()
    r = gate.api("alice", "POST", f"requests/{view.id}/withdraw", json={"reason": "bye\u0000\u001b[2J"})
    assert r.status_code == 400, r.text
    assert gate.service.get_request("olga", view.id).state == "submitted"


@pytest.mark.parametrize("query", ["scope=all&scope=mine", "state=x%27%20OR%20%271%27%3D%271", "project=..%2F..%2Fetc",
                                   "admin=1", "scope=everything", "project=%00"])
def test_odd_query_parameters(gate, query):
    gate.submit()
    r = requests.get(gate.base + "api/requests?" + query, headers={"Authorization": "token fake-mallory"},
                     timeout=30)
    assert r.status_code == 400 and r.json()["error"], (r.status_code, r.text)


# ---- the checker's page: XSS, CSRF ------------------------------------------------------------
def test_script_in_justification_and_comment_on_the_checkers_page(gate):
    script = "<script>alert(1)</script>"
    attr = '"><img src=x onerror=alert(2)>'
    view = gate.submit(justification=f"Table 1 {script}", content=b"a,n\nx,20\n")
    gate.service.review("olga", view.id, {0: {"decision": "approve", "comment": f"ok {attr}"}})
    gate.service.review("omar", view.id, {0: {"decision": "approve", "comment": "ok"}})
    page = gate.browser("omar").get(gate.base + f"requests/{view.id}", timeout=60)
    assert page.status_code == 200
    assert script not in page.text and "&lt;script&gt;" in page.text
    assert attr not in page.text and "onerror=alert(2)" in page.text.replace("&#34;", '"')  # shown, inert
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]


def test_review_form_post_without_xsrf_token(gate):
    view = gate.submit(content=b"a,n\nx,20\n")
    olga = gate.browser("olga")
    form = {"decision_0": "approve", "comment_0": "fine", "sha_0": view.files[0].sha256}
    forged = olga.post(gate.base + f"requests/{view.id}/review", data=form, allow_redirects=False, timeout=30,
                       headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403
    guessed = olga.post(gate.base + f"requests/{view.id}/review", data={**form, "_xsrf": "2|00|00|00"},
                        allow_redirects=False, timeout=30)
    assert guessed.status_code == 403
    assert gate.service.get_request("olga", view.id).complete_reviews == 0
    token = gate.xsrf(olga, f"requests/{view.id}")  # control: the real form works
    assert olga.post(gate.base + f"requests/{view.id}/review", data={**form, "_xsrf": token},
                     allow_redirects=False, timeout=30).status_code == 302


def test_nir_in_a_table_reaches_the_author_through_findings(gate):
    """A table holding a NIR is refused at submission (pre-gate); the refusal the author gets
    names the column and the rule, never the identifier, and nothing is kept for anyone to open."""
    with pytest.raises(RefusedFiles) as refused:
        gate.submit(content=NIR_TABLE)
    said = str(refused.value)
    assert "identifier" in said.lower() or "nir" in said.lower()
    assert NIR_LIKE not in said and NIR_LIKE.replace(" ", "") not in said
    assert gate.service.list_requests("alice") == []


def test_request_smuggling_with_both_length_and_chunked(gate):
    """A body framed two ways (Content-Length and chunked): a proxy and the gate could disagree on
    where the next request starts; the gate must refuse it rather than run the hidden request."""
    import socket
    from urllib.parse import urlparse

    view = gate.submit()
    url = urlparse(gate.base)
    hidden = (f"POST {url.path}api/requests/{view.id}/reviews HTTP/1.1\r\nHost: x\r\n"
              "Authorization: token fake-olga\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(APPROVAL)}\r\n\r\n{APPROVAL.decode()}")
    outer = (f"POST {url.path}api/requests/{view.id}/withdraw HTTP/1.1\r\nHost: x\r\n"
             "Authorization: token fake-alice\r\nContent-Type: application/json\r\n"
             f"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}")
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(outer.encode())
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    after = gate.service.get_request("olga", view.id)
    assert after.state == "submitted" and after.complete_reviews == 0


def test_admin_reviews_through_the_page_form(gate):
    """The page path to a review (cookie session, real XSRF token) refuses an admin like the API."""
    view = gate.submit(content=b"a,n\nx,20\n")
    root = gate.browser("root")
    token = gate.xsrf(root, f"requests/{view.id}")  # the page offers root a withdraw form, with its token
    form = {"decision_0": "approve", "comment_0": "fine", "sha_0": view.files[0].sha256, "_xsrf": token}
    r = root.post(gate.base + f"requests/{view.id}/review", data=form, allow_redirects=False, timeout=30)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


def test_script_in_a_submitted_table_and_text_on_the_checkers_page(gate):
    """The checker's page renders the author's files: a cell or a line of text must stay text."""
    payload = "<script>alert(3)</script>"
    table = gate.submit(content=f'group,n\n"{payload}",20\nb,30\n'.encode())
    text = gate.submit(content=f"method\n</pre>{payload}<pre>\n".encode(), name="notes.txt")
    for view in (table, text):
        page = gate.browser("olga").get(gate.base + f"requests/{view.id}", timeout=60)
        assert page.status_code == 200 and "alert(3)" in page.text  # rendered for the checker...
        assert payload not in page.text and "</pre><script>" not in page.text  # ...as inert text


def test_member_of_another_project_resubmits_files_into_a_request(gate):
    """IDOR on a write: replace or remove files (by name) of another project's request."""
    view = gate.submit(content=b"a,n\nx,20\n")
    for who in ("olga", "omar"):
        gate.service.review(who, view.id, {0: {"decision": "request_changes", "comment": "round"}})
    r = gate.api("mallory", "POST", f"requests/{view.id}/resubmit", data={"remove": "t.csv"},
                 files=[("files", ("t.csv", b"a,n\nstolen,99\n", "text/csv"))])
    assert r.status_code == 403, (r.status_code, r.text)
    after = gate.service.get_request("olga", view.id)
    assert after.state == "changes_requested" and after.round == 1
    assert after.files[0].sha256 == view.files[0].sha256


@pytest.mark.parametrize("size", [700, 300 * 1024, 1024 * 1024 - 400])
def test_upload_with_a_refused_token_gets_its_answer(gate, settings, size):
    """An upload with a token the gate refuses (revoked, unknown): the body arrives after the headers
    were refused. Closing on its unread bytes reset the connection, and the hub's proxy passed a 503
    on instead of the 401 (an unauthenticated client could not tell why). Bodies up to 1 MiB are now
    read and dropped first; nothing of them is kept."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(gate.base)
    body = (b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"t.csv\"\r\n\r\n"
            + b"a" * (size - 100) + b"\r\n--x--\r\n")
    head = (f"POST {url.path}api/requests HTTP/1.1\r\nHost: x\r\nAuthorization: token revoked-abc\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head)
        time.sleep(0.2)  # the headers refused before the body comes, as behind a proxy asking the hub
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):  # a reset raises ConnectionResetError here
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"authenticate with a JupyterHub token" in answer
    assert not any(p.is_file() for p in settings.paths.staging.rglob("*"))
    assert gate.api("alice", "GET", "me").json() == {"name": "alice"}


def test_an_unauthenticated_body_over_the_drain_limit_is_not_read(gate):
    """The drain is for small bodies only: a larger one declared by a client without a valid token
    is refused at once (the connection closes), as before: no one makes the gate read 256 MiB."""
    r = gate.api(None, "POST", "requests", data=b"x" * (2 * 1024 * 1024),
                 headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 401, r.status_code
