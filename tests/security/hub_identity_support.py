"""Support of tests/security/test_hub_identity.py: a real hub (tests/hub/hubfixtures.py) with
accounts made by ``pds hub account add``'s function, and a real hub-socket bridge in front of its
API, driven with raw bytes."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubfixtures import PASSWORD, PROJECT, Hub, free_port_block, make_world

from pds_kernel.hub.local import api_port, provision_account
from pds_kernel.sandbox.hub_bridge import HubApiBridge
from pds_kernel.sandbox.hub_policy import HubApiPolicy

#: Users with a hub account (made by provision_account) in the identity world.
ACCOUNTS = ("root", "alice", "bob", "carol", "dave", "erin", "frank", "henry", "jack", "kate", "lena")
#: A registry admin and a researcher who have no hub account yet.
UNCLAIMED_ADMIN = "root2"
UNCLAIMED_RESEARCHER = "gina"


def make_identity_world(root: Path) -> tuple[Hub, dict[str, str]]:
    """The hubfixtures world plus more researchers, and accounts; returns (hub, secrets)."""
    hub = make_world(root, free_port_block())
    registry, today = hub.registry, date.today()
    registry.upsert_user("root", UNCLAIMED_ADMIN, is_admin=True)
    for name in ("carol", "erin", "frank", "henry", "jack", "kate", "lena", UNCLAIMED_RESEARCHER):
        registry.upsert_user("root", name)
        registry.add_member("root", PROJECT, name, "researcher", today + timedelta(days=100))
    secrets = {name: provision_account(hub.settings, registry, name, PASSWORD, actor="root")
               for name in ACCOUNTS}
    return hub, secrets


def short_tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="pdsi", dir="/tmp"))


@contextmanager
def started_world(build: Callable[[Path], tuple[Hub, Any]]) -> Iterator[tuple[Hub, Any]]:
    """``build(root)`` in a short temporary directory, its hub started; yields (hub, what build
    gave besides); then the hub is stopped, its runtime closed and the directory removed."""
    root = short_tmp()
    try:
        hub, extra = build(root)
        hub.start()
        try:
            yield hub, extra
        finally:
            hub.stop()
            hub.runtime.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class BridgeThread:
    """A real :class:`HubApiBridge` (the workspace's hub socket) on its own event loop, forwarding to
    the hub API port of ``hub``; ``server_token`` plays the workspace's API token."""

    def __init__(self, hub: Hub, user: str, server_token: str):
        self.path = short_tmp() / "hub.sock"
        self.refusals: list[tuple[str, str, str]] = []
        policy = HubApiPolicy.for_token(user, server_token)
        self.bridge = HubApiBridge(self.path, "127.0.0.1", api_port(hub.settings), policy,
                                   on_refusal=lambda m, p, r, _n: self.refusals.append((m, p, r)))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.bridge.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.bridge.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def exchange(self, data: bytes, timeout: float = 15.0) -> bytes:
        """Send ``data`` on one connection and return everything read until the bridge closes it
        (or ``timeout``; a kept-alive connection is closed by us after the first quiet second)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
            sock.sendall(data)
            chunks, deadline = [], time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    sock.settimeout(1.0 if chunks else max(0.1, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if chunks:
                        break
                    continue
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)


def request(method: str, path: str, *, token: str | None = None, body: bytes = b"",
            headers: dict[str, str] | None = None, version: str = "HTTP/1.1") -> bytes:
    """One raw request as jupyterhub-singleuser would frame it (CRLF, Content-Length)."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1:8081"]
    if token:
        lines.append(f"Authorization: token {token}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def statuses(raw: bytes) -> list[int]:
    """The status codes of the HTTP responses in ``raw``, in order, read as a client reads them:
    a head, then ``Content-Length`` bytes of body, then the next head (a response's body need not
    end with a line end, so the next status line need not start a line). Bytes that are not a
    response where one must start end the list with -1."""
    codes, at = [], 0
    while at < len(raw):
        end = raw.find(b"\r\n\r\n", at)
        found = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw[at:])
        if end < 0 or not found:
            return [*codes, -1]
        codes.append(int(found[1]))
        length = re.search(rb"(?im)^content-length: *(\d+)\r$", raw[at:end + 2])
        at = end + 4 + (int(length[1]) if length else len(raw))
    return codes


def token_count(hub: Hub, user: str, token: str) -> int:
    """How many API tokens ``user`` holds (asked with their own token, not through the bridge)."""
    import requests

    response = requests.get(f"{hub.url}/hub/api/users/{user}/tokens",
                            headers={"Authorization": f"token {token}"}, timeout=30)
    response.raise_for_status()
    return len(response.json()["api_tokens"])


def account_row(hub: Hub, user: str) -> tuple | None:
    """``(is_authorized, password_hash)`` of ``user``'s hub account, read from the hub database."""
    import sqlite3

    from pds_kernel.hub.local import hub_dir

    with sqlite3.connect(hub_dir(hub.settings) / "jupyterhub.sqlite") as db:
        return db.execute("SELECT is_authorized, password FROM users_info WHERE username = ?",
                          (user,)).fetchone()


def pds_cli(hub: Hub, *args: str):
    """The ``pds`` command in a subprocess, with this hub's configuration (as an operator runs it)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PDS_ACTOR"}  # acts as root (cli.identities)
    return subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()",
                           "--config", str(hub.config), *args],
                          capture_output=True, text=True, env=env, timeout=120)
