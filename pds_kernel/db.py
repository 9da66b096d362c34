"""Database engine and session handling shared by the registry, the airlock and the audit trail.

SQLite (the embedded default) gets ``BEGIN IMMEDIATE`` transactions so that writers serialise
(the hash chain of the audit trail needs one writer at a time) and foreign keys switched on.
PostgreSQL is used as is; the audit trail takes a table lock for its short append.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from .errors import NotFound

if TYPE_CHECKING:
    from .settings import Settings


class Base(DeclarativeBase):
    """Declarative base of every table of PDS Workspace (registry, airlock, audit)."""


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for another database or an in-memory one)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def check_database_exists(settings: Settings) -> None:
    """Refuse to go on when the configured SQLite database does not exist (a command that only
    reads must not create an empty one and report on it)."""
    path = sqlite_path(settings.database_url)
    if path is not None and not path.is_file():
        raise NotFound(f"no database at {path}: point --config (or $PDS_CONFIG) at the installation's "
                       "pds.yaml, or set PDS_DATABASE__URL")


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (its schema is :mod:`pds_kernel.schema`'s business)."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event drive transactions
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def import_models() -> None:
    """Import every module that declares tables on :class:`Base` (registry, airlock, audit)."""
    from . import audit  # noqa: F401

    for module in ("pds_kernel.registry.models", "pds_kernel.airlock.models", "pds_kernel.served_bytes",
                   "pds_kernel.packages.models"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:  # a component not installed yet
            if exc.name is None or not module.startswith(exc.name):
                raise


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
