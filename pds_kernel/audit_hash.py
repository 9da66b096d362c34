"""The two hash rules of audit entries (:mod:`pds_kernel.audit_chain` says which applies where).

- ``1`` (entries written before the key existed): ``SHA-256(canonical JSON of the entry)``;
- ``2`` (keyed): ``HMAC-SHA256(key, canonical JSON of the entry and its chain version)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from .audit_key import AuditKey

GENESIS_HASH = "0" * 64
CHAIN_UNKEYED = 1
CHAIN_KEYED = 2

_FIELDS = ("seq", "time", "schema_version", "actor", "action", "target", "project", "outcome",
           "details", "prev_hash")


def _canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def compute_hash(**values: Any) -> str:
    """The unkeyed rule (chain version 1): SHA-256 of the entry's canonical JSON."""
    return hashlib.sha256(_canonical({name: values[name] for name in _FIELDS})).hexdigest()


def compute_keyed_hash(key: AuditKey, **values: Any) -> str:
    """The keyed rule (chain version 2): HMAC-SHA256 under an audit key."""
    payload = {name: values[name] for name in _FIELDS}
    payload["chain_version"] = values.get("chain_version", CHAIN_KEYED)
    return hmac.new(key.secret, _canonical(payload), hashlib.sha256).hexdigest()


def row_values(row, seq: int | None = None) -> dict[str, Any]:
    """The hashed fields of a stored entry (``seq``: as if it were that entry)."""
    values = {name: getattr(row, name) for name in _FIELDS}
    values["chain_version"] = row.chain_version
    if seq is not None:
        values["seq"] = seq
    return values


def same_digest(found: object, expected: object) -> bool:
    """Whether ``found`` (read from a database row or an anchor line: anything a hostile writer
    put there) is the digest ``expected``, compared in constant time. As bytes: ``hmac.compare_digest``
    raises on text that is not ASCII, which ended every check of the trail with an exception."""
    if not isinstance(found, str) or not isinstance(expected, str):
        return False
    return hmac.compare_digest(found.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
