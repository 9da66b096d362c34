"""Red team: getting data out of a workspace through the notebook server, around the lockdown.

Every test is one attempt against a real notebook server started the platform's way
(``pds_kernel.sandbox.notebook_server``, as both spawners do) with the hub's served-bytes ledger;
it asserts the attempt fails. ``DATA`` stands for the extract: a directory outside the home, as
``/data`` is in a workspace. The budget is small here (2 MiB) so that attempts run fast; each
budget attempt starts from a full budget (the hub-side rows are cleared, as a new day would).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from lockdown_support import LedgerHost, kernel_output, start_server, tabular_text, terminal_output
from sqlalchemy import delete

from pds_kernel.sandbox.notebook_server import server_command
from pds_kernel.served_bytes import ServedBytes

pytestmark = [pytest.mark.functional, pytest.mark.slow]

BUDGET = 2 * 1024 * 1024
RESERVATION = 256 * 1024
CSV_ROWS = 120_000  # about 6.6 MB of claims-like rows
#: Each attempt starts from a full budget: the server must ask the hub again at once.
NO_BACKOFF = ["--Lockdown.budget_retry_seconds=0"]


# ---- a server whose home carries every configuration trap at once ---------------------------------
MARKER_CONFIG = "open({marker!r}, 'w').write('loaded')\n"


def _plant_configuration_traps(home, root) -> dict[str, object]:
    """Each trap, if Jupyter or Python read it, writes its own marker file (or raises the limits)."""
    markers = {name: root / f"marker-{name}" for name in (
        "home_py", "local_etc_py", "cwd_py", "cwd_jupyter_py", "env_config_dir", "env_config_path",
        "user_site_pth", "pythonpath", "extension_module")}
    raise_limits = {"Lockdown": {"max_data_read_bytes": 10**10, "max_read_bytes": 10**10,
                                 "allowed_proxy_ports": [1, 2, 3], "budget_url": ""},
                    "ServerApp": {"jpserver_extensions": {"pds_kernel.sandbox.lockdown": False,
                                                          "pds_undo_lockdown": True}}}
    jupyter = home / ".jupyter"
    (jupyter / "jupyter_server_config.d").mkdir(parents=True)
    (jupyter / "jupyter_server_config.json").write_text(json.dumps(raise_limits))
    (jupyter / "jupyter_server_config.py").write_text(MARKER_CONFIG.format(marker=str(markers["home_py"])))
    (jupyter / "jupyter_server_config.d" / "undo.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"pds_undo_lockdown": True, "pds_kernel.sandbox.lockdown": False}}}))
    local_etc = home / ".local" / "etc" / "jupyter"
    local_etc.mkdir(parents=True)
    (local_etc / "jupyter_server_config.py").write_text(MARKER_CONFIG.format(marker=str(markers["local_etc_py"])))
    (local_etc / "jupyter_server_config.json").write_text(json.dumps(raise_limits))
    (home / "jupyter_server_config.py").write_text(MARKER_CONFIG.format(marker=str(markers["cwd_py"])))
    (home / "jupyter_config.py").write_text(MARKER_CONFIG.format(marker=str(markers["cwd_jupyter_py"])))
    for name in ("env_config_dir", "env_config_path"):
        d = root / name
        d.mkdir()
        (d / "jupyter_server_config.py").write_text(MARKER_CONFIG.format(marker=str(markers[name])))
        (d / "jupyter_server_config.json").write_text(json.dumps(raise_limits))
    site = home / ".local" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (site / "undo.pth").write_text(f"import os; open({str(markers['user_site_pth'])!r}, 'w').write('x')\n")
    (site / "pds_undo_lockdown.py").write_text(
        MARKER_CONFIG.format(marker=str(markers["extension_module"]))
        + "def _jupyter_server_extension_points():\n    return [{'module': 'pds_undo_lockdown'}]\n"
        + "def _load_jupyter_server_extension(app):\n    pass\n")
    shadow = root / "pythonpath"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(MARKER_CONFIG.format(marker=str(markers["pythonpath"])))
    env = {  # what a kernel could put in the environment of a server it restarts
        "JUPYTER_CONFIG_DIR": str(root / "env_config_dir"),
        "JUPYTER_CONFIG_PATH": str(root / "env_config_path"),
        "JUPYTER_PREFER_ENV_PATH": "1", "JUPYTER_PATH": str(root / "env_config_path"),
        "PYTHONPATH": str(shadow), "PYTHONUSERBASE": str(home / ".local"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "env_config_dir"),
    }
    return {"markers": markers, "env": env}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("escape")
    home, data = root / "home", root / "data"
    home.mkdir()
    data.mkdir()
    csv = tabular_text(CSV_ROWS)
    (data / "ER_PRS_F.csv").write_text(csv)
    (home / "big.csv").write_text(csv)
    traps = _plant_configuration_traps(home, root)
    ledger = LedgerHost(root / "ledger.db", capacity=BUDGET, token=secrets.token_hex(8))
    server = start_server(home, root, ledger=ledger, env=traps["env"],
                          args=[f"--Lockdown.budget_reservation_bytes={RESERVATION}", *NO_BACKOFF])
    yield {"root": root, "home": home, "data": data, "csv": csv, "server": server, "ledger": ledger, **traps}
    server.stop()
    ledger.close()


@pytest.fixture
def full_budget(world):
    """A full budget for this attempt: the hub-side rows cleared (what the hub's refill does)."""
    with world["ledger"].ledger.sessions() as session:
        session.execute(delete(ServedBytes))
        session.commit()
    return world["server"]


def _obtained(body) -> int:
    return len(body) if isinstance(body, bytes) else len(json.dumps(body))


# ---- configuration: the user cannot configure the lockdown -----------------------------------------
@pytest.mark.parametrize("trap", ["home_py", "local_etc_py", "cwd_py", "cwd_jupyter_py", "env_config_dir",
                                  "env_config_path", "user_site_pth", "pythonpath", "extension_module"])
def test_user_writable_configuration_is_never_read(world, trap):
    """~/.jupyter, ~/.local/etc/jupyter, the working directory, $JUPYTER_CONFIG_DIR/_PATH,
    user site-packages .pth, $PYTHONPATH, an extension enabled from the home: none is loaded."""
    assert not world["markers"][trap].exists(), f"{trap} was loaded by the notebook server"


def test_raised_limits_in_home_config_do_not_apply(world, full_budget):
    """The demo attack: raise the limits in ~/.jupyter/jupyter_server_config.json and restart."""
    status, body, _ = full_budget.request("/api/contents/big.csv")
    assert status == 403 and "export request" in body["message"]
    assert "PDS lockdown active" in full_budget.log()


def test_server_started_without_the_launcher_refuses_to_serve(world, tmp_path):
    """Start the server as before (plain jupyter_server, lockdown on the command line, user config
    directory): the lockdown stops it rather than serve with a user's configuration."""
    home = tmp_path / "home"
    home.mkdir()
    server = start_server(home, tmp_path, ledger=None, wait=False,
                          command=[sys.executable, "-m", "jupyter_server",
                                   "--ServerApp.jpserver_extensions={'pds_kernel.sandbox.lockdown': True}"],
                          env={"JUPYTER_CONFIG_DIR": str(home / ".jupyter")})
    try:
        assert server.proc.wait(120) == 3, server.log()
    finally:
        server.stop()
    assert "PDS lockdown could not be installed" in server.log()


def test_isolated_launcher_with_a_user_extension_on_the_command_line_refuses_to_serve(world, tmp_path):
    """Even on the platform's launcher, an extension the platform does not know stops the server."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "pds_undo_lockdown.py").write_text(
        "def _load_jupyter_server_extension(app):\n    app.web_app.default_router.rules.clear()\n")
    server = start_server(home, tmp_path, ledger=None, wait=False, env={"PYTHONPATH": str(tmp_path)}, command=[
        *server_command(sys.executable, "server"), "--ServerApp.jpserver_extensions={'pds_undo_lockdown': True}"])
    try:
        assert server.proc.wait(120) != 0
    finally:
        server.stop()
    assert "is running at" not in server.log()


# ---- the budget: scripted reads are bounded however the bytes are dressed ---------------------------
def test_base64_parts_under_the_size_limits(world, full_budget):
    """The demo attack: the extract split in base64 .txt parts of under 2 MB, read one by one."""
    blob = base64.b64encode(world["csv"].encode()).decode()
    parts = [blob[i:i + 600_000] for i in range(0, len(blob), 600_000)]
    for n, part in enumerate(parts):
        (world["home"] / f"part{n:02d}.txt").write_text(part)
    got, refusal = 0, None
    for n in range(len(parts)):
        status, body, _ = full_budget.request(f"/api/contents/part{n:02d}.txt")
        if status == 200:
            got += len(body["content"])
        else:
            refusal = body
    assert got < len(blob) and got <= BUDGET + RESERVATION
    assert refusal and "export request" in refusal["message"]


def test_notebook_with_data_rows_in_its_outputs(world, full_budget):
    """The demo attack: 60,000 data rows printed into a notebook's outputs, then the notebook read."""
    rows = tabular_text(60_000)
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "code", "id": "a", "source": "print(df)", "metadata": {}, "execution_count": 1,
        "outputs": [{"output_type": "stream", "name": "stdout", "text": rows}]}]}
    (world["home"] / "analysis.ipynb").write_text(json.dumps(nb))
    status, body, _ = full_budget.request("/api/contents/analysis.ipynb")
    assert status == 403 and "export request" in body["message"]
    status, body, _ = full_budget.request("/api/contents/analysis.ipynb?type=notebook&content=1")
    assert status == 403


