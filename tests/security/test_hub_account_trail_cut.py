"""Red team of the hub accounts' generations (``pds_kernel/hub/account_generations.py``) by whoever
can write both databases of a local installation: the hub's (``users_info``, the seals) and the
platform's (the audit trail), but not the anchor store nor the audit key.

Each seal names the platform's newest write of its account, as that write's audit entry records it.
The attacker puts back a revoked account's old row and seal, then also removes the revocation's
audit entry from the platform's database (the append-only trigger dropped first), so that the older
write looks like the newest. The anchors, outside both databases, still hold the trail's head: the
entry removed leaves a gap before it. The sign-in is refused (a broken seal's words, audited with
the trail's problem), and ``pds audit verify`` names the entry deleted.

A world of its own (one real hub): the audit trail it leaves behind is cut for good, and every
account whose newest write came before the cut is refused from then on (deny by default).
"""

from __future__ import annotations

import pytest
from hub_account_seals_support import (
    PASSWORD,
    make_seals_world,
    pds_as,
    put_back,
    refusals,
    says_wrong_credentials,
    sign_in,
    snapshot,
)
from hub_identity_support import started_world
from sqlalchemy import text

from pds_kernel.db import make_engine


@pytest.fixture(name="world", scope="module")
def cut_world_fixture():
    with started_world(make_seals_world) as world:
        yield world


def _delete_entry(hub, seq: int) -> None:
    """The platform database's writer drops the append-only trigger and deletes entry ``seq``."""
    engine = make_engine(hub.settings.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            assert connection.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq}).rowcount == 1
    finally:
        engine.dispose()


def test_a_revoked_accounts_old_row_put_back_and_its_revocation_deleted(world):
    hub, secrets = world
    before = snapshot(hub, "gus")
    assert pds_as(hub, "root", "hub", "account", "revoke", "gus").returncode == 0
    [revocation] = [e for e in hub.actions("hub.account.revoke") if e.target == "user:gus"]
    assert sign_in(hub, "carol", PASSWORD, secrets["carol"])[0]  # entries after it: the cut is inside the trail
    put_back(hub, "gus", before)
    _delete_entry(hub, revocation.seq)
    assert not [e for e in hub.actions("hub.account.revoke") if e.target == "user:gus"]

    signed_in, message = sign_in(hub, "gus", PASSWORD, secrets["gus"])
    assert not signed_in, "gus signed in: the deleted revocation went unseen"
    assert says_wrong_credentials(message), message
    reason = refusals(hub, "gus")[-1]
    assert "seal" in reason and "missing" in reason and "pds audit verify" in reason, reason

    verified = pds_as(hub, "root", "audit", "verify")
    assert verified.returncode != 0, verified.stdout
    assert f"entry {revocation.seq} was deleted" in verified.stdout + verified.stderr, verified.stdout
