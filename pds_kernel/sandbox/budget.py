"""Counting, in the notebook server, every byte it hands to the browser against the hub's budget.

Two choke points see all of it, whatever handler or extension produced it:

* HTTP: a Tornado output transform (:func:`make_transform`) appended to the application sees
  every response body, chunk by chunk (contents API, notebooks with their outputs, directory
  listings, settings, kernelspec resources, jupyter-server-proxy, ...). Only static files of the
  platform (JupyterLab's and jupyter_server's own assets, read-only) are exempt;
* WebSocket: ``tornado.websocket.WebSocketHandler.write_message``, which every server-to-browser
  WebSocket message goes through (kernel channels: outputs, completions, comm messages; terminals;
  proxied WebSockets), and ``ping``, whose payload jupyter-server-proxy relays from the backend,
  are wrapped once at load time.

A GET answered in one piece with exactly the bytes of the previous answer to the same path and
query (:func:`poll_key`) is not counted again (:class:`LastBodies`): JupyterLab polls the
directory, its kernels and sessions every few seconds, and a repeat of the last answer carries no
new information. Only the *last* answer is free: were any earlier answer free, a kernel could
switch a path between a few answers already served (a codebook) and carry bits in which one
comes back, uncounted.

Bytes are *reserved* from the hub (:mod:`pds_kernel.hub.budget`) before they are sent, so a server
that is killed loses only its unspent reservation (counted as spent). Reservations start small
(:data:`FIRST_RESERVATION`) and double up to the configured size (a few MiB) while the server keeps
asking: a server restarted after little use loses little (with 4 MiB from the start, a day's
budget of 32 MiB was gone after eight restarts, whatever was shown).
Past the budget an HTTP response becomes a 403 with the reason, a WebSocket is closed with code
1008 and the reason (JupyterLab then shows the kernel as disconnected).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable
from urllib.parse import quote

from tornado import httputil, web, websocket
from tornado.web import OutputTransform

from .reservations import API_PATH, FIRST_RESERVATION, MAX_RESERVATION

log = logging.getLogger(__name__)

NO_LEDGER = ("the budget of bytes shown in the browser cannot be checked (no hub to ask): results "
             "leave only through an export request (pds_kernel.workspace.request_export)")
#: WebSocket close reasons are limited to 123 bytes.
CLOSE_REASON = "budget of bytes shown in the browser used up: results leave only through an export request"


class BudgetClient:
    """Reservations from the hub's ledger, spent locally (thread-safe, synchronous). After a
    refusal, the hub is not asked again for :attr:`retry_seconds` for more than it said was left
    (JupyterLab reconnects a closed kernel WebSocket every few seconds: each attempt would be an
    audit entry). A ledger that did not answer (a hub busy starting twenty workspaces, a timeout)
    refuses this response only: the next one asks again."""

    def __init__(self, url: str | None, token: str | None, chunk: int, timeout: float = 10.0,
                 retry_seconds: float = 60.0):
        self.retry_seconds = retry_seconds
        self.url = url
        self.token = token
        self.chunk = max(1, int(chunk))
        self._next = min(self.chunk, FIRST_RESERVATION)  #: size of the next reservation
        self.timeout = timeout
        self.local = 0
        self.spent = 0
        self.refusal: str | None = None
        self._refused_at = float("-inf")
        self._left_at_refusal = 0
        self._ledger_answered = False
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def for_hub(cls, api_url: str, user: str, server: str, token: str | None, chunk: int) -> BudgetClient:
        path = API_PATH.removeprefix("/api")
        return cls(f"{api_url.rstrip('/')}{path}/{quote(user, safe='@')}/{quote(server, safe='')}", token, chunk)

    def spend(self, nbytes: int) -> bool:
        """Take ``nbytes`` from the budget; False (and :attr:`refusal` set) when it is used up."""
        if nbytes <= 0:
            return True
        with self._lock:
            if self.local < nbytes:
                need = nbytes - self.local
                if (time.monotonic() - self._refused_at < self.retry_seconds
                        and need > self._left_at_refusal):
                    return False
                granted = self._reserve(max(need, self._next), need)
                if granted < need:
                    if self._ledger_answered:  # a refusal; a hub too busy to answer is asked again
                        self._refused_at = time.monotonic()
                    return False
                self.local += granted
                self._next = min(self._next * 2, self.chunk)
            self.local -= nbytes
            self.spent += nbytes
            return True

    def _reserve(self, want: int, need: int) -> int:
        self._ledger_answered = False
        if not self.url:
            self.refusal = NO_LEDGER
            return 0
        if need > MAX_RESERVATION:
            self.refusal = f"a single response of {need} bytes is more than a workspace may be shown at once"
            return 0
        want = min(want, MAX_RESERVATION)
        request = urllib.request.Request(
            self.url, method="POST", data=json.dumps({"want": want, "need": need}).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"token {self.token}"} if self.token else {})})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as err:
            self._ledger_answered = True
            try:
                answer = json.loads(err.read())
                self.refusal = answer.get("message") or NO_LEDGER
                self._left_at_refusal = int(answer.get("available", 0))
            except (ValueError, TypeError, AttributeError):
                self.refusal = NO_LEDGER
                self._left_at_refusal = 0
            log.warning("lockdown: budget reservation refused (%s): %s", err.code, self.refusal)
            return 0
        except (OSError, ValueError) as exc:
            self.refusal = NO_LEDGER
            self._left_at_refusal = 0
            log.error("lockdown: the hub's budget ledger did not answer: %r", exc)
            return 0
        self._ledger_answered = True
        granted = int(answer.get("granted", 0))
        if granted < need:
            self.refusal = NO_LEDGER
        return granted


class LastBodies:
    """The digest of the last body served for each of the last ``size`` keys (:func:`poll_key`):
    a GET whose body equals the previous one of its key is a repeat (counted once). An answer
    equal to an older one of the key is counted again: otherwise which of several known answers
    comes back would carry information for free."""

    def __init__(self, size: int = 2048):
        self.size = size
        self._last: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(body: bytes) -> bytes:
        return hashlib.sha256(body).digest()

    def is_repeat(self, path: str, digest: bytes) -> bool:
        with self._lock:
            if self._last.get(path) == digest:
                self._last.move_to_end(path)
                return True
            return False

    def remember(self, path: str, digest: bytes) -> None:
        """Call only once the body was counted."""
        with self._lock:
            self._last[path] = digest
            self._last.move_to_end(path)
            while len(self._last) > self.size:
                self._last.popitem(last=False)


def poll_key(path: str, query: str) -> str:
    """What identifies one polled request: the path and its query, without JupyterLab's cache
    buster (a bare number, ``?1733300000000``, new at every request). So a directory listed with
    ``content=1`` and checked with ``content=0`` in turn has two last answers, not one that
    changes at every poll (which would count every poll)."""
    kept = sorted(part for part in query.split("&") if part and not part.isdigit())
    return path + ("?" + "&".join(kept) if kept else "")


def header_size(headers: httputil.HTTPHeaders) -> int:
    """Bytes of ``headers`` as sent (``Name: value`` and the line end, each line)."""
    return sum(len(name) + len(value) + 4 for name, value in headers.get_all())


_original_set_status = web.RequestHandler.set_status


def _standard_set_status(self, status_code: int, reason: str | None = None) -> None:
    """``set_status`` with the standard reason phrase only: jupyter-server-proxy relays the
    backend's status line, whose reason (up to 64 KB) a process in the workspace writes."""
    _original_set_status(self, status_code)