def test_printing_the_extract_to_the_kernel_websocket(world, full_budget):
    """print() the whole extract in a kernel and read the output messages over the WebSocket (one
    6.6 MB message: jupyter_server's IOPub rate limit drops it, the budget would refuse it)."""
    received, _, _ = kernel_output(full_budget, f"print(open({str(world['data'] / 'ER_PRS_F.csv')!r}).read())")
    assert received < len(world["csv"]) and received <= BUDGET + RESERVATION


def test_chunked_prints_to_the_kernel_websocket(world, full_budget):
    """Small outputs, many of them (each message under any size limit)."""
    code = (f"import sys\nfor line in open({str(world['data'] / 'ER_PRS_F.csv')!r}):\n"
            "    sys.stdout.write(line); sys.stdout.flush()\n")
    received, close_code, _ = kernel_output(full_budget, code, timeout=180)
    assert received < len(world["csv"]) and received <= BUDGET + RESERVATION
    assert close_code == 1008


def test_cat_in_a_terminal(world, full_budget):
    """cat the extract in a JupyterLab terminal and read the terminal's WebSocket."""
    received, close_code, _ = terminal_output(full_budget, f"cat {world['data'] / 'ER_PRS_F.csv'}; echo END$((40+2))",
                                              marker="END42")
    assert received < len(world["csv"]) and received <= BUDGET + RESERVATION
    assert close_code == 1008


