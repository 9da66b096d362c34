"""End to end in a real browser (Debian's chromium driven by Playwright): log in with a second
factor, start the project's workspace from the home page, JupyterLab loads. Screenshots go to
``docs/img/`` (they illustrate the researcher guide)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubfixtures import PASSWORD, PROJECT, Hub, current_totp

from pds_kernel.hub.local import provision_account

pytestmark = [pytest.mark.functional, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")
def test_login_start_project_and_jupyterlab_loads(hub_world: Hub):
    playwright_api = pytest.importorskip("playwright.sync_api")
    secret = provision_account(hub_world.settings, hub_world.registry, "alice", PASSWORD, actor="test")
    hub_world.start()
    IMG.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{hub_world.url}/hub/login")
            page.fill("#username_input", "alice")
            page.fill("#password_input", PASSWORD)
            page.fill("input[name='2fa']", current_totp(secret))
            page.screenshot(path=str(IMG / "login.png"))
            page.click("#login_submit")
            page.wait_for_url("**/hub/home", timeout=30_000)
            assert page.locator("#projects").is_visible()
            page.screenshot(path=str(IMG / "home.png"))

            page.click(f"#start-{PROJECT}")
            page.wait_for_url(f"**/user/alice/{PROJECT}/lab**", timeout=120_000)
            page.wait_for_selector(".jp-Launcher, .jp-DirListing", timeout=90_000)
            page.wait_for_timeout(1500)  # let the file browser fill in
            news = page.get_by_role("button", name="No")
            if news.count():
                news.first.click()
            page.dblclick("text=examples")
            page.wait_for_timeout(800)
            assert "JupyterLab" in page.title() or page.locator("#jp-main-dock-panel").count() == 1
            page.screenshot(path=str(IMG / "jupyterlab.png"))
        finally:
            browser.close()
    starts = hub_world.actions("workspace.start")
    assert [(e.actor, e.project) for e in starts] == [("alice", PROJECT)]
