"""Tornado handlers of the JSON API and the base of every handler (the pages: :mod:`.pages`): thin.
Check what was sent, resolve the identity, call the service, map errors to HTTP.

Files are addressed by request id + file index, never by a path. JSON API handlers answer 401
without a token identity; pages redirect to the login (or answer 403). Forms carry Tornado's XSRF
token; the API, authenticated by a token header and never by a cookie, is exempt.

Bodies (:class:`BoundedBody`): every handler streams its body and checks it before anything reads
it. A declared ``Content-Length`` over the operation's limit is refused with 413 from the headers
(the bytes that follow are read and dropped, never kept, so the client gets the answer instead of
a reset connection); a type the operation does not take gets 415; malformed JSON or forms, unknown
fields, wrong types and deep nesting get 400 (:mod:`.bodies`). Nothing a client sends answers 500.
Once a request is accepted (its identity resolved), its body must arrive at the gate's minimum
rate (:class:`.connections.BodyPace`): a slower one is cut, logged and audited
(``airlock.body.too_slow``), and the operation never runs on part of a body.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import mimetypes
from functools import partial
from typing import Any

from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler, stream_request_body

from ...audit import AuditEvent, Outcome
from ...errors import BodyTooLarge, InvalidInput, PdsError, PermissionDenied
from ...settings import Gate
from ...validate import is_digits
from ..imports import ImportService
from ..inputs import brief
from ..listing import DEFAULT_PER_PAGE
from ..service import AirlockService
from . import bodies
from .connections import BodyPace, body_seconds, peer_of
from .headers import set_gate_headers
from .logs import SafeSummary, safe_path, summary
from .same_origin import REFUSED as REFUSED_FOREIGN
from .same_origin import foreign_origin

log = logging.getLogger(__name__)

_INLINE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".pdf": "application/pdf"}
#: A body declared larger than this is refused at once (the connection closes); a smaller one
#: over the operation's limit is read and dropped, then refused with 413.
DISCARD_LIMIT = 256 * 1024 * 1024
#: A refusal decided from the headers (no valid token) waits for a body declared at most this
#: large, read and dropped: closing on unread bytes resets the connection, and the hub's proxy then
#: answers 503 instead of passing the refusal on. A larger or undeclared body is refused at once.
REFUSAL_DRAIN_LIMIT = 1024 * 1024
#: How long such a refused body may take to arrive, at most; past it the connection closes. Without
#: it a client without a valid token held a connection (and its file descriptor) as long as it
#: trickled bytes, many at once (the server has no body timeout: uploads may be slow); 1 MiB in 30 s
#: is 35 kB/s, the refusal still reaches any real client.
REFUSAL_DRAIN_SECONDS = 30.0
_METHODS = ("get", "post", "head", "put", "patch", "delete", "options")
#: Seconds Tornado's own body deadline (a backstop) comes after the pace's last moment.
PACE_BACKSTOP_SECONDS = 5.0
_DEFAULT_GATE = Gate()


def _after_body(method):
    """Run ``method`` only once the body has arrived and passed :meth:`BoundedBody.read_body`."""
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        self.body_arrived = True
        self.stop_pace()  # the whole body has arrived
        self.read_body()
        result = method(self, *args, **kwargs)
        if result is not None:
            await result
    wrapper.after_body = True
    return wrapper


@stream_request_body
class BoundedBody(SafeSummary, RequestHandler):
    """Stream the body, keep at most :meth:`body_limit` bytes of it, check its type, then parse it.

    Subclasses list the media types they take (``body_types``); their HTTP methods run after
    :meth:`read_body` (wrapped automatically)."""

    body_types: set[str] = bodies.JSON_TYPES
    _pace: BodyPace | None = None  #: set once the request is accepted (:meth:`pace_body`)
    #: the request's whole body has arrived and its method runs (:func:`_after_body`); an answer
    #: written before (from prepare) closes the connection (:meth:`flush`)
    body_arrived = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _METHODS:
            if name in cls.__dict__:
                setattr(cls, name, _after_body(cls.__dict__[name]))
            method = getattr(cls, name)
            if method is not getattr(RequestHandler, name) and not getattr(method, "after_body", False):
                # from a mixin that is no BoundedBody: it would run before (or without) read_body,
                # and so past a refusal waiting for the body (refuse_after_body)
                raise TypeError(f"{cls.__name__}.{name} must be defined on a BoundedBody subclass")

    def body_limit(self) -> int:
        return bodies.MAX_SMALL_BODY

    def start_body(self) -> None:
        """From the headers alone: refuse a body too large or encoded (called first in prepare)."""
        self._chunks: list[bytes] = []
        self._received = 0
        self._refusal: Exception | None = None
        self._body_ready = False
        self._pace: BodyPace | None = None
        limit = self.body_limit()
        bodies.check_encoding(self.request.headers.get("Content-Encoding"))
        declared = self.request.headers.get("Content-Length")
        try:
            bodies.check_declared_size(declared, limit)
        except BodyTooLarge as exc:
            if int(declared) > DISCARD_LIMIT:
                raise
            self._refusal = exc  # answered once the body is drained, so the client reads the answer
        self.request.connection.set_max_body_size(max(limit, DISCARD_LIMIT))

    def flush(self, include_footers: bool = False):
        """Before the first bytes of an answer written ahead of the body (a refusal decided from the
        headers, in prepare): ``Connection: close``. Tornado closes such a connection once the answer
        is sent (it will not read what may follow); said in the answer, the hub's proxy does not keep
        the connection for its next request. Unsaid, the proxy kept it, sent the next request of
        whoever came next on it (another person's review) into the closed socket, and answered that
        request 503."""
        if not self.body_arrived and not self._headers_written:
            self.set_header("Connection", "close")
        return super().flush(include_footers)

    def refuse_after_body(self, refusal: Exception) -> None:
        """Answer ``refusal`` once the body has arrived (dropped as it comes) when it is declared at
        most :data:`REFUSAL_DRAIN_LIMIT` bytes (none declared and none chunked: no body) and
        arrives within :data:`REFUSAL_DRAIN_SECONDS` (else the connection closes), and at once
        otherwise (the answer then says the connection closes: :meth:`flush`). Answered after the
        body, the connection stays open for the client's next request."""
        declared = self.request.headers.get("Content-Length", "")
        if not declared and "Transfer-Encoding" not in self.request.headers:
            declared = "0"  # HTTP/1.1: a request without either has no body
        if not (declared.isascii() and declared.isdigit() and int(declared) <= REFUSAL_DRAIN_LIMIT):
            raise refusal
        self._chunks = []
        self._refusal = refusal
        self.request.connection.set_body_timeout(REFUSAL_DRAIN_SECONDS)

    def pace_body(self) -> None:
        """Once the request is accepted: pace its body by the gate's settings (nothing to do without
        one), and let Tornado close the connection a little after the pace's last moment."""
        headers = self.request.headers
        chunked = "Transfer-Encoding" in headers  # another coding than chunked: Tornado refuses it
        declared = int(headers.get("Content-Length", "0"))  # a number: start_body checked it
        if not chunked and declared == 0:
            return
        gate = self.settings.get("gate") or _DEFAULT_GATE
        size = self.body_limit() if chunked else declared
        self.request.connection.set_body_timeout(body_seconds(gate, size) + PACE_BACKSTOP_SECONDS)
        self._pace = BodyPace(gate, size, lambda: self._received, self.cut_slow_body)
        self._pace.start()

    def stop_pace(self) -> None:
        if self._pace is not None:
            self._pace.stop()

    def cut_slow_body(self, seconds: float) -> None:
        """The body fell behind the minimum rate: say so, and close the connection (what arrived
        of the body is dropped with the handler; nothing ran on it)."""
        pace = self._pace
        peer = peer_of(getattr(self.request.connection.context, "address", None))
        log.warning("gate: cut the body of %s from %s (peer %s, user %s): %d of %s bytes in %.1f s, slower than "
                    "%d bytes/s after %g s (settings gate.body_min_bytes_per_second, gate.body_grace_seconds); "
                    "nothing of it was kept. The client may send it again from a faster link; if real users' "
                    "links are this slow, lower gate.body_min_bytes_per_second",
                    summary(self), self.request.remote_ip, peer, self.current_actor(),
                    self._received, self.request.headers.get("Content-Length", "(chunked)"), seconds,
                    pace.gate.body_min_bytes_per_second, pace.gate.body_grace_seconds)
        details = {"client": self.request.remote_ip, "peer": peer, "method": self.request.method,
                   "received_bytes": self._received,
                   "declared_bytes": self.request.headers.get("Content-Length", "chunked"),
                   "seconds": round(seconds, 1), "min_bytes_per_second": pace.gate.body_min_bytes_per_second,
                   "grace_seconds": pace.gate.body_grace_seconds}
        try:
            self.record_cut(details)
        finally:  # the connection closes even if the audit trail cannot be written
            self._chunks = []
            self.request.connection.close()

    def current_actor(self) -> str:
        return "?"

    def record_cut(self, details: dict) -> None:
        """Audit a cut body (:class:`BaseHandler`: with its user)."""

    def on_connection_close(self) -> None:
        self.stop_pace()
        super().on_connection_close()

    def on_finish(self) -> None:
        self.stop_pace()

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._refusal is not None:
            return
        if self._received > self.body_limit():
            self._chunks = []
            self._refusal = BodyTooLarge(f"the body is over {self.body_limit()} bytes: this operation "
                                         f"accepts at most {self.body_limit()}")
            return
        self._chunks.append(chunk)

    def read_body(self) -> None:
        if self._refusal is not None:
            raise self._refusal
        body = b"".join(self._chunks)
        self._chunks = []
        self.request.body = body
        if body:
            content_type = self.request.headers.get("Content-Type", "")
            bodies.check_media_type(content_type, body, self.body_types)
            if bodies.media_type(content_type) in bodies.FORM_TYPES:
                try:
                    httputil.parse_body_arguments(content_type, body, self.request.body_arguments,
                                                  self.request.files, self.request.headers)
                except httputil.HTTPInputError as exc:
                    raise InvalidInput(f"the form is malformed: {exc}") from None
                for key, values in self.request.body_arguments.items():
                    self.request.arguments.setdefault(key, []).extend(values)
        self._body_ready = True


class BaseHandler(BoundedBody):
    api = False
    #: reachable with a workspace's own token (confined to its project); else users only
    from_workspace = False
    #: query parameters an API operation documents; any other is refused (pages ignore queries)
    query_params: set[str] = set()

    def initialize(self, service: AirlockService, identity, templates, prefix: str):
        self.service = service
        self.identity = identity
        self.templates = templates
        self.prefix = prefix
        self.user: str | None = None
        self.workspace_project: str | None = None  #: set by the identity for a workspace's token
        self._body_ready = False

    @property
    def body_types(self) -> set[str]:  # type: ignore[override]
        return bodies.JSON_TYPES if self.api else bodies.FORM_TYPES

    def set_default_headers(self) -> None:
        set_gate_headers(self)

    async def prepare(self) -> None:
        self.start_body()
        if self.api:
            bodies.check_query(self.request.query_arguments, self.query_params)
        self.user = await self.identity.user(self, api=self.api)
        if self.user is None:
            if self.api:
                self.refuse_after_body(HTTPError(401))
                return
            url = self.identity.login_url(self)
            if url and self.request.method == "GET":
                self.redirect(url)
                return
            self.refuse_after_body(HTTPError(403))
            return
        if self.workspace_project is not None and not self.from_workspace:
            self.check_workspace("")
        self.pace_body()

    def current_actor(self) -> str:
        return self.user or "?"

    def record_cut(self, details: dict) -> None:
        self.service.runtime.audit.record(AuditEvent(
            actor=self.current_actor(), action="airlock.body.too_slow", target=f"path:{safe_path(self)}",
            project=self.workspace_project or "", outcome=Outcome.DENIED, details=details))

    def read_body(self) -> None:
        super().read_body()
        if self.request.method not in {"GET", "HEAD", "OPTIONS"} and not self.api:
            self.check_same_origin()  # a form from the gate's own pages only
            self.check_xsrf_cookie()  # pages: once the form (and its _xsrf field) has arrived

    def check_same_origin(self) -> None:
        said = foreign_origin(self.request)
        if said is not None:
            self.service.runtime.audit.record(AuditEvent(
                actor=self.current_actor(), action="airlock.access.cross_origin", target=f"path:{safe_path(self)}",
                project=self.workspace_project or "", outcome=Outcome.DENIED, details=said))
            raise HTTPError(403, REFUSED_FOREIGN)

    def check_workspace(self, project: str, author: str | None = None, scope: str = "mine") -> None:
        """Code in a workspace acts only on its own project's requests, and of those on its user's
        own (``author``, when given; a list in ``scope`` mine only): a checker reviews others' from a
        browser at the gate, never into a workspace (tests/security/test_redteam12_workspace_token.py).
        Audited refusal."""
        if self.workspace_project is None or (project == self.workspace_project and author in (None, self.user)
                                              and scope == "mine"):
            return
        exc = PermissionDenied(f"a workspace of project {self.workspace_project} can only submit and "
                               f"follow its user's own export requests of that project (review others' "
                               "from your browser at the gate)")
        self.service.runtime.audit.record(AuditEvent(
            actor=self.user or "?", action="airlock.access.workspace", target=f"path:{safe_path(self)}",
            project=self.workspace_project, outcome=Outcome.DENIED,
            details={"reason": str(exc), "asked_project": project[:64], "asked_scope": scope[:16],
                     "method": self.request.method}))
        raise exc

    async def check_request_project(self, request_id: str) -> None:
        if self.workspace_project is not None:
            view = await self.call(self.service.get_request, self.user, request_id)
            self.check_workspace(view.project, view.author)

    def check_xsrf_cookie(self) -> None:
        # Pages: Tornado's check, once the form has arrived (read_body); Tornado's own early call
        # comes before the streamed body and is skipped. API: token auth only, no cookie.
        if not self.api and self._body_ready:
            super().check_xsrf_cookie()

    async def call(self, fn, *args, **kwargs) -> Any:
        """Run a (blocking) service call off the event loop."""
        return await IOLoop.current().run_in_executor(None, partial(fn, *args, **kwargs))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = str(exc) if isinstance(exc, PdsError) else (
            exc.log_message if isinstance(exc, HTTPError) and exc.log_message else self._reason)
        if status_code == 401:
            message = "authenticate with a JupyterHub token: Authorization: token <token>"
        if self.api:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": message}))
        else:
            # a refused form (a review, a withdrawal) or file of a request leads back to that request
            request_id = self.path_args[0] if self.path_args and self.request.method == "POST" else None
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(self.templates.get_template("error.html").render(
                status=status_code, message=message, prefix=self.prefix, user=self.user, request_id=request_id))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, PdsError):
            log.info("%s -> %s: %s", summary(self), type(value).__name__, brief(str(value), 500))
        else:
            super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, PdsError):
            self.log_exception(type(e), e, e.__traceback__)
            self.send_error(e.http_status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def json_body(self) -> dict:
        return bodies.parse_json_object(self.request.body)

    def form_fields(self, scalars: set[str], lists: set[str] = frozenset(), files: bool = False) -> dict[str, Any]:
        """The fields of a form: each of ``scalars`` at most once (text, ``""`` when absent), each of
        ``lists`` as a list; any other field, or files where none are expected, is refused."""
        sent = set(self.request.body_arguments)
        bodies.check_fields(dict.fromkeys(sent), scalars | lists, "the form")
        if set(self.request.files) - ({"files"} if files else set()):
            raise InvalidInput("the form carries files in an unknown field: send them as files")
        out: dict[str, Any] = {}
        for name in scalars:
            values = self.get_body_arguments(name, strip=False)
            if len(values) > 1:
                raise InvalidInput(f"{name} is given more than once")
            limit = bodies.MAX_JSON_FIELD if name in bodies.JSON_FIELDS else bodies.MAX_TEXT
            out[name] = bodies.check_text(values[0] if values else "", name, limit)
        for name in lists:
            out[name] = [bodies.check_text(v, name, bodies.MAX_TEXT) for v in self.get_body_arguments(name)]
        return out

    def uploaded_files(self) -> list[tuple[str, io.BytesIO]]:
        """The files of a multipart ``files`` field as (name, stream); names are checked by the service."""
        return [(u["filename"], io.BytesIO(u["body"])) for u in self.request.files.get("files", [])]

    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    async def send_path(self, name: str, path, *, inline: bool) -> None:
        ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        ctype = _INLINE_TYPES.get(ext) if inline else None
        self.set_header("Content-Type", ctype or mimetypes.guess_type(name)[0] or "application/octet-stream")
        if not ctype:
            self.set_header("Content-Type", "application/octet-stream")
        disposition = "inline" if ctype else "attachment"
        self.set_header("Content-Disposition", f'{disposition}; filename="{name}"')
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'")
        data = await self.call(path.read_bytes)
        self.finish(data)


# ---- JSON API --------------------------------------------------------------------------------------
class ApiHandler(BaseHandler):
    api = True


class WorkspaceApiHandler(ApiHandler):
    from_workspace = True


class OpenApiHandler(BoundedBody):
    def initialize(self, document: dict):
        self.document = document

    def set_default_headers(self) -> None:
        set_gate_headers(self)

    def prepare(self) -> None:
        self.start_body()
        if self._refusal is not None:  # anonymous: nothing is drained for it, the connection closes
            raise self._refusal

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.document))


