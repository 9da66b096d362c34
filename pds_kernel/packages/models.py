"""Package tables (SQLAlchemy). Storage only: the rules live in :mod:`.permissions` and
:mod:`.service` (the only writer).

A request is one researcher asking, for one project, for one package (a version or the newest);
an approved file is one wheel the index serves, with its SHA-256 and licence, and the approval that
brought it. Requests are platform-wide once approved: the index serves every approved wheel to
every workspace (an approved package is code, not data).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class PackageRequest(Base):
    __tablename__ = "package_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)  #: normalised (PEP 503)
    version: Mapped[str] = mapped_column(String(64), default="")  #: "" = the newest
    project_id: Mapped[str] = mapped_column(String(40), index=True)
    requested_by: Mapped[str] = mapped_column(String(64), index=True)
    justification: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(20), index=True)  #: requested | approved | refused
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: the exact release approved, or why it was refused
    decision: Mapped[str] = mapped_column(Text, default="")


class PackageFile(Base):
    __tablename__ = "package_files"

    file: Mapped[str] = mapped_column(String(255), primary_key=True)  #: wheel file name
    name: Mapped[str] = mapped_column(String(100), index=True)  #: normalised project name
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    licence: Mapped[str] = mapped_column(String(300))
    requires_python: Mapped[str] = mapped_column(String(100), default="")
    #: the requirement (``name==version``) whose approval brought this file
    approved_for: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
