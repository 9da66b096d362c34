"""Red team 21C: the airlock's web pages, as a browser attacker tries them.

The real gate (the production application and server options, tests/security/gate_support.py's
people) on loopback, one for the module; every attempt is what a browser, or a page of another site
open in the checker's browser, can send or be sent. Earlier rounds tried script in what a researcher
writes (test_redteam13_browser.py, in a real Chromium), cross-site forms (test_redteam16_origins.py,
test_redteam8_gate.py) and file numbers of the raw-file address (test_gate.py); this round tries the
answers those tests did not look at, the other addresses that carry a file number, the fields a
researcher declares, and forms sent from a browser's own navigation.

Got through before its fix: the gate's API description (``api/openapi.json``), its style sheet and
the answer to a style sheet it does not have were served without the headers of every other answer
(no ``nosniff``, no refusal of frames, no ``Content-Security-Policy``): all are now answered with
them (pds_kernel/airlock/web/headers.py; 3 attempts); and the style sheet's address with a NUL
byte answered 500 and logged the whole request (1 attempt); the model check's table wrote both
attacks' TPRs under one attack's FPR levels, a TPR at 0.1 under 0.001 when their levels differ
(1 attempt).

The same surfaces opened in a real headless Chromium as each checker (1 attempt): nothing runs.
"""

from __future__ import annotations

import json
import logging
from html.parser import HTMLParser
from urllib.parse import urlparse

import pytest
import requests
from gate_support import module_gate
from imports_support import gate_registry_fixture, import_gate_fixture, settings_fixture  # noqa: F401  (fixtures)
from redteam13_support import PWNED, chromium_fixture, signed_in  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(120)

CLEAN = b"group,n\nA,120\nB,130\n"
MARKUP = ('"\'><script>window.__pwned=1</script><img src=x onerror=alert(1)>'
          '<a href="javascript:alert(2)">x</a><iframe src=//127.0.0.1:9/></iframe>'
          '<meta http-equiv=refresh content="0;url=//127.0.0.1:9/"><base href=//127.0.0.1:9/>')


@pytest.fixture(name="gate", scope="module")
def gate_fixture(tmp_path_factory):
    with module_gate(tmp_path_factory, "rt21web") as gate:
        yield gate


@pytest.fixture(name="made", scope="module")
def made_fixture(gate):
    """A request that waits for review (its table has a small cell), with markup in the
    justification, in every field of its declarations and in a checker's comment."""
    context = {"notebook": MARKUP, "acro": {"t.csv": {"method": MARKUP, "summary": MARKUP}}}
    view = gate.submit(content=b"group,n\nA,120\nB,3\n", justification="Table 1 " + MARKUP, context=context)
    gate.service.review("olga", view.id, {0: {"decision": "request_changes", "comment": "see " + MARKUP}})
    return view


