"""Detached, read-only views of the registry's rows (safe to pass around after the session
closed): what :class:`~pds_kernel.registry.service.Registry` returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .models import Membership, Project, ProjectStatus, Role, User


@dataclass(frozen=True)
class ProjectInfo:
    """A detached, read-only view of a project (safe to pass around after the session closed)."""

    id: str
    title: str
    purpose: str
    data_controller: str
    approval_ref: str
    start_date: date
    end_date: date
    status: ProjectStatus
    min_cell: int | None
    reviews_required: int | None
    max_table_rows: int | None
    cpu_limit: float
    mem_limit_mb: int
    dask_workers: int
    gpu: bool
    closed_on: date | None = None
    halted: bool = False
    halt_reason: str = ""
    purge_requested_by: str | None = None
    purged: bool = False

    def is_open(self, today: date) -> bool:
        return (self.status == ProjectStatus.ACTIVE and not self.halted
                and self.start_date <= today <= self.end_date)


@dataclass(frozen=True)
class MemberInfo:
    project_id: str
    user_name: str
    role: Role
    expires_on: date
    granted_by: str | None = None  #: who granted it or last extended it (None: before revision 0009)
    approved_by: str | None = None  #: who approved that grant; None while pending

    @property
    def pending(self) -> bool:
        """Waiting for a second administrator (:meth:`Registry.approve_member`): grants nothing."""
        return self.approved_by is None


@dataclass(frozen=True)
class UserInfo:
    name: str
    full_name: str
    email: str
    is_admin: bool
    active: bool
    admin_granted_by: str | None = None  #: who made them an active administrator (None: before 0011)
    admin_approved_by: str | None = None  #: who approved that; None while pending

    @property
    def admin_pending(self) -> bool:
        """Made an administrator, waiting for a second one (:meth:`Registry.approve_administrator`):
        no administrator until then (:func:`pds_kernel.permissions.is_administrator`)."""
        return self.is_admin and self.admin_approved_by is None


def _project_info(p: Project) -> ProjectInfo:
    return ProjectInfo(
        id=p.id, title=p.title, purpose=p.purpose, data_controller=p.data_controller,
        approval_ref=p.approval_ref, start_date=p.start_date, end_date=p.end_date,
        status=ProjectStatus(p.status), min_cell=p.min_cell, reviews_required=p.reviews_required,
        max_table_rows=p.max_table_rows,
        cpu_limit=p.cpu_limit, mem_limit_mb=p.mem_limit_mb, dask_workers=p.dask_workers, gpu=p.gpu,
        closed_on=p.closed_on, halted=p.halted_at is not None, halt_reason=p.halt_reason or "",
        purge_requested_by=p.purge_requested_by, purged=p.purged_at is not None,
    )


def _member_info(m: Membership, *, sealed: bool) -> MemberInfo:
    """``sealed``: the row's approval carries the registry's seal (:mod:`.seals`); without it the
    membership is shown, and counts, as pending."""
    return MemberInfo(m.project_id, m.user_name, Role(m.role), m.expires_on, m.granted_by,
                      m.approved_by if sealed else None)


def _user_info(u: User, *, sealed: bool) -> UserInfo:
    """``sealed``: as for :func:`_member_info`, of the administrator's approval."""
    return UserInfo(u.name, u.full_name, u.email, u.is_admin, u.active, u.admin_granted_by,
                    u.admin_approved_by if sealed else None)


PROJECT_FIELDS = (
    "title", "purpose", "data_controller", "approval_ref", "start_date", "end_date", "status",
    "min_cell", "reviews_required", "max_table_rows", "cpu_limit", "mem_limit_mb", "dask_workers", "gpu",
)
