"""The socket forwarders, with real sockets on this machine."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from pds_kernel.sandbox.bridge import TcpToUnix, UnixToTcp

pytestmark = pytest.mark.asyncio


async def _echo(reader, writer):
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _roundtrip(reader, writer, payload: bytes) -> bytes:
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), 5)


async def test_tcp_to_unix_and_back(tmp_path):
    threads_before = threading.active_count()
    server = await asyncio.start_unix_server(_echo, str(tmp_path / "server.sock"))
    bridge = TcpToUnix(0, tmp_path / "server.sock")
    await bridge.start()
    try:
        assert bridge.port > 0
        connections = [await asyncio.open_connection("127.0.0.1", bridge.port) for _ in range(3)]
        for i, (reader, writer) in enumerate(connections):
            assert await _roundtrip(reader, writer, b"hello %d" % i) == b"hello %d" % i
        big = os.urandom(300_000)
        reader, writer = connections[0]
        assert await _roundtrip(reader, writer, big) == big
    finally:
        await bridge.stop()
        server.close()
        await server.wait_closed()
    # stop() closed the client connections too
    reader, _ = connections[1]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert not bridge.running
    assert threading.active_count() == threads_before


async def test_unix_to_tcp(tmp_path):
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bridge = UnixToTcp(tmp_path / "hub.sock", "127.0.0.1", port)
    await bridge.start()
    try:
        assert (os.stat(tmp_path / "hub.sock").st_mode & 0o777) == 0o600
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "hub.sock"))
        assert await _roundtrip(reader, writer, b"api call") == b"api call"
        writer.close()
    finally:
        await bridge.stop()
        server.close()
        await server.wait_closed()
    assert not (tmp_path / "hub.sock").exists()


async def test_planted_symlink_is_not_followed(tmp_path):
    """A sandbox can write its runtime dir: a link there must not redirect the hub's forwarder."""
    other_hits = []

    async def other_service(reader, writer):
        other_hits.append(1)
        writer.close()

    other = await asyncio.start_unix_server(other_service, str(tmp_path / "other-service.sock"))
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / "server.sock").symlink_to(tmp_path / "other-service.sock")
    bridge = TcpToUnix(0, runtime / "server.sock")
    await bridge.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        await writer.drain()
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing forwarded
        except ConnectionResetError:
            pass  # closed with our request unread: refused just the same
        assert other_hits == []
    finally:
        await bridge.stop()
        other.close()
        await other.wait_closed()


async def test_upstream_missing_closes_the_client(tmp_path):
    bridge = TcpToUnix(0, tmp_path / "absent.sock")
    await bridge.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        await bridge.stop()
