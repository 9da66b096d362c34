"""Byte forwarders between loopback TCP ports and Unix sockets (asyncio, standard library only).

A workspace sandbox has no network but its own loopback, so every conversation with the outside
goes through a Unix socket bind-mounted into it, and these forwarders join the two worlds:

* hub side, :class:`TcpToUnix`: configurable-http-proxy routes browser traffic to
  ``http://127.0.0.1:<port>``, forwarded to the notebook server's ``/run/pds/server.sock`` (the
  proxy cannot target a Unix socket cleanly);
* hub side, :class:`UnixToTcp`: the socket mounted as ``/run/pds/hub.sock`` in the sandbox,
  forwarded to the hub API's loopback port;
* inside the sandbox (:mod:`.inside`), :class:`TcpToUnix` again: ``127.0.0.1:8081`` to
  ``/run/pds/hub.sock`` (JupyterHub's API client speaks TCP only).

Connecting to a Unix socket never follows a symlink in its last component: the sandbox can write
its runtime directory, and must not be able to point the hub's forwarder at another socket of the
host (a database, the gate, a container runtime) by planting a link where its socket should be.
Nor may it put a socket of its own there: the hub's forwarder to the notebook server connects
only to the socket the server opened (its device and inode, :func:`socket_identity`), so a kernel
that removes it and listens in its place (its own HTTP server, past the lockdown) is refused.

Everything runs on the caller's event loop (no thread); ``stop()`` closes the listener and every
open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from .rate import PacedUnixServer, SocketThrottle

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
#: Connections a sandbox may hold open at once on one of the sockets the hub serves it (each costs
#: the hub descriptors: three for the hub socket). A notebook server and pip use a handful.
SANDBOX_CONNECTIONS = 64


#: (device, inode) of a socket file: which socket a path named when it was recorded.
SocketIdentity = tuple[int, int]


class SocketReplaced(ConnectionRefusedError):
    """The socket at a path is not the one recorded there (:func:`socket_identity`)."""


def socket_identity(path: str | Path) -> SocketIdentity:
    """(device, inode) of the Unix socket at ``path`` (a link there is not followed: refused)."""
    info = os.lstat(path)
    if not stat.S_ISSOCK(info.st_mode):
        raise ConnectionRefusedError(f"{path} is not a Unix socket")
    return info.st_dev, info.st_ino


async def connect_unix_nofollow(path: str | Path, identity: SocketIdentity | None = None
                                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a stream to the Unix socket at ``path``, refusing a symlink or a non-socket there, and
    any socket but ``identity`` (see :func:`socket_identity`) when it is given.

    The socket is opened as an ``O_PATH`` file first (``O_NOFOLLOW``), checked, and connected
    through ``/proc/self/fd/N``, so the object checked is the object connected to.
    """
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISSOCK(info.st_mode):
            raise ConnectionRefusedError(f"{path} is not a Unix socket")
        if identity is not None and (info.st_dev, info.st_ino) != tuple(identity):
            raise SocketReplaced(f"{path} is not the socket its server opened: it was replaced")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
    finally:
        os.close(fd)
    return await asyncio.open_connection(sock=sock, limit=CHUNK)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class ConnectionLimit:
    """At most ``most`` connections open at once (``None``: no limit); a connection past it is
    closed as soon as it is accepted, and the refusals are logged sparingly (a loop of them must
    not fill the hub's log)."""

    def __init__(self, most: int | None, owner: object) -> None:
        self.most = most
        self.owner = owner
        self.refused = 0

    def admit(self, open_now: int, writer: asyncio.StreamWriter) -> bool:
        if self.most is None or open_now < self.most:
            return True
        self.refused += 1
        if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
            log.warning("%s: %d connections open, the most allowed; %d refused so far",
                        self.owner, open_now, self.refused)
        writer.transport.abort()
        return False


