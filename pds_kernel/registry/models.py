"""Registry tables (SQLAlchemy). Storage only: the rules live in :mod:`.service`."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime

from sqlalchemy import Boolean, Date, DateTime, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base


class Role(str, enum.Enum):
    """Project roles. ``ADMIN`` is a platform role held on the user, the others are per membership."""

    RESEARCHER = "researcher"
    OUTPUT_CHECKER = "output-checker"
    ADMIN = "admin"


class ProjectStatus(str, enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class User(Base):
    __tablename__ = "registry_users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: who last made the user an active administrator (created as one, promoted, reactivated: an
    #: audit actor); ``NULL`` for a user who is none, or an administrator made before 0011
    admin_granted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: who approved that; ``NULL`` while pending (``registry.membership_approvals: 2``): a pending
    #: administrator is no administrator. With one approval the maker's act approves itself.
    admin_approved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: the registry's seal of that approval (:mod:`pds_kernel.registry.seals`); an approval without
    #: a valid one is pending, whatever ``admin_approved_by`` says (0012)
    admin_seal: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)


class Project(Base):
    __tablename__ = "registry_projects"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(Text, default="")
    data_controller: Mapped[str] = mapped_column(String(300), default="")
    approval_ref: Mapped[str] = mapped_column(String(200), default="")
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    status: Mapped[ProjectStatus] = mapped_column(
        Enum(ProjectStatus, values_callable=lambda e: [m.value for m in e], native_enum=False, length=20),
        default=ProjectStatus.ACTIVE,
    )
    # disclosure control (None = platform default from settings.disclosure)
    min_cell: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reviews_required: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_table_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)  #: airlock pre-gate
    # workspace resources
    cpu_limit: Mapped[float] = mapped_column(Float, default=2.0)
    mem_limit_mb: Mapped[int] = mapped_column(Integer, default=4096)
    dask_workers: Mapped[int] = mapped_column(Integer, default=2)
    gpu: Mapped[bool] = mapped_column(Boolean, default=False)
    # end of the project (pds_kernel.project_end)
    closed_on: Mapped[date | None] = mapped_column(Date, nullable=True)  #: starts the retention clock
    halted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    halt_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    purge_requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  #: first admin
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    memberships: Mapped[list[Membership]] = relationship(back_populates="project", cascade="all")

    def is_open(self, today: date) -> bool:
        """Open = active status, not halted, and today within [start_date, end_date]."""
        return (self.status == ProjectStatus.ACTIVE and self.halted_at is None
                and self.start_date <= today <= self.end_date)


class Membership(Base):
    __tablename__ = "registry_memberships"
    __table_args__ = (UniqueConstraint("project_id", "user_name", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("registry_projects.id"), index=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("registry_users.name"), index=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, values_callable=lambda e: [m.value for m in e], native_enum=False, length=20)
    )
    expires_on: Mapped[date] = mapped_column(Date)
    #: who granted it, or last extended its expiry (an audit actor: ``"root"``, ``"root acting as
    #: ada"``, ``"service:registry-sync"``); ``NULL`` for memberships granted before 0009
    granted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: who approved that grant; ``NULL`` while it is pending (``registry.membership_approvals: 2``):
    #: a pending membership grants nothing. With one approval the granter's grant approves itself.
    approved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: the registry's seal of that approval (:mod:`pds_kernel.registry.seals`); an approval without
    #: a valid one is pending, whatever ``approved_by`` says (0012)
    seal: Mapped[str | None] = mapped_column(String(64), nullable=True)

    project: Mapped[Project] = relationship(back_populates="memberships")

    @property
    def pending(self) -> bool:
        return self.approved_by is None

    def is_valid(self, today: date) -> bool:
        """Valid through ``expires_on`` inclusive (approved or not: see :attr:`pending`)."""
        return today <= self.expires_on


#: ``approved_by`` of the memberships that existed before approvals were recorded (revision 0009)
APPROVED_BEFORE_RECORDING = "migration:0009"
#: ``admin_approved_by`` of the administrators that existed before their approval was recorded (0011)
ADMIN_APPROVED_BEFORE_RECORDING = "migration:0011"


class RegistryRule(Base):
    """A rule the registry keeps for every process that opens it, whatever that process's settings.

    ``membership_approvals``: the highest ``registry.membership_approvals`` of any process that has
    granted, approved or applied a file (a ratchet): a process whose setting is lower (its own
    environment or configuration file) works under this one, so one administrator cannot lower the two-person rule
    for the command that grants a membership."""

    __tablename__ = "registry_rules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


#: :class:`RegistryRule` name of the number of administrators a membership needs
MEMBERSHIP_APPROVALS_RULE = "membership_approvals"
#: ``seal`` and ``admin_seal`` of the approvals that existed at the upgrade to revision 0012, until
#: the registry seals them (:func:`pds_kernel.registry.seals.seal_approvals_of_upgrade`)
SEALED_BY_MIGRATION = "migration:0012"
