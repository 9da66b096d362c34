"""Generations of the local hub's accounts: which platform write of an account is the latest, as the
audit trail records it (docs/adr/0013, amendment "generations").

A seal (:mod:`.account_seals`) tells a row the platform wrote from a row written otherwise, but not
an old row from the current one: whoever writes the hub's database could put back a revoked
account's old row and old seal, or an old password, exactly as they were, and sign in. So every
platform write of an account draws a new *generation*, a random token that its seal covers and that
its audit entry records in its details (``generation``):

- ``hub.account.create`` and ``hub.account.reset`` (:func:`.local.provision_account`),
  ``hub.account.approve`` and ``hub.account.revoke`` (:func:`.accounts.apply_account_approval`, a
  revocation of an account whose seal is broken included: it seals nothing, but every older seal
  names an older write from then on), ``hub.account.password`` (a user's own change), each with
  outcome ``ok`` and the target ``user:NAME``;
- :data:`UPGRADE_ACTION` (target ``hub``), the one-time sealing of the accounts made before the
  seals: its generation is that of every account it sealed and the platform has not written since.

An account's generation is the one of the newest of those entries (:meth:`Generations.latest`), read
from the platform's database, which the hub database's writer does not reach, and checked there
(:mod:`pds_kernel.audit_newest`): the entry must authenticate under the audit key, and no entry
after it may be missing up to the latest anchor (kept outside both databases). A seal that names an
older generation (an old row put back) is refused as a broken seal is; so is every account of a user
whose newest write cannot be read or trusted (deny by default).

The platform draws the generation, writes the account and its seal in the hub's database, commits,
then records the audit entry: between the two (a crash, an audit trail that cannot be written) the
account is refused, never let in; ``pds hub account add USER --reset`` makes it anew. That holds
for the row the platform wrote only: whoever also writes the hub's database can put the old row back,
and the trail's newest write then names its generation still (red team 10: the platform database's
owner refused the entry of a revocation with a trigger). So an entry that cannot be recorded is
reported as such (:func:`record_write`), never as a write made.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass

from ..audit import AuditEvent, AuditTrail
from ..audit_newest import Selector
from ..errors import IntegrityError

#: The audit action of the one-time sealing of the accounts made before the seals.
UPGRADE_ACTION = "hub.account.seals.upgrade"
#: The audit actions of the platform's writes of one account (target ``user:NAME``, outcome ``ok``).
WRITE_ACTIONS = ("hub.account.create", "hub.account.reset", "hub.account.approve", "hub.account.revoke",
                 "hub.account.password")
#: The key of an entry's details that holds the generation it made.
GENERATION = "generation"

log = logging.getLogger(__name__)


def record_write(record, event: AuditEvent, username: str) -> None:
    """Record ``event``, the audit entry of a platform write of ``username``'s account already
    committed in the hub's database; when it cannot be recorded, raise an error that says the write
    is not recorded, and what that leaves open (nothing outside the hub's database says it was made)."""
    try:
        record(event)
    except Exception as exc:
        raise IntegrityError(
            f"{event.action} of {username}: written in the hub's database but not recorded in the audit trail "
            f"({type(exc).__name__}: {str(exc)[:200]}); {username}'s account is refused, but whoever can write "
            "the hub's database can put its old row back, which the trail still names as the newest: find why "
            "the entry was refused (pds audit verify, the database's triggers and rights), then do it again") from exc


def new_generation() -> str:
    """A generation for a write about to be made (32 hex digits)."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Latest:
    """An account's generation (``None``: none to trust) and, when it cannot be read, why."""

    generation: str | None
    problem: str | None = None


class Generations:
    """The accounts' generations, read from ``audit`` (the platform's audit trail)."""

    def __init__(self, audit: AuditTrail):
        self._audit = audit

    def latest(self, username: str) -> Latest:
        """The generation of the newest platform write of ``username``'s account; none when there is
        no such write, or when the trail cannot be trusted about it (the problem then says why)."""
        found = self._audit.newest([Selector(WRITE_ACTIONS, f"user:{username}"), Selector((UPGRADE_ACTION,))])
        if found.problem:
            log.error("hub account %s: %s", username, found.problem)
            return Latest(None, found.problem)
        if found.row is None:
            return Latest(None)
        try:
            generation = json.loads(found.row.details).get(GENERATION)
        except (ValueError, AttributeError, RecursionError):
            generation = None
        return Latest(generation if isinstance(generation, str) else None)