class NotFoundApi(ApiHandler):
    """Any other path under ``api/``: a JSON 404 (a malformed request id or file number lands here)."""

    known_address = False  # its address is the client's choice: never logged (.logs)

    def prepare(self) -> None:
        self.start_body()
        raise HTTPError(404, "no such operation: see api/openapi.json")


class MeHandler(WorkspaceApiHandler):
    def get(self) -> None:
        self.send_json({"name": self.user})


class RequestsApi(WorkspaceApiHandler):
    query_params = {"project", "scope", "state", "author", "page", "per_page"}

    def body_limit(self) -> int:  # uploads: the gate's total limit plus the multipart framing
        return self.service.limits.max_total_bytes + bodies.MULTIPART_OVERHEAD

    @property
    def body_types(self) -> set[str]:  # type: ignore[override]
        return {"multipart/form-data"}

    async def get(self) -> None:
        project = self.get_query_argument("project", None)
        scope, author = self.get_query_argument("scope", "mine"), self.get_query_argument("author", None)
        if self.workspace_project is not None:  # its user's own requests: others' names and states are not its
            self.check_workspace(project or self.workspace_project, author, scope)
            project = self.workspace_project
        page = await self.call(self.service.list_page, self.user, project=project, scope=scope,
                               state=self.get_query_argument("state", None), author=author,
                               page=int_argument(self, "page", 1),
                               per_page=int_argument(self, "per_page", DEFAULT_PER_PAGE))
        self.send_json(page.to_dict())

    async def post(self) -> None:
        args = self.form_fields({"project", "justification", "author", "submit", "context"}, files=True)
        if args["submit"] not in {"", "true", "false"}:
            raise InvalidInput("submit is true or false")
        self.check_workspace(args["project"])
        context = bodies.parse_json_field(args["context"], "context")
        files = self.uploaded_files()
        view = await self.call(self.service.create, self.user, args["project"], files, args["justification"],
                               context, author=args["author"] or None, submit=args["submit"] != "false")
        self.send_json(view.to_dict(), status=201)