def _message_size(message) -> int:
    if isinstance(message, bytes):
        return len(message)
    if isinstance(message, str):
        return len(message.encode("utf-8", "replace"))
    return len(json.dumps(message).encode())


class PlatformFiles:
    """SHA-256 digests of the static files of the environment that the server may relay (the Dask
    dashboard's Bokeh and distributed assets, read-only): a body equal to one of them carries no
    information from the workspace and is not counted. Computed at the first use (22 MB, 0.1 s)."""

    def __init__(self, directories: Callable[[], Iterable[str]]):
        self._directories = directories
        self._digests: frozenset[bytes] | None = None
        self._lock = threading.Lock()

    def contains(self, body: bytes) -> bool:
        if len(body) < 1024:
            return False
        with self._lock:
            if self._digests is None:
                digests = set()
                for directory in self._directories():
                    for root, _dirs, names in os.walk(directory):
                        for name in names:
                            with open(os.path.join(root, name), "rb") as f:
                                digests.add(hashlib.sha256(f.read()).digest())
                self._digests = frozenset(digests)
        return hashlib.sha256(body).digest() in self._digests


def make_transform(client: BudgetClient, exempt_prefixes: Iterable[str],
                   looks_like_data: Callable[[bytes], bool], proxy_prefix: str,
                   platform_files: PlatformFiles | None = None) -> type[OutputTransform]:
    """An output transform class counting every response body against ``client``."""
    exempt = tuple(exempt_prefixes)
    recent = LastBodies()

    class CountedOutput(OutputTransform):
        def __init__(self, request: httputil.HTTPServerRequest) -> None:
            self.path = request.path
            self.key = poll_key(request.path, request.query)
            self.get = request.method == "GET"
            self.exempt = request.method in ("GET", "HEAD") and self.path.startswith(exempt)
            self.proxied = self.path.startswith(proxy_prefix)
            self.cut = False

        def _refused(self, reason: str, headers: httputil.HTTPHeaders) -> tuple[int, httputil.HTTPHeaders, bytes]:
            log.warning("lockdown: refused response to %s: %s", self.path, reason)
            body = json.dumps({"message": reason, "reason": "pds-lockdown"}).encode()
            fresh = httputil.HTTPHeaders({"Content-Type": "application/json", "Content-Length": str(len(body)),
                                          "Cache-Control": "no-store"})
            if not self.proxied:  # the server's own cookies (XSRF, login); never a relayed one
                for value in headers.get_list("Set-Cookie"):
                    fresh.add("Set-Cookie", value)
            self.cut = True
            return 403, fresh, body

        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            if self.exempt:
                return status_code, headers, chunk
            if self.proxied and looks_like_data(chunk):
                return self._refused("data files cannot be fetched through the proxy: results leave only "
                                     "through an export request (pds_kernel.workspace.request_export)", headers)
            # A relayed response's headers are the backend's, chosen by code in the workspace (up
            # to 64 KB a response): counted, whatever the body. The server's own are not.
            if self.proxied and not client.spend(header_size(headers)):
                return self._refused(client.refusal or NO_LEDGER, headers)
            digest = None
            if finishing and self.get and status_code == 200:
                digest = recent.digest(chunk)
                relayed = self.proxied and platform_files is not None
                if recent.is_repeat(self.key, digest) or (relayed and platform_files.contains(chunk)):
                    return status_code, headers, chunk
            if not client.spend(len(chunk)):
                return self._refused(client.refusal or NO_LEDGER, headers)
            if digest is not None:
                recent.remember(self.key, digest)
            return status_code, headers, chunk

        def transform_chunk(self, chunk, finishing):
            if self.exempt or not chunk:
                return chunk
            if self.cut or not client.spend(len(chunk)):
                if not self.cut:
                    log.warning("lockdown: cut the response to %s: %s", self.path, client.refusal)
                self.cut = True
                return b""
            return chunk

    return CountedOutput


