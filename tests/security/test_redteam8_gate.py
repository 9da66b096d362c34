"""Red team, eighth round: the gate's web service over HTTP (the production application on loopback,
tests/security/gate_support.py's people), as each role, with the methods, headers and timings a
browser or a script can use. Each test asserts that the attack fails.

Six got through before their fix: an administrator who is also an output checker of the project
reviewed (and made the quorum for) files they had submitted on behalf of a researcher, as that
researcher with ``--as``, or resubmitted for them, or kept an approval given before removing a file
for them, counted on the page too (5 attempts); and an output checker's revocation of an approved import, made while its
release was copying, answered "revoked" while the files landed in the project's ``/imports`` all
the same.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from datetime import date

import pytest
import requests
from gate_support import SECRET_TABLE, leaks
from imports_support import (  # noqa: F401  (fixtures)
    PROJECT,
    gate_registry_fixture,
    import_gate_fixture,
    settings_fixture,
)

from pds_kernel.airlock.models import RequestFile
from pds_kernel.airlock.staging import request_dir
from pds_kernel.db import transaction
from pds_kernel.permissions_actors import Impersonation
from pds_kernel.registry import Role

CLEAN = b"group,n\nA,120\nB,130\n"
CLEAN_APPROVAL = {"verdicts": {"0": {"decision": "approve", "sha256": hashlib.sha256(CLEAN).hexdigest()}}}


@pytest.fixture(name="gate")
def gate_fixture(import_gate):
    """The export side of the same gate (one fixture, so both sides share the ClamAV settings)."""
    from gate_support import Gate

    return Gate(import_gate.base, import_gate.service, import_gate.service.registry)


def released(gate, content: bytes = SECRET_TABLE, name: str = "t.csv"):
    view = gate.submit(content=content, name=name)
    for who in ("olga", "omar"):
        gate.service.review(who, view.id, {0: {"decision": "approve", "comment": "an exception"}})
    gate.service.release("olga", view.id)
    return view


# ---- methods, ranges, caches -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE"])
def test_other_methods_on_files_and_downloads(gate, method):
    """No method but GET reads a file, for anyone; nothing answers with the bytes or a 2xx."""
    view = released(gate)
    paths = [f"requests/{view.id}/files/0", f"requests/{view.id}/download/0",
             f"api/requests/{view.id}/files/0", f"api/requests/{view.id}/download/0"]
    for user in ("alice", "mallory", "olga", None):
        for path in paths:
            headers = {"Authorization": f"token fake-{user}"} if user and path.startswith("api/") else {}
            cookies = {"fake_user": user} if user and not path.startswith("api/") else {}
            r = requests.request(method, gate.base + path, headers=headers, cookies=cookies,
                                 allow_redirects=False, timeout=30)
            assert r.status_code in (401, 403, 405), (method, user, path, r.status_code)
            assert not leaks(r.content) and SECRET_TABLE not in r.content


def test_range_request_by_anyone_but_the_author(gate):
    """A ``Range`` header is no way around the author-only download."""
    view = released(gate)
    for user in ("mallory", "carol", "olga", "oscar", "root"):
        r = gate.api(user, "GET", f"requests/{view.id}/download/0", headers={"Range": "bytes=0-15"})
        assert r.status_code == 403, (user, r.status_code)
        assert not leaks(r.content)
    mine = gate.api("alice", "GET", f"requests/{view.id}/download/0", headers={"Range": "bytes=0-15"})
    assert mine.status_code == 200 and mine.content == SECRET_TABLE  # control: the whole file, to her


def test_released_file_is_never_kept_by_a_shared_cache_nor_shown_inline(gate):
    """The author's download: private, never stored by a proxy, never rendered by the browser."""
    view = released(gate, content=b"<html><script>alert(1)</script>,n\nA,120\nB,130\n", name="page.csv")
    r = gate.browser("alice").get(gate.base + f"requests/{view.id}/download/0", timeout=30)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store" and "public" not in r.headers["Cache-Control"]
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Disposition"] == 'attachment; filename="page.csv"'
    assert "sandbox" in r.headers["Content-Security-Policy"]


