"""The platform at a glance, for administrators: a read-only model of projects, members and their
expiry, running workspaces, extracts and the lake snapshot they were built from, export requests
waiting for review, and the state of the audit chain.

Read only: nothing here changes the registry, the hub or a request (actions stay in the ``pds``
command and in Helm). The one decision, who may see it, is :func:`check_platform_viewer`, called
by :func:`build_overview` itself, so no page can skip it. The hub serves it at ``/hub/platform``
(:mod:`pds_kernel.hub.platform`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import func, select

from .audit import AuditEvent, Outcome
from .errors import PermissionDenied
from .permissions import can_view_platform, check_platform_viewer  # noqa: F401  (re-exported)
from .registry import Registry

#: Export request states in which a request waits for checkers.
WAITING_STATES = ("submitted", "under_review")
#: A membership that ends within this many days is flagged on the page.
EXPIRY_WARNING_DAYS = 30
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Member:
    user: str
    role: str
    expires_on: date
    expired: bool
    expires_soon: bool
    pending: bool = False  #: waiting for a second administrator's approval: grants nothing yet


@dataclass(frozen=True)
class ProjectRow:
    id: str
    title: str
    status: str
    start_date: date
    end_date: date
    members: tuple[Member, ...]
    extract_built_at: str  #: "" when the project has no extract
    extract_build_id: str
    lake_snapshot: str
    persons: int | None
    waiting_requests: int


@dataclass(frozen=True)
class Workspace:
    user: str
    project: str
    started: str
    last_activity: str


@dataclass(frozen=True)
class AuditState:
    ok: bool
    entries: int
    problems: tuple[str, ...]
    anchor_store: str


@dataclass(frozen=True)
class Overview:
    today: date
    projects: tuple[ProjectRow, ...]
    workspaces: tuple[Workspace, ...]
    requests_by_state: dict[str, int] = field(default_factory=dict)
    audit: AuditState | None = None

    @property
    def waiting_requests(self) -> int:
        return sum(self.requests_by_state.get(s, 0) for s in WAITING_STATES)


def _extract(projects_dir: Path, project: str) -> dict:
    path = projects_dir / project / "extract" / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _requests(runtime) -> tuple[dict[str, int], dict[str, int]]:
    """(count by state, waiting count by project) of export requests."""
    from .airlock.models import ExportRequest

    with runtime.sessions() as s:
        by_state = dict(s.execute(select(ExportRequest.state, func.count())
                                  .group_by(ExportRequest.state)).all())
        waiting = dict(s.execute(select(ExportRequest.project_id, func.count())
                                 .where(ExportRequest.state.in_(WAITING_STATES))
                                 .group_by(ExportRequest.project_id)).all())
    return by_state, waiting


def build_overview(runtime, registry: Registry, actor: str, workspaces: list[Workspace], *,
                   today: date | None = None, verify_audit: bool = True) -> Overview:
    """The platform overview as ``actor`` may see it (checked, and the viewing audited).

    ``workspaces`` come from the hub (it alone knows which servers run). ``verify_audit`` re-checks
    the whole audit chain (and anchors its head, as ``pds audit verify`` does)."""
    try:
        check_platform_viewer(registry, actor)
    except PermissionDenied as exc:
        runtime.audit.record(AuditEvent(actor=actor[:64], action="platform.view", target="platform",
                                        outcome=Outcome.DENIED, details={"reason": str(exc)}))
        raise
    today = today or date.today()
    by_state, waiting = _requests(runtime)
    rows = []
    for project in registry.projects():
        members = tuple(
            Member(m.user_name, m.role.value, m.expires_on, m.expires_on < today,
                   today <= m.expires_on <= date.fromordinal(today.toordinal() + EXPIRY_WARNING_DAYS), m.pending)
            for m in registry.members(project.id))
        manifest = _extract(runtime.settings.paths.projects, project.id)
        rows.append(ProjectRow(
            id=project.id, title=project.title, status=project.status.value,
            start_date=project.start_date, end_date=project.end_date, members=members,
            extract_built_at=str(manifest.get("built_at", "")), extract_build_id=str(manifest.get("build_id", "")),
            lake_snapshot=str(manifest.get("lake_snapshot", "") or ""),
            persons=manifest.get("persons") if isinstance(manifest.get("persons"), int) else None,
            waiting_requests=int(waiting.get(project.id, 0))))
    audit = None
    if verify_audit:
        report = runtime.audit.verify()
        audit = AuditState(ok=report.ok, entries=report.entries,
                           problems=tuple(str(p) for p in report.problems[:20]),
                           anchor_store=report.anchor_store)
    runtime.audit.record(AuditEvent(actor=actor, action="platform.view", target="platform"))
    return Overview(today=today, projects=tuple(rows),
                    workspaces=tuple(sorted(workspaces, key=lambda w: (w.project, w.user))),
                    requests_by_state=by_state, audit=audit)


def iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""
