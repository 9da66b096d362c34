"""Run code in a Jupyter kernel of a workspace through the REST and websocket APIs (test helper)."""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


def execute(base_url: str, token: str, code: str, timeout: float = 120, keep: bool = False) -> dict:
    """Start a kernel at ``base_url`` (``http://host/user/u/server``), run ``code``, delete the kernel
    (unless ``keep``: then the caller deletes it with :func:`delete_kernel`).

    Returns ``{"stdout": str, "stderr": str, "error": str | None, "kernel_id": str}``: what the code
    printed, and apart what it logged (a log line after the printed result must not pass for it).
    """
    headers = {"Authorization": f"token {token}"}
    response = requests.post(f"{base_url}/api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    response.raise_for_status()
    kernel_id = response.json()["id"]
    ws_url = base_url.replace("http://", "ws://", 1) + f"/api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        stdout, stderr, error = [], [], None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream" and message["content"].get("name") == "stdout":
                stdout.append(message["content"]["text"])
            elif kind == "stream":  # logs (a Dask client's, at its close) after the printed result
                stderr.append(message["content"]["text"])
            elif kind == "error":
                error = "\n".join(message["content"].get("traceback", [])) or message["content"]["evalue"]
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                break
        else:
            raise TimeoutError(f"kernel did not finish in {timeout} s")
        return {"stdout": "".join(stdout), "stderr": "".join(stderr), "error": error, "kernel_id": kernel_id}
    finally:
        ws.close()
        if not keep:
            delete_kernel(base_url, token, kernel_id)


def delete_kernel(base_url: str, token: str, kernel_id: str) -> None:
    requests.delete(f"{base_url}/api/kernels/{kernel_id}", headers={"Authorization": f"token {token}"},
                    timeout=60)
