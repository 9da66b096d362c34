"""Seals: an HMAC-SHA256, under the audit trail's key (:mod:`pds_kernel.audit_key`, a platform
secret no database holds), of what the platform wrote in a row, so that a row written by whoever
holds the database but not the key is told apart. Used by the registry's approvals
(:mod:`pds_kernel.registry.seals`) and the local hub's accounts (:mod:`pds_kernel.hub.account_seals`).

Each use has its own ``domain``, a prefix ending in a NUL byte: a seal of one kind is never a valid
seal of another, nor a valid audit hash (those are HMACs of other texts under the same key).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from .audit_key import AuditKey


def seal_of(key: AuditKey, domain: bytes, fields: list) -> str:
    """The seal (64 hex digits) of ``fields`` (JSON values) under ``key`` in ``domain``."""
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key.secret, domain + text.encode("ascii"), hashlib.sha256).hexdigest()


def seal_matches(seal: object, expected: str) -> bool:
    """``seal`` (as read from a database: anything) is ``expected``, compared in constant time."""
    return isinstance(seal, str) and hmac.compare_digest(seal, expected)
