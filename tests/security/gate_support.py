"""Support of tests/security/test_gate.py: a real gate web service on loopback, and its people.

The gate is the production Tornado application (``make_app``) with the production server options
(``server_options()``), served by a real ``HTTPServer`` on a free loopback port; only the identity
is the test one of tests/airlock (a token header or cookie naming the user: what JupyterHub
resolves in production). Requests are reached through the real service (tests/airlock's factories).

People of project ``diab-2024``: alice and carol (researchers), olga and omar (output checkers),
bob (researcher and checker); root is a platform admin and a checker of no project; of project
``other-2024``: mallory (researcher) and oscar (checker).
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))  # its helper modules

from airlock_factories import OTHER, PROJECT, files
from airlock_web import FakeIdentity, live_server

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.web import make_app, server_options
from pds_kernel.registry import Registry, Role
from pds_kernel.runtime import Runtime

PREFIX = "/services/airlock/"
#: A table with markers no page or answer to the author may carry: a label, a small cell (7) and a
#: column name, all from "the data". (A NIR-like identifier makes the pre-gates refuse the file at
#: submission, so it has its own table: :data:`NIR_TABLE`.)
SECRET_LABEL = "ZZQSECRETLABEL"
SECRET_COLUMN = "ZZQSECRETCOLUMN"
NIR_LIKE = "1 84 12 75 123 456 78"
SECRET_TABLE = (f"group,{SECRET_COLUMN}\n{SECRET_LABEL},7\nB,120\nC,130\n").encode()
NIR_TABLE = (f"group,{SECRET_COLUMN}\n{SECRET_LABEL},70\nB,120\n{NIR_LIKE},130\n").encode()
SECRET_MARKERS = (SECRET_LABEL, SECRET_COLUMN, "84 12 75", "7 is below", "ZZQ")


@dataclass
class Gate:
    base: str  #: URL of the gate, prefix included, ending in "/"
    service: AirlockService
    registry: Registry

    def api(self, user: str | None, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if user is not None:
            headers = {"Authorization": f"token fake-{user}", **headers}
        return requests.request(method, self.base + "api/" + path, headers=headers, timeout=60, **kwargs)

    def browser(self, user: str) -> requests.Session:
        session = requests.Session()
        session.cookies.set("fake_user", user)
        return session

    def xsrf(self, session: requests.Session, page: str) -> str:
        html = session.get(self.base + page).text
        return re.search(r'name="_xsrf" value="([^"]+)"', html).group(1)

    def submit(self, author: str = "alice", content: bytes = SECRET_TABLE, name: str = "t.csv",
               justification: str = "Table 1 ZZQJUSTIFICATION", context: dict | None = None):
        context = {"notebook": "ZZQCONTEXT.ipynb"} if context is None else context
        return self.service.create(author, PROJECT, files((name, content)), justification, context)

    def approve(self, request_id: str, *checkers: str):
        view = None
        for who in checkers or ("olga", "omar"):
            view = self.service.review(who, request_id, {0: {"decision": "approve", "comment": "an exception"}})
        return view


@pytest.fixture(name="gate_registry")
def gate_registry_fixture(runtime) -> Registry:
    return people(runtime)


def people(runtime) -> Registry:
    """The registry of :data:`PROJECT` and :data:`OTHER` with the people named above."""
    reg = Registry.from_runtime(runtime)
    for name in ("alice", "carol", "bob", "olga", "omar", "oscar", "mallory"):
        reg.upsert_user("root", name)
    reg.upsert_user("root", "root", is_admin=True)
    far = date(2099, 12, 31)
    for pid in (PROJECT, OTHER):
        reg.upsert_project("root", pid, title=pid, start_date=date(2020, 1, 1), end_date=far)
    for user, role in (("alice", Role.RESEARCHER), ("carol", Role.RESEARCHER), ("bob", Role.RESEARCHER),
                       ("bob", Role.OUTPUT_CHECKER), ("olga", Role.OUTPUT_CHECKER),
                       ("omar", Role.OUTPUT_CHECKER)):
        reg.add_member("root", PROJECT, user, role, far)
    reg.add_member("root", OTHER, "mallory", Role.RESEARCHER, far)
    reg.add_member("root", OTHER, "oscar", Role.OUTPUT_CHECKER, far)
    return reg


@pytest.fixture(name="gate")
def gate_fixture(runtime, gate_registry):
    with served_gate(runtime, gate_registry) as gate:
        yield gate


@contextmanager
def served_gate(runtime, registry: Registry) -> Iterator[Gate]:
    """The gate of ``runtime`` and ``registry`` (auto-release off: a test releases), served on
    loopback until the block ends."""
    service = AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=registry)
    app = make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)
    with live_server(app, **server_options()) as url:
        yield Gate(url + PREFIX, service, registry)


@contextmanager
def module_gate(tmp_path_factory, name: str,
                prepare: Callable[[Registry], None] | None = None) -> Iterator[Gate]:
    """One gate for a module (:func:`served_gate`): a runtime of its own in a temporary folder
    ``name``, :func:`people` in its registry, then whatever ``prepare`` adds to it."""
    from tests.conftest import make_settings

    runtime = Runtime(make_settings(tmp_path_factory.mktemp(name) / "pds"))
    try:
        registry = people(runtime)
        if prepare is not None:
            prepare(registry)
        with served_gate(runtime, registry) as gate:
            yield gate
    finally:
        runtime.close()


def leaks(text: str | bytes) -> list[str]:
    """The secret markers of :data:`SECRET_TABLE` found in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [m for m in SECRET_MARKERS if m in text]


class Spaces:
    """A request body of ``size`` spaces, produced as it is sent (never held in memory)."""

    def __init__(self, size: int, head: bytes = b""):
        self.size, self.sent, self.head = size, 0, head

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = 65536) -> bytes:
        amount = min(amount if amount and amount > 0 else 65536, self.size - self.sent)
        chunk = (self.head + b" " * amount)[:amount] if self.sent == 0 else b" " * amount
        self.sent += amount
        return chunk


def spaces(size: int, chunk: int = 1024 * 1024):
    """The same, as a generator: sent with ``Transfer-Encoding: chunked`` (no Content-Length)."""
    while size > 0:
        yield b" " * min(chunk, size)
        size -= chunk


def closed_within(sock: socket.socket, seconds: float, drip: bytes | None = None, every: float = 0.2) -> tuple[float, bytes]:
    """Wait until the gate closes ``sock`` (sending ``drip`` every ``every`` seconds meanwhile);
    the seconds it took (``seconds`` or more: still open) and what the gate answered."""
    start = time.monotonic()
    answer = b""
    while time.monotonic() - start < seconds:
        if drip:
            try:
                sock.sendall(drip)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(every)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        answer += chunk
    return time.monotonic() - start, answer
