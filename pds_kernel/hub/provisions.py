"""Who created or reset each local hub account, and who approved that: the two-person rule on hub
accounts (``registry.membership_approvals: 2``).

An administrator who creates or resets an account (``pds hub account add USER [--reset]``) chooses
its password and second factor, so he could sign in as its user and get their memberships and
reviews. Under the two-person rule such an account is *pending* (not approved in NativeAuthenticator's
``users_info``) until a second administrator approves it
(:func:`pds_kernel.permissions.check_approve_hub_account`, asked by
:func:`.accounts.apply_account_approval`).

One row per account, in the hub database (table ``pds_account_provisions``, created on first use
like the other ``pds_*`` tables of :mod:`.accounts`), next to the account itself: the row and the
account are written in one transaction, and an approval is a conditional write on both (the
provision it checked, still pending; no pending provision left when the account is approved), so
a reset made while another administrator approves the account is never approved with it. A
pending row stays pending whatever the rule says later: only an approval clears it. Accounts made
before this table existed have no row, and keep their approval.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, and_, delete, exists, insert, select, update

_metadata = MetaData()
provisions_table = Table(
    "pds_account_provisions", _metadata,
    Column("username", String(255), primary_key=True),
    Column("provision_id", String(32), nullable=False),  #: random, new at each create or reset
    Column("action", String(16), nullable=False),  #: create | reset
    Column("provisioned_by", String(200), nullable=False),  #: an audit actor
    Column("provisioned_at", Float, nullable=False),  #: epoch seconds
    Column("approvals", Integer, nullable=False),  #: the rule it was made under (1 or 2)
    Column("approved_by", String(200), nullable=True),  #: NULL: pending a second administrator
)


@dataclass(frozen=True)
class Provision:
    """The last creation or reset of an account."""

    username: str
    provision_id: str
    action: str
    provisioned_by: str
    provisioned_at: float
    approvals: int
    approved_by: str | None

    @property
    def pending(self) -> bool:
        return self.approved_by is None


class AccountSecret(str):
    """The TOTP secret of an account just created or reset (the ``str``), and whether the account
    waits for a second administrator (:attr:`pending`)."""

    username: str
    pending: bool

    def __new__(cls, secret: str, username: str, pending: bool) -> AccountSecret:
        value = super().__new__(cls, secret)
        value.username, value.pending = username, pending
        return value

    @property
    def next_step(self) -> str:
        """What happens next, for the administrator who made the account."""
        if not self.pending:
            return "the account is approved: the user may sign in"
        return (f"the account waits for a second administrator (two-person rule): another administrator, "
                f"neither you nor {self.username}, runs pds hub account approve {self.username} as themselves; "
                "until then nobody signs in with it")


def ensure_table(db) -> None:
    """Create the table when missing (before the session writes: SQLite lets one writer at a time)."""
    _metadata.create_all(db.get_bind(), tables=[provisions_table])


def find_provision(db, username: str) -> Provision | None:
    ensure_table(db)
    row = db.execute(select(provisions_table).where(provisions_table.c.username == username)).mappings().first()
    return None if row is None else Provision(**row)


def pending_provisions(db) -> dict[str, Provision]:
    """Every account waiting for a second administrator, by user name."""
    ensure_table(db)
    rows = db.execute(select(provisions_table).where(provisions_table.c.approved_by.is_(None))).mappings()
    return {row["username"]: Provision(**row) for row in rows}


def write_provision(db, username: str, *, action: str, provisioned_by: str, approvals: int,
                    approved: bool) -> Provision:
    """Record a creation or reset of ``username``'s account in ``db``'s transaction (the caller
    commits it with the account): pending unless ``approved`` (one approval, or the bootstrap)."""
    provision = Provision(username=username, provision_id=secrets.token_hex(16), action=action,
                          provisioned_by=provisioned_by, provisioned_at=time.time(), approvals=approvals,
                          approved_by=provisioned_by if approved else None)
    db.execute(delete(provisions_table).where(provisions_table.c.username == username))
    db.execute(insert(provisions_table).values(**provision.__dict__))
    return provision


def approve_provision(db, seen: Provision, approver: str) -> bool:
    """Record ``approver`` on the pending provision ``seen`` in ``db``'s transaction; False when the
    account was reset (or approved) since it was seen."""
    result = db.execute(update(provisions_table).where(
        provisions_table.c.username == seen.username, provisions_table.c.provision_id == seen.provision_id,
        provisions_table.c.approved_by.is_(None)).values(approved_by=approver))
    return result.rowcount == 1


def authorize_unless_pending(db, users_info, username: str) -> bool:
    """Approve ``username``'s account (``users_info.is_authorized``) in one statement, unless a
    pending provision of it exists at that moment (a reset made meanwhile); False if so."""
    pending = exists().where(and_(provisions_table.c.username == username,
                                  provisions_table.c.approved_by.is_(None)))
    result = db.execute(update(users_info).where(users_info.c.username == username, ~pending)
                        .values(is_authorized=True))
    return result.rowcount == 1
