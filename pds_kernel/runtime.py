"""The objects an entry point builds once from the settings and passes down.

``Runtime`` owns the database engine, the session factory and the audit trail. Entry points (CLI,
hub configuration, airlock service) create one; library code receives it as an argument and never
reaches for a global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .audit import AuditTrail
from .db import make_engine, session_factory
from .settings import Settings


@dataclass
class Runtime:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def audit(self) -> AuditTrail:
        return AuditTrail(self.sessions)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
