"""Alembic environment of the platform database (registry, airlock, audit trail).

Run through :mod:`pds_kernel.schema` (``pds db upgrade``), which passes an open connection in
``config.attributes["connection"]``; with ``alembic -x url=...`` (developers creating a revision)
an engine is made from that URL. The target metadata is the application's own (every model).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from pds_kernel.db import Base, import_models

import_models()
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run `pds db upgrade`")
run_migrations_online()
