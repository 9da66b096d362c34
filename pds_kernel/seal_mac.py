"""Seals: an HMAC-SHA256, under the audit trail's key (:mod:`pds_kernel.audit_key`, a platform
secret no database holds), of what the platform wrote in a row, so that a row written by whoever
holds the database but not the key is told apart. Used by the registry's approvals
(:mod:`pds_kernel.registry.seals`) and the local hub's accounts (:mod:`pds_kernel.hub.account_seals`).

The key is the one in force in the audit chain (:meth:`pds_kernel.audit.AuditTrail.key`, read at
each use: after ``pds audit rotate-key`` only seals made with the new key count, in every process).

Each use has its own ``domain``, a prefix ending in a NUL byte: a seal of one kind is never a valid
seal of another, nor a valid audit hash (those are HMACs of other texts under the same key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

from .audit_hash import same_digest
from .audit_key import AuditKey

#: A key, or where to read the key in force (``AuditTrail.key``, given the row's session of the
#: platform database or ``None``) each time a seal is made or checked.
KeySource = AuditKey | Callable[..., AuditKey]


def key_of(source: KeySource, session=None) -> AuditKey:
    return source if isinstance(source, AuditKey) else source(session)


def seal_of(key: AuditKey, domain: bytes, fields: list) -> str:
    """The seal (64 hex digits) of ``fields`` (JSON values) under ``key`` in ``domain``."""
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key.secret, domain + text.encode("ascii"), hashlib.sha256).hexdigest()


def seal_matches(seal: object, expected: str) -> bool:
    """``seal`` (as read from a database: anything) is ``expected``, compared in constant time
    (:func:`~pds_kernel.audit_hash.same_digest`: text that is not ASCII is no seal, not an error)."""
    return same_digest(seal, expected)
