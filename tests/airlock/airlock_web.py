"""Test-only web helpers: an identity that trusts a test header, and a live server in a thread."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager

import requests
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

#: where the hub serves the gate; the tests serve it at the same prefix
PREFIX = "/services/airlock/"


class FakeIdentity:
    """TEST ONLY. API: ``Authorization: token fake-<user>``; pages: cookie ``fake_user=<user>``."""

    async def user(self, handler, *, api):
        if api:
            header = handler.request.headers.get("Authorization", "")
            return header[len("token fake-"):] or None if header.startswith("token fake-") else None
        return handler.get_cookie("fake_user") or None

    def login_url(self, handler):
        return None

    def handlers(self, prefix):
        return []


@contextmanager
def live_server(app, server_factory=None, **server_options):
    """Serve ``app`` on a free loopback port from a background thread; yield its base URL.

    ``server_options`` go to Tornado's ``HTTPServer`` (production's: ``web.server_options()``);
    ``server_factory(app)``, when given, makes the server instead (production's: ``web.make_server``)."""
    sock, port = bind_unused_port()
    ready = threading.Event()
    state = {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = server_factory(app) if server_factory else HTTPServer(app, **server_options)
        server.add_sockets([sock])
        state["loop"], state["server"] = loop, server
        ready.set()
        loop.run_forever()
        server.stop()
        loop.run_until_complete(server.close_all_connections())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(10)


def browser(user: str) -> requests.Session:
    """A browser session signed in to the pages as ``user`` (through :class:`FakeIdentity`)."""
    s = requests.Session()
    s.cookies.set("fake_user", user)
    return s
