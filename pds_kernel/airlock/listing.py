"""The request lists (the gate's list page and API, ``pds airlock list``): filters, visibility and
pages computed by the database, so that a page costs about the same with 50 or 50,000 requests.

Who sees what stays :mod:`.permissions`' decision (:func:`~.permissions.can_view`,
:func:`~.permissions.can_check`); it is asked once per list (the projects the actor checks or
researches now, and whether they are an admin) rather than once per request, and turned into a
SQL condition:

* ``mine``: the actor's own requests, in projects where they may still see them (researcher or
  checker of the project, or an admin);
* ``queue``: submitted or under-review requests of projects the actor checks now, not their own,
  and not those they already hold a complete review of this round (:func:`.reviews.complete_reviewers`,
  computed from their own reviews of open requests only);
* ``all``: every request the actor may see; ``others``: the same without their own.

Rows come newest first (``created_at``, then ``id``: a stable order for the page links), each
filter served by an index of :class:`.models.ExportRequest`; a page loads the files of its own rows
only (for the summary's worst check status).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import SimpleNamespace

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ..db import transaction
from ..errors import InvalidInput
from ..registry import Registry
from ..registry.names import check_project_id, check_user_name
from . import permissions
from .checks import Status, worst
from .models import ExportRequest, RequestFile, Review
from .reviews import complete_reviewers
from .states import REVIEWABLE_STATES, State
from .views import RequestSummary, iso

SCOPES = ("mine", "queue", "all", "others")
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500


@dataclass(frozen=True)
class ListQuery:
    """What to list: a scope and optional filters (all validated by :func:`check_query`)."""

    scope: str = "mine"
    project: str | None = None
    state: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class RequestPage:
    """One page of a list: its rows, the number of rows of the whole list, where it is."""

    items: list[RequestSummary]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    def to_dict(self) -> dict:
        return {"requests": [asdict(r) for r in self.items], "total": self.total, "page": self.page,
                "per_page": self.per_page, "pages": self.pages}


def check_query(query: ListQuery) -> ListQuery:
    if query.scope not in SCOPES:
        raise InvalidInput(f"unknown scope {query.scope[:40]!r}: use {', '.join(SCOPES)}")
    if query.project is not None:
        check_project_id(query.project)
    if query.author is not None:
        check_user_name(query.author)
    if query.state is not None and query.state not in {s.value for s in State}:
        raise InvalidInput(f"unknown state {query.state[:40]!r}: use one of {', '.join(s.value for s in State)}")
    return query


def check_page(page: int, per_page: int) -> tuple[int, int]:
    if not isinstance(page, int) or page < 1:
        raise InvalidInput("page numbers start at 1")
    if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(f"per page: give a number from 1 to {MAX_PER_PAGE}")
    return page, per_page


@dataclass(frozen=True)
class _Rights:
    """The actor's rights, asked of :mod:`.permissions` before any transaction of ours (the
    registry opens its own, and SQLite allows one writer at a time)."""

    admin: bool
    checks: list[str]
    researches: list[str]

    @classmethod
    def of(cls, registry: Registry, actor: str) -> _Rights:
        return cls(permissions.is_admin(registry, actor),
                   sorted(permissions.projects_checked_by(registry, actor)),
                   sorted(permissions.projects_researched_by(registry, actor)))


def _completed_by(session: Session, actor: str, projects: list[str]) -> list[str]:
    """Open requests of ``projects`` the actor holds a complete review of (out of their queue).

    :func:`.reviews.complete_reviewers` decides, on the columns it reads (the request's round, its
    files' index, SHA-256 and staged name, the actor's own verdicts in order) rather than on whole rows: a busy
    checker may hold reviews on thousands of open requests."""
    open_states = [s.value for s in REVIEWABLE_STATES]
    reviewed = (select(Review.request_id).join(ExportRequest)
                .where(Review.reviewer == actor, ExportRequest.project_id.in_(projects),
                       ExportRequest.state.in_(open_states)).distinct())
    requests = {rid: SimpleNamespace(round=rnd, files=[], reviews=[]) for rid, rnd in session.execute(
        select(ExportRequest.id, ExportRequest.round).where(ExportRequest.id.in_(reviewed)))}
    if not requests:
        return []
    for rid, index, sha, stored in session.execute(
            select(RequestFile.request_id, RequestFile.index, RequestFile.sha256, RequestFile.stored_name)
            .where(RequestFile.request_id.in_(reviewed))):
        requests[rid].files.append(SimpleNamespace(index=index, sha256=sha, stored_name=stored))
    for rid, index, sha, decision, rnd in session.execute(
            select(Review.request_id, Review.file_index, Review.file_sha256, Review.decision, Review.round)
            .where(Review.reviewer == actor, Review.request_id.in_(reviewed)).order_by(Review.id)):
        requests[rid].reviews.append(SimpleNamespace(reviewer=actor, file_index=index, file_sha256=sha,
                                                     decision=decision, round=rnd))
    return [rid for rid, req in requests.items() if actor in complete_reviewers(req)]


def visible(session: Session, rights: _Rights, actor: str, query: ListQuery) -> ColumnElement[bool]:
    """The SQL condition of the rows ``actor`` gets for ``query`` (scope, visibility, filters)."""
    own = ExportRequest.author == actor
    if query.scope == "queue":
        if not rights.checks:
            return false()
        condition = and_(ExportRequest.project_id.in_(rights.checks), ExportRequest.author != actor,
                         ExportRequest.state.in_([s.value for s in REVIEWABLE_STATES]))
        done = _completed_by(session, actor, rights.checks)
        if done:
            condition = and_(condition, ExportRequest.id.not_in(done))
    else:
        # permissions.can_view: the author while a researcher of the project, its checkers, admins
        seen = true() if rights.admin else or_(ExportRequest.project_id.in_(rights.checks),
                                               and_(own, ExportRequest.project_id.in_(rights.researches)))
        condition = {"mine": and_(own, seen), "all": seen, "others": and_(ExportRequest.author != actor, seen)}[
            query.scope]
    if query.project is not None:
        condition = and_(condition, ExportRequest.project_id == query.project)
    if query.state is not None:
        condition = and_(condition, ExportRequest.state == query.state)
    if query.author is not None:
        condition = and_(condition, ExportRequest.author == query.author)
    return condition


def _summary(req: ExportRequest) -> RequestSummary:
    return RequestSummary(req.id, req.project_id, req.author, req.state,
                          worst(Status(f.check_status) for f in req.files).value, len(req.files),
                          iso(req.created_at), iso(req.updated_at), req.direction or "export")


def read_page(sessions: sessionmaker[Session], registry: Registry, actor: str, query: ListQuery, *,
              page: int = 1, per_page: int | None = DEFAULT_PER_PAGE) -> RequestPage:
    """Page ``page`` of the list (``per_page=None``: the whole list as one page)."""
    check_query(query)
    if per_page is not None:
        page, per_page = check_page(page, per_page)
    rights = _Rights.of(registry, actor)
    with transaction(sessions) as s:
        condition = visible(s, rights, actor, query)
        rows = (select(ExportRequest).where(condition)
                .order_by(ExportRequest.created_at.desc(), ExportRequest.id.desc())
                .options(selectinload(ExportRequest.files)))
        if per_page is None:
            items = [_summary(r) for r in s.scalars(rows)]
            return RequestPage(items, len(items), 1, max(1, len(items)))
        total = s.scalar(select(func.count()).select_from(ExportRequest).where(condition)) or 0
        items = [_summary(r) for r in s.scalars(rows.limit(per_page).offset((page - 1) * per_page))]
    return RequestPage(items, total, page, per_page)
