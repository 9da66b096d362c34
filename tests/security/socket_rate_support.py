"""Support of tests/security/test_socket_rate_attacks.py: floods of the sockets the hub serves a
workspace (``/run/pds/hub.sock``, ``gate.sock``, ``packages.sock``), run from a kernel of a real
workspace, and an honest client of the same hub that measures its latency meanwhile."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
import yaml
from project_end_support import make_quota_world

#: From a kernel: for {seconds} s, per socket of /run/pds (the server's own excepted), a thread per
#: way of {ways}: ``keep`` sends cheap requests as fast as they are answered on a kept-alive
#: connection, ``churn`` one request on each new connection, ``open`` only opens and closes
#: connections. Prints one line ``FLOOD {json}``: per socket and way, the requests answered (any
#: status but 429), answered 429 (with a Retry-After), and connections closed without an answer.
FLOOD = r"""
import json, os, socket, threading, time
SECONDS = {seconds}
TOKEN = os.environ.get("JUPYTERHUB_API_TOKEN", "")
ASK = {{
    "hub.sock": b"GET /hub/api/ HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n",
    "gate.sock": ("GET /services/airlock/api/me HTTP/1.1\r\nHost: 127.0.0.1:8082\r\n"
                  "Authorization: token " + TOKEN + "\r\n\r\n").encode(),
    "packages.sock": b"GET /simple/ HTTP/1.1\r\nHost: 127.0.0.1:8083\r\n\r\n",
}}
counts, lock = {{}}, threading.Lock()

def count(name, way, what):
    with lock:
        slot = counts.setdefault(name, {{}}).setdefault(way, {{"answered": 0, "throttled": 0, "closed": 0,
                                                              "retry_after": None}})
        if isinstance(what, tuple):
            slot[what[0]] += 1
            slot["retry_after"] = what[1]
        else:
            slot[what] += 1

def answer(sock, buffered):
    # one response: (status, its Retry-After or None, bytes read past it)
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {{k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}}
    length = int(fields.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, fields.get("retry-after"), rest[length:], fields.get("connection", "").lower() == "close"

def connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock

def ask(name, way):
    path, request, end = "/run/pds/" + name, ASK[name], time.monotonic() + SECONDS
    sock, buffered = None, b""
    while time.monotonic() < end:
        try:
            if way == "open":
                connect(path).close()
                count(name, way, "answered")
                continue
            if sock is None:
                sock, buffered = connect(path), b""
            sock.sendall(request)
            status, retry, buffered, close = answer(sock, buffered)
            count(name, way, ("throttled", retry) if status == 429 else "answered")
            if way == "churn" or close or status == 429:
                sock.close()
                sock = None
        except (OSError, ValueError, IndexError):
            count(name, way, "closed")
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.001)

threads = []
for name in sorted(os.listdir("/run/pds")):
    if name in ASK:
        for way in {ways}:
            threads.append(threading.Thread(target=ask, args=(name, way)))
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("FLOOD " + json.dumps(counts), flush=True)
"""


#: The two floods: requests as fast as they are answered, and connections opened and closed.
REQUESTS = ("keep", "keep", "churn")
CONNECTIONS = ("open", "open")


def flood_result(stdout: str) -> dict:
    line = next((line for line in stdout.splitlines() if line.startswith("FLOOD ")), None)
    assert line is not None, stdout  # the flood ran
    return json.loads(line.removeprefix("FLOOD "))


def answered(result: dict, name: str) -> int:
    """Requests (and bare connections) of ``name`` that the host side served during the flood."""
    return sum(way["answered"] for way in result.get(name, {}).values())


def throttled(result: dict, name: str) -> int:
    return sum(way["throttled"] + way["closed"] for way in result.get(name, {}).values())


class LatencyProbe:
    """An honest client: ``ask()`` every ``every`` seconds in a thread, each answer's seconds kept."""

    def __init__(self, ask: Callable[[], requests.Response], every: float = 0.2):
        self.ask = ask
        self.every = every
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="honest-client", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = self.ask()
                if response.status_code >= 500 or response.status_code == 429:
                    self.failures.append(f"{response.status_code} {response.text[:100]}")
            except requests.RequestException as exc:
                self.failures.append(str(exc)[:200])
            self.seconds.append(time.monotonic() - started)
            self._stop.wait(max(0.0, self.every - (time.monotonic() - started)))

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def summary(self) -> dict:
        ordered = sorted(self.seconds)
        return {"n": len(ordered), "median": round(statistics.median(ordered), 3) if ordered else None,
                "p90": round(ordered[int(len(ordered) * 0.9)], 3) if ordered else None,
                "max": round(ordered[-1], 3) if ordered else None, "failures": self.failures[:5]}


