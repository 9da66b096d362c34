"""A real notebook server started the platform's way (``pds_kernel.sandbox.notebook_server``), and
the hub's served-bytes ledger on a loopback port, for the lockdown tests (tests/sandbox) and the
red-team suite (tests/security/test_lockdown_escape.py).

The ledger is :class:`pds_kernel.hub.budget.ServedBytesLedger` itself, served over HTTP with a
token check and the hub handler's answers; the hub's own handler is tested on a real hub.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ports import free_port

from pds_kernel.db import make_engine, session_factory
from pds_kernel.sandbox.notebook_server import server_command
from pds_kernel.sandbox.reservations import API_PATH
from pds_kernel.schema import check_schema
from pds_kernel.served_bytes import ServedBytesLedger

BASE_URL = "/user/alice/proj-a/"


class LedgerHost:
    """``ServedBytesLedger`` over HTTP at ``/hub/api/pds/served-bytes/<user>/<server>``."""

    def __init__(self, path: Path, capacity: int, token: str):
        engine = make_engine(f"sqlite:///{path}")
        check_schema(engine)  # a new database: the platform's schema, as the hub's runtime creates it
        self.ledger = ServedBytesLedger(session_factory(engine), capacity=capacity)
        self.token = token
        self.requests = 0
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                host.requests += 1
                match = re.fullmatch(r"/hub" + API_PATH + r"/([^/]+)/([^/]+)", self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not match or self.headers.get("Authorization") != f"token {host.token}":
                    return self._answer(403, {"message": "Missing or invalid credentials."})
                r = host.ledger.reserve(match[1], match[2], body["want"], body["need"])
                if not r.granted:
                    return self._answer(403, {"message": host.ledger.refusal, "reason": "pds-budget",
                                              "available": r.available})
                return self._answer(200, {"granted": r.granted, "available": r.available})

            def _answer(self, status, obj):
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.api_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hub/api"

    def url(self, user: str = "alice", server: str = "proj-a") -> str:
        return f"{self.api_url}/pds/served-bytes/{user}/{server}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class NotebookServer:
    base: str
    token: str
    home: Path
    log_path: Path
    proc: subprocess.Popen
    _log: object = field(repr=False, default=None)

    def request(self, path: str, method: str = "GET", body=None, headers: dict | None = None,
                raw: bytes | None = None):
        """(status, parsed JSON or raw bytes, response headers) of one authenticated request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json", **(headers or {})})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=60) as resp:
                status, payload, hdrs = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as err:
            status, payload, hdrs = err.code, err.read(), err.headers
        except (ConnectionError, http.client.IncompleteRead) as exc:
            return 0, repr(exc).encode(), {}
        try:
            return status, json.loads(payload), hdrs
        except ValueError:
            return status, payload, hdrs

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()


def start_server(home: Path, workdir: Path, *, ledger: LedgerHost | None, args: list[str] = (),
                 env: dict[str, str] | None = None, command: list[str] | None = None,
                 wait: bool = True) -> NotebookServer:
    """Start the notebook server as the spawners do (``server`` mode: no hub login, a token)."""
    token = secrets.token_hex(16)
    port = free_port()
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"), **(env or {})}
    if ledger is not None:
        full_env["JUPYTERHUB_API_TOKEN"] = ledger.token
    cmd = [*(command or server_command(sys.executable, "server")),
           "--no-browser", "--allow-root", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}",
           f"--ServerApp.base_url={BASE_URL}", *args]
    if ledger is not None:
        cmd.append(f"--Lockdown.budget_url={ledger.url()}")
    log_path = workdir / f"server-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, env=full_env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
    server = NotebookServer(f"http://127.0.0.1:{port}{BASE_URL.rstrip('/')}", token, home, log_path, proc, log)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: NotebookServer, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"{server.base}/api/status?token={server.token}", timeout=2)
            return
        except OSError:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(server.log()) from None
            time.sleep(0.3)
