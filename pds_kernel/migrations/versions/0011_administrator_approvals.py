"""Registry: who made each administrator and who approved it (the two-person rule on administrators).

``admin_granted_by`` holds who made a user an administrator (created as one, promoted, or
reactivated), ``admin_approved_by`` who approved that; an administrator whose ``admin_approved_by``
is ``NULL`` is pending and is no administrator (``registry.membership_approvals: 2``,
docs/isolation.md). Existing administrators were administrators before this release and stay so:
their ``admin_approved_by`` is ``migration:0011`` (not a user name) and their ``admin_granted_by``
stays ``NULL`` (unknown; the audit trail's ``registry.user.*`` entries name who made them).

Revision ID: 0011_administrator_approvals
Revises: 0010_registry_rules
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_administrator_approvals"
down_revision = "0010_registry_rules"
branch_labels = None
depends_on = None

#: ``pds_kernel.registry.models.ADMIN_APPROVED_BEFORE_RECORDING`` (a migration never imports the models)
ADMIN_APPROVED_BEFORE_RECORDING = "migration:0011"


def upgrade() -> None:
    op.add_column("registry_users", sa.Column("admin_granted_by", sa.String(200), nullable=True))
    op.add_column("registry_users", sa.Column("admin_approved_by", sa.String(200), nullable=True))
    users = sa.table("registry_users", sa.column("is_admin", sa.Boolean()),
                     sa.column("admin_approved_by", sa.String(200)))
    op.execute(users.update().where(users.c.is_admin.is_(True))
               .values(admin_approved_by=ADMIN_APPROVED_BEFORE_RECORDING))


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