class RequestApi(WorkspaceApiHandler):
    async def get(self, request_id: str) -> None:
        await self.check_request_project(request_id)
        view = await self.call(self.service.get_request, self.user, request_id)
        self.send_json(view.to_dict())


class ActionApi(WorkspaceApiHandler):
    async def post(self, request_id: str, action: str) -> None:
        if self.workspace_project is not None:
            if action not in {"submit", "withdraw"}:
                self.check_workspace("")  # reviews, release, revoke: never from a workspace
            await self.check_request_project(request_id)
        body = self.json_body()
        if action == "submit":
            bodies.check_fields(body, set())
            view = await self.call(self.service.submit, self.user, request_id)
        elif action == "withdraw":
            view = await self.call(self.service.withdraw, self.user, request_id, bodies.reason_of(body))
        elif action == "revoke":
            view = await self.call(self.service.revoke, self.user, request_id, bodies.reason_of(body))
        elif action == "release":
            bodies.check_fields(body, set())
            view = await self.call(self.service.release, self.user, request_id)
        elif action == "reviews":
            view = await self.call(self.service.review, self.user, request_id, bodies.verdicts_of(body))
        else:  # pragma: no cover - the route only matches the names above
            raise HTTPError(404)
        self.send_json(view.to_dict())


class ResubmitApi(WorkspaceApiHandler):
    """Answer a request for changes: replaced or added files (by name), removed names, new justification."""

    def body_limit(self) -> int:
        return self.service.limits.max_total_bytes + bodies.MULTIPART_OVERHEAD

    @property
    def body_types(self) -> set[str]:  # type: ignore[override]
        return {"multipart/form-data"}

    async def post(self, request_id: str) -> None:
        await self.check_request_project(request_id)
        args = self.form_fields({"justification", "acro"}, {"remove"}, files=True)
        remove = [n for n in args["remove"] if n]
        acro = bodies.parse_json_field(args["acro"], "acro")
        files = self.uploaded_files()
        view = await self.call(self.service.resubmit, self.user, request_id, files, remove,
                               args["justification"] or None, acro or None)
        self.send_json(view.to_dict())