_original_write_message = websocket.WebSocketHandler.write_message
_clients: dict[int, BudgetClient] = {}


def _counted_write_message(self, message, binary: bool = False):
    client = _clients.get(os.getpid())
    if client is None or client.spend(_message_size(message)):
        if client is None:
            log.error("lockdown: WebSocket message with no budget client: refused")
            self.close(1008, CLOSE_REASON)
            return _closed_future()
        return _original_write_message(self, message, binary=binary)
    log.warning("lockdown: closed the WebSocket %s: %s", self.request.path, client.refusal)
    self.close(1008, CLOSE_REASON)
    return _closed_future()


_original_ping = websocket.WebSocketHandler.ping


def _counted_ping(self, data: bytes | str = b"") -> None:
    """``ping`` with its payload counted: jupyter-server-proxy relays a backend's pings (125
    bytes each, as fast as the backend sends them) to the browser, outside ``write_message``."""
    client = _clients.get(os.getpid())
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if client is not None and client.spend(size):
        return _original_ping(self, data)
    log.warning("lockdown: closed the WebSocket %s: %s", self.request.path,
                client.refusal if client else "no budget client")
    self.close(1008, CLOSE_REASON)


def _closed_future():
    from tornado.concurrent import Future

    future: Future = Future()
    future.set_exception(websocket.WebSocketClosedError())
    future.exception()  # retrieved: no "exception never retrieved" noise when nobody awaits it
    return future


def install(web_app, client: BudgetClient, exempt_prefixes: Iterable[str],
            looks_like_data: Callable[[bytes], bool], proxy_prefix: str,
            platform_files: PlatformFiles | None = None) -> None:
    """Count every HTTP body and WebSocket message of ``web_app`` against ``client``."""
    web_app.transforms.append(make_transform(client, exempt_prefixes, looks_like_data, proxy_prefix,
                                             platform_files))
    _clients[os.getpid()] = client
    websocket.WebSocketHandler.write_message = _counted_write_message
    websocket.WebSocketHandler.ping = _counted_ping
    web.RequestHandler.set_status = _standard_set_status