def test_kernelspec_resource_files(world, full_budget):
    """A user kernelspec directory carrying the data as a 'resource' (/kernelspecs/NAME/FILE)."""
    spec = world["home"] / ".local" / "share" / "jupyter" / "kernels" / "leak"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["python", "-m", "ipykernel", "-f", "{connection_file}"],
                                                  "display_name": "leak", "language": "python"}))
    (spec / "logo-64x64.png").write_bytes(base64.b64encode(world["csv"].encode()))
    status, body, _ = full_budget.request("/kernelspecs/leak/logo-64x64.png")
    assert status != 200 or _obtained(body) <= BUDGET + RESERVATION
    assert _obtained(body) < len(world["csv"])


def test_jupyterlab_workspace_file(world, full_budget):
    """Data written as a JupyterLab workspace file and read back through /lab/api/workspaces."""
    workspaces = world["home"] / ".jupyter" / "lab" / "workspaces"
    workspaces.mkdir(parents=True, exist_ok=True)
    (workspaces / "leak.jupyterlab-workspace").write_text(json.dumps({
        "data": {"rows": world["csv"]}, "metadata": {"id": "leak"}}))
    obtained = [_obtained(full_budget.request(path)[1])
                for path in ("/lab/api/workspaces/leak", "/lab/api/workspaces", "/lab/api/workspaces/")]
    assert sum(obtained) <= BUDGET + RESERVATION < len(world["csv"])


