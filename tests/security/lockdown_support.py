"""Shared helpers of tests/security/test_lockdown_escape.py: the notebook server and ledger of the
lockdown tests (tests/sandbox/lockdown_server.py), a kernel and a terminal driven over WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sandbox"))

from lockdown_server import LedgerHost, NotebookServer, start_server

__all__ = ["LedgerHost", "NotebookServer", "start_server", "kernel_output", "terminal_output",
           "tabular_text"]


def tabular_text(rows: int) -> str:
    """Pseudonymised-claims-like CSV text, ``rows`` lines."""
    return "BEN_NIR_PSA;PRS_NAT_REF;EXE_SOI_DTD;PRS_PAI_MNT\n" + "".join(
        f"{i:020d};{1000 + i % 97};2024-{1 + i % 12:02d}-{1 + i % 28:02d};{(i * 37) % 1000}.{i % 100:02d}\n"
        for i in range(rows))


def _ws_url(server: NotebookServer, path: str) -> HTTPRequest:
    return HTTPRequest(server.base.replace("http://", "ws://") + path,
                       headers={"Authorization": f"token {server.token}"})


async def _collect(conn, until: callable, timeout: float) -> tuple[int, int | None, list]:
    """Bytes received, the close code (None if still open), and the parsed messages."""
    received, messages = 0, []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            msg = await asyncio.wait_for(conn.read_message(), timeout=max(0.1, deadline - loop.time()))
        except TimeoutError:
            break
        if msg is None:
            return received, conn.close_code, messages
        received += len(msg if isinstance(msg, bytes) else msg.encode())
        try:
            parsed = json.loads(msg)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        messages.append(parsed)
        if parsed is not None and until(parsed):
            break
    return received, None, messages


async def _kernel_output(server: NotebookServer, code: str, timeout: float) -> tuple[int, int | None, list]:
    status, kernel, _ = await asyncio.to_thread(server.request, "/api/kernels", "POST", {"name": "python3"})
    assert status == 201, kernel
    conn = await websocket_connect(_ws_url(server, f"/api/kernels/{kernel['id']}/channels"))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                   "username": "alice", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))

    def done(m):
        return (m.get("msg_type") == "status" and m.get("content", {}).get("execution_state") == "idle"
                and m.get("parent_header", {}).get("msg_id") == msg_id)

    try:
        return await _collect(conn, done, timeout)
    finally:
        conn.close()
        await asyncio.to_thread(server.request, f"/api/kernels/{kernel['id']}", "DELETE")


def kernel_output(server: NotebookServer, code: str, timeout: float = 120) -> tuple[int, int | None, list]:
    """Run ``code`` in a new kernel as JupyterLab does; what came back over the WebSocket."""
    return asyncio.run(_kernel_output(server, code, timeout))


async def _terminal_output(server: NotebookServer, command: str, marker: str, timeout: float):
    status, term, _ = await asyncio.to_thread(server.request, "/api/terminals", "POST", {})
    assert status == 200, term
    conn = await websocket_connect(_ws_url(server, f"/terminals/websocket/{term['name']}"))
    conn.write_message(json.dumps(["stdin", command + "\r"]))
    try:
        return await _collect(conn, lambda m: isinstance(m, list) and marker in str(m[-1]), timeout)
    finally:
        conn.close()
        await asyncio.to_thread(server.request, f"/api/terminals/{term['name']}", "DELETE")


def terminal_output(server: NotebookServer, command: str, marker: str, timeout: float = 120):
    """Type ``command`` in a JupyterLab terminal; what came back until ``marker`` or the close."""
    return asyncio.run(_terminal_output(server, command, marker, timeout))
