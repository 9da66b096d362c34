"""Projects: the end of a project (retention clock, halt, two-administrator purge).

``closed_on`` starts the retention clock (``pds project close``), ``halted_at``/``halt_reason``
stop a project at once until lifted (``pds project halt`` / ``resume``), ``purge_requested_by``
holds the first administrator's approval of a purge and ``purged_at`` when it ran. All ``NULL`` on
existing rows: an upgraded project is neither halted nor waiting for a purge; a project closed
before this release has no ``closed_on`` and must be closed again to start its retention clock.

Revision ID: 0006_permissions_project_end
Revises: 0005_imports_direction
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_permissions_project_end"
down_revision = "0005_imports_direction"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_projects", sa.Column("closed_on", sa.Date(), nullable=True))
    op.add_column("registry_projects", sa.Column("halted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("registry_projects", sa.Column("halt_reason", sa.Text(), nullable=True))
    op.add_column("registry_projects", sa.Column("purge_requested_by", sa.String(64), nullable=True))
    op.add_column("registry_projects", sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
