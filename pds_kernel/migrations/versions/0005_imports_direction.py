"""Airlock: the direction of a request (``export`` or ``import``).

Imports share the export request's table, states and transition table; a new column says which way
the files go. Existing rows are exports (server default), so an upgraded platform needs no data.

Revision ID: 0005_imports_direction
Revises: 0004_workspace_served_bytes
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_imports_direction"
down_revision = "0004_workspace_served_bytes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("airlock_requests") as batch:
        batch.add_column(sa.Column("direction", sa.String(10), nullable=False, server_default="export"))
        batch.create_index("ix_airlock_requests_direction", ["direction"])


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
