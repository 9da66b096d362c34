"""The platform's package index: a read-only PEP 503 "simple" index of the approved wheels.

``python -m pds_kernel.packages.index --wheelhouse DIR (--port N | --unix-socket PATH)``

Locally the hub serves it on a Unix socket per workspace, mounted in the sandbox as
``/run/pds/packages.sock`` and forwarded inside to ``127.0.0.1:8083`` (see
:mod:`pds_kernel.sandbox.inside`); on Kubernetes it runs as its own Deployment behind the
``pds-packages`` Service, the only egress the NetworkPolicy grants workspaces besides the hub and
the gate. ``pip`` in a workspace reads the platform's ``/etc/pip.conf`` (index-url = this index).

What it answers (:func:`respond`, pure; the server around it only does I/O):

* ``GET /simple/``: the approved projects; ``GET /simple/<name>/``: the approved files of one
  project, each link with its ``#sha256=`` (pip checks it) and ``data-requires-python``;
  ``GET /files/<wheel>``: a file listed in the manifest (:mod:`.wheelhouse`), nothing else.
* A project that is not approved: ``200`` with a ``Content-Type`` that is not HTML and carries the
  one-line explanation. pip treats any 4xx answer as "no page" and logs why only with ``-v``; a
  page of the wrong type is the one refusal it prints by default, so the researcher reads
  ``... got Content-Type: not-approved; NAME is not an approved package: ask for it with
  pds packages request NAME (in a notebook: ws.request_package("NAME"))``.
* Nothing else: any other method (uploads included) is ``405``, any other path ``404``; paths are
  matched whole against strict patterns (no ``%``-decoding, no ``..``), and file names are looked
  up in the manifest, never joined to a path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..sandbox.bridge import ConnectionLimit
from ..sandbox.rate import PacedUnixServer, SocketThrottle
from .names import NORMALISED
from .wheelhouse import Wheelhouse

log = logging.getLogger(__name__)

#: Longest request head (request line + headers) read before answering 431.
MAX_HEAD = 16 * 1024
#: Seconds a client may take to send its request head.
HEAD_TIMEOUT = 30.0
CHUNK = 256 * 1024
_PROJECT = re.compile(r"^/simple/([a-z0-9]+(?:-[a-z0-9]+)*)/$")
_PROJECT_NO_SLASH = re.compile(r"^/simple/([A-Za-z0-9._-]{1,100})$")
_FILE = re.compile(r"^/files/([A-Za-z0-9_.+-]{1,200}\.whl)$")
_NOT_APPROVED = ("{name} is not an approved package: ask for it with pds packages request {name} "
                 "(in a notebook: ws.request_package(\"{name}\")); an admin approves it")


def not_approved_message(name: str) -> str:
    """The one line a researcher reads when ``pip install NAME`` asks for an unapproved project."""
    return _NOT_APPROVED.format(name=name)


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: a file to send after the headers instead of ``body`` (relative to the wheelhouse's files)
    file: str | None = None


def _page(title: str, links: list[str]) -> bytes:
    items = "\n".join(links)
    return (f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
            f"<title>{html.escape(title)}</title></head>\n<body>\n{items}\n</body></html>\n").encode()


def _html(body: bytes) -> Response:
    return Response(200, "OK", {"Content-Type": "text/html; charset=utf-8"}, body)


def _text(status: int, reason: str, text: str, **headers: str) -> Response:
    return Response(status, reason, {"Content-Type": "text/plain; charset=utf-8", **headers},
                    (text + "\n").encode())


def respond(projects: dict[str, list[dict]], method: str, target: str) -> Response:
    """Pure: the answer to ``method target`` given the approved ``projects`` (manifest)."""
    if method not in ("GET", "HEAD"):
        return _text(405, "Method Not Allowed", "this index is read-only: packages are approved by an admin",
                     Allow="GET, HEAD")
    path, _, _query = target.partition("?")
    if path in ("/simple", "/simple/"):
        if path == "/simple":
            return Response(301, "Moved Permanently", {"Location": "/simple/"})
        links = [f'<a href="/simple/{html.escape(name)}/">{html.escape(name)}</a><br>' for name in sorted(projects)]
        return _html(_page("Approved packages", links))
    match = _PROJECT.fullmatch(path)  # fullmatch: "$" also matches before a final line feed
    if match:
        name = match.group(1)
        if name not in projects:
            message = not_approved_message(name)
            return Response(200, "Not Approved", {"Content-Type": f"not-approved; {message}"},
                            (message + "\n").encode())
        links = []
        for entry in projects[name]:
            requires = entry.get("requires_python") or ""
            attribute = f' data-requires-python="{html.escape(requires)}"' if requires else ""
            links.append(f'<a href="/files/{html.escape(entry["file"])}#sha256={entry["sha256"]}"{attribute}>'
                         f'{html.escape(entry["file"])}</a><br>')
        return _html(_page(f"Links for {name}", links))
    match = _PROJECT_NO_SLASH.fullmatch(path)
    if match and NORMALISED.fullmatch(match.group(1)):
        return Response(301, "Moved Permanently", {"Location": f"{path}/"})
    match = _FILE.fullmatch(path)
    if match:
        for entries in projects.values():
            for entry in entries:
                if entry["file"] == match.group(1):
                    return Response(200, "OK", {"Content-Type": "application/octet-stream",
                                                "Content-Length": str(entry["size"])}, file=entry["file"])
    return _text(404, "Not Found", "not found: this index serves /simple/ and the approved files only")


def _head(response: Response, length: int) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    headers = {**response.headers, "Content-Length": str(length), "Connection": "close"}
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


class IndexServer:
    """Serve :func:`respond` over HTTP/1.1 (one request per connection) on a Unix socket or a TCP
    port, from the wheelhouse at ``root``. ``on_request(method, path, status)`` is called after
    each answer (the hub logs downloads with the workspace's identity). ``max_connections``: most
    connections open at once (a workspace's socket: :data:`~pds_kernel.sandbox.bridge.SANDBOX_CONNECTIONS`),
    others are closed as soon as accepted. ``throttle``: the rate of new connections (a workspace's
    socket: :mod:`pds_kernel.sandbox.rate`); one past it is answered ``429`` with a ``Retry-After``."""

    def __init__(self, root: Path, *, unix_socket: Path | None = None, host: str = "127.0.0.1",
                 port: int | None = None, on_request: Callable[[str, str, int], None] | None = None,
                 max_connections: int | None = None, throttle: SocketThrottle | None = None):
        if (unix_socket is None) == (port is None):
            raise ValueError("give exactly one of unix_socket and port")
        self.wheelhouse = Wheelhouse(root)
        self.unix_socket = Path(unix_socket) if unix_socket is not None else None
        self.host = host
        self.port = port
        self.on_request = on_request
        self._server: asyncio.base_events.Server | PacedUnixServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._limit = ConnectionLimit(max_connections, self)
        self.throttle = throttle

    async def start(self) -> None:
        if self._server is not None:
            return
        if self.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_socket)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(self.unix_socket))
                os.chmod(self.unix_socket, 0o600)
                self._server = PacedUnixServer(sock, self._accept, self.throttle, MAX_HEAD)
            except BaseException:
                sock.close()
                raise
        else:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_socket)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, throttled: bool = False) -> bool:
        """Serve a connection (``throttled``: past the rate, answered 429); ``False`` if refused."""
        if not self._limit.admit(len(self._tasks), writer):
            return False
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer, throttled))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return not throttled

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str] | Response:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            return _text(431, "Request Header Fields Too Large", "request head too large")
        except (TimeoutError, asyncio.IncompleteReadError):
            return _text(400, "Bad Request", "incomplete request")
        if len(head) > MAX_HEAD:
            return _text(431, "Request Header Fields Too Large", "request head too large")
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _text(400, "Bad Request", "malformed request line")
        try:
            method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
        except UnicodeDecodeError:
            return _text(400, "Bad Request", "malformed request line")
        return method, target

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, throttled: bool) -> None:
        method, target = "?", "?"
        try:
            parsed = await self._read_head(reader)
            if isinstance(parsed, Response):
                response = parsed
            elif throttled:
                retry = self.throttle.retry_after()
                response = _text(429, "Too Many Requests", f"too many requests on the package index: retry in "
                                 f"{retry} s", **{"Retry-After": str(retry)})
            else:
                method, target = parsed
                response = respond(self.wheelhouse.projects(), method, target)
            await self._send(writer, method, response)
            if self.on_request is not None:
                self.on_request(method, target[:300], response.status)
        except (ConnectionError, OSError) as exc:
            log.info("package index: connection ended: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError, RuntimeError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, method: str, response: Response) -> None:
        if response.file is None:
            writer.write(_head(response, len(response.body)))
            if method != "HEAD":
                writer.write(response.body)
            await writer.drain()
            return
        # The name comes from the manifest and matched _FILE (no "/"); O_NOFOLLOW refuses a link.
        fd = os.open(self.wheelhouse.files_dir / response.file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            writer.write(_head(response, size))
            if method == "HEAD":
                await writer.drain()
                return
            while chunk := f.read(CHUNK):
                writer.write(chunk)
                await writer.drain()


def log_request(method: str, path: str, status: int) -> None:
    """The log line of one request (the Kubernetes Deployment's log): the path of what the index
    served, the length of any other (a workspace chooses it, and the log is read outside it:
    tests/security/test_redteam12_logs.py)."""
    shown = path if status < 400 else f"(a path the index does not serve, {len(path)} characters)"
    log.info(json.dumps({"method": method[:10], "path": shown, "status": status}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pds_kernel.packages.index", description=__doc__.split("\n")[0])
    parser.add_argument("--wheelhouse", required=True, type=Path, help="the approved wheels (read-only)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="listen on this TCP port")
    where.add_argument("--unix-socket", type=Path, help="listen on this Unix socket")
    parser.add_argument("--host", default="0.0.0.0", help="address of the TCP listener (default 0.0.0.0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        server = IndexServer(args.wheelhouse, unix_socket=args.unix_socket, host=args.host, port=args.port,
                             on_request=log_request)
        await server.start()
        log.info("package index of %s on %s", args.wheelhouse, args.unix_socket or f"{args.host}:{server.port}")
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
