"""The schema of the platform database (registry, airlock, audit trail) and its migrations.

Migrations are Alembic revisions in ``pds_kernel/migrations/versions``. Three ways in:

- :func:`check_schema` (every :class:`~pds_kernel.runtime.Runtime`): an empty database gets the
  current schema at once (tables, append-only guards, stamped at the head revision); a database at
  the head is used as is; any other refuses with what to do. Services never migrate on their own.
- :func:`upgrade` (``pds db upgrade``, ``make run``, the chart's pre-install/pre-upgrade Job):
  brings a database to the head, idempotently, by running the revisions (from the baseline on for
  an empty database; a test checks they build exactly the models' schema). A database created before migrations existed (no
  ``alembic_version``, the tables of the baseline) is stamped with the baseline first. A database
  stamped with a revision this code does not know was upgraded by a newer release: refused, never
  downgraded.

Both take a lock for their whole transaction (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory
lock), so two processes starting on one new database do not both create it.

Only :func:`upgrade` imports Alembic (0.2 s, a fifth of a ``pds`` command's start): the check reads
the stamped revision with one query, knows the revisions from the file names of
``migrations/versions`` (a revision's id is its file's name, a linear chain in the order of the
names: ``tests/integration/test_schema_migrations.py`` checks Alembic agrees), and stamps a new
database in Alembic's own ``alembic_version`` table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from .audit import install_append_only_guards
from .db import Base, import_models
from .errors import IntegrityError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001_baseline"
#: tables of the baseline: their presence without ``alembic_version`` means "before migrations"
BASELINE_TABLES = frozenset({"registry_users", "registry_projects", "registry_memberships",
                             "airlock_requests", "airlock_files", "airlock_reviews", "audit_log"})
#: PostgreSQL advisory lock taken while the schema is checked, created or upgraded
_PG_LOCK = 0x70647364  # "pdsd"


#: Alembic's table of the stamped revision, as Alembic creates it
VERSION_TABLE = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                      PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def alembic_config(connection: Connection | None = None):
    """Alembic's configuration for our migrations (on ``connection`` when given)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def revisions() -> tuple[str, ...]:
    """Every revision this code knows, oldest first (the file names of ``migrations/versions``)."""
    return tuple(sorted(p.stem for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")))


def head_revision() -> str:
    """The newest revision this code knows."""
    return revisions()[-1]


def known_revisions() -> frozenset[str]:
    return frozenset(revisions())


def _stamp(connection: Connection, revision: str) -> None:
    """Record ``revision`` as the database's, as ``alembic stamp`` does."""
    VERSION_TABLE.create(connection, checkfirst=True)
    connection.execute(VERSION_TABLE.delete())
    connection.execute(VERSION_TABLE.insert().values(version_num=revision))


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  #: the stamped revision (None: not stamped)
    tables: frozenset[str]  #: platform tables present

    @property
    def empty(self) -> bool:
        return self.revision is None and not self.tables

    @property
    def before_migrations(self) -> bool:
        return self.revision is None and bool(self.tables)

    @property
    def current(self) -> bool:
        return self.revision == head_revision()

    @property
    def unknown(self) -> bool:
        return self.revision is not None and self.revision not in known_revisions()


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def read_state(connection: Connection) -> SchemaState:
    present = frozenset(inspect(connection).get_table_names())
    stamped = list(connection.execute(select(VERSION_TABLE.c.version_num))) if VERSION_TABLE.name in present else []
    if len(stamped) > 1:
        raise IntegrityError(f"the database is stamped with {len(stamped)} schema revisions "
                             f"({', '.join(sorted(r[0] for r in stamped))}): PDS Workspace has one line of revisions")
    import_models()
    return SchemaState(stamped[0][0] if stamped else None, present & frozenset(Base.metadata.tables))


def _refuse_unknown(state: SchemaState) -> None:
    if state.unknown:
        raise IntegrityError(
            f"the database is at schema revision {state.revision}, which this release does not "
            f"know (it knows up to {head_revision()}): a newer release upgraded it. Run that "
            "release, or restore the backup taken before its upgrade; pds never downgrades")


def _create_current(connection: Connection) -> None:
    """A new database: every table at once, the guards, stamped at the head."""
    Base.metadata.create_all(connection)
    install_append_only_guards(connection)
    _stamp(connection, head_revision())


def check_schema(engine: Engine) -> None:
    """Create the schema of an empty database; refuse a database that is not at the head."""
    with engine.begin() as connection:
        _lock(connection)
        state = read_state(connection)
        if state.current:
            missing = set(Base.metadata.tables) - state.tables
            if missing:
                raise IntegrityError(
                    f"the database is at schema revision {state.revision} but its tables "
                    f"{', '.join(sorted(missing))} are gone: it was tampered with or damaged; "
                    "restore it from a backup, then run `pds audit verify` (docs/audit.md)")
            return
        if state.empty:
            _create_current(connection)
            return
        _refuse_unknown(state)
        found = f"revision {state.revision}" if state.revision else "no revision (created before migrations)"
        raise IntegrityError(f"the database schema is at {found}, this release needs {head_revision()}: "
                             "run `pds db upgrade` (back the database up first, docs/deploy-kubernetes.md)")


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None  #: revision before (None: empty database, or created before migrations)
    after: str
    created: bool  #: the database was empty
    stamped_baseline: bool  #: created before migrations: stamped with the baseline, then upgraded

    @property
    def changed(self) -> bool:
        return self.created or self.before != self.after


def upgrade(engine: Engine) -> UpgradeResult:
    """Bring the database to the head revision (idempotent; never downgrades)."""
    from alembic import command

    with engine.begin() as connection:
        _lock(connection)
        state = read_state(connection)
        _refuse_unknown(state)
        if state.empty:  # every revision from the baseline on, as a production install runs them
            command.upgrade(alembic_config(connection), "head")
            return UpgradeResult(None, head_revision(), created=True, stamped_baseline=False)
        if state.before_migrations:
            missing = BASELINE_TABLES - state.tables
            if missing:
                raise IntegrityError(
                    f"the database has some platform tables but not {', '.join(sorted(missing))}, "
                    "and no schema revision: it was not created by PDS Workspace; refusing to guess")
            _stamp(connection, BASELINE)
        if not state.current:
            command.upgrade(alembic_config(connection), "head")
            log.info("database schema upgraded from %s to %s", state.revision or "before migrations",
                     head_revision())
        install_append_only_guards(connection)  # idempotent: puts back a guard someone dropped
        return UpgradeResult(state.revision, head_revision(), created=False,
                             stamped_baseline=state.before_migrations)
