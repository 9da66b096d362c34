"""Registry: who granted each membership and who approved it (the two-person rule).

``granted_by`` holds who granted a membership or last extended its expiry, ``approved_by`` who
approved that grant; a membership whose ``approved_by`` is ``NULL`` is pending and grants nothing
(``registry.membership_approvals: 2``, docs/isolation.md). Existing memberships were valid before
this release and stay valid: their ``approved_by`` is ``migration:0009`` (not a user name) and
their ``granted_by`` stays ``NULL`` (unknown; the audit trail's ``registry.member.add`` entries
name who granted them).

Revision ID: 0009_membership_approvals
Revises: 0008_airlock_list_indexes
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_membership_approvals"
down_revision = "0008_airlock_list_indexes"
branch_labels = None
depends_on = None

#: ``pds_kernel.registry.models.APPROVED_BEFORE_RECORDING`` (a migration never imports the models)
APPROVED_BEFORE_RECORDING = "migration:0009"


def upgrade() -> None:
    op.add_column("registry_memberships", sa.Column("granted_by", sa.String(200), nullable=True))
    op.add_column("registry_memberships", sa.Column("approved_by", sa.String(200), nullable=True))
    memberships = sa.table("registry_memberships", sa.column("approved_by", sa.String(200)))
    op.execute(memberships.update().values(approved_by=APPROVED_BEFORE_RECORDING))


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
