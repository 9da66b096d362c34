"""Red team, twelfth round (12A): data out of a workspace through the services' logs.

Code in a workspace reaches two services of the platform besides its own notebook: the gate (its
socket, or its address on Kubernetes) and the package index. Both log what they serve, and their
logs are read by the platform's operators, who do not see project data (docs/isolation.md,
"Administrators do not see inside workspaces"), and are often shipped to a log platform further
away. The workspace chooses the address it asks for: a query string, an unknown path, a package
name. Each attempt sends the data in the address, with or without a valid token, to the real gate
(the production application and server options on loopback, tests/security/gate_support.py) or to
the real package index (its server on a Unix socket, logging as its Kubernetes Deployment does),
and asserts that the logs keep at most a hundred characters or so of it.

Six got through before the fix: Tornado's access log and the gate's refusal log wrote each
request's whole address (up to the head limit: 8 KiB a request through a workspace's gate socket,
64 KiB over the network; 20 a second and more) for a query string with and without a token, a query
of many unknown names, an unknown path of the API and of the pages; and the package index logged
300 characters of each path asked for. Now the gate logs a
request's method, status, time and route (an address of a known form: ids and numbers only), or
the length of an address it does not serve, never a query string (:func:`pds_kernel.airlock.web.log_request`);
the index logs the paths it serves, and the length of the others.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
import requests
from gate_support import PREFIX, gate_fixture, gate_registry_fixture  # noqa: F401  (fixtures)

from pds_kernel.packages.index import IndexServer, log_request

MARK = "NIR1850375123456"
PAYLOAD = (MARK + "x") * 200  # 3,400 characters: under every head limit
#: the most characters of the payload all the log records of a request may keep together
MOST = 150


@pytest.fixture(autouse=True)
def _tornado_logs_captured(caplog):
    """Tornado's loggers as the gate's process has them, whatever this test process did before:
    importing ``distributed`` sets the ``tornado`` logger to CRITICAL, and a JupyterHub application
    made in the same process hangs it under its own logger, which does not pass records on to the
    root logger that ``caplog`` listens to. The capture handler is put on ``tornado`` itself and
    its level lowered for the test (both undone after)."""
    tornado = logging.getLogger("tornado")
    level = tornado.level
    tornado.setLevel(logging.DEBUG)
    tornado.addHandler(caplog.handler)
    try:
        yield
    finally:
        tornado.removeHandler(caplog.handler)
        tornado.setLevel(level)


def _logged(caplog) -> str:
    """What this process logged, but for the test's own HTTP client (urllib3). Every other logger
    counts: Tornado's are renamed by a JupyterHub application made in the same process
    (``tornado.access`` then logs as "JupyterHub"), as in the suite's other tests. A record that
    reached the capture handler twice (through ``tornado`` and through the root) counts once."""
    records = {id(r): r for r in caplog.records}.values()
    return "\n".join(r.getMessage() for r in records if not r.name.startswith(("urllib3", "requests")))


def _wait_for(caplog, text: str, seconds: float = 5.0) -> str:
    """The logs once they hold ``text`` (the gate writes its access line after the answer)."""
    deadline = time.monotonic() + seconds
    while text not in _logged(caplog) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _logged(caplog)


def _payload_in(text: str) -> int:
    return text.count(MARK) * (len(MARK) + 1)


@pytest.mark.parametrize("user, path", [
    ("alice", f"api/requests?project=diab-2024&note={PAYLOAD}"),   # a query the API refuses (400)
    ("alice", "api/requests?" + "&".join(f"{MARK}{i:04d}{MARK}=1" for i in range(100))),  # ...by its names
    (None, f"api/requests?note={PAYLOAD}"),                       # no token (401)
    ("alice", f"api/{PAYLOAD}"),                                   # an API path that does not exist (404)
    ("alice", f"requests/{PAYLOAD}"),                              # a page that does not exist
])
def test_the_address_asked_of_the_gate(gate, caplog, user, path):
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"token fake-{user}"} if user else {}
    answer = requests.get(gate.base + path, headers=headers, timeout=30, allow_redirects=False)
    assert answer.status_code in (302, 400, 401, 403, 404)
    logged = _wait_for(caplog, f"{answer.status_code} GET ")
    assert f"{answer.status_code} GET " in logged, "the request is logged"
    assert _payload_in(logged) <= MOST, logged[:300]


def test_a_request_the_gate_serves_is_still_logged_with_its_route(gate, caplog):
    caplog.set_level(logging.INFO)
    answer = requests.get(gate.base + "api/requests?scope=mine", headers={"Authorization": "token fake-alice"},
                          timeout=30)
    assert answer.status_code == 200
    line = "200 GET /services/airlock/api/requests?(10 characters)"
    assert line in _wait_for(caplog, line)


def test_the_package_asked_of_the_index(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    path = tmp_path / "index.sock"

    async def ask() -> bytes:
        server = IndexServer(wheelhouse, unix_socket=path, on_request=log_request)
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(f"GET /simple/{PAYLOAD}/ HTTP/1.1\r\nHost: index\r\n\r\n".encode())
            await writer.drain()
            answer = await reader.read()
            writer.close()
            return answer
        finally:
            await server.stop()

    answer = asyncio.run(ask())
    assert answer.startswith(b"HTTP/1.1 404")
    assert "404" in _logged(caplog)
    assert _payload_in(_logged(caplog)) <= MOST, _logged(caplog)[:300]
    assert socket  # the index listens on a Unix socket, as in a workspace