class ImportUpload:
    """Mixin of the import upload (API and page): the body may hold one import (its size limit plus
    the multipart framing); a workspace's token never gets here (``from_workspace`` is False, and
    the service refuses a workspace caller again: :func:`..permissions.check_import`)."""

    def body_limit(self) -> int:
        return ImportService(self.service).limits.max_file_bytes + bodies.MULTIPART_OVERHEAD

    @property
    def body_types(self) -> set[str]:
        return {"multipart/form-data"}

    async def create_import(self):
        args = self.form_fields({"project", "justification", "kind"} | ({"_xsrf"} if not self.api else set()),
                                files=True)
        return await self.call(ImportService(self.service).create, self.user, args["project"],
                               self.uploaded_files(), args["justification"], kind=args["kind"] or "files",
                               from_workspace=self.workspace_project is not None)


class ImportsApi(ImportUpload, ApiHandler):
    """``POST api/imports``: multipart ``project``, ``justification``, ``kind`` (files | cohort), ``files``."""

    async def post(self) -> None:
        view = await self.create_import()
        self.send_json(view.to_dict(), status=201)


class StagedFileApi(ApiHandler):
    """A staged file, for the project's output checkers only (the service decides), never with a
    workspace's token (its bytes would enter a workspace before any approval)."""

    async def get(self, request_id: str, index: str) -> None:
        await self.check_request_project(request_id)
        view, path = await self.call(self.service.open_staged, self.user, request_id, int(index))
        await self.send_path(view.name, path, inline=False)


class DownloadApi(ApiHandler):
    async def get(self, request_id: str, index: str) -> None:
        name, path = await self.call(self.service.download, self.user, request_id, int(index))
        await self.send_path(name, path, inline=False)


# ---- HTML pages ------------------------------------------------------------------------------------


def int_argument(handler: BaseHandler, name: str, default: int, *, empty_is_default: bool = False) -> int:
    """Query argument ``name`` as a whole number of at most 9 digits 0-9, ``default`` when absent
    (or empty, for a page whose forms may send it empty). Anything else is refused: blanks,
    signs, and the other digits ``int()`` would read (``٣``, ``３``) are not an integer on the wire."""
    raw = handler.get_query_argument(name, None, strip=False)
    if raw is None or (raw == "" and empty_is_default):
        return default
    if not is_digits(raw, 9):
        raise InvalidInput(f"{name} must be a positive whole number (digits 0-9)")
    return int(raw)
