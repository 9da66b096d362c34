"""Workspaces: the budget of bytes each (user, project) workspace may show in the browser.

A new table, one token bucket per workspace (``pds_kernel.served_bytes``). A workspace without a
row starts with a full bucket, so an upgraded platform needs no data here.

Revision ID: 0004_workspace_served_bytes
Revises: 0003_project_max_table_rows
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_workspace_served_bytes"
down_revision = "0003_project_max_table_rows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_served_bytes",
        sa.Column("user", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("available", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("served", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