class Elements(HTMLParser):
    """Every element of a page and its attributes, as a browser's parser reads them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def parse(html: str) -> list[tuple[str, dict]]:
    parser = Elements()
    parser.feed(html)
    return parser.found


def acting_markup(html: str) -> list[str]:
    """What in ``html`` a browser would run or fetch from elsewhere: script and frame elements,
    refreshes, bases, handlers and ``javascript:`` addresses in any attribute."""
    out = []
    for tag, attrs in parse(html):
        if tag in {"script", "iframe", "frame", "object", "embed", "base", "meta"} and not (
                tag == "meta" and set(attrs) == {"charset"}):
            out.append(tag)
        for name, value in attrs.items():
            if name.startswith("on") or value.strip().lower().startswith(("javascript:", "//", "data:")):
                out.append(f"{tag} {name}={value[:40]}")
    return out


# ---- the headers of every answer ---------------------------------------------------------------
ANSWERS = ["api/openapi.json", "static/airlock.css", "static/nothing.css", "api/me", "api/nothing",
           "", "requests", "nothing-here", "requests/{id}", "requests/{id}/files/0",
           "requests/{id}/files/0/model-check.png", "requests/{id}/files/0/outputs/1/1", "requests/{id}/download/0"]


@pytest.mark.parametrize("path", ANSWERS)
def test_every_answer_refuses_frames_sniffing_and_referrers(gate, made, path):
    """A page of another site frames, sniffs or reads the referrer of any answer of the gate, to
    the checker signed in: the API's description and the style sheet included. Got through before
    its fix for ``api/openapi.json``, ``static/airlock.css`` and ``static/nothing.css`` (none of these headers)."""
    r = gate.browser("olga").get(gate.base + path.replace("{id}", made.id), timeout=30, allow_redirects=False)
    policy = r.headers.get("Content-Security-Policy", "")
    assert r.headers.get("X-Content-Type-Options") == "nosniff", (path, r.status_code, dict(r.headers))
    assert r.headers.get("X-Frame-Options") == "DENY", path
    assert "frame-ancestors 'none'" in policy or "sandbox" in policy, (path, policy)
    assert "script-src 'none'" in policy or "default-src 'none'" in policy, (path, policy)
    assert r.headers.get("Referrer-Policy") in {"same-origin", "no-referrer"}, path
    assert r.headers.get("Cross-Origin-Resource-Policy") == "same-origin", path


@pytest.mark.parametrize("path", ["requests/{id}", "requests/{id}/files/0", "requests", "nothing-here",
                                  "api/requests/{id}"])
def test_no_answer_showing_unreleased_content_is_kept_by_a_cache(gate, made, path):
    """The checker's browser (or a proxy on the way) keeps the review page, the raw file, the list
    or the API's answer, and a later user of the same computer reads it from the cache."""
    user = gate.browser("olga")
    headers = {"Authorization": "token fake-olga"} if path.startswith("api/") else {}
    r = user.get(gate.base + path.replace("{id}", made.id), headers=headers, timeout=30)
    assert r.status_code in (200, 404), (path, r.status_code)
    assert r.headers.get("Cache-Control") == "no-store", (path, r.headers.get("Cache-Control"))


# ---- researcher-controlled text on the checker's pages ---------------------------------------------
def test_markup_in_the_declarations_and_findings_never_acts_on_the_checkers_pages(gate, made):
    """Markup (closing a quoted attribute first) in the justification, in the declarations
    (notebook, ACRO method and summary: kept, not shown) and in a co-checker's comment; then the
    review page (of the checker who commented, who sees the reviews, and of the one who has not,
    who sees the form) and the lists, parsed as a browser parses them: no element or attribute of
    it runs, frames, refreshes or rebases; the text is shown, as text. (A model's declaration of
    files is refused at submission: its fields must name ``.parquet`` or ``.csv`` files.)"""
    for user in ("olga", "omar"):
        page = gate.browser(user).get(gate.base + f"requests/{made.id}", timeout=30)
        assert page.status_code == 200 and "window.__pwned=1" in page.text.replace("&lt;", "<")  # shown, as text
        assert acting_markup(page.text) == [], (user, acting_markup(page.text))
        ids = {attrs.get("id") for _, attrs in parse(page.text)}
        assert {"state", "check-status"} <= ids, ids  # the page's own elements, whole
    assert "see " in gate.browser("olga").get(gate.base + f"requests/{made.id}", timeout=30).text  # her comment
    for path in ("requests", "requests?show=others", "requests?project=" + requests.utils.quote(MARKUP)):
        listed = gate.browser("omar").get(gate.base + path, timeout=30)
        assert acting_markup(listed.text) == [], (path, acting_markup(listed.text))


