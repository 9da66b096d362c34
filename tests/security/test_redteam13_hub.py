"""Red team, thirteenth round (13A): the hub's own pages in an administrator's browser.

One real hub (tests/hub/hubfixtures.py, NativeAuthenticator with a second factor) whose project
title carries markup, script and fetches to "another site" (a loopback listener): the
administrator's platform page, opened in a real headless Chromium, must show it as text, run
nothing and fetch nothing. And the hub's login must never send a signed-in user to another site,
whatever ``next`` says. None of these got through.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlparse

import pytest
from redteam13_support import PWNED, chromium_fixture, listener_fixture  # noqa: F401  (fixtures)
from test_redteam13_browser import payloads

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubfixtures import PASSWORD, PROJECT, free_port_block, make_world

from pds_kernel.hub.local import provision_account

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture(name="admin_hub", scope="module")
def admin_hub_fixture(listener):
    """The hub, its project titled with the payloads, and root's signed-in HTTP session."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = Path(tempfile.mkdtemp(prefix="pdsr13", dir="/tmp"))
    hub = make_world(root, free_port_block())
    try:
        project = hub.registry.get_project(PROJECT)
        hub.registry.upsert_project("root", PROJECT, title="Diabetes " + payloads(listener.url, "title"),
                                    start_date=project.start_date, end_date=project.end_date)
        secret = provision_account(hub.settings, hub.registry, "root", PASSWORD, actor="root")
        hub.start()
        client = hub.client()
        assert client.login("root", secret)
        yield hub, client
    finally:
        hub.stop()
        hub.runtime.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_project_title_on_the_administrators_platform_page(admin_hub, listener, chromium):
    hub, client = admin_hub
    context = chromium.new_context()
    context.add_cookies([{"name": c.name, "value": c.value, "url": hub.url} for c in client.http.cookies])
    page = context.new_page()
    try:
        page.goto(hub.url + "/hub/platform", wait_until="load")
        page.wait_for_selector("#platform", timeout=30_000)
        assert "window.__pwned_title" in page.inner_text(f"#project-{PROJECT}")  # shown, as text
        for link in page.locator("a[id^=js-]").all():
            link.click()
        page.wait_for_timeout(200)
        assert page.evaluate(PWNED) == []
    finally:
        context.close()
    assert listener.hits == []


@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example/", "https://evil.example/",
                                    "javascript:alert(1)", "/hub/..//evil.example", "%2F%2Fevil.example",
                                    "\t//evil.example", "http:evil.example", "/%09/evil.example"])
def test_the_login_never_sends_a_signed_in_user_to_another_site(admin_hub, target):
    """An open redirect through the hub's login (``/hub/login?next=...``), in a link a researcher
    sends to an administrator who is signed in: every hop, resolved as a browser resolves it, stays
    on the hub's own site (a hop elsewhere is never followed: no traffic leaves loopback)."""
    hub, client = admin_hub
    url = hub.url + "/hub/login?" + urlencode({"next": target})
    for _ in range(6):
        r = client.http.get(url, allow_redirects=False, timeout=30)
        location = r.headers.get("Location")
        if not location:
            break
        url = urljoin(url, location)
        parsed = urlparse(url)
        assert (parsed.scheme, parsed.netloc) == ("http", urlparse(hub.url).netloc), (target, location, url)
