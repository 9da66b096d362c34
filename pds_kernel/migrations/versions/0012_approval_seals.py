"""Registry: seals of the approvals (the two-person rule against whoever writes the database).

``registry_memberships.seal`` and ``registry_users.admin_seal`` hold an HMAC, under the audit
trail's key, of what was approved (``pds_kernel.registry.seals``): an approval without a valid seal
is pending. A migration holds no key: the approvals that exist now get ``migration:0012``, which
counts until the registry's first write after this upgrade seals them (audited as
``registry.seals.upgrade``), and never after.

Revision ID: 0012_approval_seals
Revises: 0011_administrator_approvals
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_approval_seals"
down_revision = "0011_administrator_approvals"
branch_labels = None
depends_on = None

#: ``pds_kernel.registry.models.SEALED_BY_MIGRATION`` (a migration never imports the models)
SEALED_BY_MIGRATION = "migration:0012"


def upgrade() -> None:
    op.add_column("registry_memberships", sa.Column("seal", sa.String(64), nullable=True))
    op.add_column("registry_users", sa.Column("admin_seal", sa.String(64), nullable=True))
    members = sa.table("registry_memberships", sa.column("approved_by", sa.String(200)),
                       sa.column("seal", sa.String(64)))
    op.execute(members.update().where(members.c.approved_by.is_not(None)).values(seal=SEALED_BY_MIGRATION))
    users = sa.table("registry_users", sa.column("is_admin", sa.Boolean()),
                     sa.column("admin_approved_by", sa.String(200)), sa.column("admin_seal", sa.String(64)))
    op.execute(users.update().where(users.c.is_admin.is_(True), users.c.admin_approved_by.is_not(None))
               .values(admin_seal=SEALED_BY_MIGRATION))


def downgrade() -> None:
    raise NotImplementedError("PDS Workspace never downgrades a database: restore a backup")