def test_user_labextension_static_files(world, full_budget):
    """A 'prebuilt extension' in the home, served from the budget-exempt /lab/extensions/ path."""
    ext = world["home"] / ".local" / "share" / "jupyter" / "labextensions" / "leak" / "static"
    ext.mkdir(parents=True, exist_ok=True)
    (ext / "remoteEntry.js").write_text("var rows = " + json.dumps(world["csv"]))
    status, body, _ = full_budget.request("/lab/extensions/leak/static/remoteEntry.js")
    assert status == 404, status


def test_same_file_rewritten_between_reads(world, full_budget):
    """A repeated identical answer is not counted twice (JupyterLab's polling): rewrite one file
    with the next slice of the data before each read, so that every read is 'the same file'."""
    blob = base64.b64encode(world["csv"].encode()).decode()
    got = 0
    for start in range(0, len(blob), 500_000):
        (world["home"] / "same.txt").write_text(blob[start:start + 500_000])
        status, body, _ = full_budget.request("/api/contents/same.txt")
        if status != 200:
            break
        got += len(body["content"])
    assert got <= BUDGET + RESERVATION < len(blob)



def test_codebook_of_repeated_answers_through_a_switched_directory_link(world, full_budget):
    """A repeat of an earlier answer is free, so: serve each of 16 large answers once (counted),
    then carry the data as reads of one path whose parent is a symlink switched between 16
    directories (4 bits a read; each answer byte-identical to one already served: same name,
    content and timestamps, the file itself never changes)."""
    book = world["home"] / "codebook"
    pad = "abcdefghij" * 5_000  # 50 kB of text per answer, far below the read limits
    for i in range(16):
        (book / f"v{i:02d}").mkdir(parents=True, exist_ok=True)
        (book / f"v{i:02d}" / "s.txt").write_text(f"{i:02d}{pad}")
    link = world["home"] / "symbol"
    shown = 0
    for step, nibble in enumerate([i % 16 for i in range(16)] + [(7 * i + 3) % 16 for i in range(200)]):
        tmp = world["home"] / f".symbol-{step}"
        tmp.symlink_to(book / f"v{nibble:02d}")
        os.replace(tmp, link)
        status, body, _ = full_budget.request("/api/contents/symbol/s.txt")
        if status != 200:
            break
        assert body["content"].startswith(f"{nibble:02d}")
        shown += len(json.dumps(body))
    assert shown <= BUDGET + RESERVATION, f"{shown} bytes shown for a budget of {BUDGET}"

# ---- routes refused outright --------------------------------------------------------------------------
@pytest.mark.parametrize("path,headers", [
    ("/files/big.csv", {}),
    ("/files/big.csv?download=1", {"Range": "bytes=0-1000000"}),
    ("/view/big.csv", {}),
    ("/nbconvert/html/analysis.ipynb?download=true", {}),
    ("/api/nbconvert/html", {}),
    ("/api/contents/big.csv?content=1&format=base64", {"Range": "bytes=0-60000"}),
])
def test_download_routes(world, full_budget, path, headers):
    """/files (JupyterLab's Download, ?download=1, a Range request), /view, nbconvert exports,
    the contents API in base64 with a Range header."""
    status, body, hdrs = full_budget.request(path, headers=headers)
    assert status == 403, (path, status)
    assert "attachment" not in str(hdrs.get("Content-Disposition", ""))


@pytest.mark.parametrize("name,make", [
    ("figure.png", lambda csv: b"PAR1" + csv.encode()[:200_000] + b"PAR1"),  # Parquet named as a figure
    ("helpers.py", lambda csv: csv.encode()[:200_000]),  # a CSV named as code
    ("README", lambda csv: csv.replace(";", "\t").encode()[:200_000]),  # TSV, no extension at all
])
def test_renamed_data_files(world, full_budget, name, make):
    """Data under a harmless name or extension, read through the contents API."""
    (world["home"] / name).write_bytes(make(world["csv"]))
    for query in ("", "?format=base64", "?type=file&format=text"):
        status, _, _ = full_budget.request(f"/api/contents/{name}{query}")
        assert status == 403, (name, query, status)