def test_markup_in_the_names_inside_an_imported_archive(import_gate):
    """An import's archive whose members are named with markup: the checker's page lists the
    members (a table of names): refused at the upload, or shown as text that never acts."""
    from imports_support import zip_of

    names = ['"><img src=x onerror=alert(1)>.csv', "<script>alert(2)</script>.py", "a/<iframe src=//x>.txt"]
    r = import_gate.upload("alice", "code.zip", zip_of(*((n, b"a,n\nx,20\n") for n in names)))
    if r.status_code != 201:
        assert r.status_code == 400 and r.json()["error"], (r.status_code, r.text)
        return
    page = requests.get(import_gate.base + f"requests/{r.json()['id']}", cookies={"fake_user": "olga"}, timeout=30)
    assert page.status_code == 200 and "onerror" in page.text
    assert acting_markup(page.text) == [], acting_markup(page.text)


def test_the_page_title_and_headers_carry_no_researcher_text(gate, made):
    """The browser's title bar, its history and the answer's headers are outside what the page
    escapes: nothing a researcher wrote is in them."""
    r = gate.browser("omar").get(gate.base + f"requests/{made.id}", timeout=30)
    title = r.text[r.text.index("<title>"):r.text.index("</title>")]
    assert "script" not in title and "img" not in title and made.id[:8] in title, title
    assert not any("__pwned" in v or "onerror" in v or "<" in v for v in r.headers.values()), dict(r.headers)


#: a model-check report a model rewrote from inside the check's sandbox: markup and wrong types
REWRITTEN_REPORT = {
    "status": "ok", "reason": MARKUP, "model": MARKUP, "format": MARKUP, "n_train": "<b>9</b>",
    "worst_case": {"auc": MARKUP, "p_value": [MARKUP], "tpr_at_fpr": {MARKUP: MARKUP, "0.01": 0.5}},
    "lira": {"auc": 0.5, "tpr_at_fpr": {"<i>x": 0.2}},
    "recommendation": {"immediate_rejection": [MARKUP], "support_release": MARKUP},
    "structural": {MARKUP: True, "k_anonymity_risk": MARKUP}, "plot_png": MARKUP}


def test_markup_in_the_model_check_report_a_model_rewrote(gate):
    """A model that, loaded in the check sandbox, rewrites its report: markup and wrong types in
    every field the checker's page shows (status, reason, model, format, the TPR levels, SACRO-ML's
    recommendations, a structural key). The gate keeps the report's known fields, typed and cut
    (pds_kernel/modelcheck/verdict.py); the page shows them as text, and a wrong type is no error
    page (the checker still reviews). The report is stored as the gate stores one (no sandbox runs
    here: what it would write is the attack)."""
    page = _page_with_model_report(gate, REWRITTEN_REPORT)
    assert page.status_code == 200 and "model-check-0" in page.text and "onerror" in page.text, page.text[-500:]
    assert acting_markup(page.text) == [], acting_markup(page.text)
    assert "review-form" in page.text  # the checker still reviews it


def _page_with_model_report(gate, raw: dict) -> requests.Response:
    """The checker's page of a request whose one file carries the model-check report ``raw``."""
    return gate.browser("olga").get(gate.base + f"requests/{_request_with_model_report(gate, raw)}", timeout=30)


def _request_with_model_report(gate, raw: dict) -> str:
    """A request (its id) whose one file carries the model-check report ``raw``, cleaned and stored
    as the gate stores one (no sandbox runs here: what it would write is the attack)."""
    from pds_kernel.airlock.checks.result import FileCheck
    from pds_kernel.airlock.models import RequestFile
    from pds_kernel.db import transaction
    from pds_kernel.modelcheck import verdict

    report = verdict.clean_report(raw)
    check = FileCheck(kind="model")
    for finding in verdict.findings(report, gate.service.settings.model_check):
        check.add(finding)
    stored = {**check.to_dict(), "model_check": report}
    view = gate.submit(content=CLEAN, name="model.csv")
    with transaction(gate.service.sessions) as s:
        row = s.query(RequestFile).filter_by(request_id=view.id).one()
        row.kind, row.check_result = "model", json.dumps(stored)
    return view.id