class _Forwarder:
    """Accepts connections on a listener and joins each to a new upstream connection. With a
    ``throttle`` (:mod:`.rate`), each accepted connection takes a token; one accepted without a
    token goes to :meth:`_throttled` (here: closed at once)."""

    #: Connections open at once (``None``: no limit), see :class:`ConnectionLimit`.
    max_connections: int | None = None

    def __init__(self, throttle: SocketThrottle | None = None) -> None:
        self._server: asyncio.base_events.Server | PacedUnixServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._limit = ConnectionLimit(self.max_connections, self)
        self.throttle = throttle

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise NotImplementedError

    async def _listen(self) -> asyncio.base_events.Server:
        raise NotImplementedError

    async def start(self) -> None:
        """Start listening (returns once the listener is bound)."""
        if self._server is not None:
            return
        self._server = await self._listen()

    async def stop(self) -> None:
        """Stop listening and close every forwarded connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def running(self) -> bool:
        return self._server is not None

    def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                throttled: bool = False) -> bool:
        """Serve a new connection (:meth:`_throttled` if it came past the rate); ``False`` if it
        was refused (past the rate or the connections open at once)."""
        if not self._limit.admit(len(self._tasks), client_writer):
            return False
        serve = self._throttled(client_reader, client_writer) if throttled else self._join(client_reader, client_writer)
        task = asyncio.get_running_loop().create_task(serve)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return not throttled

    async def _throttled(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """A connection past the rate limit: a byte forwarder cannot answer it, it closes it."""
        client_writer.transport.abort()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A new connection to the service, or ``None`` (logged) when it cannot be reached."""
        try:
            return await self._open_upstream()
        except OSError as exc:
            log.warning("%s: upstream unavailable: %s", self, exc)
            return None

    @staticmethod
    async def _close(*writers: asyncio.StreamWriter | None) -> None:
        for writer in writers:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError, RuntimeError):
                    await writer.wait_closed()

    async def _join(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._upstream()
        try:
            if upstream is not None:
                await asyncio.gather(_pump(client_reader, upstream[1]), _pump(upstream[0], client_writer))
        finally:
            await self._close(client_writer, upstream[1] if upstream is not None else None)


class TcpToUnix(_Forwarder):
    """Listen on ``host:listen_port`` (loopback by default) and forward to the socket ``unix_path``
    (only the socket ``identity`` when given: :func:`connect_unix_nofollow`).

    ``listen_port=0`` picks a free port; read it from :attr:`port` after :meth:`start`."""

    def __init__(self, listen_port: int, unix_path: str | Path, host: str = "127.0.0.1",
                 identity: SocketIdentity | None = None, on_replaced: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.host = host
        self.port = listen_port
        self.unix_path = Path(unix_path)
        self.identity = identity
        self.on_replaced = on_replaced  #: called at the first connection refused as replaced

    async def _listen(self) -> asyncio.base_events.Server:
        server = await asyncio.start_server(self._accept, self.host, self.port, limit=CHUNK)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _open_upstream(self):
        try:
            return await connect_unix_nofollow(self.unix_path, self.identity)
        except SocketReplaced:
            report, self.on_replaced = self.on_replaced, None
            if report is not None:
                report()
            raise

    def __repr__(self) -> str:
        return f"TcpToUnix({self.host}:{self.port} -> {self.unix_path})"


class UnixToTcp(_Forwarder):
    """Listen on the Unix socket ``unix_path`` (mode 0600) and forward to ``host:port``.

    A stale socket file at ``unix_path`` is replaced; anything else there is an error. The socket
    is a sandbox's: at most :data:`SANDBOX_CONNECTIONS` connections at once (a kernel that held
    2,000 on each socket made the hub hold 8,000 descriptors), and new ones at the ``throttle``'s
    rate when one is given."""

    #: Buffer limit of each accepted connection's reader (bytes).
    reader_limit = CHUNK
    max_connections = SANDBOX_CONNECTIONS

    def __init__(self, unix_path: str | Path, host: str, port: int, throttle: SocketThrottle | None = None) -> None:
        super().__init__(throttle)
        self.unix_path = Path(unix_path)
        self.host = host
        self.port = port

    async def _listen(self) -> PacedUnixServer:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.unix_path).st_mode):
                os.unlink(self.unix_path)
        # No umask change here: the umask is process-wide, and changing it across an ``await`` made
        # every other coroutine of the hub (e.g. concurrent spawns creating homes) create files with
        # it. The socket lives in a 0700 directory; bind, then restrict it, before listening.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.unix_path))
            os.chmod(self.unix_path, 0o600)
            return PacedUnixServer(sock, self._accept, self.throttle, self.reader_limit)
        except BaseException:
            sock.close()
            raise

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.unix_path).st_mode):
                os.unlink(self.unix_path)

    async def _open_upstream(self):
        return await asyncio.open_connection(self.host, self.port, limit=CHUNK)

    def __repr__(self) -> str:
        return f"UnixToTcp({self.unix_path} -> {self.host}:{self.port})"
