"""Support of the thirteenth red-team round (``test_redteam13_*.py``): one real gate per module,
a real headless Chromium, and a loopback listener that records every request a page makes to it.

The gate is tests/security/gate_support.py's (the production application and server options, the
test identity of tests/airlock: a cookie naming the user). The browser is Playwright's Chromium
(tests/chromium.py, the suite's one browser); a test that needs it is skipped
where it is not installed. The listener stands for "another site": anything a payload fetches
(an image, a style sheet, a frame, a redirect, a script) lands there, and a test asserts nothing did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from chromium import browser
from gate_support import Gate, module_gate


@pytest.fixture(name="gate13", scope="module")
def gate13_fixture(tmp_path_factory):
    """One gate for the module (each test makes its own requests)."""
    with module_gate(tmp_path_factory, "rt13") as gate:
        yield gate


@dataclass
class Listener:
    """A loopback HTTP server on another port (another origin): it records each path asked, and
    serves ``pages[path]`` (HTML) when a test puts one there."""

    url: str = ""
    hits: list[str] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)


@pytest.fixture(name="listener", scope="module")
def listener_fixture():
    state = Listener()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.hits.append(self.path)
            body = state.pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(name="chromium", scope="module")
def chromium_fixture():
    with browser() as launched:
        yield launched


def signed_in(chromium, gate: Gate, user: str):
    """A fresh browser context signed in to the gate's pages as ``user`` (the test identity's cookie)."""
    context = chromium.new_context(accept_downloads=True)
    context.add_cookies([{"name": "fake_user", "value": user, "url": gate.base}])
    return context


#: What a payload does when it runs: sets a global named ``__pwned...``.
PWNED = "() => Object.keys(window).filter(k => k.startsWith('__pwned'))"