#: The rate limit of the test world's sockets (settings hub.socket_requests_per_second and
#: hub.socket_request_burst): low, so that a few seconds of flood go far past it.
RATE, BURST = 5.0, 40
#: Seconds each flood lasts (four go far past the burst and the rate: most_served).
SECONDS = 4


def make_rate_world(root: Path):
    """The quota world of project_end_support with the rate limit of :data:`RATE` and :data:`BURST`."""
    hub, secret = make_quota_world(root)
    data = yaml.safe_load(hub.config.read_text())
    data["hub"].update(socket_requests_per_second=RATE, socket_request_burst=BURST)
    hub.config.write_text(yaml.safe_dump(data))
    return hub, secret


def most_served(seconds: float) -> int:
    """What a socket may serve in ``seconds`` under the limit: the burst and the refill, and a
    margin for the first requests of the kernel's start and the clock's edges."""
    return int(BURST + RATE * seconds + 10)

#: From a kernel, after a flood: wait {wait} s, then ask each service once through the loopback
#: forwarders (as JupyterHub's client, the airlock client and pip do); prints ``AGAIN`` and the
#: statuses.
AGAIN = r"""
import time, urllib.error, urllib.request
time.sleep({wait})
statuses = []
for url in ("http://127.0.0.1:8081/hub/api/", "http://127.0.0.1:8082/services/airlock/api/openapi.json",
            "http://127.0.0.1:8083/simple/"):
    try:
        statuses.append(urllib.request.urlopen(url, timeout=30).status)
    except urllib.error.HTTPError as exc:
        statuses.append(exc.code)
print("AGAIN", statuses)
"""

#: From a kernel (kept alive): on each socket, {n} connections that send a request head of 1 MiB
#: that never ends, and {n} that send 4 MiB of pipelined requests and never read an answer; each
#: send gives up after 1 s of the host not reading. Prints ``HOLDING`` and the bytes each socket
#: took (its host side and the kernel's socket buffers together).
BUFFER_HOLD = r"""
import os, socket, time
held, took = [], {{}}

def push(path, data):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1)
    sent = 0
    try:
        sock.connect(path)
        held.append(sock)
        while sent < len(data):
            sent += sock.send(data[sent:sent + 65536])
    except OSError:
        pass
    return sent

head = b"GET /simple/ HTTP/1.1\r\nX-Pad: " + b"a" * (1 << 20)
ask = b"GET /hub/api/ HTTP/1.1\r\nHost: x\r\n\r\n"
pipelined = ask * ((4 << 20) // len(ask))
for name in ("hub.sock", "gate.sock", "packages.sock"):
    path = "/run/pds/" + name
    if os.path.exists(path):
        took[name] = sum(push(path, head) for _ in range({n})) + sum(push(path, pipelined) for _ in range({n}))
print("HOLDING", took, flush=True)
"""


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (``VmRSS``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")


def gate_pid(hub_pid: int) -> int:
    """The pid of the gate (``pds_kernel.airlock.web``), a child of the hub."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == hub_pid and b"pds_kernel.airlock.web" in cmdline:
                return int(entry.name)
    raise LookupError("the gate is not running under the hub")
