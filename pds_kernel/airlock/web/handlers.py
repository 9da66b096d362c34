"""Tornado handlers: thin. Resolve the identity, call the service, map errors to HTTP.

Files are addressed by request id + file index, never by a path. JSON API handlers answer 401
without a token identity; pages redirect to the login (or answer 403). Forms carry Tornado's XSRF
token; the API, authenticated by a token header and never by a cookie, is exempt.
"""

from __future__ import annotations

import io
import json
import logging
import mimetypes
from functools import partial
from typing import Any

from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from ...audit import AuditEvent, Outcome
from ...errors import InvalidInput, PdsError, PermissionDenied
from ..service import AirlockService
from .render import render_file

log = logging.getLogger(__name__)

_INLINE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".pdf": "application/pdf"}


class BaseHandler(RequestHandler):
    api = False
    #: reachable with a workspace's own token (confined to its project); else users only
    from_workspace = False

    def initialize(self, service: AirlockService, identity, templates, prefix: str):
        self.service = service
        self.identity = identity
        self.templates = templates
        self.prefix = prefix
        self.user: str | None = None
        self.workspace_project: str | None = None  #: set by the identity for a workspace's token

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "SAMEORIGIN")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Content-Security-Policy",
                        "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                        "object-src 'self'; script-src 'none'; frame-ancestors 'self'; form-action 'self'")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        self.user = await self.identity.user(self, api=self.api)
        if self.user is None:
            if self.api:
                raise HTTPError(401)
            url = self.identity.login_url(self)
            if url and self.request.method == "GET":
                self.redirect(url)
                return
            raise HTTPError(403)
        if self.workspace_project is not None and not self.from_workspace:
            self.check_workspace("")
        if self.request.method not in {"GET", "HEAD", "OPTIONS"} and not self.api:
            self.check_xsrf_cookie()

    def check_workspace(self, project: str) -> None:
        """Code in a workspace acts only on its own project's requests (audited refusal)."""
        if self.workspace_project is None or project == self.workspace_project:
            return
        exc = PermissionDenied(f"a workspace of project {self.workspace_project} can only submit and "
                               f"follow that project's export requests")
        self.service.runtime.audit.record(AuditEvent(
            actor=self.user or "?", action="airlock.access.workspace", target=f"path:{self.request.path[:200]}",
            project=self.workspace_project, outcome=Outcome.DENIED,
            details={"reason": str(exc), "asked_project": project[:64], "method": self.request.method}))
        raise exc

    async def check_request_project(self, request_id: str) -> None:
        if self.workspace_project is not None:
            view = await self.call(self.service.get_request, self.user, request_id)
            self.check_workspace(view.project)

    def check_xsrf_cookie(self) -> None:
        # Pages: Tornado's check, called once identity is known (in prepare). API: token auth only.
        if not self.api:
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
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(self.templates.get_template("error.html").render(
                status=status_code, message=message, prefix=self.prefix, user=self.user))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, PdsError):
            log.info("%s %s -> %s: %s", self.request.method, self.request.path, type(value).__name__, value)
        else:
            super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, PdsError):
            self.log_exception(type(e), e, e.__traceback__)
            self.send_error(e.http_status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def json_body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidInput("the request body must be a JSON object")
        return data

    def json_object_argument(self, name: str) -> dict:
        """A form field holding a JSON object; an empty or missing field is ``{}``."""
        raw = self.get_body_argument(name, "")
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            raise InvalidInput(f"{name} must be a JSON object") from None
        if not isinstance(value, dict):
            raise InvalidInput(f"{name} must be a JSON object")
        return value

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


class OpenApiHandler(RequestHandler):
    def initialize(self, document: dict):
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.document))


class MeHandler(WorkspaceApiHandler):
    def get(self) -> None:
        self.send_json({"name": self.user})


class RequestsApi(WorkspaceApiHandler):
    async def get(self) -> None:
        project = self.get_query_argument("project", None)
        if self.workspace_project is not None:
            self.check_workspace(project or self.workspace_project)
            project = self.workspace_project
        rows = await self.call(self.service.list_requests, self.user, project=project,
                               scope=self.get_query_argument("scope", "mine"),
                               state=self.get_query_argument("state", None))
        self.send_json({"requests": [vars(r) for r in rows]})

    async def post(self) -> None:
        args = {k: self.get_body_argument(k, "") for k in ("project", "justification", "author", "submit")}
        self.check_workspace(args["project"])
        context = self.json_object_argument("context")
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
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise InvalidInput("reason must be text")
        if action == "submit":
            view = await self.call(self.service.submit, self.user, request_id)
        elif action == "withdraw":
            view = await self.call(self.service.withdraw, self.user, request_id, reason)
        elif action == "revoke":
            view = await self.call(self.service.revoke, self.user, request_id, reason)
        elif action == "release":
            view = await self.call(self.service.release, self.user, request_id)
        elif action == "reviews":
            verdicts = body.get("verdicts")
            if not isinstance(verdicts, dict) or set(body) - {"verdicts"}:
                raise InvalidInput("send {\"verdicts\": {file index: {decision, comment, sha256}}}")
            view = await self.call(self.service.review, self.user, request_id, verdicts)
        else:  # pragma: no cover - the route only matches the names above
            raise HTTPError(404)
        self.send_json(view.to_dict())


