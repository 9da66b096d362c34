"""The objects an entry point builds once from the settings and passes down.

``Runtime`` owns the database engine, the session factory and the audit trail. Entry points (CLI,
hub configuration, airlock service) create one; library code receives it as an argument and never
reaches for a global.

The database layer (SQLAlchemy, the audit store) is imported when first used, not with this
module: an ingest starts parsing while it loads, instead of waiting for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from .audit import AuditTrail


@dataclass
class Runtime:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from .db import make_engine
            from .schema import check_schema

            engine = make_engine(self.settings.database_url)
            try:
                check_schema(engine)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from .db import session_factory

        return session_factory(self.engine)

    @cached_property
    def audit(self) -> AuditTrail:
        from .audit import AuditTrail
        from .audit_anchor import FileAnchorStore
        from .audit_key import load_keyring

        keyring = load_keyring(self.settings.audit_key_file, create=self.settings.audit.create_key)
        return AuditTrail(self.sessions, keyring=keyring,
                          anchors=FileAnchorStore(self.settings.audit_anchor_file, keyring))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
