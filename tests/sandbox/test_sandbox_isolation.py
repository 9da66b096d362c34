"""Real sandboxes, probed from inside: every way out must fail, and the controls must work."""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import sys
import threading
import uuid
from pathlib import Path

import psutil
import pytest

from pds_kernel.audit import Outcome
from pds_kernel.errors import PermissionDenied
from pds_kernel.sandbox.exec import run_in_sandbox, workspace_runtime_dir

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

PROBE = (Path(__file__).parent / "probe.py").read_text()
#: the checkout under test (/work/main here, somewhere else on CI)
REPO = Path(__file__).resolve().parents[2]


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.hits += 1
        self.request.sendall(b"escaped\n")


class _LineEcho(socketserver.StreamRequestHandler):
    """Reads the request line before answering, as the hub does: a peer that closes with an unread
    request resets the connection, and the reset may overtake the answer (seen on a loaded CI)."""

    def handle(self):
        self.rfile.readline()
        self.server.hits += 1
        self.wfile.write(b"escaped\n")


class _UdpEcho(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        self.server.hits += 1
        sock.sendto(b"escaped", self.client_address)


def _serve(server_cls, handler, address):
    server = server_cls(address, handler)
    server.hits = 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


def _interface_addresses() -> list[str]:
    """IPv4 addresses of the host's non-loopback interfaces (listeners are opened on them)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                found.append(a.address)
    return found


@pytest.fixture
def listeners():
    """TCP and UDP listeners on the host's loopback and interface addresses, an abstract Unix
    socket, and a stand-in for the hub's API port: the sandbox must reach none of them."""
    servers = []
    tcp, udp = [], []
    for host in ["127.0.0.1", *_interface_addresses()[:1]]:
        server, thread = _serve(socketserver.ThreadingTCPServer, _Echo, (host, 0))
        servers.append((server, thread))
        tcp.append((host, server.server_address[1]))
        userver, uthread = _serve(socketserver.UDPServer, _UdpEcho, (host, 0))
        servers.append((userver, uthread))
        udp.append((host, userver.server_address[1]))
    hub_api, hub_thread = _serve(socketserver.ThreadingTCPServer, _Echo, ("127.0.0.1", 0))
    servers.append((hub_api, hub_thread))
    tcp.append(("127.0.0.1", hub_api.server_address[1]))
    abstract_name = f"pds-test-{uuid.uuid4().hex[:8]}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    yield {"tcp": tcp, "udp": udp, "abstract": [abstract_name], "servers": [s for s, _ in servers],
           "abstract_socket": abstract}
    abstract.close()
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _host_alias() -> str:
    """A name the machine's own /etc/hosts resolves, other than localhost (or the host name)."""
    for line in Path("/etc/hosts").read_text().splitlines():
        names = [n for n in line.split("#")[0].split()[1:] if not n.startswith("localhost")]
        if names:
            return names[0]
    return socket.gethostname()


def test_every_way_out_fails(world, listeners, tmp_path):
    settings = world.runtime.settings
    marker = Path("/var/tmp") / f"pds-e1-{uuid.uuid4().hex[:8]}"
    marker.mkdir()
    (marker / "secret.txt").write_text("host secret\n")
    config = {
        "tcp": listeners["tcp"],
        "udp": listeners["udp"] + [("192.0.2.1", 9)],  # TEST-NET-1: never routed anywhere
        "abstract": listeners["abstract"],
        "hostname": socket.gethostname(),
        "host_alias": _host_alias(),
        "secrets": {**{k: str(v) for k, v in world.secret_files.items()},
                    "file under /var/tmp": str(marker / "secret.txt")},
        "host_dirs": [str(settings.paths.lake), str(settings.paths.projects), str(settings.paths.state),
                      str(settings.paths.keys), str(settings.paths.homes), str(REPO / ".git"),
                      str(REPO / "tests"), "/root/.ssh", "/var"],
        "repo": str(REPO),
        "data_file": "/data/ER_PRS_F.parquet",
        "host_pid": os.getpid(),
        "allocate_mb": 2048,  # the project's limit is 1024 MB
    }
    try:
        code = run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", PROBE, json.dumps(config)],
                              actor="test", timeout=120)
    finally:
        (marker / "secret.txt").unlink()
        marker.rmdir()
    assert code == 0
    result = json.loads((settings.paths.homes / "proj-a" / "alice" / "probe.json").read_text())

    failed_controls = [c for c in result["controls"] if not c["ok"]]
    assert not failed_controls, failed_controls
    assert len(result["controls"]) >= 7

    escaped = [a for a in result["attempts"] if not a["failed"]]
    assert not escaped, json.dumps(escaped, indent=1)
    labels = [a["label"] for a in result["attempts"]]
    # every kind of attempt ran (the count guards against a probe that silently skipped some)
    assert len(labels) >= 40, labels
    assert sum(label.startswith("tcp ") for label in labels) == len(listeners["tcp"])
    assert any(label.startswith("read database") for label in labels)
    # and nothing reached the host's listeners
    assert all(server.hits == 0 for server in listeners["servers"])
    assert result["uid"] == 1000
    # of the checkout, only the mount points of the Python environment and the package exist
    assert set(result["repo"]) <= {".venv", "pds_kernel"}
    # at /, the system directories and the first component of the paths bound for Python
    bound_tops = {Path(p).resolve().parts[1] for p in (sys.prefix, sys.base_prefix, REPO)}
    assert set(result["root"]) <= {"bin", "data", "dev", "etc", "home", "imports", "lib", "lib32", "lib64", "libx32",
                                   "proc", "root", "run", "sbin", "tmp", "usr"} | bound_tops
    # the home is the private one: the control file is on the host, in alice's proj-a home only
    assert (settings.paths.homes / "proj-a" / "alice" / "control.txt").read_bytes() == b"x"
    assert (settings.paths.projects / "proj-a" / "extract" / "ER_PRS_F.parquet").stat().st_size > 100
    # the decision and the exit are in the audit trail
    actions = [(e.action, e.outcome) for e in world.runtime.audit.entries(project="proj-a")]
    assert ("sandbox.exec", Outcome.OK) in actions and ("sandbox.exit", Outcome.OK) in actions


