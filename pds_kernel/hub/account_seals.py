"""Seals of the local hub's accounts: what the platform wrote in an account, signed with a key the
hub's database does not hold (the registry's approvals do the same: docs/adr/0013).

NativeAuthenticator keeps an account in one row of the hub's SQLite database (``users_info``: the
bcrypt hash of the password, the TOTP secret, whether the second factor is on, whether the account
is approved). Whoever can write that file (an operator with access to the hub's files, a backup
restored) could approve a pending account, make an administrator's password or second factor theirs,
or rename a row, and sign in. So every account carries a seal, an HMAC-SHA256 under the audit
trail's key (:mod:`pds_kernel.seal_mac`) of:

- its user name, password hash, TOTP secret, second factor on or off, approval;
- its provision (:mod:`.provisions`: which creation or reset, by whom, under which rule, approved
  by whom), or none, so the two-person rule's record cannot be rewritten either;
- its generation (:mod:`.account_generations`): a random token drawn by that write of the platform
  and recorded in its audit entry, so that a seal names the write that made it.

The seals are kept in a table of our own, ``pds_account_seals`` (user name, seal), next to
NativeAuthenticator's, which stay as they are. Only the platform writes them, each time it writes
one of those fields: an account created or reset (:func:`.local.provision_account`), approved or
revoked (:func:`.accounts.apply_account_approval`), its password changed by its user
(:meth:`.local.PdsNativeAuthenticator.change_password`). A seal is always computed from what the
platform wrote or checked, never from a row read back after.

Checks: a sign-in (and each refresh of a session, and the membership watcher) takes an account only
when its seal matches it exactly, with the generation of the account's newest write in the audit
trail (the platform's database, checked against the anchors); otherwise it is refused with the
words of a wrong password and audited (``hub.login``, reason :data:`BROKEN`), and the accounts page
shows it as "seal broken". An
approval or a revocation takes an account whose seal matches it whatever its approval says (the one
field a revocation or approval changes): an approval refuses the others (their password or second
factor may be someone else's: ``pds hub account add USER --reset`` gives new ones); a revocation
leaves their seal broken.

Accounts made before the seals existed have none. The first of the hub's start, ``pds db upgrade``
(local) or ``pds hub account add|approve|revoke`` seals every account that has no seal yet, as it
stands, once, and records it in the audit trail (:data:`UPGRADE_ACTION`, the names in its details).
From then on an account without a seal is never sealed but by a platform write. That is known from
the audit entry and, since a writer of the platform's database can drop the audit table's trigger
and delete it, from the anchor of its commit too (reason ``hub.account.seals.upgrade``), outside
both databases (red team 7: with the entry deleted, the sealing ran again and sealed a changed row).

A row and its seal put back exactly as they were (a revoked account's old row, an old password) used
to sign in again: a seal alone cannot tell an old row from the current one. The generation does:
the old seal names an older write than the audit trail's newest, and is refused as a broken seal.
Removing that newest entry from the platform's database as well is seen by the anchors (a gap
before the highest anchored entry, that entry gone, or numbers anchored twice with different hashes
once the platform wrote over a cut): the sign-in is refused, its reason saying so, and ``pds audit
verify`` names the entries missing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nativeauthenticator.orm import UserInfo
from sqlalchemy import Column, MetaData, String, Table, delete, insert, inspect, select

from ..audit import AuditEvent, AuditTrail, Outcome
from ..audit_key import AuditKey
from ..seal_mac import KeySource, key_of, seal_matches, seal_of
from .account_generations import GENERATION, UPGRADE_ACTION, Generations, new_generation
from .provisions import Provision, find_provision

#: What an account's seal's HMAC starts with (its own kind of seal: :mod:`pds_kernel.seal_mac`); v2
#: covers the generation (a v1 seal, made before, matches no account).
_DOMAIN = b"pds-workspace hub account seal v2\x00"
#: The audited reason of a refusal for a seal missing or wrong.
BROKEN = "account seal missing or wrong: the account was changed outside the platform"
#: What an administrator is told to do with such an account.
REMEDY = "give it a new password and second factor with pds hub account add {user} --reset"

_metadata = MetaData()
account_seals_table = Table(
    "pds_account_seals", _metadata,
    Column("username", String(255), primary_key=True),
    Column("seal", String(64), nullable=False),
)


def ensure_table(db) -> None:
    """Create the table when missing (before the session writes: SQLite lets one writer at a time)."""
    _metadata.create_all(db.get_bind(), tables=[account_seals_table])


@dataclass(frozen=True)
class SealedAccount:
    """What an account's seal covers, as the platform wrote or checked it."""

    username: str
    password: str  #: the bcrypt hash, in hex
    otp_secret: str | None
    has_2fa: bool
    is_authorized: bool
    provision: tuple | None  #: (id, action, by, rule, approved by) of :class:`.provisions.Provision`
    generation: str  #: of the platform's write that made it (:mod:`.account_generations`)

    @classmethod
    def of(cls, info: UserInfo, provision: Provision | None, generation: str | None) -> SealedAccount | None:
        """The fields of ``info``, its ``provision`` and ``generation``; ``None`` when the row holds
        what the platform never writes (a password that is not bytes), or without a generation: such
        an account is never sealed."""
        password = info.password
        if not isinstance(password, bytes | memoryview) or not isinstance(info.username, str) or not generation:
            return None
        return cls(username=info.username, password=bytes(password).hex(),
                   otp_secret=info.otp_secret if isinstance(info.otp_secret, str) else None,
                   has_2fa=bool(info.has_2fa), is_authorized=bool(info.is_authorized),
                   provision=_provision_fields(provision), generation=generation)

    def renewed(self, generation: str) -> SealedAccount:
        """The same account as a new write of the platform (``generation``) makes it."""
        return replace(self, generation=generation)

    def with_password(self, hashed: bytes) -> SealedAccount:
        return replace(self, password=hashed.hex())

    def approved(self, value: bool, provision: Provision | None = None) -> SealedAccount:
        """The same account with its approval set to ``value`` (and ``provision``, when given)."""
        changed = replace(self, is_authorized=value)
        return changed if provision is None else replace(changed, provision=_provision_fields(provision))


