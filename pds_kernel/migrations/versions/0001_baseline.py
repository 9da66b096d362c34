"""Baseline: the schema of the last release without migrations (commit 8444f71).

Registry (users, projects, memberships), airlock (requests, files, reviews) and the audit trail
with its append-only guards. A database created by that release has these tables but no
``alembic_version``: ``pds db upgrade`` stamps it with this revision, then upgrades it.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pds_kernel.audit import install_append_only_guards

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "registry_users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "registry_projects",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("data_controller", sa.String(length=300), nullable=False),
        sa.Column("approval_ref", sa.String(length=200), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("status", sa.Enum("active", "suspended", "closed", name="projectstatus",
                                    native_enum=False, length=20), nullable=False),
        sa.Column("min_cell", sa.Integer(), nullable=True),
        sa.Column("reviews_required", sa.Integer(), nullable=True),
        sa.Column("cpu_limit", sa.Float(), nullable=False),
        sa.Column("mem_limit_mb", sa.Integer(), nullable=False),
        sa.Column("dask_workers", sa.Integer(), nullable=False),
        sa.Column("gpu", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "registry_memberships",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.Enum("researcher", "output-checker", "admin", name="role",
                                  native_enum=False, length=20), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["registry_projects.id"]),
        sa.ForeignKeyConstraint(["user_name"], ["registry_users.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "user_name", "role"),
    )
    op.create_index("ix_registry_memberships_project_id", "registry_memberships", ["project_id"])
    op.create_index("ix_registry_memberships_user_name", "registry_memberships", ["user_name"])

    op.create_table(
        "airlock_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("reviews_required", sa.Integer(), nullable=False),
        sa.Column("min_cell", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("release_claim", sa.String(length=64), nullable=True),
        sa.Column("release_claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_airlock_requests_author", "airlock_requests", ["author"])
    op.create_index("ix_airlock_requests_project_id", "airlock_requests", ["project_id"])
    op.create_index("ix_airlock_requests_state", "airlock_requests", ["state"])
    op.create_table(
        "airlock_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("stored_name", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", _BIG, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("check_status", sa.String(length=10), nullable=False),
        sa.Column("check_result", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["airlock_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "index"),
    )
    op.create_index("ix_airlock_files_request_id", "airlock_files", ["request_id"])
    op.create_table(
        "airlock_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("file_index", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["airlock_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_airlock_reviews_request_id", "airlock_reviews", ["request_id"])
    op.create_index("ix_airlock_reviews_reviewer", "airlock_reviews", ["reviewer"])

    op.create_table(
        "audit_log",
        sa.Column("seq", _BIG, nullable=False),
        sa.Column("time", sa.String(length=40), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_log_project", "audit_log", ["project"])
    install_append_only_guards(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
