"""Projects: the airlock's pre-gate on rows per exported table (``max_table_rows``).

``NULL`` means the platform default (``disclosure.max_table_rows`` in the settings), so every
existing project keeps the default until an admin sets its own.

Revision ID: 0003_project_max_table_rows
Revises: 0002_audit_keyed_chain
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_project_max_table_rows"
down_revision = "0002_audit_keyed_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_projects", sa.Column("max_table_rows", sa.Integer(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