def test_head_request_reveals_nothing(world, full_budget):
    status, body, _ = full_budget.request("/files/big.csv", method="HEAD")
    assert status == 403 and not body


def test_symlink_to_the_extract(world, full_budget):
    """A symlink in the home pointing at the extract directory."""
    link = world["home"] / "extract-link"
    if not link.exists():
        link.symlink_to(world["data"])
    status, body, _ = full_budget.request("/api/contents/extract-link/ER_PRS_F.csv")
    assert status in (403, 404), status


def test_hardlink_renamed_as_text(world, full_budget):
    """A hard link to an extract file, named like a note."""
    target = world["home"] / "notes-2024.md"
    if not target.exists():
        os.link(world["data"] / "ER_PRS_F.csv", target)
    status, body, _ = full_budget.request("/api/contents/notes-2024.md")
    assert status == 403


def test_hidden_checkpoint_copy(world, full_budget):
    """A copy of the data inside .ipynb_checkpoints, read directly and as a checkpoint."""
    cp = world["home"] / ".ipynb_checkpoints"
    cp.mkdir(exist_ok=True)
    (cp / "notes-checkpoint.txt").write_text(world["csv"])
    status, _, _ = full_budget.request("/api/contents/.ipynb_checkpoints/notes-checkpoint.txt")
    assert status in (403, 404)
    status, body, _ = full_budget.request("/api/contents/notes.txt/checkpoints")
    assert _obtained(body) < 10_000


