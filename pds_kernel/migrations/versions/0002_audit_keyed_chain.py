"""Audit trail: the hash rule of each entry (``chain_version``), for the keyed chain.

Entries written before this revision keep the unkeyed SHA-256 rule (``1``, the server default
fills them); the platform writes every new entry with the HMAC rule (``2``). Adding a column is
not an UPDATE: the append-only triggers stay in place and no audit row is rewritten.

Revision ID: 0002_audit_keyed_chain
Revises: 0001_baseline
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_audit_keyed_chain"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN on both backends (no batch copy of the table on SQLite: that would be a
    # delete and re-insert of every audit row, which the triggers refuse)
    op.add_column("audit_log", sa.Column("chain_version", sa.Integer(), nullable=False,
                                         server_default=sa.text("1")))


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
