"""Red team 7 of the hub accounts' seals (``pds_kernel/hub/account_seals.py``): the one-time sealing
of the accounts made before the seals, after its audit entry was deleted.

That sealing runs once, at the hub's start, by ``pds db upgrade`` or by the first ``pds hub
account`` write, and was known to be done only from its audit entry (``hub.account.seals.upgrade``)
in the platform's database. Locally both databases are files of the hub's machine: whoever writes
the hub's database can drop the audit table's trigger and delete that entry too. The attacker makes
alice's password their own, deletes her seal and that entry, and runs ``pds db upgrade`` (or waits
for the hub's next start): the sealing ran again and sealed her row as it stood, and the attacker
signed in as alice. It GOT THROUGH (found on the branch that sealed the accounts, the same flaw as
the registry's ``migration:0012`` mark: ``test_redteam7_seals.py``). Now the sealing's commit is
also anchored outside the database (its anchor's reason is ``hub.account.seals.upgrade``), and it
never runs again once that anchor exists, whatever the database says.

One real hub and its real databases; ``pds`` run by the OS user of the tests mapped to root.
"""

from __future__ import annotations

from hub_account_seals_support import (  # noqa: F401  (the fixture world)
    ATTACKER_PASSWORD,
    has_seal_table,
    known_hash,
    pds_as,
    seals_world_fixture,
    sign_in,
    write,
)
from sqlalchemy import text

from pds_kernel.db import make_engine
from pds_kernel.hub.account_seals import UPGRADE_ACTION


def _delete_the_upgrade_entry(hub) -> None:
    """The platform database's writer drops the append-only trigger and deletes the entry."""
    engine = make_engine(hub.settings.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            deleted = connection.execute(text("DELETE FROM audit_log WHERE action = :a"), {"a": UPGRADE_ACTION})
            assert deleted.rowcount >= 1
    finally:
        engine.dispose()
    assert hub.actions(UPGRADE_ACTION) == []


def test_the_upgrade_entry_deleted_then_a_changed_account_sealed_again(world):
    hub, secrets = world
    assert hub.actions(UPGRADE_ACTION), "the hub's start sealed the accounts made before the seals"
    assert write(hub, "UPDATE users_info SET password = ? WHERE username = 'alice'", known_hash()) == 1
    assert has_seal_table(hub) and write(hub, "DELETE FROM pds_account_seals WHERE username = 'alice'") == 1
    _delete_the_upgrade_entry(hub)
    assert pds_as(hub, "root", "db", "upgrade").returncode == 0
    assert pds_as(hub, "root", "hub", "account", "revoke", "ivy").returncode == 0  # an account write
    signed_in, message = sign_in(hub, "alice", ATTACKER_PASSWORD, secrets["alice"])
    assert not signed_in, "the attacker signed in as alice: her changed row was sealed again"
    assert message.startswith("Wrong user name, password or code"), message
    assert hub.actions(UPGRADE_ACTION) == []  # the sealing did not run again
