"""The web service: pages render, CSRF is enforced, outsiders get 403, no path is ever taken."""

from __future__ import annotations

import html
import re
from hashlib import sha256

import pytest
import requests
from airlock_factories import PROJECT, SAFE_TABLE, files, make_request
from airlock_web import PREFIX, FakeIdentity, browser, live_server

from pds_kernel.airlock.web import hub_pages, make_app


def api(user: str) -> dict:
    return {"Authorization": f"token fake-{user}"}


def xsrf(session: requests.Session, page: str) -> str:
    html = session.get(page).text
    return re.search(r'name="_xsrf" value="([^"]+)"', html).group(1)


def test_pages_render_with_failing_cells_highlighted(base, service):
    view = service.create("alice", PROJECT, files(("t.csv", b"g,n\na,4\nb,50\n"), ("notes.txt", b"method\n")),
                          "paper")
    olga = browser("olga")
    listing = olga.get(base + "requests")
    assert listing.status_code == 200 and view.id[:8] in listing.text
    page = olga.get(base + f"requests/{view.id}")
    assert page.status_code == 200
    assert re.search(r'<td class="fail" title="[^"]*below the threshold[^"]*">4</td>', page.text)
    assert "<pre>method\n</pre>" in page.text and 'id="review-form"' in page.text
    assert "content-security-policy" in {k.lower() for k in page.headers}


def test_review_through_the_form_with_csrf(base, service):
    view = make_request(service)
    olga = browser("olga")
    page = base + f"requests/{view.id}"
    form = {"decision_0": "approve", "comment_0": "", "sha_0": view.files[0].sha256}
    refused = olga.post(page + "/review", data=form, allow_redirects=False)
    assert refused.status_code == 403 and "xsrf" in refused.text.lower()
    token = xsrf(olga, page)
    done = olga.post(page + "/review", data={**form, "_xsrf": token}, allow_redirects=False)
    assert done.status_code == 302
    assert service.get_request("olga", view.id).complete_reviews == 1
    omar = browser("omar")
    omar_page = omar.get(page).text
    assert "hidden until you submit yours" in omar_page and "olga" not in omar_page.split("<h3>Reviews</h3>")[1]


@pytest.mark.parametrize("field", ["decision_\u00b2", "decision_\u0663", "decision_-1", "decision_ 0"])
def test_a_review_field_whose_number_is_not_digits_0_9_is_refused(base, service, field):
    """"²" and "٣" are digits to ``str.isdigit``: the first made ``int()`` fail (an error 500), the
    second named file 3 under another spelling."""
    view = make_request(service)
    olga = browser("olga")
    page = base + f"requests/{view.id}"
    form = {field: "approve", "comment_0": "", "sha_0": view.files[0].sha256, "_xsrf": xsrf(olga, page)}
    refused = olga.post(page + "/review", data=form, allow_redirects=False)
    assert refused.status_code == 400 and "bad form field" in html.unescape(refused.text)
    assert service.get_request("olga", view.id).complete_reviews == 0


def test_author_sees_no_review_form_and_downloads_after_release(base, service):
    view = make_request(service, "released")
    alice = browser("alice")
    page = alice.get(base + f"requests/{view.id}").text
    assert 'id="review-form"' not in page and 'id="download-0"' in page
    got = alice.get(base + f"requests/{view.id}/download/0")
    assert got.status_code == 200 and got.content == SAFE_TABLE
    assert "attachment" in got.headers["Content-Disposition"]
    assert browser("bob").get(base + f"requests/{view.id}/download/0").status_code == 403


def test_non_member_gets_403_everywhere(base, service):
    view = make_request(service)
    mallory = browser("mallory")
    for path in (f"requests/{view.id}", f"requests/{view.id}/files/0", f"requests/{view.id}/download/0"):
        assert mallory.get(base + path).status_code == 403
    r = requests.get(base + f"api/requests/{view.id}", headers=api("mallory"))
    assert r.status_code == 403 and "error" in r.json()
    assert requests.get(base + "requests").status_code == 403  # anonymous page, no login configured
    assert requests.get(base + "api/requests").status_code == 401


