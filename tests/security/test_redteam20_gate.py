"""Red team 20B: a submission's bytes, or any part of them, before an independent review released
them; a release reaching someone it should not.

Each test is one attempt made for real against one running gate (the production application on
loopback, ``redteam20_gate_support.py``) or its service, and asserts that the attack fails.

Five got through before their fix: a guess of an unreleased file confirmed by the SHA-256 the gate
showed its author outside the workspace (the small cell of a table, found among 200 guesses, in
every state before release and in the verdicts shown once rejected), and to an administrator (4);
and by the count of complete reviews after she resubmitted the guess, an approval surviving the
same bytes sent again (1). What earlier rounds did not try either: the routes of a notebook's
figures and a model's plot by everyone but a checker; odd spellings of the file and download
routes; conditional requests (``If-None-Match`` with the checker's ``ETag`` or a guessed one,
``If-Range``, ``If-Modified-Since``) telling whether content matches a guess; the author's
verdict carrying a guessed hash, answered alike; the checker's page and JSON kept by a shared
cache; one checker's four sessions approving at once; the author made a checker mid-review; a
resubmission after the approval, and the staged bytes changed before the release; the rebuilt
copy against the submitted bytes; a release after the project ended, released again after its
revocation; a release downloaded by a member who joined later, by its author once only a checker,
through ``--as``; another project's checker reviewing, releasing and revoking by request id;
archives named as a text, a table and Markdown.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from datetime import date, timedelta

import PIL.Image
import PIL.PngImagePlugin
import pytest
import requests
from gate_support import PROJECT, SECRET_TABLE, files, leaks
from redteam20_gate_support import ENDING, gate20_fixture  # noqa: F401  (fixture)

from pds_kernel.airlock.rebuild import submitted_path
from pds_kernel.airlock.staging import request_dir
from pds_kernel.errors import IntegrityError, InvalidTransition, PermissionDenied
from pds_kernel.permissions_actors import Impersonation
from pds_kernel.registry import Role

FAR = date(2099, 12, 31)
CLEAN = b"group,n\nA,120\nB,130\n"


def guesses() -> dict[str, int]:
    """SHA-256 -> value of the table :data:`SECRET_TABLE` with its small cell (7) replaced by each
    value from 0 to 199: what the author, outside the workspace, computes to confirm a guess."""
    out = {}
    for value in range(200):
        candidate = SECRET_TABLE.replace(b",7\n", b",%d\n" % value)
        out[hashlib.sha256(candidate).hexdigest()] = value
    return out


def confirmed(text: str) -> list[int]:
    """The guessed values whose hash ``text`` holds."""
    return [value for sha, value in guesses().items() if sha in text]


def approve(gate, request_id: str, *who: str) -> None:
    for checker in who or ("olga", "omar"):
        gate.service.review(checker, request_id, {0: {"decision": "approve", "comment": "an exception"}})


def released(gate, content: bytes = CLEAN, name: str = "t.csv", author: str = "alice"):
    view = gate.submit(author=author, content=content, name=name)
    approve(gate, view.id)
    gate.service.release("olga", view.id)
    return view


def page(gate, user: str | None, path: str, method: str = "GET", headers: dict | None = None) -> requests.Response:
    """``path`` as ``user``: the API with a token, a page with the cookie, nothing without a user."""
    headers = dict(headers or {})
    cookies = {}
    if user is not None and path.startswith("api/"):
        headers["Authorization"] = f"token fake-{user}"
    elif user is not None:
        cookies["fake_user"] = user
    return requests.request(method, gate.base + path, headers=headers, cookies=cookies,
                            allow_redirects=False, timeout=30)


# ---- a guess confirmed by what the author is shown ------------------------------------------------
@pytest.mark.parametrize("state", ["submitted", "rejected", "withdrawn"])
def test_the_author_confirms_a_guess_of_the_small_cell_by_the_sha256_shown(gate20, state):
    """Got through before its fix: the author's page and JSON showed each file's SHA-256 (and, once
    rejected, each verdict's). Outside the workspace she hashed the table with its small cell set to
    0..199 and found 7: a value the review withheld, in any state, without any crafting."""
    view = gate20.submit()
    if state == "rejected":
        for who in ("olga", "omar"):
            gate20.service.review(who, view.id, {0: {"decision": "reject", "comment": "a small cell"}})
    elif state == "withdrawn":
        gate20.service.withdraw("alice", view.id, "not needed")
    assert gate20.service.get_request("olga", view.id).state == state
    assert confirmed(page(gate20, "olga", f"requests/{view.id}").text) == [7]  # control: the guesses are right
    for path in (f"requests/{view.id}", f"api/requests/{view.id}", "api/requests?scope=mine", "requests"):
        answer = page(gate20, "alice", path)
        assert answer.status_code == 200, (path, answer.status_code)
        assert confirmed(answer.text) == [], path
        assert not leaks(answer.text), (path, leaks(answer.text))


def test_an_administrator_confirms_the_same_guess(gate20):
    """An administrator (no checker of the project) sees a request's metadata: never a hash that
    confirms a guess of what it holds before release."""
    view = gate20.submit()
    for path in (f"requests/{view.id}", f"api/requests/{view.id}"):
        assert confirmed(page(gate20, "root", path).text) == [], path


def test_the_hash_is_shown_once_released(gate20):
    """Control: the author downloads the released bytes; their SHA-256 is shown then, to check the copy."""
    view = released(gate20, content=SECRET_TABLE)
    answer = page(gate20, "alice", f"api/requests/{view.id}")
    assert answer.json()["files"][0]["sha256"] == hashlib.sha256(SECRET_TABLE).hexdigest()


def test_the_authors_verdict_with_a_guessed_hash_is_answered_alike(gate20):
    """The author (a researcher and checker: bob) posts a verdict whose SHA-256 is a guess: a refusal
    that said "changed since you opened it" for a wrong guess only would confirm the right one."""
    view = gate20.submit(author="bob")
    answers = []
    for value in (7, 8):
        sha = hashlib.sha256(SECRET_TABLE.replace(b",7\n", b",%d\n" % value)).hexdigest()
        body = {"verdicts": {"0": {"decision": "approve", "comment": "x", "sha256": sha}}}
        r = requests.post(gate20.base + f"api/requests/{view.id}/reviews", json=body, timeout=30,
                          headers={"Authorization": "token fake-bob"})
        answers.append((r.status_code, r.json()["error"]))
    assert answers[0] == answers[1] and answers[0][0] == 403, answers


# ---- routes, spellings, methods, conditions -------------------------------------------------------
def _png(text: str = "") -> bytes:
    image = PIL.Image.new("RGB", (40, 20), (200, 30, 30))
    info = PIL.PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture(name="notebook", scope="module")
def notebook_fixture(gate20):
    """A submitted notebook whose output holds a figure (rebuilt), served to checkers under the page."""
    import base64

    output = {"output_type": "display_data", "metadata": {},
              "data": {"text/plain": ["<Figure>"], "image/png": base64.b64encode(_png()).decode()}}
    cell = {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["plot()"], "outputs": [output]}
    content = json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
    view = gate20.submit(content=content, name="plots.ipynb")
    text = page(gate20, "olga", f"requests/{view.id}").text
    link = re.search(r'<img class="figure" alt="[^"]*" src="[^"]+/(requests/[^"]+/outputs/[^"]+)"', text).group(1)
    figure = page(gate20, "olga", link)
    assert figure.status_code == 200 and figure.content[:8] == b"\x89PNG\r\n\x1a\n"  # control: the route serves it
    return view, link, figure.content


@pytest.mark.parametrize("user", ["alice", "carol", "oscar", "root", None])
def test_a_notebooks_figure_and_a_models_plot_by_anyone_but_a_checker(gate20, notebook, user):
    """The figure route under the review page (and the model plot's) serve staged bytes: the author,
    another researcher, another project's checker, an administrator and no one at all get none."""
    view, link, figure = notebook
    for path in (link, f"requests/{view.id}/files/0/model-check.png", link.replace("/outputs/", "/outputs/00")):
        for method in ("GET", "HEAD"):
            r = page(gate20, user, path, method)
            assert r.status_code in (403, 405), (user, path, method, r.status_code)
            assert figure not in r.content and b"PNG" not in r.content


#: spellings of the file, download, figure and page routes the router or a proxy might read as another
SPELLINGS = ["requests/{id}/files/0/", "requests/{id}/files/%30", "requests/{id}/files/%2530",
             "requests/{id}/./files/0", "requests/{id}/x/../files/0", "requests/{id}/x/%2e%2e/files/0",
             "requests/{ID}/files/0", "REQUESTS/{id}/files/0", "requests/{id}/files/\uff10",
             "requests/{id}/files/0%00", "requests/{id}/files/0;inline", "requests//{id}/files/0",
             "api/requests/{id}/files/0/", "api/requests/{ID}/files/0", "api/requests/{id}/files/%30",
             "api/requests/{id}%2Ffiles%2F0", "api/requests/{id}/download/0/", "requests/{id}/download/%30"]


def test_odd_spellings_of_the_routes_give_the_author_nothing(gate20):
    """18 spellings (trailing slash, percent-encoded once and twice, ``.`` and ``..`` plain and encoded,
    capitals, a full-width digit, a NUL, a parameter, a doubled slash) as the author: never the bytes."""
    view = gate20.submit()
    for form in SPELLINGS:
        path = form.format(id=view.id, ID=view.id.upper())
        for user in ("alice", None):
            r = page(gate20, user, path)
            # 409: a spelling the router decodes to the download of an unreleased request ("not released")
            assert r.status_code in (400, 401, 403, 404, 405, 409), (form, user, r.status_code)
            assert SECRET_TABLE not in r.content and not leaks(r.content), (form, user)


def test_conditional_requests_confirm_no_guess(gate20):
    """The checker's answer carries an ``ETag`` (Tornado's hash of the bytes). The author sends it back,
    and a guessed one, in ``If-None-Match``, ``If-Match``, ``If-Range`` and with ``If-Modified-Since``:
    a 304 for the right guess only would confirm it. Every answer is the refusal, alike."""
    view = gate20.submit()
    seen = page(gate20, "olga", f"requests/{view.id}/files/0")
    assert seen.status_code == 200 and seen.content == SECRET_TABLE
    etags = [seen.headers.get("Etag") or f'"{hashlib.sha1(SECRET_TABLE).hexdigest()}"', '"0000"']
    for path in (f"requests/{view.id}/files/0", f"api/requests/{view.id}/files/0",
                 f"requests/{view.id}/download/0", f"api/requests/{view.id}/download/0"):
        answers = set()
        for etag in etags:
            for header in ({"If-None-Match": etag}, {"If-Match": etag},
                           {"If-Range": etag, "Range": "bytes=0-9"},
                           {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}):
                r = page(gate20, "alice", path, headers=header)
                assert r.status_code in (403, 409), (path, header, r.status_code)
                assert SECRET_TABLE not in r.content and "Etag" not in r.headers
                answers.add((r.status_code, r.content))
        assert len(answers) == 1, (path, answers)


def test_the_checkers_page_and_json_are_kept_by_no_shared_cache(gate20, notebook):
    """What the checker reads (the table on the page, the JSON with its findings, a notebook's figure)
    is marked ``no-store``: a shared proxy would otherwise answer its author with it."""
    view = gate20.submit()
    _, link, _ = notebook
    for path in (f"requests/{view.id}", f"api/requests/{view.id}", f"requests/{view.id}/files/0", link):
        r = page(gate20, "olga", path)
        assert r.status_code == 200, path
        assert r.headers["Cache-Control"] == "no-store", (path, r.headers.get("Cache-Control"))
        assert "public" not in r.headers.get("Cache-Control", "") and "Expires" not in r.headers


# ---- reviews --------------------------------------------------------------------------------------
def test_one_checkers_two_sessions_approve_at_once(gate20):
    """olga's approval sent from two sessions at the same moment (page tab and script): one review."""
    view = gate20.submit(content=CLEAN)
    sha = hashlib.sha256(CLEAN).hexdigest()
    body = {"verdicts": {"0": {"decision": "approve", "comment": "", "sha256": sha}}}
    start = threading.Barrier(4)
    codes = []

    def approve_once():
        start.wait()
        r = requests.post(gate20.base + f"api/requests/{view.id}/reviews", json=body, timeout=60,
                          headers={"Authorization": "token fake-olga"})
        codes.append(r.status_code)

    threads = [threading.Thread(target=approve_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = gate20.service.get_request("olga", view.id)
    assert after.complete_reviews == 1 and after.state == "under_review", (after.state, codes)
    assert codes.count(200) == 1, codes


def test_the_author_made_a_checker_mid_review(gate20):
    """An administrator makes alice an output checker of the project while her request is reviewed:
    she still reads no byte of it, reviews nothing of it and sees no verdict before the decision."""
    view = gate20.submit(content=SECRET_TABLE)
    gate20.service.review("olga", view.id, {0: {"decision": "approve", "comment": "an exception"}})
    gate20.registry.add_member("root", PROJECT, "alice", Role.OUTPUT_CHECKER, FAR)
    try:
        for path in (f"requests/{view.id}/files/0", f"api/requests/{view.id}/files/0"):
            r = page(gate20, "alice", path)
            assert r.status_code == 403 and SECRET_TABLE not in r.content, path
        with pytest.raises(PermissionDenied):
            gate20.service.review("alice", view.id, {0: {"decision": "approve", "comment": "mine"}})
        mine = page(gate20, "alice", f"api/requests/{view.id}").json()
        assert mine["contents_visible"] is False and mine["reviews"] == [] and mine["reviews_hidden"] is True
        assert not leaks(json.dumps(mine)) and confirmed(json.dumps(mine)) == []
    finally:
        gate20.registry.remove_member("root", PROJECT, "alice", Role.OUTPUT_CHECKER)


# ---- what is released is what was reviewed --------------------------------------------------------
def test_version_two_swapped_in_after_the_approval_of_version_one(gate20):
    """Approved, not yet released: the author resubmits other bytes under the same name. Refused;
    the release writes exactly the approved bytes."""
    view = gate20.submit(content=CLEAN)
    approve(gate20, view.id)
    other = CLEAN.replace(b"130", b"140")
    with pytest.raises(InvalidTransition):
        gate20.service.resubmit("alice", view.id, files(("t.csv", other)))
    r = requests.post(gate20.base + f"api/requests/{view.id}/resubmit", timeout=30,
                      headers={"Authorization": "token fake-alice"}, files=[("files", ("t.csv", other, "text/csv"))])
    assert r.status_code == 409, (r.status_code, r.text)
    gate20.service.release("olga", view.id)
    download = page(gate20, "alice", f"api/requests/{view.id}/download/0")
    assert download.status_code == 200 and download.content == CLEAN


def test_the_staged_bytes_changed_between_the_approval_and_the_release(gate20):
    """The staged copy rewritten after both approvals (same size, one digit): nothing is released."""
    view = gate20.submit(content=CLEAN)
    approve(gate20, view.id)
    staged = next(request_dir(gate20.service.settings.paths.staging, PROJECT, view.id).glob("*t.csv"))
    staged.write_bytes(CLEAN.replace(b"130", b"131"))
    with pytest.raises(IntegrityError):
        gate20.service.release("olga", view.id)
    assert gate20.service.get_request("olga", view.id).state == "approved"
    assert page(gate20, "alice", f"api/requests/{view.id}/download/0").status_code == 409


def test_the_submitted_bytes_of_a_rebuilt_figure_never_leave(gate20):
    """A PNG carrying a text chunk is rebuilt from its pixels; the submitted bytes stay in staging.
    Released, the author gets the rebuilt copy the checker saw, never the submitted bytes, by any index."""
    submitted = _png("ZZQPNGTEXT")
    view = released(gate20, content=submitted, name="fig.png")
    _, staged = gate20.service.open_staged("olga", view.id, 0)
    original = submitted_path(staged.parent, staged.name)
    assert original.read_bytes() == submitted  # control: the submitted bytes are kept, aside
    download = page(gate20, "alice", f"api/requests/{view.id}/download/0")
    assert download.status_code == 200 and download.content == staged.read_bytes()
    assert download.content != submitted and b"ZZQPNGTEXT" not in download.content
    for index in (1, 2):
        r = page(gate20, "alice", f"api/requests/{view.id}/download/{index}")
        assert r.status_code == 404 and b"ZZQPNGTEXT" not in r.content


# ---- a release reaching someone it should not ----------------------------------------------------
def test_a_release_after_the_project_ended(gate20):
    """Approved while the project ran; the project ends; a checker releases: refused, nothing in the
    outbox, and the author downloads nothing."""
    view = gate20.service.create("alice", ENDING, files(("t.csv", CLEAN)), "Table 1")
    for who in ("olga", "omar"):
        gate20.service.review(who, view.id, {0: {"decision": "approve", "comment": ""}})
    yesterday = date.today() - timedelta(days=1)
    gate20.registry.upsert_project("root", ENDING, title=ENDING, start_date=date(2020, 1, 1), end_date=yesterday)
    with pytest.raises(PermissionDenied):
        gate20.service.release("olga", view.id)
    r = requests.post(gate20.base + f"api/requests/{view.id}/release", json={}, timeout=30,
                      headers={"Authorization": "token fake-omar"})
    assert r.status_code == 403
    assert not (gate20.service.settings.paths.outbox / ENDING / view.id).exists()
    assert page(gate20, "alice", f"api/requests/{view.id}/download/0").status_code == 403


def test_a_release_fetched_by_a_member_who_joined_after_it(gate20):
    """dora joins the project as a researcher after alice's release: the release is alice's alone."""
    view = released(gate20, content=SECRET_TABLE)
    gate20.registry.upsert_user("root", "dora")
    gate20.registry.add_member("root", PROJECT, "dora", Role.RESEARCHER, FAR)
    try:
        for path in (f"api/requests/{view.id}/download/0", f"requests/{view.id}/download/0",
                     f"api/requests/{view.id}", f"requests/{view.id}/files/0"):
            r = page(gate20, "dora", path)
            assert r.status_code == 403 and SECRET_TABLE not in r.content, (path, r.status_code)
        listed = page(gate20, "dora", "api/requests?scope=all").text
        assert view.id not in listed
    finally:
        gate20.registry.remove_member("root", PROJECT, "dora")


def test_the_author_now_only_a_checker_downloads(gate20):
    """bob (researcher and checker) released a file, then loses his researcher role: a checker does not
    download releases, even his own."""
    view = released(gate20, content=SECRET_TABLE, author="bob")
    gate20.registry.remove_member("root", PROJECT, "bob", Role.RESEARCHER)
    try:
        for path in (f"api/requests/{view.id}/download/0", f"requests/{view.id}/download/0"):
            r = page(gate20, "bob", path)
            assert r.status_code == 403 and SECRET_TABLE not in r.content, (path, r.status_code)
    finally:
        gate20.registry.add_member("root", PROJECT, "bob", Role.RESEARCHER, FAR)


def test_an_administrator_downloads_a_release_as_its_author(gate20):
    """``pds --as alice airlock download``: a download is personal, never through impersonation."""
    view = released(gate20, content=SECRET_TABLE)
    with pytest.raises(PermissionDenied):
        gate20.service.download(Impersonation("alice", "root"), view.id, 0)
    with pytest.raises(PermissionDenied):
        gate20.service.download("root", view.id, 0)
    assert gate20.service.download("alice", view.id, 0)[1].read_bytes() == SECRET_TABLE


def test_a_revoked_release_released_again(gate20):
    """An administrator revokes a release; a checker then releases it again, through the service and
    the API: refused, the files stay withdrawn, the author's saved download link answers nothing."""
    view = released(gate20, content=SECRET_TABLE)
    gate20.service.revoke("root", view.id, "released by mistake")
    with pytest.raises(InvalidTransition):
        gate20.service.release("omar", view.id)
    r = requests.post(gate20.base + f"api/requests/{view.id}/release", json={}, timeout=30,
                      headers={"Authorization": "token fake-olga"})
    assert r.status_code == 409, r.status_code
    assert not (gate20.service.settings.paths.outbox / PROJECT / view.id).exists()
    for path in (f"api/requests/{view.id}/download/0", f"requests/{view.id}/download/0"):
        d = page(gate20, "alice", path)
        assert d.status_code == 409 and SECRET_TABLE not in d.content, (path, d.status_code)


def test_another_projects_checker_reviews_releases_and_revokes_by_id(gate20):
    """oscar checks another project: with the request id in hand he approves (twice), releases and
    revokes through the API and the service. Nothing counts, nothing is released."""
    view = gate20.submit(content=CLEAN)
    body = {"verdicts": {"0": {"decision": "approve", "sha256": hashlib.sha256(CLEAN).hexdigest()}}}
    for action, sent in (("reviews", body), ("reviews", body), ("release", {}), ("revoke", {"reason": "x"})):
        r = requests.post(gate20.base + f"api/requests/{view.id}/{action}", json=sent, timeout=30,
                          headers={"Authorization": "token fake-oscar"})
        assert r.status_code == 403 and not leaks(r.content), (action, r.status_code)
    with pytest.raises(PermissionDenied):
        gate20.service.review("oscar", view.id, {0: {"decision": "approve", "comment": ""}})
    after = gate20.service.get_request("olga", view.id)
    assert after.state == "submitted" and after.complete_reviews == 0 and after.reviews == []


def _resubmitted_guess(gate, value: int) -> dict:
    """olga approves alice's table, omar asks for changes; alice, outside the workspace, resubmits the
    table with its small cell set to ``value`` through the API: the answer she reads."""
    view = gate.submit()
    gate.service.review("olga", view.id, {0: {"decision": "approve", "comment": "an exception"}})
    gate.service.review("omar", view.id, {0: {"decision": "request_changes", "comment": "the small cell"}})
    guess = SECRET_TABLE.replace(b",7\n", b",%d\n" % value)
    r = requests.post(gate.base + f"api/requests/{view.id}/resubmit", timeout=60,
                      headers={"Authorization": "token fake-alice"}, files=[("files", ("t.csv", guess, "text/csv"))])
    assert r.status_code == 200, r.text
    return r.json()


def test_a_resubmitted_guess_keeps_an_approval_only_when_right(gate20):
    """The same oracle as the hash, through the verdicts. Got through before its fix: an approval survived
    a resubmission of the same bytes, so the answer's count of complete reviews (1 or 0) told the author
    whether the table she sent from outside (7, or 8) equalled what she sent from the workspace. A
    verdict now counts for the upload it was given on: a file sent again loses its reviews."""
    right, wrong = _resubmitted_guess(gate20, 7), _resubmitted_guess(gate20, 8)
    assert (right["complete_reviews"], right["state"]) == (wrong["complete_reviews"], wrong["state"])


# ---- archives under another name ------------------------------------------------------------------
def _tar_of(name: str, data: bytes) -> bytes:
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _zip_of(name: str, data: bytes) -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


ARCHIVES = {"tar-as-txt": ("notes.txt", lambda: _tar_of("rows.csv", SECRET_TABLE)),
            "zip-as-csv": ("t.csv", lambda: _zip_of("rows.csv", SECRET_TABLE)),
            "gzip-as-md": ("report.md", lambda: __import__("gzip").compress(SECRET_TABLE, mtime=0))}


@pytest.mark.parametrize("kind", sorted(ARCHIVES))
def test_an_archive_under_the_name_of_a_text_or_table(gate20, kind):
    """Archives are refused by name; a tar named ``.txt``, a ZIP named ``.csv`` (members stored, so the
    table reads in clear inside) and a gzip named ``.md``: refused at submission, never staged for review."""
    from pds_kernel.airlock.staging import RefusedFiles

    name, make = ARCHIVES[kind]
    with pytest.raises(RefusedFiles):
        gate20.submit(content=make(), name=name)
