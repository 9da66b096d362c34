"""Submit an export request to the gate over HTTP, from inside a workspace.

Used by :func:`pds_kernel.workspace.request_export`. The gate is reached at its JupyterHub service
URL, or through a Unix socket bind-mounted into the sandbox (the sandbox has no other network).
Authentication is the workspace's JupyterHub API token (``$JUPYTERHUB_API_TOKEN``).
Standard library only, so it works in any notebook image.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import InvalidInput, NotFound, PdsError, PermissionDenied

DEFAULT_PREFIX = "/services/airlock/"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _multipart(fields: Mapping[str, str | list[str]], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    flat = [(name, v) for name, value in fields.items()
            for v in (value if isinstance(value, list) else [value])]
    for name, value in flat:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    for filename, data in files:
        header = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(header.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _read_uploads(files: Iterable[str | Path]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file to send; a path that is not a file is refused before sending."""
    uploads = []
    for item in files:
        path = Path(item)
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
        uploads.append((path.name, path.read_bytes()))
    return uploads


class AirlockClient:
    """A small HTTP client of the gate's JSON API. The default timeout covers a submission whose
    model the gate attacks before answering (``model_check.timeout_seconds``, 600 s)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, unix_socket: str | None = None,
                 prefix: str | None = None, timeout: float = 900.0):
        self.token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.unix_socket = unix_socket or os.environ.get("PDS_AIRLOCK_SOCKET") or None
        self.url = url or os.environ.get("PDS_AIRLOCK_URL", "")
        self.prefix = prefix or (urlparse(self.url).path if self.url else "") or DEFAULT_PREFIX
        if not self.prefix.endswith("/"):
            self.prefix += "/"
        self.timeout = timeout
        if not self.unix_socket and not self.url:
            raise InvalidInput("no airlock address: set PDS_AIRLOCK_URL or PDS_AIRLOCK_SOCKET")

    def _connection(self) -> http.client.HTTPConnection:
        if self.unix_socket:
            return _UnixConnection(self.unix_socket, self.timeout)
        parsed = urlparse(self.url)
        cls = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        return cls(parsed.hostname or "127.0.0.1", parsed.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> Any:
        conn = self._connection()
        try:
            headers = {"Authorization": f"token {self.token}", "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = content_type
            conn.request(method, self.prefix + path.lstrip("/"), body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {"error": data[:200].decode("utf-8", "replace")}
        if response.status >= 400:
            message = payload.get("error") if isinstance(payload, dict) else str(payload)
            cls = {401: PermissionDenied, 403: PermissionDenied, 404: NotFound}.get(response.status, PdsError)
            if response.status in (400, 413, 415):  # what was sent: malformed, too large, wrong type
                cls = InvalidInput
            raise cls(f"airlock: {message or response.reason}")
        return payload

    def submit(self, files: Iterable[str | Path], justification: str, context: Mapping[str, Any] | None = None,
               *, project: str | None = None) -> dict:
        """Send ``files`` for review; returns the request (id, state, check results per file)."""
        project = project or os.environ.get("PDS_PROJECT") or os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        if not project:
            raise InvalidInput("which project? pass project= or set PDS_PROJECT")
        uploads = _read_uploads(files)
        body, ctype = _multipart({"project": project, "justification": justification,
                                  "context": json.dumps(dict(context or {}), default=str)}, uploads)
        return self.request("POST", "api/requests", body, ctype)

    def get(self, request_id: str) -> dict:
        return self.request("GET", f"api/requests/{request_id}")

    def request_package(self, package: str, justification: str = "", *, project: str | None = None) -> dict:
        """Ask for a Python package (``NAME`` or ``NAME==VERSION``) for this workspace's project."""
        project = project or os.environ.get("PDS_PROJECT") or os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        if not project:
            raise InvalidInput("which project? pass project= or set PDS_PROJECT")
        body = json.dumps({"project": project, "package": package, "justification": justification}).encode()
        return self.request("POST", "api/packages/requests", body)

    def resubmit(self, request_id: str, files: Iterable[str | Path] = (), *, remove: Iterable[str] = (),
                 justification: str | None = None, acro: Mapping[str, Any] | None = None) -> dict:
        """Answer a request for changes: replace or add ``files`` (matched by name), drop ``remove``;
        ``acro`` adds the ACRO records of the new versions (by file name)."""
        uploads = _read_uploads(files)
        fields: dict[str, str | list[str]] = {"remove": [str(n) for n in remove]}
        if justification:
            fields["justification"] = justification
        if acro:
            fields["acro"] = json.dumps(dict(acro), default=str)
        body, ctype = _multipart(fields, uploads)
        return self.request("POST", f"api/requests/{request_id}/resubmit", body, ctype)


def submit(files: Iterable[str | Path], justification: str, context: Mapping[str, Any] | None = None, *,
           project: str | None = None, url: str | None = None, token: str | None = None,
           unix_socket: str | None = None) -> dict:
    """One call: submit ``files`` with ``justification`` (and ACRO evidence in ``context``)."""
    return AirlockClient(url, token, unix_socket=unix_socket).submit(files, justification, context, project=project)