def _provision_fields(p: Provision | None) -> tuple | None:
    return None if p is None else (p.provision_id, p.action, p.provisioned_by, int(p.approvals), p.approved_by)


class AccountSeals:
    """Computes, checks and writes the accounts' seals with ``key`` (the audit trail's key in
    force when not given), the generations read from ``audit``."""

    def __init__(self, audit: AuditTrail, key: KeySource | None = None):
        self._key = audit.key if key is None else key
        self._generations = Generations(audit)
        self._upgrade_done = False  #: seen in the audit trail: true for good

    def seal(self, account: SealedAccount) -> str:
        return seal_of(key_of(self._key), _DOMAIN, [
            "account", account.username, account.password, account.otp_secret, account.has_2fa,
            account.is_authorized, list(account.provision) if account.provision else None,
            account.generation])

    # ---- reads ------------------------------------------------------------------------------
    def read(self, db, info: UserInfo) -> tuple[SealedAccount | None, str | None]:
        """``info``'s sealed fields (with its provision, and the generation of its newest write in
        the audit trail) and its stored seal, read in ``db``."""
        account, stored, _ = self._read(db, info)
        return account, stored

    def _read(self, db, info: UserInfo) -> tuple[SealedAccount | None, str | None, str | None]:
        ensure_table(db)
        stored = db.execute(select(account_seals_table.c.seal)
                            .where(account_seals_table.c.username == info.username)).scalar()
        latest = self._generations.latest(info.username) if isinstance(info.username, str) else None
        generation = latest.generation if latest is not None else None
        account = SealedAccount.of(info, find_provision(db, info.username), generation)
        return account, stored, latest.problem if latest is not None else None

    def refusal(self, db, info: UserInfo) -> str | None:
        """Why ``info`` is not exactly what the platform last wrote of it (:data:`BROKEN`, with the
        audit trail's problem when it cannot be trusted about the account), or ``None``."""
        account, stored, problem = self._read(db, info)
        if account is not None and seal_matches(stored, self.seal(account)):
            return None
        return f"{BROKEN} ({problem})" if problem else BROKEN

    def checked(self, db, info: UserInfo) -> SealedAccount | None:
        """The account as checked when ``info`` is exactly what the platform last wrote of it;
        ``None`` when its seal is missing or wrong, or names an older write than the newest."""
        account, stored = self.read(db, info)
        return account if account is not None and seal_matches(stored, self.seal(account)) else None

    def sealed(self, db, info: UserInfo) -> bool:
        """:meth:`checked` as a yes or no (sessions, the membership watcher)."""
        return self.checked(db, info) is not None

    def credentials_sealed(self, db, info: UserInfo) -> SealedAccount | None:
        """The account as checked when its seal matches it whatever its approval says (approvals and
        revocations change only that); ``None`` when its password, second factor, name or provision
        are not what the platform wrote."""
        account, stored = self.read(db, info)
        if account is None:
            return None
        for approval in (account.is_authorized, not account.is_authorized):
            if seal_matches(stored, self.seal(account.approved(approval))):
                return account
        return None

    def broken(self, db) -> set[str]:
        """The accounts whose seal is missing or wrong (the accounts page shows them)."""
        return {info.username for info in db.query(UserInfo).all() if not self.sealed(db, info)}

    # ---- writes (the platform only, in the caller's transaction) ----------------------------------
    def write(self, db, account: SealedAccount) -> None:
        """Store ``account``'s seal in ``db``'s transaction (the caller commits it with the account)."""
        ensure_table(db)
        db.execute(delete(account_seals_table).where(account_seals_table.c.username == account.username))
        db.execute(insert(account_seals_table).values(username=account.username, seal=self.seal(account)))

    def upgrade_done(self, audit: AuditTrail) -> bool:
        """Whether the accounts made before the seals were sealed: the audit trail says so, or, its
        entry deleted from the database (a writer can drop the trigger), the anchor of its commit
        does (red team 7: the sealing ran again, and sealed a changed account)."""
        if not self._upgrade_done:
            self._upgrade_done = (any(e.outcome == Outcome.OK for e in audit.entries(action=UPGRADE_ACTION))
                                  or audit.anchored(UPGRADE_ACTION))
        return self._upgrade_done

    def upgrade_recorded(self) -> None:
        self._upgrade_done = True


