"""Airlock tables (SQLAlchemy). Storage only: rules live in :mod:`.states`, :mod:`.permissions`
and :mod:`.service` (the only writer).

A request (an export or an import: ``direction``) owns its staged files; a review is one checker's verdict on one version of one file,
bound to that file's SHA-256 so that a changed file silently loses every review of its old bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ExportRequest(Base):
    __tablename__ = "airlock_requests"
    #: The lists (:mod:`.listing`) read pages newest first, by state, project or author: each
    #: filter has an index ending in the sort order, so a page is read without a full scan.
    __table_args__ = (
        Index("ix_airlock_requests_created", "created_at", "id"),
        Index("ix_airlock_requests_state_created", "state", "created_at"),
        Index("ix_airlock_requests_project_created", "project_id", "created_at"),
        Index("ix_airlock_requests_author_created", "author", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(40), index=True)
    author: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(30), index=True)
    #: ``export`` (results leaving a workspace) or ``import`` (files brought into one, see
    #: :mod:`.imports`): one model, one transition table for both directions
    direction: Mapped[str] = mapped_column(String(10), index=True, default="export", server_default="export")
    justification: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[str] = mapped_column(Text, default="{}")  #: JSON: notebook, ACRO records...
    reviews_required: Mapped[int] = mapped_column(Integer)  #: fixed at submission
    min_cell: Mapped[int] = mapped_column(Integer)  #: threshold the checks used
    round: Mapped[int] = mapped_column(Integer, default=1)  #: +1 at each resubmission
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    #: set by the one release in progress (conditional UPDATE); guards against double release
    release_claim: Mapped[str | None] = mapped_column(String(64), nullable=True)
    release_claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    files: Mapped[list[RequestFile]] = relationship(
        back_populates="request", cascade="all", order_by="RequestFile.index")
    reviews: Mapped[list[Review]] = relationship(
        back_populates="request", cascade="all", order_by="Review.id")


class RequestFile(Base):
    __tablename__ = "airlock_files"
    __table_args__ = (UniqueConstraint("request_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)  #: position in the request, how files are addressed
    name: Mapped[str] = mapped_column(String(255))  #: validated base name, never a path
    stored_name: Mapped[str] = mapped_column(String(300))  #: name under the staging directory
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    kind: Mapped[str] = mapped_column(String(20))  #: table | figure | text | model | other
    check_status: Mapped[str] = mapped_column(String(10), default="review")
    check_result: Mapped[str] = mapped_column(Text, default="{}")  #: JSON of checks.FileCheck

    request: Mapped[ExportRequest] = relationship(back_populates="files")


class Review(Base):
    __tablename__ = "airlock_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(64), index=True)
    file_index: Mapped[int] = mapped_column(Integer)
    file_sha256: Mapped[str] = mapped_column(String(64))  #: the bytes this verdict is about
    decision: Mapped[str] = mapped_column(String(20))  #: approve | request_changes | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    round: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

    request: Mapped[ExportRequest] = relationship(back_populates="reviews")