@pytest.mark.parametrize("path", ["requests/../../etc/passwd", "requests/%2e%2e/%2e%2e/etc/passwd",
                                  "requests/abc/files/0", "requests/{id}/files/..%2f..%2fpds.db",
                                  "requests/{id}/files/-1", "requests/{id}/files/99"])
def test_no_path_traversal(base, service, path):
    view = make_request(service)
    r = browser("olga").get(base + path.format(id=view.id), allow_redirects=False)
    assert r.status_code in {400, 404}
    assert b"sqlite" not in r.content.lower() and b"root:" not in r.content


def test_api_round_trip(base, service):
    up = requests.post(base + "api/requests", headers=api("alice"),
                       data={"project": PROJECT, "justification": "table 1", "context": "{}"},
                       files=[("files", ("t.csv", SAFE_TABLE, "text/csv"))])
    assert up.status_code == 201, up.text
    rid = up.json()["id"]
    for who in ("olga", "omar"):
        r = requests.post(base + f"api/requests/{rid}/reviews", headers=api(who),
                          json={"verdicts": {"0": {"decision": "approve", "sha256": sha256(SAFE_TABLE).hexdigest()}}})
        assert r.status_code == 200, r.text
    r = requests.post(base + f"api/requests/{rid}/release", headers=api("olga"))
    assert r.status_code == 200 and r.json()["state"] == "released"
    got = requests.get(base + f"api/requests/{rid}/download/0", headers=api("alice"))
    assert got.content == SAFE_TABLE
    again = requests.post(base + f"api/requests/{rid}/release", headers=api("omar"))
    assert again.status_code == 409


def test_upload_names_are_validated(base):
    up = requests.post(base + "api/requests", headers=api("alice"),
                       data={"project": PROJECT, "justification": "x"},
                       files=[("files", ("../../evil.csv", SAFE_TABLE, "text/csv"))])
    assert up.status_code == 400 and "invalid file name" in up.json()["error"]


