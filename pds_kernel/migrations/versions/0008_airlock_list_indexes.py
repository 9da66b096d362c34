"""Airlock: indexes for the request lists (paginated, filtered by state, project and author).

The lists read one page at a time, newest first (``created_at``, then ``id``); each filter gets an
index ending in that order so that a page of the review queue costs the same with 50 or 50,000
requests. Indexes only: no data changes.

Revision ID: 0008_airlock_list_indexes
Revises: 0007_packages_index
Create Date: 2026-12-04
"""
from __future__ import annotations

from alembic import op

revision = "0008_airlock_list_indexes"
down_revision = "0007_packages_index"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_airlock_requests_created": ["created_at", "id"],
    "ix_airlock_requests_state_created": ["state", "created_at"],
    "ix_airlock_requests_project_created": ["project_id", "created_at"],
    "ix_airlock_requests_author_created": ["author", "created_at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "airlock_requests", columns)


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