def seal_accounts_of_upgrade(db, seals: AccountSeals, audit: AuditTrail, actor: str) -> list[str] | None:
    """Once for an installation, before the first write of this release to its hub accounts, at
    the hub's start and by ``pds db upgrade``: seal every account of ``db`` that has no seal, as it
    stands, commit, and record :data:`UPGRADE_ACTION` with their names (none on a new installation).
    Returns the names, or ``None`` when it was done before (nothing is sealed then)."""
    if seals.upgrade_done(audit):
        return None
    ensure_table(db)
    names, generation = [], new_generation()  # the generation of every account sealed now
    if inspect(db.get_bind()).has_table(UserInfo.__tablename__):
        for info in db.query(UserInfo).order_by(UserInfo.username).all():
            stored = db.execute(select(account_seals_table.c.seal)
                                .where(account_seals_table.c.username == info.username)).scalar()
            account = SealedAccount.of(info, find_provision(db, info.username), generation)
            if stored is None and account is not None:
                seals.write(db, account)
                names.append(account.username)
    db.commit()
    audit.record(AuditEvent(actor=actor, action=UPGRADE_ACTION, target="hub",
                            details={"accounts": len(names), "names": names[:500], GENERATION: generation}),
                 anchor_reason=UPGRADE_ACTION)  # known outside the database too: it never runs again
    seals.upgrade_recorded()
    return names


def reseal_accounts(db, audit: AuditTrail, old: AuditKey, new: AuditKey) -> dict:
    """After a rotation from ``old`` to ``new``: seal again with ``new``, and commit one by one,
    every account whose seal is right under ``old``, for exactly what it sealed (the account as it
    stands, or with the other approval: what a revocation or an approval checks), with the same
    generation (the newest write in ``audit``: a re-sealing is no write of the account). A seal wrong under
    ``old`` is never carried over; a seal already made with ``new`` is left (a re-run after an
    interruption: meanwhile each account is either sealed with ``new`` or refused). Counts:
    ``resealed``, ``already``, and ``broken`` with ``broken_names``: the accounts a sign-in refuses
    afterwards (their row is not what the platform wrote)."""
    before, after = AccountSeals(audit, old), AccountSeals(audit, new)
    counts: dict = {"resealed": 0, "already": 0, "broken": 0, "broken_names": []}
    if not inspect(db.get_bind()).has_table(UserInfo.__tablename__):
        return counts
    ensure_table(db)
    for info in db.query(UserInfo).order_by(UserInfo.username).all():
        account, stored = before.read(db, info)
        variants = [] if account is None else [account, account.approved(not account.is_authorized)]
        if any(seal_matches(stored, after.seal(v)) for v in variants):
            counts["already"] += 1
        else:
            sealed = next((v for v in variants if seal_matches(stored, before.seal(v))), None)
            if sealed is not None:
                after.write(db, sealed)
                db.commit()
                counts["resealed"] += 1
        if account is None or not seal_matches(db.execute(
                select(account_seals_table.c.seal).where(account_seals_table.c.username == info.username)
        ).scalar(), after.seal(account)):
            counts["broken"] += 1
            counts["broken_names"].append(info.username)
    counts["broken_names"] = counts["broken_names"][:500]
    return counts
