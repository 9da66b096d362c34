"""Red team, sixteenth round: script in a checker's own JupyterLab against the gate and the hub.

An output checker may also be a researcher with her own workspace. Script that runs in her
JupyterLab (HTML output of a notebook she runs, an approved package's JupyterLab extension) runs in
her browser, signed in to the hub and to the gate. One real hub (tests/hub/hubfixtures.py) with the
gate as its managed service; carol checks project diabetes-t2 and works on mi-outcomes; alice has
asked for an export of diabetes-t2. In a real headless Chromium signed in as carol, script is run in
a page of carol's own running JupyterLab (her sandboxed notebook server, through the hub's proxy),
and tries to:

1. open the review page in a window and read the request (the justification, the files);
2. fetch the review page with her cookies and read it;
3. approve alice's request as carol (the review form, with the ``_xsrf`` it could read or set);
4. create a hub API token in carol's name (JupyterHub's token API with her login cookie).

And alice, a researcher of two projects, from her JupyterLab of one reads her workspace of the
other: a strict expected failure (the residual of ADR 16) until each workspace became its own hub
user on its own host (ADR 17).

Before the fix the hub served the gate (``/services/airlock/``) and every JupyterLab
(``/user/<name>/<project>/``) from one origin: 1, 2, 3 and 4 got through. Now every user's servers,
the gate and the hub have each their own host (JupyterHub's ``subdomain_host``, on by default:
``http://localhost:<port>`` locally, ``<user>.localhost`` for carol's workspaces, ``airlock--service.localhost``
for the gate; the tests' hub is ``pds.localhost``), so the same-origin policy keeps the page's script out of the gate's and the hub's
pages and answers, and the gate refuses a form a page of another origin sends (``Sec-Fetch-Site``,
``Origin``), whatever cookie that page set for the parent domain.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
from gate_support import gate_fixture, gate_registry_fixture  # noqa: F401  (fixtures)
from redteam13_support import chromium_fixture  # noqa: F401  (fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))

from airlock_factories import files
from hubfixtures import OTHER_PROJECT, PASSWORD, PROJECT, browser_sign_in, hub_user, module_hub
from sqlalchemy import select

from pds_kernel.airlock.models import ExportRequest, Review
from pds_kernel.airlock.service import AirlockService
from pds_kernel.hub.local import gate_public_url, hub_db_url, provision_account

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]

MARK = "ZZQORIGINJUSTIFICATION"
TABLE = b"atc,persons\nA10BA02,37\nA10BB09,25\n"


@pytest.fixture(name="world", scope="module")
def world_fixture():
    """The hub (gate on), alice's submitted request, carol's account (a checker of alice's project,
    a researcher of another) with her workspace of that other project running."""
    with module_hub("pdsr16", airlock=True) as hub:
        expiry = date.today() + timedelta(days=100)
        hub.registry.upsert_user("root", "carol")
        hub.registry.add_member("root", PROJECT, "carol", "output-checker", expiry)
        hub.registry.add_member("root", OTHER_PROJECT, "carol", "researcher", expiry)
        hub.registry.add_member("root", OTHER_PROJECT, "alice", "researcher", expiry)  # two projects
        secret = provision_account(hub.settings, hub.registry, "carol", PASSWORD, actor="root")
        alice = provision_account(hub.settings, hub.registry, "alice", PASSWORD, actor="root")
        service = AirlockService(hub.runtime, registry=hub.registry)
        request = service.create("alice", PROJECT, files(("table.csv", TABLE)), MARK, {"notebook": "a.ipynb"})
        hub.start()
        yield hub, secret, request.id, alice


def _signed_in(chromium, hub, user: str, secret: str):
    context = chromium.new_context()
    page = context.new_page()
    browser_sign_in(page, hub, user, secret)
    return context, page


def _open_workspace(page, hub, user: str, project: str) -> str:
    """Start ``user``'s workspace of ``project`` from the hub and wait in its JupyterLab; return its
    address (its own host: the workspace user's, ADR 17)."""
    page.goto(f"{hub.url}/hub/spawn/{user}/{project}")
    path = f"/user/{hub_user(user, project)}/{project}/"
    deadline = time.monotonic() + 120
    while path not in page.url and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert path in page.url, page.url
    page.wait_for_load_state("domcontentloaded")
    return page.url[:page.url.index(path) + len(path)]


@pytest.fixture(name="lab", scope="module")
def lab_fixture(world, chromium):
    """carol signed in, in a page of her own running JupyterLab (its origin: her workspaces')."""
    hub, secret, request_id, _ = world
    context, page = _signed_in(chromium, hub, "carol", secret)
    _open_workspace(page, hub, "carol", OTHER_PROJECT)
    try:
        yield hub, page, request_id
    finally:
        context.close()


def _state(hub, request_id: str) -> tuple[str, list[str]]:
    """The request's state and its reviewers, as the database holds them."""
    with hub.runtime.sessions() as s:
        row = s.scalars(select(ExportRequest).where(ExportRequest.id == request_id)).one()
        reviewers = s.scalars(select(Review.reviewer).where(Review.request_id == request_id)).all()
        return row.state, list(reviewers)


def test_the_gate_is_not_on_the_origin_of_a_workspace(lab):
    hub, page, _ = lab
    lab_origin = page.evaluate("() => location.origin")
    gate_origin = page.evaluate("(u) => new URL(u).origin", gate_public_url(hub.settings))
    hub_origin = page.evaluate("(u) => new URL(u).origin", hub.url)
    assert len({lab_origin, gate_origin, hub_origin}) == 3, (lab_origin, gate_origin, hub_origin)


def test_a_window_of_the_review_page_cannot_be_read(lab):
    hub, page, request_id = lab
    got = page.evaluate("""async (url) => {
        const w = window.open(url);
        for (let i = 0; i < 100; i++) {
            await new Promise(r => setTimeout(r, 100));
            try { if (w.document && w.document.body && w.document.body.innerText.length > 0
                      && w.document.readyState === 'complete') return w.document.body.innerText; }
            catch (e) { return 'refused: ' + e.name; }
        }
        try { return 'nothing read: ' + String(w.document && w.document.body && w.document.body.innerText); }
        catch (e) { return 'refused: ' + e.name; }
    }""", gate_public_url(hub.settings) + f"requests/{request_id}")
    assert MARK not in got, got[:300]
    for other in page.context.pages[1:]:
        other.close()


def test_the_review_page_cannot_be_fetched_and_read(lab):
    hub, page, request_id = lab
    got = page.evaluate("""async (url) => {
        try { const r = await fetch(url, {credentials: 'include'}); return await r.text(); }
        catch (e) { return 'refused: ' + e.name; }
    }""", gate_public_url(hub.settings) + f"requests/{request_id}")
    assert MARK not in got, got[:300]


def test_the_review_form_cannot_be_sent_as_the_checker(lab):
    """With the ``_xsrf`` the page would read, else one it sets for the parent domain (cookie
    tossing: cookies do not keep to one host or port), sent by fetch and by a form in a window."""
    hub, page, request_id = lab
    gate = gate_public_url(hub.settings)
    page.evaluate("""async ([url, id, sha]) => {
        let xsrf = '2|00000000|00000000000000000000000000000000|1700000000';
        try {
            const html = await (await fetch(url + 'requests/' + id, {credentials: 'include'})).text();
            const m = html.match(/name="_xsrf" value="([^"]+)"/); if (m) xsrf = m[1];
        } catch (e) {}
        const parent = location.hostname.split('.').slice(1).join('.');  // the hub's domain
        for (const domain of ['', '; domain=' + parent]) {
            document.cookie = '_xsrf=' + xsrf + domain + '; path=/';
        }
        const body = new URLSearchParams({_xsrf: xsrf, sha_0: sha, decision_0: 'approve',
                                          comment_0: 'Counts of distinct persons, all at least 10.'});
        const action = url + 'requests/' + id + '/review';
        try { await fetch(action, {method: 'POST', body, credentials: 'include', mode: 'no-cors'}); } catch (e) {}
        const f = document.createElement('form');
        f.method = 'POST'; f.action = action; f.target = 'rt16';
        for (const [k, v] of body) { const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); window.open('about:blank', 'rt16'); f.submit();
        await new Promise(r => setTimeout(r, 3000));
    }""", [gate, request_id, hashlib.sha256(TABLE).hexdigest()])
    state, checkers = _state(hub, request_id)
    assert state == "submitted" and "carol" not in checkers, (state, checkers)
    for other in page.context.pages[1:]:
        other.close()


def _tokens_of(hub, user: str, note: str) -> int:
    """Tokens of ``user`` with ``note`` in the hub's own database."""
    with sqlite3.connect(hub_db_url(hub.settings).removeprefix("sqlite:///")) as db:
        return db.execute("SELECT count(*) FROM api_tokens JOIN users ON users.id = api_tokens.user_id "
                          "WHERE users.name = ? AND api_tokens.note = ?", (user, note)).fetchone()[0]


def test_a_hub_token_cannot_be_made_in_the_checkers_name(lab):
    hub, page, _ = lab
    got = page.evaluate("""async (hub) => {
        const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
        try {
            const r = await fetch(hub + '/hub/api/users/carol/tokens', {method: 'POST', credentials: 'include',
                headers: {'X-XSRFToken': xsrf, 'Content-Type': 'application/json'}, body: '{"note": "rt16"}'});
            return r.status + ' ' + await r.text();
        } catch (e) { return 'refused: ' + e.name; }
    }""", hub.url)
    assert _tokens_of(hub, "carol", "rt16") == 0, got[:300]


@pytest.mark.parametrize("said", [
    {"Sec-Fetch-Site": "same-site", "Origin": "http://carol.localhost:8000"},   # a sibling host
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1:9"},
    {"Origin": "http://carol.localhost:8000"},                                 # an older browser
    {"Origin": "null"},                                                        # a sandboxed frame, a file
])
def test_a_form_with_a_tossed_token_from_a_sibling_page(gate, said):
    """The real gate (tests/security/gate_support.py), a checker's cookies and a ``_xsrf`` cookie
    and field the attacking page chose (set for the parent domain, so the gate receives it): the
    token matches, and the gate still refuses the form because the browser says where it comes from
    (audited). The gate's own page sending it is the control."""
    view = gate.submit(content=b"a,n\nx,20\n")
    olga = gate.browser("olga")
    chosen = gate.xsrf(olga, f"requests/{view.id}")  # a token that matches the cookie it sets
    form = {"_xsrf": chosen, "decision_0": "approve", "comment_0": "fine", "sha_0": view.files[0].sha256}
    url = gate.base + f"requests/{view.id}/review"
    forged = olga.post(url, data=form, allow_redirects=False, timeout=30, headers=said)
    assert forged.status_code == 403 and "a page that is not the gate" in forged.text, forged.text[-600:]
    assert gate.service.get_request("olga", view.id).complete_reviews == 0
    refused = gate.service.runtime.audit.entries(action="airlock.access.cross_origin")
    assert refused and refused[-1].actor == "olga" and refused[-1].details["origin"] == said["Origin"]
    own = urlparse(gate.base)
    sent = olga.post(url, data=form, allow_redirects=False, timeout=30,
                     headers={"Sec-Fetch-Site": "same-origin", "Origin": f"{own.scheme}://{own.netloc}"})
    assert sent.status_code == 302


def test_a_workspace_reads_another_workspace_of_the_same_user(world, chromium):
    """alice works on two projects. Script in her JupyterLab of one opens her JupyterLab of the other
    in a window and fetches from it (to read its ``_xsrf`` cookie and list its files): data of one
    project would reach the other. It got through while one user's workspaces shared her host (the
    residual of ADR 16, a strict expected failure); each workspace is its own hub user on its own
    host now (ADR 17), so the window and the fetch are another origin's: refused by the browser. The
    old path on this workspace's own host reaches no workspace either."""
    hub, _, _, secret = world
    context, page = _signed_in(chromium, hub, "alice", secret)
    try:
        other = _open_workspace(page, hub, "alice", OTHER_PROJECT)
        here = _open_workspace(page, hub, "alice", PROJECT)
        assert urlparse(other).netloc != urlparse(here).netloc
        got = page.evaluate("""async (targets) => {
            const out = [];
            for (const other of targets) {
                const w = window.open(other + 'lab');
                let said = null;
                for (let i = 0; i < 100 && said === null; i++) {
                    await new Promise(r => setTimeout(r, 100));
                    try { if (w.location.href !== 'about:blank' && w.document.cookie.includes('_xsrf')) said = 'read'; }
                    catch (e) { said = 'refused: ' + e.name; }
                }
                try {
                    const xsrf = decodeURIComponent((w.document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '');
                    const r = await w.fetch(other + 'api/contents/', {credentials: 'include',
                                                                     headers: {'X-XSRFToken': xsrf}});
                    out.push('window ' + r.status + ' ' + (await r.text()).slice(0, 200));
                } catch (e) { out.push('window refused: ' + e.name); }
                try {
                    const r = await fetch(other + 'api/contents/', {credentials: 'include'});
                    out.push('fetch ' + r.status + ' ' + (await r.text()).slice(0, 200));
                } catch (e) { out.push('fetch refused: ' + e.name); }
                w.close();
            }
            return out;
        }""", [other, f"/user/alice/{OTHER_PROJECT}/"])
    finally:
        context.close()
    assert len(got) == 4, got
    assert not any(answer.split(" ", 2)[1] == "200" and "content" in answer for answer in got), got
    assert got[0] == "window refused: SecurityError" and got[1] == "fetch refused: TypeError", got
