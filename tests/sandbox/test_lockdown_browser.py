"""In JupyterLab (Debian's Chromium driven by Playwright), a locked-down workspace offers no
Download: the menu items are gone, and a download link opened by hand shows why it is refused."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from lockdown_server import LedgerHost, start_server

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
GONE = {"Download", "Open in New Browser Tab", "Save and Export Notebook As", "Export Notebook As…"}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")
def test_jupyterlab_offers_no_download_and_says_why(tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    home = tmp_path / "home"
    home.mkdir()
    (home / "claims_per_month.json").write_text(json.dumps({"2024-01": 12}))
    (home / "analysis.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}))
    ledger = LedgerHost(tmp_path / "ledger.db", capacity=64 * 1024 * 1024, token=secrets.token_hex(8))
    server = start_server(home, tmp_path, ledger=ledger)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{server.base}/lab?token={server.token}")
                item = page.locator('.jp-DirListing-item[title*="claims_per_month.json"]')
                item.wait_for(timeout=120_000)
                item.click(button="right")
                page.locator(".lm-Menu").first.wait_for()
                context_menu = set(page.locator(".lm-Menu-itemLabel").all_inner_texts())
                assert "Rename" in context_menu and not context_menu & GONE, context_menu
                page.keyboard.press("Escape")
                page.dblclick('.jp-DirListing-item[title*="analysis.ipynb"]')
                page.locator(".jp-Notebook").wait_for(timeout=60_000)
                page.wait_for_timeout(2_000)
                if page.locator(".jp-Dialog").count():  # a kernel or news prompt: not what is tested here
                    page.keyboard.press("Escape")
                page.locator('.lm-MenuBar-itemLabel:text-is("File")').click()
                file_menu = {label.strip() for label in page.locator(".lm-Menu-itemLabel").all_inner_texts()}
                assert "Save Notebook" in file_menu and not file_menu & GONE, file_menu
                page.keyboard.press("Escape")
                # The old link, opened by hand: the page says why and what to do instead.
                response = page.goto(f"{server.base}/files/claims_per_month.json?download=1")
                assert response.status == 403
                assert "export request" in page.inner_text("body")
            finally:
                browser.close()
    finally:
        server.stop()
        ledger.close()
