"""Packages: requests for Python packages and the approved wheels the package index serves.

Two new tables (``pds_kernel.packages.models``); an upgraded platform starts with none.

Revision ID: 0007_packages_index
Revises: 0006_permissions_project_end
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_packages_index"
down_revision = "0006_permissions_project_end"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "package_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.Text(), nullable=False),
    )
    for column in ("name", "project_id", "requested_by", "state"):
        op.create_index(f"ix_package_requests_{column}", "package_requests", [column])
    op.create_table(
        "package_files",
        sa.Column("file", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("licence", sa.String(300), nullable=False),
        sa.Column("requires_python", sa.String(100), nullable=False),
        sa.Column("approved_for", sa.String(200), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_package_files_name", "package_files", ["name"])


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