class _Table(HTMLParser):
    """The cells of the first table inside the model check's block, row by row."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._inside = self._done = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "div" and ("class", "model-check") in attrs:
            self._inside = True
        elif self._inside and not self._done and tag == "tr":
            self.rows.append([])
        elif self._inside and not self._done and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._inside:
            self._done = True

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_the_model_tables_tpr_columns_are_each_attacks_own_levels(gate):
    """The two attacks report TPRs at different FPR levels (a report a model rewrote, or sacroml
    changing its levels for one attack): the columns were one attack's levels and the other row's
    values were written under them in order, so a checker read a TPR at 0.1 as one at 0.001 (got
    through before). Each level either attack reports is a column; a row shows its own value under
    it, or says it was not measured there."""
    raw = {"status": "ok", "worst_case": {"auc": 0.7, "p_value": 0.01, "tpr_at_fpr": {"0.1": 0.95, "0.01": 0.9}},
           "lira": {"auc": 0.6, "p_value": 0.2, "tpr_at_fpr": {"0.001": 0.3, "0.01": 0.4}}}
    page = _page_with_model_report(gate, raw)
    assert page.status_code == 200, page.status_code
    table = _Table()
    table.feed(page.text)
    assert table.rows == [
        ["attack", "AUC", "p-value (AUC > 0.5)", "TPR at FPR 0.001", "TPR at FPR 0.01", "TPR at FPR 0.1"],
        ["worst case", "0.700", "0.01", "not measured", "0.900", "0.950"],
        ["LiRA", "0.600", "0.2", "0.300", "0.400", "not measured"]], table.rows


def test_this_rounds_surfaces_run_nothing_in_a_real_browser(gate, made, import_gate, chromium):
    """The pages above, parsed as a browser parses them, held no acting element; opened in a real
    headless Chromium as each checker (the request with markup in its declarations and comments,
    the lists filtered by a project named with markup, a model-check report a model rewrote, an
    imported archive whose members are named with markup), and each planted link clicked: no
    script runs, no dialog opens, the page stays the gate's."""
    from imports_support import zip_of

    names = ['"><img src=x onerror=alert(1)>.csv', "<script>alert(2)</script>.py"]
    upload = import_gate.upload("alice", "code.zip", zip_of(*((n, b"a,n\nx,20\n") for n in names)))
    pages = [(gate, f"requests/{made.id}"), (gate, "requests"),
             (gate, "requests?project=" + requests.utils.quote(MARKUP)),
             (gate, f"requests/{_request_with_model_report(gate, REWRITTEN_REPORT)}")]
    if upload.status_code == 201:
        pages.append((import_gate, f"requests/{upload.json()['id']}"))
    opened, dialogs = 0, []
    for user in ("olga", "omar"):
        for where in (gate, import_gate):
            context = signed_in(chromium, where, user)
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            try:
                for server, path in pages:
                    if server is not where:
                        continue
                    answer = page.goto(where.base + path, wait_until="load")
                    # the list filtered by a project named with markup is refused (400), as a page too
                    assert answer is not None and answer.status in (200, 400 if "project=" in path else 200), (user, path)
                    for link in page.locator("a[href^='javascript:']").all():
                        link.click(timeout=2000)
                    page.wait_for_timeout(100)
                    assert page.evaluate(PWNED) == [] and page.url.startswith(where.base), (user, path, page.url)
                    opened += 1
            finally:
                context.close()
    assert dialogs == [] and opened == 2 * len(pages), (dialogs, opened)


# ---- file numbers in the other addresses -----------------------------------------------------------
@pytest.mark.parametrize("tail", [
    "download/-1", "download/%D9%A0", "download/%EF%BC%90", "download/1234567", "download/0%20",
    "files/%C2%B2/model-check.png", "files/0/outputs/-1/1", "files/0/outputs/%D9%A1/%EF%BC%91",
    "files/0/outputs/1/99999999", "files/0x0", "files/+0", "download/0/..%2f1",
])
def test_odd_file_numbers_in_downloads_figures_and_plots(gate, tail):
    """The file number of a download, a notebook's figure or a model's plot written negative, huge,
    with a sign, in Arabic-Indic or full-width digits (which Python's ``int`` reads as 0 or 1), or
    followed by a blank or a path: never a file, never an error page of the server."""
    view = gate.submit(content=CLEAN)
    gate.approve(view.id)
    gate.service.release("olga", view.id)
    for user in ("alice", "olga"):
        r = gate.browser(user).get(gate.base + f"requests/{view.id}/{tail}", timeout=30, allow_redirects=False)
        assert r.status_code in (400, 404), (user, tail, r.status_code)
        assert CLEAN not in r.content and "Traceback" not in r.text


