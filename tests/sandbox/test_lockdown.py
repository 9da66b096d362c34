"""The notebook-server lockdown, against a real jupyter_server on a loopback port (no sandbox),
started the platform's way (pds_kernel.sandbox.notebook_server) with a served-bytes ledger."""

from __future__ import annotations

import base64
import http.server
import json
import os
import secrets
import threading
import urllib.error
import urllib.request

import pytest
from lockdown_server import LedgerHost, start_server

pytestmark = [pytest.mark.functional, pytest.mark.slow]

class _Dashboard(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"dashboard"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lockdown")
    home = root / "home"
    home.mkdir()
    (home / "small.csv").write_text("a;b\n1;2\n")
    (home / "big.csv").write_text("a;b\n" + "1;2\n" * 40_000)
    (home / "table.parquet").write_bytes(b"PAR1" + os.urandom(100_000) + b"PAR1")
    (home / "disguised.txt").write_bytes(b"PAR1" + os.urandom(100_000))
    (home / "notes.txt").write_text("hello\n")
    rows = "".join(f"{i};{i % 7};x{i % 3}\n" for i in range(20_000))
    (home / "renamed-csv.txt").write_text("id;a;b\n" + rows)  # a CSV under a harmless name
    (home / "renamed-csv.ipynb").write_text("id;a;b\n" + rows)
    (home / "records.log").write_text("".join(f'{{"id": {i}, "v": {i % 5}}}\n' for i in range(5_000)))
    (home / "prose.md").write_text("A long report, line after line; some with commas, some not.\n"
                                   + "".join(f"Paragraph {i} of the report.\n" for i in range(4_000)))
    (home / "huge.txt").write_text("x" * (3 * 1024 * 1024))
    (home / "analysis.ipynb").write_text(json.dumps({
        "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    dashboard = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    threading.Thread(target=dashboard.serve_forever, daemon=True).start()
    ledger = LedgerHost(root / "ledger.db", capacity=256 * 1024 * 1024, token=secrets.token_hex(8))
    notebook = start_server(home, root, ledger=ledger,
                            args=[f"--Lockdown.allowed_proxy_ports={dashboard.server_address[1]}"])
    yield {"base": notebook.base, "token": notebook.token, "home": home,
           "dashboard_port": dashboard.server_address[1], "log": notebook.log_path}
    notebook.stop()
    ledger.close()
    dashboard.shutdown()
    dashboard.server_close()


def request(server, path, method="GET", body=None):
    """(status, parsed JSON or raw bytes) of one authenticated request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{server['base']}{path}", data=data, method=method,
                                 headers={"Authorization": f"token {server['token']}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


@pytest.mark.parametrize("path", [
    "/files/notes.txt", "/files/small.csv?download=1", "/files/table.parquet", "/view/notes.txt",
    "/nbconvert/html/analysis.ipynb?download=true", "/nbconvert/script/analysis.ipynb",
    "/api/nbconvert", "/proxy/9/etc", "/proxy/absolute/1234/", "/proxy/example.org:80/",
])
def test_download_routes_are_refused(server, path):
    status, body = request(server, path)
    assert status == 403, (path, body)


@pytest.mark.parametrize("name", ["big.csv", "table.parquet", "disguised.txt", "huge.txt", "renamed-csv.txt",
                                  "renamed-csv.ipynb", "records.log"])
def test_reading_data_through_the_contents_api_is_refused(server, name):
    status, body = request(server, f"/api/contents/{name}")
    assert status == 403
    assert "export request" in body["message"] or "more than" in body["message"]
    for fmt in ("?format=base64", "?type=file&format=text"):
        assert request(server, f"/api/contents/{name}{fmt}")[0] == 403
    # metadata only is fine: the file browser still lists it
    status, model = request(server, f"/api/contents/{name}?content=0")
    assert status == 200 and model["content"] is None


def test_what_stays_allowed(server):
    status, listing = request(server, "/api/contents/")
    assert status == 200 and {m["name"] for m in listing["content"]} >= {"big.csv", "analysis.ipynb"}
    assert request(server, "/api/contents/small.csv")[1]["content"] == "a;b\n1;2\n"
    assert request(server, "/api/contents/notes.txt")[0] == 200
    assert request(server, "/api/contents/prose.md")[0] == 200  # 100 KB of text that is not a table
    assert request(server, "/api/contents/analysis.ipynb")[1]["type"] == "notebook"
    assert request(server, "/api/contents/analysis.ipynb/checkpoints")[0] == 200
    status, body = request(server, f"/proxy/{server['dashboard_port']}/status")
    assert (status, body) == (200, b"dashboard")


def test_delimited_text_is_recognised_as_data():
    from pds_kernel.sandbox.lockdown import looks_tabular

    assert looks_tabular(b"a;b\n1;2\n3;4\n5;6\n7;")
    assert looks_tabular(b"x\ty\tz\n1\t2\t3\n4\t5\t6\n7\t8\t9\n")
    assert not looks_tabular(b"a;b\n1;2\n")  # too few lines to tell
    assert not looks_tabular(b'{\n "cells": [\n  {\n   "cell_type": "code",\n   "outputs": [],\n')
    assert not looks_tabular(b"import polars as pl\n\nprs = pl.scan_parquet(p)\nprint(prs, x)\n")


def test_uploads_are_limited(server):
    small = base64.b64encode(b"x" * 1000).decode()
    assert request(server, "/api/contents/up.bin", "PUT",
                   {"type": "file", "format": "base64", "content": small})[0] == 201
    big = base64.b64encode(b"x" * (11 * 1024 * 1024)).decode()
    assert request(server, "/api/contents/big.bin", "PUT",
                   {"type": "file", "format": "base64", "content": big})[0] == 413
    assert not (server["home"] / "big.bin").exists()
    # chunked: every chunk is small, the total is not
    chunk = base64.b64encode(b"y" * (4 * 1024 * 1024)).decode()
    statuses = [request(server, "/api/contents/chunked.bin", "PUT",
                        {"type": "file", "format": "base64", "content": chunk, "chunk": n})[0]
                for n in (1, 2, 3, -1)]
    assert statuses[0] == 201 and statuses[1] == 200 and statuses[2] == 413
    assert (server["home"] / "chunked.bin").stat().st_size <= 10 * 1024 * 1024


def test_budget_client_reserves_ahead_and_backs_off_after_a_refusal(tmp_path):
    """Against the ledger over HTTP: reservations in chunks, and after a refusal no new request
    to the hub for more than it said was left (a reconnecting kernel WebSocket would flood the
    audit trail); smaller amounts are still asked for."""
    from pds_kernel.sandbox.budget import BudgetClient

    ledger = LedgerHost(tmp_path / "ledger.db", capacity=10_000, token="t")
    try:
        client = BudgetClient(ledger.url(), "t", chunk=1_000)
        assert client.spend(600) and client.spend(300) and ledger.requests == 1  # one 1,000-byte reservation
        assert client.spend(8_000) and ledger.requests == 2
        assert not client.spend(5_000) and "export request" in client.refusal
        asked = ledger.requests
        assert not client.spend(5_000) and not client.spend(3_000) and ledger.requests == asked
        assert client.spend(500) and ledger.requests == asked + 1
        assert not BudgetClient(ledger.url(), "wrong", chunk=1).spend(1)
        assert not BudgetClient(None, None, chunk=1).spend(1)
    finally:
        ledger.close()


def test_only_a_repeat_of_the_last_answer_of_a_path_is_free():
    """JupyterLab's polling (the same answer again) is counted once; an answer equal to an older
    one of the path is counted again (else switching between known answers carries data free)."""
    from pds_kernel.sandbox.budget import LastBodies

    seen = LastBodies(size=2)
    a, b = LastBodies.digest(b"listing A"), LastBodies.digest(b"listing B")
    assert not seen.is_repeat("/api/contents/", a)
    seen.remember("/api/contents/", a)
    assert seen.is_repeat("/api/contents/", a)  # polling: free
    assert not seen.is_repeat("/api/kernels", a)  # the same bytes on another path: counted
    seen.remember("/api/contents/", b)
    assert not seen.is_repeat("/api/contents/", a)  # back to an older answer: counted
    seen.remember("/api/kernels", a)
    seen.remember("/api/sessions", a)  # a third path: the oldest one is forgotten
    assert not seen.is_repeat("/api/contents/", b)


def test_a_polled_request_is_keyed_by_path_and_query_without_the_cache_buster():
    from pds_kernel.sandbox.budget import poll_key

    assert poll_key("/api/contents/", "content=1&1733300000000") == poll_key("/api/contents/", "1733300000999&content=1")
    assert poll_key("/api/contents/", "content=1") != poll_key("/api/contents/", "content=0")
    assert poll_key("/api/kernels", "") == poll_key("/api/kernels", "1733300000000") == "/api/kernels"


def test_jupyterlab_polling_is_counted_once_and_a_change_again(tmp_path):
    """JupyterLab polls the directory (content=1, and content=0 checks of the same path), its
    kernels and sessions, each with a new cache-busting number: after the first answers, polls
    reserve nothing from the hub (a 1-byte reservation makes every counted byte a hub request);
    a changed listing is counted."""
    home = tmp_path / "home"
    home.mkdir()
    for i in range(30):
        (home / f"result-{i}.txt").write_text("x")
    ledger = LedgerHost(tmp_path / "ledger.db", capacity=64 * 1024 * 1024, token=secrets.token_hex(8))
    notebook = start_server(home, tmp_path, ledger=ledger, args=["--Lockdown.budget_reservation_bytes=1"])
    server = {"base": notebook.base, "token": notebook.token}
    polls = ["/api/contents/?content=1&hash=0&{}", "/api/contents/?content=0&{}", "/api/kernels?{}",
             "/api/sessions?{}"]
    try:
        for n, poll in enumerate(polls):
            assert request(server, poll.format(1733300000000 + n))[0] == 200
        asked = ledger.requests
        for n in range(10):
            for poll in polls:
                assert request(server, poll.format(1733300001000 + n))[0] == 200
        assert ledger.requests == asked
        (home / "result-new.txt").write_text("y")
        assert request(server, polls[0].format(1733300002000))[0] == 200
        assert ledger.requests > asked
    finally:
        notebook.stop()
        ledger.close()


def test_a_restarted_server_loses_little_of_the_budget(tmp_path):
    """A killed or restarted server loses its unspent reservation (counted as spent). Reservations
    start at 64 KiB and double while the server keeps asking: ten restarts after 20 KB shown each
    cost the day's budget about 1 MiB, not ten full reservations; a server showing much reaches
    the full reservation size after a few requests to the hub."""
    from pds_kernel.sandbox.budget import FIRST_RESERVATION, BudgetClient

    chunk = 4 * 1024 * 1024
    ledger = LedgerHost(tmp_path / "ledger.db", capacity=32 * 1024 * 1024, token="t")
    try:
        for _restart in range(10):  # each server shows 20 KB, then is killed
            client = BudgetClient(ledger.url(), "t", chunk=chunk)
            assert client.spend(20_000)
        left = ledger.ledger.reserve("alice", "proj-a", 1, 1).available
        assert 32 * 1024 * 1024 - left <= 10 * FIRST_RESERVATION + 1
        busy = BudgetClient(ledger.url(), "t", chunk=chunk)
        asked = ledger.requests
        for _ in range(200):
            assert busy.spend(64 * 1024)  # 12.5 MiB shown
        assert ledger.requests - asked <= 10  # 64 KiB, 128 KiB, ... then 4 MiB at a time
    finally:
        ledger.close()