def test_staged_table_of_html_served_to_the_checker(gate):
    """Stored XSS in the checker's browser: a staged ``.csv`` that is an HTML page."""
    view = gate.submit(content=b"<svg onload=alert(1)>,n\nA,120\nB,130\n", name="x.csv")
    r = gate.browser("olga").get(gate.base + f"requests/{view.id}/files/0", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in r.headers["Content-Security-Policy"] and r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("name", ['a".csv', "a\r\nSet-Cookie: x=1.csv", "a;filename*=UTF-8''x.html.csv",
                                  "a\u202egpj.csv", "a\\b.csv"],
                         ids=["quote", "crlf", "extra-parameter", "right-to-left", "backslash"])
def test_file_name_that_rewrites_the_content_disposition(gate, name):
    r = gate.api("alice", "POST", "requests", data={"project": PROJECT, "justification": "x"},
                 files=[("files", (name, CLEAN, "text/csv"))])
    assert r.status_code == 400 and "invalid file name" in r.json()["error"], (r.status_code, r.text)


# ---- cross-site requests, redirects ------------------------------------------------------------
def test_review_form_posted_as_json_or_text_from_another_site(gate):
    """Bodies a cross-site page can send without a preflight (text/plain) or with a cookie (JSON)."""
    view = gate.submit(content=CLEAN)
    olga = gate.browser("olga")
    for ctype, body in (("application/json", '{"decision_0": "approve"}'), ("text/plain", "decision_0=approve")):
        r = olga.post(gate.base + f"requests/{view.id}/review", data=body, allow_redirects=False, timeout=30,
                      headers={"Content-Type": ctype, "Origin": "https://evil.example"})
        assert r.status_code in (403, 415), (ctype, r.status_code)
    api = olga.post(gate.base + f"api/requests/{view.id}/reviews", json=CLEAN_APPROVAL,
                    timeout=30)  # the API with the page's cookie only: tokens alone authenticate it
    assert api.status_code == 401
    assert gate.service.get_request("olga", view.id).complete_reviews == 0


@pytest.mark.parametrize("path", ["/evil.example/", "/%2Fevil.example/", "requests/%2F%2Fevil.example",
                                  "requests/..%2F..%2F..%2F%2Fevil.example", "static/..%2F..%2F%2Fevil.example",
                                  "requests?next=https://evil.example", "oauth_callback?next=//evil.example"])
def test_redirect_to_another_site(gate, path):
    r = gate.browser("alice").get(gate.base + path.lstrip("/") if not path.startswith("//") else path,
                                  allow_redirects=False, timeout=30)
    location = r.headers.get("Location", "")
    assert "evil.example" not in location and not location.startswith("//"), (path, r.status_code, location)


# ---- who reviews ---------------------------------------------------------------------------------
@pytest.fixture(name="admin_checker")
def admin_checker_fixture(gate):
    """adam: a platform administrator (made by root, who needs no second approval here) who is also an output checker of the project."""
    registry = gate.registry
    registry.upsert_user("root", "adam", is_admin=True)
    registry.add_member("root", PROJECT, "adam", Role.OUTPUT_CHECKER, date(2099, 12, 31))
    return "adam"


def test_admin_checker_reviews_what_they_submitted_on_behalf_of_a_researcher(gate, admin_checker):
    """adam picks the bytes (``author=alice``), then approves them as a checker: four eyes become two."""
    r = gate.api("adam", "POST", "requests", data={"project": PROJECT, "justification": "for alice", "author": "alice"},
                 files=[("files", ("t.csv", CLEAN, "text/csv"))])
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    vote = gate.api("adam", "POST", f"requests/{rid}/reviews", json=CLEAN_APPROVAL)
    assert vote.status_code == 403 and "never reviews" in vote.json()["error"], (vote.status_code, vote.text)
    gate.service.review("olga", rid, {0: {"decision": "approve", "comment": ""}})
    assert gate.service.get_request("olga", rid).state == "under_review"  # adam's vote made no quorum
    adams = [e for e in gate.service.runtime.audit.entries(action="airlock.review.submit") if e.actor == "adam"]
    assert [e.outcome for e in adams] == ["denied"] and "never reviews" in adams[0].details["reason"]
    # nor is the review offered to him: the request's page and API list no "review" action for adam
    assert "review" not in gate.service.get_request("adam", rid).actions
    assert "review" in gate.service.get_request("omar", rid).actions  # another checker of the project


def test_admin_checker_reviews_what_they_submitted_acting_as_the_researcher(gate, admin_checker):
    """The same through ``pds --as alice``: the request's author is alice, the bytes are adam's."""
    view = gate.service.create(Impersonation("alice", "adam"), PROJECT, [("t.csv", io.BytesIO(CLEAN))],
                               "as alice")
    vote = gate.api("adam", "POST", f"requests/{view.id}/reviews", json=CLEAN_APPROVAL)
    assert vote.status_code == 403 and "never reviews" in vote.json()["error"], (vote.status_code, vote.text)


def test_admin_checker_resubmits_files_into_a_request_then_reviews(gate, admin_checker):
    """An administrator may answer a request for changes for its author: then they do not review it."""
    view, resubmitted = gate.submit(content=CLEAN), b"group,n\nA,121\nB,130\n"
    for who in ("olga", "omar"):
        gate.service.review(who, view.id, {0: {"decision": "request_changes", "comment": "a round"}})
    r = gate.api("adam", "POST", f"requests/{view.id}/resubmit", data={"justification": "fixed"},
                 files=[("files", ("t.csv", resubmitted, "text/csv"))])
    assert r.status_code == 200, r.text
    vote = gate.api("adam", "POST", f"requests/{view.id}/reviews",
                    json={"verdicts": {"0": {"decision": "approve",
                                             "sha256": hashlib.sha256(resubmitted).hexdigest()}}})
    assert vote.status_code == 403 and "never reviews" in vote.json()["error"], (vote.status_code, vote.text)


def test_checker_who_did_not_submit_still_reviews(gate, admin_checker):
    """Control: adam reviews a request alice submitted herself."""
    view = gate.submit(content=CLEAN)
    vote = gate.api("adam", "POST", f"requests/{view.id}/reviews", json=CLEAN_APPROVAL)
    assert vote.status_code == 200, vote.text


# ---- races ---------------------------------------------------------------------------------------
def test_approval_racing_the_withdrawal(gate):
    """The last approval and the author's withdrawal at once: never both a withdrawal and a decision."""
    for _ in range(3):
        view = gate.submit(content=CLEAN)
        gate.service.review("olga", view.id, {0: {"decision": "approve", "comment": ""}})
        answers = {}

        def act(who, method, path, body, answers=answers):
            answers[who] = gate.api(who, method, path, json=body)

        threads = [threading.Thread(target=act, args=("omar", "POST", f"requests/{view.id}/reviews",
                                                      CLEAN_APPROVAL)),
                   threading.Thread(target=act, args=("alice", "POST", f"requests/{view.id}/withdraw",
                                                      {"reason": "changed my mind"}))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        state = gate.service.get_request("olga", view.id).state
        ok = {who for who, r in answers.items() if r.status_code == 200}
        assert len(ok) == 1, {w: (r.status_code, r.text[:100]) for w, r in answers.items()}
        assert all(r.status_code in (200, 409) for r in answers.values())
        assert state == ("approved" if ok == {"omar"} else "withdrawn")


def _paused_release(import_gate):
    """An approved import whose release will stop inside its copy, after it took the release claim:
    the staged copy is swapped for a FIFO (a stand-in for a slow disk). Returns (request id, bytes,
    FIFO path)."""
    content = b"print('tool')\n"
    rid = import_gate.upload("alice", "tool.py", content).json()["id"]
    for who in ("olga", "omar"):
        r = import_gate.api(who, "POST", f"requests/{rid}/reviews",
                            json={"verdicts": {"0": {"decision": "approve", "comment": "read it",
                                                     "sha256": hashlib.sha256(content).hexdigest()}}})
        assert r.status_code == 200, r.text
    service = import_gate.service
    with transaction(service.sessions) as s:
        stored = s.query(RequestFile).filter_by(request_id=rid).one().stored_name
    fifo = request_dir(service.settings.paths.staging, PROJECT, rid) / stored
    fifo.unlink()
    os.mkfifo(fifo)
    return rid, content, fifo


def test_revoking_an_import_while_its_release_copies(import_gate):
    """A checker revokes the approval while the release is copying: the gate must not answer
    "revoked" and then put the files in every workspace of the project."""
    rid, content, fifo = _paused_release(import_gate)
    imports = import_gate.service.settings.paths.imports / PROJECT
    answers = {}
    release = threading.Thread(target=lambda: answers.setdefault(
        "release", import_gate.api("olga", "POST", f"requests/{rid}/release", json={})))
    release.start()
    deadline = time.monotonic() + 30
    while not list(imports.glob(f".tmp-{rid}-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    revoke = import_gate.api("omar", "POST", f"requests/{rid}/revoke", json={"reason": "a secret in it"})
    with open(fifo, "wb") as writer:  # the copy goes on
        writer.write(content)
    release.join(60)
    state = import_gate.api("olga", "GET", f"requests/{rid}").json()["state"]
    mounted = (imports / rid).exists()
    assert not (state == "revoked" and mounted), "revoked, yet in the workspaces' /imports"
    assert revoke.status_code == 409 and "being released" in revoke.json()["error"], (revoke.status_code, revoke.text)
    assert answers["release"].status_code == 200 and state == "released" and mounted
    again = import_gate.api("omar", "POST", f"requests/{rid}/revoke", json={"reason": "a secret in it"})
    assert again.status_code == 403  # released: an admin revokes it now, as the refusal said


def test_approval_replayed_on_the_resubmitted_file(gate):
    """olga read round 1 and approves with its SHA-256 after the author replaced the file: the
    approval of bytes she never saw is refused, over the API and through the page's form."""
    view = gate.submit(content=CLEAN)
    seen = view.files[0].sha256
    for who in ("olga", "omar"):
        gate.service.review(who, view.id, {0: {"decision": "request_changes", "comment": "round 2"}})
    gate.service.resubmit("alice", view.id, [("t.csv", io.BytesIO(b"group,n\nA,999\nB,130\n"))], [], "round 2")
    api = gate.api("olga", "POST", f"requests/{view.id}/reviews",
                   json={"verdicts": {"0": {"decision": "approve", "sha256": seen}}})
    assert api.status_code == 409 and "changed since you opened it" in api.json()["error"], api.text
    olga = gate.browser("olga")
    token = gate.xsrf(olga, f"requests/{view.id}")
    page = olga.post(gate.base + f"requests/{view.id}/review", allow_redirects=False, timeout=30,
                     data={"decision_0": "approve", "comment_0": "", "sha_0": seen, "_xsrf": token})
    assert page.status_code == 409, page.status_code
    # nor does a verdict that names no bytes (a stale tab or script approving "file 0", whatever it is now)
    unbound = gate.api("olga", "POST", f"requests/{view.id}/reviews", json={"verdicts": {"0": {"decision": "approve"}}})
    assert unbound.status_code == 400 and "sha256 of the bytes you reviewed" in unbound.json()["error"], unbound.text
    token = gate.xsrf(olga, f"requests/{view.id}")
    for sha in ({}, {"sha_0": ""}):
        page = olga.post(gate.base + f"requests/{view.id}/review", allow_redirects=False, timeout=30,
                         data={"decision_0": "approve", "comment_0": "", "_xsrf": token, **sha})
        assert page.status_code == 400, (sha, page.status_code)
    after = gate.service.get_request("olga", view.id)
    assert after.state == "submitted" and after.complete_reviews == 0


def test_admin_checker_approves_then_reshapes_the_request_and_keeps_the_vote(gate, admin_checker):
    """adam approves both files, olga asks for changes, adam removes one for alice: his approval of
    the file left carries over (unchanged bytes), and with omar's it made the quorum."""
    view = gate.service.create("alice", PROJECT, [("a.csv", io.BytesIO(CLEAN)), ("b.csv", io.BytesIO(CLEAN))],
                               "two tables")
    both = {0: {"decision": "approve", "comment": ""}, 1: {"decision": "approve", "comment": ""}}
    gate.service.review("adam", view.id, both)
    gate.service.review("olga", view.id, {0: {"decision": "request_changes", "comment": "is a needed?"},
                                          1: {"decision": "request_changes", "comment": "drop b"}})
    r = gate.api("adam", "POST", f"requests/{view.id}/resubmit", files={"remove": (None, "b.csv")})
    assert r.status_code == 200, r.text
    gate.service.review("omar", view.id, {0: {"decision": "approve", "comment": ""}})
    after = gate.service.get_request("olga", view.id)
    assert after.state == "under_review", after.state  # adam's carried vote does not count


def test_the_page_does_not_count_the_submitters_verdict(gate, admin_checker):
    """What the checkers read agrees with the decision: adam's carried approval is shown as not counting."""
    view = gate.service.create("alice", PROJECT, [("a.csv", io.BytesIO(CLEAN)), ("b.csv", io.BytesIO(CLEAN))],
                               "two tables")
    gate.service.review("adam", view.id, {0: {"decision": "approve", "comment": ""},
                                          1: {"decision": "approve", "comment": ""}})
    gate.service.review("olga", view.id, {0: {"decision": "request_changes", "comment": "is a needed?"},
                                          1: {"decision": "request_changes", "comment": "drop b"}})
    gate.service.resubmit("adam", view.id, [], ["b.csv"], None)
    seen = gate.api("omar", "GET", f"requests/{view.id}").json()
    assert seen["complete_reviews"] == 0, seen["complete_reviews"]


@pytest.mark.parametrize("form,user", [("withdraw", "alice"), ("submit", "alice"), ("revoke", "olga"),
                                       ("release", "olga"), ("review", "olga")])
def test_every_page_form_posted_from_another_site_without_its_token(gate, form, user):
    """Each state-changing form of the pages, posted with the victim's cookie and no (or a forged)
    ``_xsrf``: refused, and the request is as it was."""
    view = gate.submit(content=CLEAN)
    if form in ("revoke", "release"):
        for who in ("olga", "omar"):
            gate.service.review(who, view.id, {0: {"decision": "approve", "comment": ""}})
    before = gate.service.get_request("olga", view.id)
    fields = {"reason": "csrf", "decision_0": "approve", "comment_0": "", "sha_0": view.files[0].sha256}
    for extra in ({}, {"_xsrf": "2|deadbeef|00|00"}):
        r = gate.browser(user).post(gate.base + f"requests/{view.id}/{form}", data={**fields, **extra},
                                    headers={"Origin": "https://evil.example"}, allow_redirects=False, timeout=30)
        assert r.status_code == 403, (form, extra, r.status_code)
    after = gate.service.get_request("olga", view.id)
    assert (after.state, after.complete_reviews) == (before.state, before.complete_reviews)


def test_import_form_posted_from_another_site_without_its_token(import_gate):
    r = requests.post(import_gate.base + "imports/new", cookies={"fake_user": "alice"}, timeout=30,
                      data={"project": PROJECT, "justification": "csrf", "kind": "files"},
                      files=[("files", ("tool.py", b"print(1)\n", "text/x-python"))], allow_redirects=False)
    assert r.status_code == 403, r.status_code
    assert not import_gate.staged_anything()
