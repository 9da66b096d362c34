"""Registry: the rules the registry keeps whatever a process's settings (``registry_rules``).

One row so far, ``membership_approvals``: the highest ``registry.membership_approvals`` of any
process that has granted, approved or applied a file. A process whose setting is lower works under the registry's rule, so
one administrator cannot lower the two-person rule for their own command (docs/isolation.md). The
table starts empty: the first process running with two approvals records it.

Revision ID: 0010_registry_rules
Revises: 0009_membership_approvals
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_registry_rules"
down_revision = "0009_membership_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_rules",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
