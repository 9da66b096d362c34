"""The gate's HTML pages: thin, like the API (:mod:`.handlers`). Pages redirect an anonymous
visitor to the login (or answer 403), and their forms carry Tornado's XSRF token."""

from __future__ import annotations

from urllib.parse import urlencode

from tornado.web import HTTPError

from ...errors import InvalidInput
from ...permissions import projects_checked_by, projects_researched_by
from ...validate import is_digits
from ..states import State
from . import bodies
from .guidance import next_step
from .handlers import BaseHandler, ImportUpload, int_argument
from .render import model_plot, notebook_figure, redacted_file, render_file


class PageHandler(BaseHandler):
    def render_page(self, template: str, **values) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.templates.get_template(template).render(
            prefix=self.prefix, user=self.user, xsrf_form_html=self.xsrf_form_html, **values))


class NotFoundPage(PageHandler):
    """Any other address of the pages: the gate's 404 page, with the way back to the requests (it
    was Tornado's bare "404: Not Found", a dead end)."""

    known_address = False  # its address is the client's choice: never logged (.logs)

    def get(self, *args) -> None:  # after prepare: signed in (else sent to the login)
        raise HTTPError(404, "no page at this address: a request's page is requests/ followed by "
                             "its 32-character id, as in the link your notebook printed")


class HomePage(PageHandler):
    def get(self) -> None:
        self.redirect(self.prefix + "requests")


class ListPage(PageHandler):
    """The lists to review and mine, and with ``show=others`` the other requests one may see (a
    checker's whole projects: asked for, not computed at every visit), one page each
    (``<list>_page``), with the same filters (``state``, ``project``, ``author``): one indexed
    query per list, however many requests."""

    FILTERS = ("state", "project", "author")

    async def get(self) -> None:
        filters = {k: self.get_query_argument(k, "").strip() or None for k in self.FILTERS}
        per_page = int_argument(self, "per_page", LIST_PAGE_SIZE, empty_is_default=True)
        show_others = self.get_query_argument("show", "") == "others"
        # "To review" only for an output checker: it told researchers "Nothing waits for your review"
        checking = sorted(await self.call(projects_checked_by, self.service.registry, self.user))
        researching = bool(await self.call(projects_researched_by, self.service.registry, self.user))
        sections = (("queue",) if checking else ()) + (("mine", "others") if show_others else ("mine",))
        pages = {}
        for scope in sections:
            pages[scope] = await self.call(self.service.list_page, self.user, scope=scope, **filters,
                                           page=int_argument(self, f"{scope}_page", 1, empty_is_default=True),
                                           per_page=per_page)
        current = {f"{scope}_page": pages[scope].page for scope in sections}

        def link(scope: str | None = None, page: int = 1, *, others: bool = show_others) -> str:
            query: dict = {k: v for k, v in filters.items() if v}
            if per_page != LIST_PAGE_SIZE:
                query["per_page"] = per_page
            if others:
                query["show"] = "others"
            query.update(current if scope is None else {**current, f"{scope}_page": page})
            return self.prefix + "requests?" + urlencode(query)

        self.render_page("list.html", pages=pages, filters=filters, link=link, checking=checking,
                         researching=researching,
                         states=[s.value for s in State])


#: Rows per list on the list page.
LIST_PAGE_SIZE = 25


class RequestPage(PageHandler):
    async def get(self, request_id: str) -> None:
        view = await self.call(self.service.get_request, self.user, request_id)
        rendered = []
        for f in view.files:
            if view.contents_visible:  # a checker of the project: the service checks it again
                _, path = await self.call(self.service.open_staged, self.user, request_id, f.index)
                rendered.append(await self.call(render_file, f, path))
            else:
                rendered.append(redacted_file(f))
        self.render_page("request.html", req=view, rendered=rendered, next_step=next_step(view, self.user))


class FilePage(PageHandler):
    async def get(self, request_id: str, index: str) -> None:
        view, path = await self.call(self.service.open_staged, self.user, request_id, int(index))
        await self.send_path(view.name, path, inline=True)


class ModelPlotPage(PageHandler):
    """The ROC plot of the platform's attack of a model: for the project's checkers only (the
    service's :meth:`~.AirlockService.open_staged` decides and audits, as for the file itself)."""

    async def get(self, request_id: str, index: str) -> None:
        view, _ = await self.call(self.service.open_staged, self.user, request_id, int(index))
        data = model_plot(view.check)
        if data is None:
            raise HTTPError(404)
        self.set_header("Content-Type", "image/png")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        self.finish(data)


class NotebookFigurePage(PageHandler):
    """A figure a notebook's output shows (PNG or JPEG, checked to be one), under the notebook on
    the review page: it leaves with the notebook, so the checker sees it. For the project's checkers
    only (:meth:`~.AirlockService.open_staged` decides and audits, as for the file itself)."""

    async def get(self, request_id: str, index: str, cell: str, output: str) -> None:
        view, path = await self.call(self.service.open_staged, self.user, request_id, int(index))
        figure = None
        if view.name.lower().endswith(".ipynb") and view.kind == "code":
            text = (await self.call(path.read_bytes)).decode("utf-8", "replace")
            figure = notebook_figure(text, int(cell), int(output))
        if figure is None:
            raise HTTPError(404, "no figure in this output of the notebook")
        self.set_header("Content-Type", figure[0])
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        self.finish(figure[1])


class DownloadPage(PageHandler):
    async def get(self, request_id: str, index: str) -> None:
        name, path = await self.call(self.service.download, self.user, request_id, int(index))
        await self.send_path(name, path, inline=False)


class ImportPage(ImportUpload, PageHandler):
    def get(self) -> None:
        self.render_page("import.html")

    async def post(self) -> None:
        view = await self.create_import()
        self.redirect(f"{self.prefix}requests/{view.id}")


class ReviewForm(PageHandler):
    async def post(self, request_id: str) -> None:
        verdicts: dict[int, dict] = {}
        for key in self.request.body_arguments:
            if key == "_xsrf" or key.startswith(("comment_", "sha_")):
                continue
            number = key[len("decision_"):]
            if not key.startswith("decision_") or not is_digits(number, 6):
                raise InvalidInput(f"bad form field {key[:40]}")
            index = int(number)
            decision = self.get_body_argument(key)
            if not decision:
                continue
            verdicts[index] = {"decision": decision,
                               "comment": self.get_body_argument(f"comment_{index}", ""),
                               "sha256": bodies.check_sha256(self.get_body_argument(f"sha_{index}", ""),
                                                             f"the form's sha_{index} (reload the page)")}
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