@pytest.mark.parametrize("tail", ["..%2fheaders.py", "%2e%2e/%2e%2e/web/headers.py", "..%5cheaders.py",
                                  "airlock.css%00.py", "%2fetc%2fpasswd", "airlock.css%0a", "%ED%A0%80.css", "%ff"])
def test_the_style_sheets_address_reads_nothing_else(gate, tail, caplog):
    """The one address that serves files by their path (the style sheet's folder), written to
    climb out of it or with bytes no file name has: nothing but that folder is served, never an
    error of the server, and the answer keeps the gate's headers. Got through before its fix with
    a NUL byte (``airlock.css%00.py``): a 500, and Tornado's log of an uncaught error wrote the
    whole request (address and headers, which a workspace's code chooses) to the operators' log,
    the channel test_redteam12_logs.py closed for every other address."""
    r = gate.browser("olga").get(gate.base + "static/" + tail, timeout=30, allow_redirects=False)
    assert r.status_code in (400, 403, 404), (tail, r.status_code)
    assert b"set_gate_headers" not in r.content and b"root:" not in r.content
    assert r.headers.get("X-Content-Type-Options") == "nosniff", tail
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text[-400:]


# ---- a file served as a document ----------------------------------------------------------------------
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'


@pytest.mark.parametrize("name,content", [
    ("figure.png", SVG), ("figure.jpg", b"<!doctype html><script>alert(1)</script>"),
    ("figure.svg", SVG), ("page.html", b"<script>alert(1)</script>"),
])
def test_a_file_that_says_it_is_a_picture_or_a_page(gate, name, content):
    """A picture the checker's page shows inline, or a file named as a page, whose bytes are SVG or
    HTML with script: refused at submission, or never served as a document of the gate's origin."""
    r = gate.api("alice", "POST", "requests", data={"project": "diab-2024", "justification": "figure 1"},
                 files=[("files", (name, content, "image/svg+xml"))])
    if r.status_code != 201:
        assert r.status_code == 400 and r.json()["error"], (name, r.status_code, r.text)
        return
    shown = gate.browser("olga").get(gate.base + f"requests/{r.json()['id']}/files/0", timeout=30)
    ctype = shown.headers["Content-Type"]
    assert ctype in {"application/octet-stream", "image/png", "image/jpeg"}, (name, ctype)
    assert "sandbox" in shown.headers["Content-Security-Policy"] and b"<script" not in shown.content


# ---- forms and requests that change a request ----------------------------------------------------------
@pytest.mark.parametrize("said", [
    {"Sec-Fetch-Site": "none"},                             # a bookmarklet, an address typed or pasted
    {"Origin": "http://127.0.0.1:1"},                       # the gate's host, another port (an older browser)
    {"Sec-Fetch-Site": "same-site", "Origin": "{own}"},     # the browser says same-site: Origin is not enough
], ids=["typed", "other-port", "same-site-with-own-origin"])
def test_a_form_with_a_good_token_from_a_navigation_the_gate_did_not_make(gate, said):
    """The checker's form, with the token of her own cookie, sent by a navigation that is not one
    of the gate's pages: refused and audited, nothing recorded."""
    view = gate.submit(content=CLEAN)
    olga = gate.browser("olga")
    token = gate.xsrf(olga, f"requests/{view.id}")
    own = urlparse(gate.base)
    headers = {k: v.replace("{own}", f"{own.scheme}://{own.netloc}") for k, v in said.items()}
    form = {"_xsrf": token, "decision_0": "approve", "comment_0": "fine", "sha_0": view.files[0].sha256}
    r = olga.post(gate.base + f"requests/{view.id}/review", data=form, headers=headers, timeout=30,
                  allow_redirects=False)
    assert r.status_code == 403 and "a page that is not the gate" in r.text, (said, r.status_code)
    assert gate.service.get_request("olga", view.id).complete_reviews == 0
    refused = gate.service.runtime.audit.entries(action="airlock.access.cross_origin")
    assert refused and refused[-1].actor == "olga"