def test_client_submits_over_tcp_and_unix_socket(runtime, service, tmp_path):
    import asyncio
    import threading

    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_unix_socket

    from pds_kernel.airlock.client import AirlockClient

    app = make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)
    table = tmp_path / "ages.csv"
    table.write_bytes(SAFE_TABLE)
    with live_server(app) as url:
        made = AirlockClient(url + PREFIX, token="fake-alice").submit([table], "fig 1", {"notebook": "a.ipynb",
                                                                      "tables": {"ages.csv": {"counts": ["count"]}}},
                                                                      project=PROJECT)
        assert made["state"] == "submitted" and made["files"][0]["check_status"] == "pass"
    sock_path = str(tmp_path / "airlock.sock")
    sock = bind_unix_socket(sock_path)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        server = HTTPServer(app)
        server.add_socket(sock)
        started.set()
        loop.run_forever()
        server.stop()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(5)
    try:
        client = AirlockClient(token="fake-alice", unix_socket=sock_path, prefix=PREFIX)
        made = client.submit([table], "fig 1 again", project=PROJECT)
        assert client.get(made["id"])["author"] == "alice"
        with pytest.raises(Exception, match="airlock"):
            AirlockClient(token="fake-mallory", unix_socket=sock_path, prefix=PREFIX).submit(
                [table], "steal", project=PROJECT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_resubmit_after_changes_requested_through_the_api_and_client(base, service, tmp_path):
    from pds_kernel.airlock.client import AirlockClient

    up = requests.post(base + "api/requests", headers=api("alice"),
                       data={"project": PROJECT, "justification": "table 1", "context": "{}"},
                       files=[("files", ("t.csv", SAFE_TABLE, "text/csv"))])
    rid = up.json()["id"]
    early = requests.post(base + f"api/requests/{rid}/resubmit", headers=api("alice"))
    assert early.status_code == 409, early.text  # nothing was asked yet
    for who in ("olga", "omar"):
        r = requests.post(base + f"api/requests/{rid}/reviews", headers=api(who),
                          json={"verdicts": {"0": {"decision": "request_changes", "comment": "round",
                                                    "sha256": sha256(SAFE_TABLE).hexdigest()}}})
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "changes_requested"
    outsider = requests.post(base + f"api/requests/{rid}/resubmit", headers=api("mallory"))
    assert outsider.status_code in (403, 404)
    fixed = tmp_path / "t.csv"
    fixed.write_bytes(SAFE_TABLE.replace(b"\n", b"\r\n"))
    client = AirlockClient(base, token="fake-alice")
    view = client.resubmit(rid, [fixed], justification="rounded")
    assert view["state"] == "submitted" and view["round"] == 2
    staged = requests.get(base + f"api/requests/{rid}/files/0", headers=api("olga"))
    assert staged.status_code == 200


def test_client_reports_a_refused_body_as_invalid_input(base, service):
    from pds_kernel.airlock.client import AirlockClient
    from pds_kernel.errors import InvalidInput

    view = make_request(service)
    client = AirlockClient(base, token="fake-alice")
    with pytest.raises(InvalidInput, match="at most"):
        client.request("POST", f"api/requests/{view.id}/withdraw", b" " * (2 * 1024 * 1024))
    with pytest.raises(InvalidInput, match="application/json"):
        client.request("POST", f"api/requests/{view.id}/withdraw", b"reason=x", "text/plain")
    assert service.get_request("alice", view.id).state == "submitted"


def test_released_request_shows_checks_as_reviewed_not_failed(base, service):
    """#15: once approved and released, a file the checks failed is shown as reviewed (grey), not
    as a red "fail", to the author as to the checkers; every page leads back to the hub."""
    view = service.create("alice", PROJECT, files(("t.csv", b"g,n\na,4\nb,50\n")), "paper")
    assert view.files[0].check_status == "fail"
    approve = {0: {"decision": "approve", "comment": "4 counts hospitals, not persons"}}
    service.review("olga", view.id, approve)
    service.review("omar", view.id, approve)
    assert service.release("omar", view.id).state == "released"
    for user in ("alice", "olga"):
        session = browser(user)
        page = session.get(base + f"requests/{view.id}").text
        assert 'class="badge fail"' not in page, user
        assert "checks: fail, approved on review" in page
        listing = session.get(base + "requests?show=others").text  # a checker sees it among the others
        assert 'class="badge fail"' not in listing and "fail, approved on review" in listing
        assert 'href="/hub/home" id="hub-home"' in page and 'href="/hub/logout" id="logout"' in page


def test_the_pages_link_back_to_the_hub_on_its_own_host():
    """The gate has its own host (pds_kernel.hub.origins): its links to the hub name the hub's host,
    which JupyterHub (and the chart, on Kubernetes) gives it as $JUPYTERHUB_HOST."""
    assert hub_pages({"JUPYTERHUB_HOST": "https://pds.example.org", "JUPYTERHUB_BASE_URL": "/"}) == \
        "https://pds.example.org/hub/"
    assert hub_pages({"JUPYTERHUB_HOST": "http://localhost:8000"}) == "http://localhost:8000/hub/"
    assert hub_pages({}) == "/hub/"


def _next_step(session, base: str, request_id: str) -> str:
    page = session.get(base + f"requests/{request_id}")
    assert page.status_code == 200
    match = re.search(r'<p class="next-step" id="next-step">(.*?)</p>', page.text, re.S)
    assert match, page.text[:2000]
    return html.unescape(match.group(1))


def test_each_request_page_says_what_happens_next_and_what_to_do(base, service):
    """#15: a request's page showed a state word and an empty "Reviews" heading; its author had to
    guess what happens next (and how to answer a request for changes)."""
    alice, olga, omar = browser("alice"), browser("olga"), browser("omar")
    waiting = make_request(service)
    assert "Waiting for 2 more approvals" in _next_step(alice, base, waiting.id)
    assert "download the files from this page" in _next_step(alice, base, waiting.id)
    assert "No review yet." in alice.get(base + f"requests/{waiting.id}").text
    assert _next_step(olga, base, waiting.id).startswith("Your review is needed.")
    half = make_request(service, "under_review")
    assert _next_step(olga, base, half.id).startswith("You have reviewed this request. Waiting for 1 more approval ")
    sent_back = make_request(service, "changes_requested")
    assert f'ws.resubmit_export("{sent_back.id}", [files])' in _next_step(alice, base, sent_back.id)
    assert "waits for a resubmission" in _next_step(omar, base, sent_back.id)
    released = make_request(service, "released")
    assert _next_step(alice, base, released.id).startswith("Released: download the files below")
    assert _next_step(olga, base, released.id) == "Released: its author can download the files from this page."
    assert "cannot leave" in _next_step(alice, base, make_request(service, "rejected").id)
    assert "nothing in it can be downloaded" in _next_step(alice, base, make_request(service, "withdrawn").id)
    assert "until you submit it" in _next_step(alice, base, make_request(service, "draft").id)


def test_an_unknown_address_gets_a_page_with_the_way_back(base, service):
    """#15: a mistyped request address (or any unknown page) got Tornado's bare "404: Not Found"."""
    alice = browser("alice")
    for path in ("requests/14b33c81", "nothing", "requests/"):
        page = alice.get(base + path)
        assert page.status_code == 404, path
        text = html.unescape(page.text)
        assert "a request's page is requests/ followed by its 32-character id" in text
        assert 'href="/services/airlock/requests">Back to the requests' in text
        assert 'id="hub-home"' in text and "signed in as" in text
    assert requests.get(base + "nothing").status_code == 403  # anonymous: nothing said


def test_the_notebook_answer_to_a_failing_file_says_why_and_what_to_do(base, tmp_path):
    """#15: the notebook showed "small.csv: fail" and nothing else: not which rule, not where, not
    what to do. The gate's real answer (through the client), shown as a notebook shows it."""
    from pds_kernel.airlock.client import AirlockClient
    from pds_kernel.workspace import ExportAnswer

    table = tmp_path / "small.csv"
    table.write_bytes(b"sex,persons\n1,3\n2,40\n")
    answer = ExportAnswer(AirlockClient(base, token="fake-alice").submit([table], "fig 2", project=PROJECT))
    shown = html.unescape(answer._repr_html_())
    assert "small.csv: fail" in shown
    assert "fail: small-cell: count below the project's small-cell threshold of 10 (row 1, column 2)" in shown
    assert "withdraw the request on its page" in shown and "ws.check(files)" in shown
    assert "3" not in shown.split("small.csv: fail", 1)[1].split("(row")[0], "no value shown back"
    passing = tmp_path / "ages.csv"
    passing.write_bytes(SAFE_TABLE)
    calm = ExportAnswer(AirlockClient(base, token="fake-alice").submit(
        [passing], "fig 1", {"tables": {"ages.csv": {"counts": ["count"]}}}, project=PROJECT))._repr_html_()
    assert "ages.csv: pass" in calm and "withdraw" not in calm


def test_a_refused_review_leads_back_to_its_request(base, service):
    """#15: approving a failing file without a comment ended on an error page whose only link went
    to the list: the checker had to find the request again."""
    view = service.create("alice", PROJECT, files(("t.csv", b"g,n\na,4\nb,50\n")), "paper")
    olga = browser("olga")
    page = base + f"requests/{view.id}"
    form = {"decision_0": "approve", "comment_0": "", "sha_0": view.files[0].sha256, "_xsrf": xsrf(olga, page)}
    refused = olga.post(page + "/review", data=form, allow_redirects=False)
    assert refused.status_code == 400 and "failed the automatic checks" in html.unescape(refused.text)
    assert f'href="{PREFIX}requests/{view.id}" id="back-to-request">Back to the request</a>' in refused.text
    assert 'id="back-to-request"' not in browser("alice").get(base + "requests/" + "0" * 32).text


def test_the_checker_is_told_a_parquet_table_is_the_gates_rebuilt_copy(base, service):
    """ADR 10: the checker's page names the submitted bytes' SHA-256 beside the copy's, and the raw
    file served is the copy."""
    import hashlib
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"region": ["N", "S"], "persons": [120, 230]}).to_parquet(buffer, index=False)
    submitted = hashlib.sha256(buffer.getvalue()).hexdigest()
    view = service.create("alice", PROJECT, files(("t.parquet", buffer.getvalue())), "paper")
    page = browser("olga").get(base + f"requests/{view.id}").text
    copy = view.files[0].sha256
    assert copy != submitted and copy in page and f"rebuilt from the cells or pixels of the submitted file " \
                                                  f"(SHA-256 <code>{submitted}</code>" in page
    raw = browser("olga").get(base + f"requests/{view.id}/files/0").content
    assert hashlib.sha256(raw).hexdigest() == copy