@pytest.mark.parametrize("user, project, reason", [
    ("dave", "proj-a", "not a researcher"),      # not a member
    ("bob", "proj-a", "not a researcher"),       # member of the other project only
    ("carol", "proj-a", "expired"),              # expired membership
])
def test_refused_before_any_sandbox_starts(world, user, project, reason):
    settings = world.runtime.settings
    with pytest.raises(PermissionDenied, match=reason):
        run_in_sandbox(world.runtime, user, project, ["true"], actor="test")
    assert not workspace_runtime_dir(settings, user, project).exists()
    assert not (settings.paths.homes / project / user).exists()
    entries = world.runtime.audit.entries(project=project)
    assert (entries[-1].action, entries[-1].outcome, entries[-1].target) == ("sandbox.exec", Outcome.DENIED, f"user:{user}")
    assert not any(e.action == "sandbox.exit" for e in entries)


def test_closed_project_refused(world):
    world.registry.close_project("admin", "proj-a", reason="study finished")
    with pytest.raises(PermissionDenied, match="closed"):
        run_in_sandbox(world.runtime, "alice", "proj-a", ["true"], actor="test")


def test_exit_code_and_environment(world):
    """The command's exit code comes back; only the named variables get in; values stay out of argv."""
    settings = world.runtime.settings
    os.environ["PDS_TEST_LEAK"] = "host-only"
    try:
        code = run_in_sandbox(
            world.runtime, "alice", "proj-a",
            ["sh", "-c", 'env > "$HOME/env.txt"; exit 7'], actor="test", env={"GIVEN": "yes"})
    finally:
        del os.environ["PDS_TEST_LEAK"]
    assert code == 7
    env = dict(line.split("=", 1) for line in
               (settings.paths.homes / "proj-a" / "alice" / "env.txt").read_text().splitlines() if "=" in line)
    assert env["GIVEN"] == "yes" and env["HOME"] == "/home/jovyan" and env["PDS_DATA_DIR"] == "/data"
    assert "PDS_TEST_LEAK" not in env
    assert env["PDS_DASK_WORKERS"] == "2"


def test_bridge_reaches_the_hub_socket_and_nothing_else(world, tmp_path):
    """Inside, 127.0.0.1:8081 reaches the host socket mounted as the hub's; 8082 (no gate) does not."""
    settings = world.runtime.settings
    hub_socket = tmp_path / "hub.sock"
    server = socketserver.ThreadingUnixStreamServer(str(hub_socket), _LineEcho)
    server.hits = 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    script = (
        "import json, os, socket\n"
        "out = {'url': os.environ.get('JUPYTERHUB_API_URL'), 'gate': os.environ.get('PDS_AIRLOCK_URL')}\n"
        "s = socket.create_connection(('127.0.0.1', 8081), timeout=5); s.sendall(b'ping\\n')\n"
        "out['hub'] = s.recv(100).decode()\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 8082), timeout=2); out['gate_reached'] = True\n"
        "except OSError:\n"
        "    out['gate_reached'] = False\n"
        "json.dump(out, open('/home/jovyan/bridge.json', 'w'))\n"
    )
    try:
        code = run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", script], actor="test",
                              sockets={"hub": hub_socket}, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert code == 0
    out = json.loads((settings.paths.homes / "proj-a" / "alice" / "bridge.json").read_text())
    assert out == {"url": "http://127.0.0.1:8081/hub/api", "gate": None, "hub": "escaped\n",
                   "gate_reached": False}
    assert server.hits == 1