@pytest.mark.parametrize("override", [{"headers": {"X-HTTP-Method-Override": "POST"}},
                                      {"params": {"_method": "POST"}}], ids=["header", "parameter"])
def test_a_get_that_says_it_is_a_post(gate, override):
    """A link or an image whose GET asks, in a method-override header or parameter, to be taken as
    the review or the release: a GET is a GET."""
    view = gate.submit(content=CLEAN)
    olga = gate.browser("olga")
    for action in ("review", "release", "withdraw"):
        params = {"decision_0": "approve", "sha_0": view.files[0].sha256, **override.get("params", {})}
        r = olga.get(gate.base + f"requests/{view.id}/{action}", params=params,
                     headers=override.get("headers", {}), timeout=30, allow_redirects=False)
        assert r.status_code == 405, (action, r.status_code)
    after = gate.service.get_request("olga", view.id)
    assert after.state == "submitted" and after.complete_reviews == 0


def test_the_forms_token_cookie_stays_on_the_gate(gate, made):
    """The ``_xsrf`` cookie a page of the gate sets: a cross-site request never carries it
    (``SameSite=Strict``) and it is sent to the gate's addresses only (its path), so a form of
    another site cannot pair it with a token it read elsewhere."""
    r = gate.browser("omar").get(gate.base + f"requests/{made.id}", timeout=30)  # her review form
    cookie = r.headers.get("Set-Cookie", "")
    assert cookie.startswith("_xsrf="), cookie
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert attributes.get("samesite", "").lower() == "samesite=strict", cookie
    assert attributes.get("path") == "Path=" + urlparse(gate.base).path, cookie


@pytest.mark.parametrize("method,path,headers", [
    ("OPTIONS", "api/requests/{id}/reviews", {"Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "authorization,content-type"}),
    ("OPTIONS", "requests/{id}/review", {"Access-Control-Request-Method": "POST"}),
    ("GET", "api/requests/{id}", {"Authorization": "token fake-olga"}),
], ids=["api-preflight", "form-preflight", "api-read"])
def test_another_site_is_never_allowed_to_read_or_send(gate, made, method, path, headers):
    """A page of another site asks the browser's permission (CORS) to send the checker's review to
    the API or the form, or to read the API's answer: the gate grants no origin anything."""
    r = requests.request(method, gate.base + path.replace("{id}", made.id), timeout=30, allow_redirects=False,
                         headers={"Origin": "http://127.0.0.1:9", **headers}, cookies={"fake_user": "olga"})
    granted = {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}
    assert granted == {}, (method, path, r.status_code, granted)
    assert method != "OPTIONS" or r.status_code in (401, 403, 405), (method, path, r.status_code)


def test_the_api_answer_opened_in_the_browser_is_json_not_a_page(gate, made):
    """The checker opens an API address in her browser (a link in a file): the answer is refused
    without a token (the page's cookie is not one), and with one it is JSON, not sniffed as a page,
    whatever markup the researcher put in the justification."""
    olga = gate.browser("olga")
    assert olga.get(gate.base + f"api/requests/{made.id}", timeout=30).status_code == 401
    r = gate.api("olga", "GET", f"requests/{made.id}")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and "<script>" not in r.text.split('"justification"')[0]
    assert "window.__pwned=1" in json.loads(r.text)["justification"]
