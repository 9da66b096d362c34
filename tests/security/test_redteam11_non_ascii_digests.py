"""Red team, eleventh round: digests written as text a comparison refuses.

Every check of the audit trail, its anchors and the seals compares a stored digest with the one it
makes, in constant time (``hmac.compare_digest``), which raises ``TypeError`` on text that is not
ASCII instead of answering "no". Whoever writes the platform database (a planted row, a seal) or
may append to the anchor file (tests/security/test_redteam11_anchor_mac.py) chooses that text. What
must hold: such a digest is a wrong digest (the entry does not authenticate, the seal is broken),
reported as such; no check ends with an exception. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from audit_support import as_owner, fill

from pds_kernel.registry import Registry
from pds_kernel.registry.models import User

HOSTILE = ["é" * 64, "\u202e" + "a" * 63]


@pytest.mark.parametrize("digest", HOSTILE, ids=["latin", "bidi-override"])
def test_a_planted_entry_hash_is_reported_not_raised(db_runtime, digest):
    """An entry's hash rewritten in non-ASCII text: ``pds audit verify`` reports the entry as one
    that does not authenticate (it raised TypeError before its fix, and reported nothing)."""
    fill(db_runtime, 4)
    as_owner(db_runtime, "UPDATE audit_log SET hash = :h WHERE seq = 2", params=[{"h": digest}])
    report = db_runtime.audit.verify()
    assert not report.ok and report.problems, report
    assert any(p.seq in (2, 3) for p in report.problems), report.problems


@pytest.mark.parametrize("digest", HOSTILE, ids=["latin", "bidi-override"])
def test_a_planted_seal_is_a_broken_seal(db_runtime, digest):
    """An administrator's approval seal rewritten in non-ASCII text: the administrator counts as
    none (the seal is broken), as for any other wrong seal; nothing raises."""
    registry = Registry.from_runtime(db_runtime)
    registry.upsert_user("bootstrap", "root", is_admin=True)
    assert registry.is_administrator("root")
    as_owner(db_runtime, f"UPDATE {User.__tablename__} SET admin_seal = :s WHERE name = 'root'",
             params=[{"s": digest}])
    assert not registry.is_administrator("root")