# ---- the proxy ------------------------------------------------------------------------------------------
@pytest.fixture
def http_server_on(world):
    procs = []

    def start(port: int):
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(world["data"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        time.sleep(1.5)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_http_server_on_another_port_through_the_proxy(world, full_budget, http_server_on):
    from lockdown_server import free_port

    port = free_port()
    http_server_on(port)
    status, _, _ = full_budget.request(f"/proxy/{port}/ER_PRS_F.csv")
    assert status == 403
    status, _, _ = full_budget.request(f"/proxy/absolute/{port}/ER_PRS_F.csv")
    assert status == 403


@pytest.fixture(scope="module")
def dashboard_port_server(tmp_path_factory, world):
    """A server whose allowed proxy port (the 'Dask dashboard') the attacker occupies first."""
    from lockdown_server import free_port

    root = tmp_path_factory.mktemp("proxy")
    home = root / "home"
    home.mkdir()
    port = free_port()
    server = start_server(home, root, ledger=world["ledger"],
                          args=[f"--Lockdown.allowed_proxy_ports={port}",
                                f"--Lockdown.budget_reservation_bytes={RESERVATION}", *NO_BACKOFF])
    yield server, port
    server.stop()


def test_http_server_on_the_dashboard_port(world, full_budget, dashboard_port_server, http_server_on):
    """`python -m http.server 8787` in the workspace, serving /data, fetched as the 'dashboard'."""
    server, port = dashboard_port_server
    http_server_on(port)
    status, body, _ = server.request(f"/proxy/{port}/ER_PRS_F.csv")
    assert status == 403, status
    (world["data"] / "blob.txt").write_bytes(base64.b64encode(world["csv"].encode()))
    status, body, _ = server.request(f"/proxy/{port}/blob.txt")
    assert _obtained(body) <= BUDGET + RESERVATION < len(world["csv"])



HEADER_SERVER = r"""
import base64, http.server, sys
data = open(sys.argv[2], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[-1])
        piece = base64.b64encode(data[n * 30000:(n + 1) * 30000]).decode()
        if self.path.startswith("/reason/"):  # the data in the status line's reason phrase
            self.send_response(200, piece)
        else:
            self.send_response(200)
            for i in range(0, len(piece), 4000):
                self.send_header(f"X-Part-{i // 4000}", piece[i:i + 4000])
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@pytest.fixture
def header_server(world, dashboard_port_server):
    """The attacker's server on the dashboard port: data in headers or in the reason phrase."""
    server, port = dashboard_port_server
    source = world["root"] / "headers-source.csv"
    source.write_text(world["csv"])
    proc = subprocess.Popen([sys.executable, "-c", HEADER_SERVER, str(port), str(source)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    yield server, port
    proc.terminate()
    proc.wait(10)


def test_data_in_response_headers_of_the_dashboard_port(world, full_budget, header_server):
    """A server on the dashboard port answers empty bodies whose headers carry the data (base64,
    40 kB a response): only bodies were counted, so headers relayed by the proxy were free."""
    server, port = header_server
    got = 0
    for n in range(120):
        _, _, headers = server.request(f"/proxy/{port}/part/{n}")
        got += sum(len(v) for k, v in headers.items() if k.lower().startswith("x-part-"))
    assert got <= BUDGET + RESERVATION, f"{got} bytes of data obtained in headers for a budget of {BUDGET}"


def test_data_in_the_status_reason_phrase_of_the_dashboard_port(world, full_budget, header_server):
    """The same server puts 40 kB of data in the reason phrase of its status line, which the
    proxy relayed as its own."""
    server, port = header_server
    got = 0
    for n in range(120):
        req = urllib.request.Request(f"{server.base}/proxy/{port}/reason/{n}",
                                     headers={"Authorization": f"token {server.token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=60) as resp:
                got += len(resp.reason or "")
        except urllib.error.HTTPError as err:
            got += len(err.reason or "")
    assert got <= BUDGET + RESERVATION, f"{got} bytes of data obtained in reason phrases for a budget of {BUDGET}"


PING_SERVER = r"""
import asyncio, base64, sys
from tornado import web, websocket
data = base64.b64encode(open(sys.argv[2], "rb").read())
class Pings(websocket.WebSocketHandler):
    async def open(self):
        for i in range(0, min(len(data), 40_000 * 125), 125):
            self.ping(data[i:i + 125])
            if i % 12_500 == 0:
                await asyncio.sleep(0)
        self.write_message("done")
async def main():
    web.Application([(r"/ws", Pings)]).listen(int(sys.argv[1]), "127.0.0.1")
    await asyncio.Event().wait()
asyncio.run(main())
"""


def test_data_in_websocket_pings_of_the_dashboard_port(world, full_budget, dashboard_port_server):
    """A WebSocket server on the dashboard port sends the data as ping payloads (125 bytes each,
    5 MB in all): the proxy relays a backend's pings to the browser, outside write_message."""
    import asyncio

    from jupyter_server_proxy.websocket import pingable_ws_connect
    from tornado.httpclient import HTTPRequest

    server, port = dashboard_port_server
    source = world["root"] / "pings-source.csv"
    source.write_text(world["csv"])
    proc = subprocess.Popen([sys.executable, "-c", PING_SERVER, str(port), str(source)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    received = []

    async def collect():
        url = server.base.replace("http://", "ws://") + f"/proxy/{port}/ws"
        conn = await pingable_ws_connect(HTTPRequest(url, headers={"Authorization": f"token {server.token}"}),
                                         on_ping_callback=received.append)
        try:
            while await asyncio.wait_for(conn.read_message(), timeout=60) not in (None, "done"):
                pass
        finally:
            conn.close()

    try:
        time.sleep(1.5)
        asyncio.run(collect())
    finally:
        proc.terminate()
        proc.wait(10)
    got = sum(len(p) for p in received)
    assert got <= BUDGET + RESERVATION, f"{got} bytes of data obtained in pings for a budget of {BUDGET}"

# ---- the server's memory ---------------------------------------------------------------------------------
PTRACE_PROBE = r"""
import ctypes, json, os, sys, time
from pds_kernel.sandbox.notebook_server import make_undumpable
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    if sys.argv[1] == "undumpable":
        make_undumpable()
    os.write(w, b"x")
    time.sleep(30)
    os._exit(0)
os.read(r, 1)
libc = ctypes.CDLL(None, use_errno=True)
attached = libc.ptrace(16, pid, 0, 0) == 0  # PTRACE_ATTACH
try:
    open(f"/proc/{pid}/mem", "rb").close()
    mem = True
except OSError:
    mem = False
os.kill(pid, 9)
print(json.dumps({"attached": attached, "mem": mem}))
"""


def _probe_as_nobody(mode: str) -> dict:
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                             sys.executable, "-c", PTRACE_PROBE, mode], capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])}, cwd="/")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_kernel_attaches_to_its_server_to_patch_the_lockdown_in_memory(world):
    """A kernel runs as the server's user: ptrace it, or open /proc/<server>/mem, to switch the
    lockdown off in memory. The launcher makes the server non-dumpable (the lockdown refuses to
    load otherwise), which closes both. The control shows the probe works on a dumpable process."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    control = _probe_as_nobody("dumpable")
    if not control["attached"]:
        pytest.skip(f"this host forbids same-user ptrace already: {control}")
    assert _probe_as_nobody("undumpable") == {"attached": False, "mem": False}


# ---- the ledger --------------------------------------------------------------------------------------
@pytest.mark.parametrize("want,need", [(-10**9, -10**9), (10**12, 1), (0, 0), (5, 10)])
def test_kernel_cannot_refill_its_budget(world, full_budget, want, need):
    """The kernel holds the server's token: it tries negative, huge and inverted reservations."""
    import urllib.error
    import urllib.request

    ledger = world["ledger"]
    before = ledger.ledger.reserve("alice", "proj-a", 1, 1).available
    req = urllib.request.Request(ledger.url(), method="POST", data=json.dumps({"want": want, "need": need}).encode(),
                                 headers={"Authorization": f"token {ledger.token}"})
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10).read()
    except (urllib.error.HTTPError, ConnectionError):
        pass
    after = ledger.ledger.reserve("alice", "proj-a", 1, 1).available
    assert after <= before + 1000  # the refill of a few seconds, at most


def test_budget_survives_a_server_restart(world, full_budget, tmp_path):
    """Use the budget up, restart the server (as the hub would, or by killing it): still refused."""
    server = full_budget
    for n in range(12):
        (world["home"] / f"report{n}.txt").write_text(secrets.token_hex(300_000))
    for n in range(12):
        status, _, _ = server.request(f"/api/contents/report{n}.txt")
        if status == 403:
            break
    assert status == 403
    again = start_server(world["home"], tmp_path, ledger=world["ledger"],
                         args=[f"--Lockdown.budget_reservation_bytes={RESERVATION}", *NO_BACKOFF])
    try:
        status, body, _ = again.request("/api/contents/report11.txt")
    finally:
        again.stop()
    assert status == 403 and "export request" in body["message"]


# ---- the workspace's address, sent to other sites -------------------------------------------------
REFERRER_SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'<a href="http://elsewhere.localhost/">a link</a>'
        self.send_response(200)
        self.send_header("Referrer-Policy", "unsafe-url")  # send the full address everywhere
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_no_answer_lets_a_link_send_the_workspaces_address_to_another_site(world, full_budget, dashboard_port_server):
    """A workspace's host is a keyed name (ADR 17, amended): a site that learnt it could ask it,
    without signing in, whether the workspace runs. Browsers send a page's origin to the sites its
    links lead to unless the page says otherwise: every answer of the server says ``same-origin``,
    its pages, its APIs, a refusal, a missing file, and a page relayed from the dashboard port by a
    server in the workspace that asks for ``unsafe-url``."""
    server, port = dashboard_port_server
    proc = subprocess.Popen([sys.executable, "-c", REFERRER_SERVER, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        answers = {path: world["server"].request(path) for path in (
            "/lab", "/api/status", "/api/contents/no-such-file", "/files/big.csv", "/static/favicon.ico")}
        answers["relayed"] = server.request(f"/proxy/{port}/page")
    finally:
        proc.terminate()
        proc.wait(10)
    assert {path: status for path, (status, _, _) in answers.items()} == {
        "/lab": 200, "/api/status": 200, "/api/contents/no-such-file": 404, "/files/big.csv": 403,
        "/static/favicon.ico": 200, "relayed": 200}
    policies = {path: headers.get_all("Referrer-Policy") for path, (_, _, headers) in answers.items()}
    assert all(found == ["same-origin"] for found in policies.values()), policies
