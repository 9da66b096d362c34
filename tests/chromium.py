"""The suite's one browser: Debian's headless Chromium driven by Playwright.

Every test that needs a browser (the role journeys, the gate in a real hub, the red-team rounds in
a checker's or an administrator's browser) launches it here, with the same arguments, and is
skipped where Chromium or Playwright is not installed.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: no setuid sandbox (the tests run as root), no GPU, no traffic of the browser's own
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@contextmanager
def browser():
    """A launched Chromium (``playwright.sync_api.Browser``), closed after."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()
