"""Support of tests/security/test_redteam11_gate_connections.py: the gate served as ``run_service``
serves it (``web.make_server``: the connection caps, the production ``server_options()``), with
small ``gate`` settings so that each attack is cut in seconds, on a real loopback socket (and a
real Unix socket); raw sockets to attack it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from urllib.parse import urlparse

import pytest
from gate_support import PREFIX, FakeIdentity, Gate, closed_within, gate_registry_fixture, live_server  # noqa: F401  (fixture; closed_within re-exported)

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.web import make_app, make_server
from pds_kernel.settings import Gate as GateSettings

#: The test's gate settings: seconds instead of a minute, 1 KiB/s the slowest body.
SMALL = GateSettings(idle_seconds=2.0, body_grace_seconds=1.0, body_min_bytes_per_second=1024,
                     max_connections=12, max_connections_per_peer=8)


@dataclass
class ServedGate(Gate):
    server: object = None  #: the GateServer (its counts)
    settings: GateSettings = SMALL
    loop: object = None  #: the server thread's event loop

    def on_server(self, fn) -> None:
        """Run ``fn()`` in the server's thread and wait for it."""
        done = threading.Event()

        def run():
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(5)

    @property
    def address(self) -> tuple[str, int]:
        url = urlparse(self.base)
        return url.hostname, url.port

    def connect(self, source: str = "127.0.0.1", timeout: float = 5) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout, source_address=(source, 0))

    def staged_files(self) -> list:
        return [p for p in self.service.runtime.settings.paths.staging.rglob("*") if p.is_file()]


@contextmanager
def serve_gate(runtime, registry, gate: GateSettings):
    """Serve the gate of ``runtime`` (its handlers pace bodies by ``runtime.settings.gate``) in a
    server made as production makes it with ``gate``; yields a :class:`ServedGate`."""
    service = AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=registry)
    app = make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)
    made = {}

    def factory(app):
        made["server"], made["loop"] = make_server(app, gate), asyncio.get_event_loop()
        return made["server"]

    with live_server(app, server_factory=factory) as url:
        yield ServedGate(url + PREFIX, service, registry, server=made["server"], settings=gate, loop=made["loop"])


@pytest.fixture(name="settings")
def small_settings_fixture(settings):
    """The test settings (tests/conftest.py) with :data:`SMALL` gate settings."""
    return replace(settings, gate=SMALL)


@pytest.fixture(name="small_gate")
def small_gate_fixture(runtime, gate_registry):
    with serve_gate(runtime, gate_registry, SMALL) as served:
        yield served


def upload_head(length: int | None, token: str = "fake-alice", boundary: str = "b0undary", extra: str = "") -> bytes:
    """The headers of an export request's upload (multipart), with a declared length or chunked."""
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {PREFIX}api/requests HTTP/1.1\r\nHost: x\r\nAuthorization: token {token}\r\n{extra}"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n{framing}\r\n").encode()


def multipart(fields: dict[str, str], files: dict[str, bytes], boundary: str = "b0undary") -> bytes:
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()