class ResubmitApi(WorkspaceApiHandler):
    """Answer a request for changes: replaced or added files (by name), removed names, new justification."""

    async def post(self, request_id: str) -> None:
        await self.check_request_project(request_id)
        remove = [n for n in self.get_body_arguments("remove") if n]
        justification = self.get_body_argument("justification", "") or None
        acro = self.json_object_argument("acro")
        files = self.uploaded_files()
        view = await self.call(self.service.resubmit, self.user, request_id, files, remove, justification,
                               acro or None)
        self.send_json(view.to_dict())


class StagedFileApi(WorkspaceApiHandler):
    async def get(self, request_id: str, index: str) -> None:
        await self.check_request_project(request_id)
        view, path = await self.call(self.service.open_staged, self.user, request_id, int(index))
        await self.send_path(view.name, path, inline=not self.api)


class DownloadApi(ApiHandler):
    async def get(self, request_id: str, index: str) -> None:
        name, path = await self.call(self.service.download, self.user, request_id, int(index))
        await self.send_path(name, path, inline=False)


# ---- HTML pages ------------------------------------------------------------------------------------
class PageHandler(BaseHandler):
    def render_page(self, template: str, **values) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.templates.get_template(template).render(
            prefix=self.prefix, user=self.user, xsrf_form_html=self.xsrf_form_html, **values))


class HomePage(PageHandler):
    def get(self) -> None:
        self.redirect(self.prefix + "requests")


class ListPage(PageHandler):
    async def get(self) -> None:
        mine = await self.call(self.service.list_requests, self.user, scope="mine")
        queue = await self.call(self.service.list_requests, self.user, scope="queue")
        others = await self.call(self.service.list_requests, self.user, scope="all")
        self.render_page("list.html", mine=mine, queue=queue,
                         others=[r for r in others if r.author != self.user])


class RequestPage(PageHandler):
    async def get(self, request_id: str) -> None:
        view = await self.call(self.service.get_request, self.user, request_id)
        rendered = []
        for f in view.files:
            _, path = await self.call(self.service.open_staged, self.user, request_id, f.index)
            rendered.append(await self.call(render_file, f, path))
        self.render_page("request.html", req=view, rendered=rendered)


class FilePage(PageHandler):
    async def get(self, request_id: str, index: str) -> None:
        view, path = await self.call(self.service.open_staged, self.user, request_id, int(index))
        await self.send_path(view.name, path, inline=True)


class DownloadPage(PageHandler):
    async def get(self, request_id: str, index: str) -> None:
        name, path = await self.call(self.service.download, self.user, request_id, int(index))
        await self.send_path(name, path, inline=False)


class ReviewForm(PageHandler):
    async def post(self, request_id: str) -> None:
        verdicts: dict[int, dict] = {}
        for key in self.request.body_arguments:
            if key.startswith("decision_"):
                try:
                    index = int(key[len("decision_"):])
                except ValueError:
                    raise InvalidInput(f"bad form field {key}") from None
                decision = self.get_body_argument(key)
                if not decision:
                    continue
                verdicts[index] = {"decision": decision,
                                   "comment": self.get_body_argument(f"comment_{index}", ""),
                                   "sha256": self.get_body_argument(f"sha_{index}", "")}
        await self.call(self.service.review, self.user, request_id, verdicts)
        self.redirect(f"{self.prefix}requests/{request_id}")


class ActionForm(PageHandler):
    async def post(self, request_id: str, action: str) -> None:
        reason = self.get_body_argument("reason", "")
        if action == "withdraw":
            await self.call(self.service.withdraw, self.user, request_id, reason)
        elif action == "revoke":
            await self.call(self.service.revoke, self.user, request_id, reason)
        elif action == "release":
            await self.call(self.service.release, self.user, request_id)
        elif action == "submit":
            await self.call(self.service.submit, self.user, request_id)
        else:  # pragma: no cover
            raise HTTPError(404)
        self.redirect(f"{self.prefix}requests/{request_id}")
