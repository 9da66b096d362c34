"""What a workspace may ask the hub API through its hub socket: a pure HTTP/1.1 request-head parser
and the allow-list of requests a notebook server needs (no I/O; :mod:`.hub_bridge` applies it).

A notebook server (jupyterhub-singleuser 5, with the platform's lockdown) calls the hub for five
things only:

=========================================  ===================================================
``GET /hub/api`` (or ``/hub/api/``)         version check at start, no token
``POST /hub/api/oauth2/token``              OAuth code exchange, with the server's own token
``GET /hub/api/user``                       who owns a token (the server's, or a browser user's
                                            OAuth token for this server): read-only
``POST /hub/api/users/{user}/activity``     activity report, with the server's own token
``POST /hub/api/pds/served-bytes/{user}/    reservation from the workspace's budget of bytes
{server}``                                  shown in the browser, with the server's own token
=========================================  ===================================================

The gate has its own socket (``gate.sock``); ``pds_kernel.workspace`` and the airlock client call
nothing else on the hub. Everything else is refused: ``/hub/login``, ``/hub/signup``, token
creation, admin and other users' paths, cookies, encoded or dotted paths, absolute-form targets,
query strings, HTTP/1.0, ``Transfer-Encoding``, repeated or malformed framing headers, upgrades,
bare LF or CR, obsolete line folding and heads over :data:`MAX_HEAD` bytes. The parser is strict
on purpose: what it forwards is framed exactly as the hub will read it (CRLF lines, one
``Content-Length``, no chunking), so a second request cannot hide inside the first.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

#: Largest request head (request line + headers + blank line) accepted, in bytes.
MAX_HEAD = 16 * 1024
#: Largest single header line, in bytes.
MAX_LINE = 8 * 1024
#: Most header fields in one request.
MAX_HEADERS = 50
#: Largest request body, in bytes (an activity report or an OAuth code exchange is < 2 KiB).
MAX_BODY = 64 * 1024

_METHOD = re.compile(rb"[A-Z]{1,10}")
#: ``@`` is in a workspace user's name (``alice@diabetes-t2``), which JupyterHub writes as is
_TARGET = re.compile(rb"/[A-Za-z0-9/_.@\-]{0,500}")
_FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z\-]{1,100}")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e]*")
_AUTH = re.compile(r"(?:token|bearer) +([A-Za-z0-9_\-.~+/=]{16,512})", re.IGNORECASE)
_ACTIVITY = re.compile(r"/hub/api/users/([^/]+)/activity")
_SERVED_BYTES = re.compile(r"/hub/api/pds/served-bytes/([^/]+)/([^/]+)")
#: Headers refused outright: a notebook server never sends them to the hub.
_FORBIDDEN_HEADERS = {b"cookie", b"transfer-encoding", b"upgrade", b"expect", b"te", b"trailer",
                      b"proxy-authorization", b"x-forwarded-for", b"x-forwarded-host",
                      b"x-forwarded-proto", b"x-real-ip", b"forwarded", b"x-xsrftoken", b"x-csrftoken",
                      b"http2-settings", b"sec-websocket-key", b"sec-websocket-version"}
#: Headers that may appear at most once.
_SINGLE_HEADERS = {b"host", b"content-length", b"authorization", b"content-type", b"connection"}


class RequestRefused(Exception):
    """The request is not one a notebook server needs; ``reason`` says why (for the audit trail),
    ``status`` is the HTTP status of the answer (403 unless the framing itself is wrong)."""

    def __init__(self, reason: str, method: str = "", path: str = "", status: int = 403):
        super().__init__(reason)
        self.reason = reason
        self.method = method
        self.path = path
        self.status = status


@dataclass(frozen=True)
class RequestHead:
    """A parsed request head. ``raw`` is exactly the bytes that were checked (what is forwarded)."""

    method: str
    path: str
    headers: dict[str, str]  #: lower-case name -> value (each name at most once, see above)
    content_length: int
    raw: bytes

    @property
    def token(self) -> str | None:
        """The API token of the ``Authorization`` header, ``None`` without one."""
        value = self.headers.get("authorization")
        if value is None:
            return None
        match = _AUTH.fullmatch(value.strip())
        if match is None:
            raise RequestRefused("malformed Authorization header", self.method, self.path)
        return match.group(1)


def parse_head(raw: bytes) -> RequestHead:
    """Parse one request head (ending with the empty line). Raises :class:`RequestRefused`."""
    if len(raw) > MAX_HEAD:
        raise RequestRefused(f"request head over {MAX_HEAD} bytes")
    if not raw.endswith(b"\r\n\r\n"):
        raise RequestRefused("request head does not end with CRLF CRLF")
    lines = raw[:-4].split(b"\r\n")
    for line in lines:
        if b"\n" in line or b"\r" in line or b"\x00" in line:
            raise RequestRefused("bare CR, LF or NUL in the request head")
        if len(line) > MAX_LINE:
            raise RequestRefused(f"header line over {MAX_LINE} bytes")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise RequestRefused("malformed request line")
    method_b, target_b, version = parts
    if not _METHOD.fullmatch(method_b):
        raise RequestRefused("malformed method")
    method = method_b.decode()
    if version != b"HTTP/1.1":
        raise RequestRefused(f"only HTTP/1.1 is accepted, not {version[:16]!r}", method)
    if not _TARGET.fullmatch(target_b):
        raise RequestRefused("request target must be a plain absolute path (no query, no encoding, "
                             "no absolute form)", method, target_b[:200].decode("latin-1"))
    path = target_b.decode()
    segments = path.split("/")[1:]
    if any(seg in {"", ".", ".."} for seg in segments[:-1]) or segments[-1] in {".", ".."}:
        raise RequestRefused("empty, '.' or '..' path segment", method, path)
    headers: dict[str, str] = {}
    if len(lines) - 1 > MAX_HEADERS:
        raise RequestRefused(f"more than {MAX_HEADERS} header fields", method, path)
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise RequestRefused("obsolete line folding", method, path)
        name, sep, value = line.partition(b":")
        if not sep or not _FIELD_NAME.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise RequestRefused("malformed header field", method, path)
        key = name.lower()
        if key in _FORBIDDEN_HEADERS:
            raise RequestRefused(f"header {key.decode()} is not allowed", method, path)
        field_name = key.decode()
        if field_name in headers and key in _SINGLE_HEADERS:
            raise RequestRefused(f"header {field_name} repeated", method, path)
        text = value.strip(b" \t").decode("ascii")
        headers[field_name] = f"{headers[field_name]}, {text}" if field_name in headers else text
    connection = headers.get("connection", "keep-alive").lower()
    if connection not in {"keep-alive", "close"}:
        raise RequestRefused("Connection must be keep-alive or close", method, path)
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or len(length_text) > 7:
        raise RequestRefused("malformed Content-Length", method, path)
    length = int(length_text)
    if length > MAX_BODY:
        raise RequestRefused(f"body over {MAX_BODY} bytes", method, path)
    return RequestHead(method=method, path=path, headers=headers, content_length=length, raw=raw)


@dataclass(frozen=True)
class HubApiPolicy:
    """The requests one workspace server may make: its user, its server (project) name, and the
    SHA-256 of its API token."""

    user: str
    token_sha256: str
    server: str = ""

    @classmethod
    def for_token(cls, user: str, token: str, server: str = "") -> HubApiPolicy:
        return cls(user=user, token_sha256=hashlib.sha256(token.encode()).hexdigest(), server=server)

    def _is_server_token(self, token: str | None) -> bool:
        if token is None or not self.token_sha256:
            return False
        digest = hashlib.sha256(token.encode()).hexdigest()
        return hmac.compare_digest(digest, self.token_sha256)

    def check(self, head: RequestHead) -> None:
        """Raise :class:`RequestRefused` unless ``head`` is one of the five requests above."""
        method, path = head.method, head.path
        token = head.token
        if method in {"GET", "HEAD"} and head.content_length:
            raise RequestRefused("a GET request carries no body", method, path)
        if method == "GET" and path in {"/hub/api", "/hub/api/"}:
            if token is not None and not self._is_server_token(token):
                raise RequestRefused("the version check takes no token but the server's", method, path)
            return
        if method == "GET" and path == "/hub/api/user":
            if token is None:
                raise RequestRefused("an identity request needs a token", method, path)
            return  # read-only: names the owner of the token (a browser user's OAuth token)
        if method == "POST" and path == "/hub/api/oauth2/token":
            if not self._is_server_token(token):
                raise RequestRefused("the OAuth code exchange needs the server's own token", method, path)
            return
        match = _ACTIVITY.fullmatch(path)
        if method == "POST" and match is not None:
            if match.group(1) != self.user:
                raise RequestRefused("activity of another user", method, path)
            if not self._is_server_token(token):
                raise RequestRefused("the activity report needs the server's own token", method, path)
            return
        match = _SERVED_BYTES.fullmatch(path)
        if method == "POST" and match is not None:
            if match.group(1) != self.user or not self.server or match.group(2) != self.server:
                raise RequestRefused("served-bytes reservation of another workspace", method, path)
            if not self._is_server_token(token):
                raise RequestRefused("a served-bytes reservation needs the server's own token", method, path)
            return
        raise RequestRefused("not a request a notebook server makes to the hub", method, path)
