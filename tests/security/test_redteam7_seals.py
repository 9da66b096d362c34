"""Red team 7 of the registry's approval seals, by whoever holds the database's credentials (its
owner, who can drop the audit table's triggers) but not the audit key.

The upgrade mark ``migration:0012`` counts only until the registry's first write sealed the upgrade's
approvals (``registry.seals.upgrade`` in the audit trail). Before this red team, that was decided
from the database alone: an attacker who deleted that audit entry (after dropping the append-only
trigger) made the mark count again, and a restarted hub or a new ``pds`` command then GAVE ACCESS to
any membership, and made any administrator, carrying it. The audit chain's verification would find
the hole later, but access was decided without it. Now the sealing of the upgrade is also anchored
outside the database (an anchor of reason ``registry.seals.upgrade``), and the mark never counts
again once that anchor exists, whatever the database says.

The other attempts here failed already and stay as regression tests: the sealed message has no
ambiguity a database writer can use (field boundaries, ``None`` against ``''``, case and unicode
forms of a name or role, the expiry's format), and a seal read back from PostgreSQL is the one
written there.

Every test runs on SQLite and on a real PostgreSQL server, through the real registry service.
"""

from __future__ import annotations

from datetime import date

import pytest
from registry_seals_support import TODAY, world_fixture  # noqa: F401  (the fixture world)
from registry_seals_support import refused_access as _refused
from registry_seals_support import write_rows as _write
from sqlalchemy import text

from pds_kernel.db import make_engine
from pds_kernel.registry import Registry
from pds_kernel.registry.seals import UPGRADE_ACTION
from pds_kernel.runtime import Runtime


def _as_owner(runtime, *statements: str, **values) -> None:
    """The database owner's own connection: statements run as given (triggers may be dropped)."""
    engine = make_engine(runtime.settings.database_url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement), values)
    finally:
        engine.dispose()


def _delete_upgrade_entry(runtime) -> None:
    """Drop the append-only trigger, delete the ``registry.seals.upgrade`` entry."""
    if runtime.engine.dialect.name == "postgresql":
        drop = "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log"
    else:
        drop = "DROP TRIGGER IF EXISTS audit_log_no_delete"
    _as_owner(runtime, drop, f"DELETE FROM audit_log WHERE action = '{UPGRADE_ACTION}'")
    assert runtime.audit.entries(action=UPGRADE_ACTION) == []


def _restarted(runtime) -> tuple[Runtime, Registry]:
    """A new process on the same database, key and anchors (a restarted hub, a new ``pds`` command)."""
    again = Runtime(runtime.settings)
    return again, Registry.from_runtime(again)


def test_the_upgrade_entry_deleted_then_the_mark_written(world):
    """GOT THROUGH before: mallory's pending membership and bob's administrator rights, marked
    ``migration:0012`` after the upgrade entry was deleted, counted for a restarted process."""
    runtime, _registry = world
    _delete_upgrade_entry(runtime)
    _write(runtime, "UPDATE registry_memberships SET approved_by = 'ada', seal = 'migration:0012' "
                    "WHERE user_name = 'mallory'")
    _write(runtime, "UPDATE registry_users SET is_admin = :yes, admin_granted_by = 'root', admin_approved_by = 'ada', "
                    "admin_seal = 'migration:0012' WHERE name = 'bob'", yes=True)
    again, registry = _restarted(runtime)
    try:
        assert "did not seal" in _refused(registry, "mallory")
        assert registry.active_projects("mallory", today=TODAY) == []
        assert not registry.is_administrator("bob")
        # a write does not bless the marks either (it would seal them as the upgrade's)
        registry.upsert_user("root", "carol")
        assert not registry.can_access("mallory", "diab", today=TODAY)
        assert not registry.is_administrator("bob")
        assert again.audit.entries(action=UPGRADE_ACTION) == []  # sealed once, never again
        # the legitimate way still works
        registry.approve_member("ada", "diab", "mallory", "researcher")
        assert registry.can_access("mallory", "diab", today=TODAY)
    finally:
        again.close()


# ---- the sealed message: no two approvals with the same bytes -------------------------------------
@pytest.mark.parametrize("column, value", [
    ("user_name", "ALICE"),            # case of the name
    ("role", "RESEARCHER"),            # case of the role
    ("granted_by", "root "),           # a trailing space
    ("granted_by", ""),                # '' where the sealed value is a name
    ("approved_by", "ada\u200b"),      # an invisible character
])
def test_alice_sealed_row_rewritten_to_an_equivalent_form(world, column, value):
    """alice's sealed row with one field written in a form that reads the same to a person: her seal
    no longer matches (or the row is no membership of hers at all)."""
    runtime, registry = world
    try:
        _write(runtime, f"UPDATE registry_memberships SET {column} = :v WHERE user_name = 'alice'", v=value)
    except Exception:  # the database itself refuses the value (a constraint): fine
        return
    try:
        allowed = registry.can_access("alice", "diab", today=TODAY)
    except (ValueError, LookupError):  # an unknown role: the row is unreadable, no access
        allowed = False
    assert not allowed


def test_the_expiry_stored_with_a_time_of_day(world):
    """SQLite keeps a date as text: the attacker writes alice's expiry with a time (the last second
    of a later day) hoping the registry reads a later date under the same seal."""
    runtime, registry = world
    if runtime.engine.dialect.name != "sqlite":
        later = "2027-07-01"
    else:
        later = "2027-06-30 23:59:59"
    try:
        _write(runtime, "UPDATE registry_memberships SET expires_on = :later WHERE user_name = 'alice'", later=later)
    except Exception:  # PostgreSQL's date type refuses it: no later date
        return
    try:
        allowed = registry.can_access("alice", "diab", today=date(2027, 7, 1))
    except ValueError:
        allowed = False
    assert not allowed


def test_a_seal_with_other_fields_moved_across_its_boundaries(world):
    """Fields are sealed as a JSON list: moving characters from one field to the next (the
    granter's tail into the approver) never keeps the seal, unlike a plain concatenation."""
    runtime, registry = world
    _write(runtime, "UPDATE registry_memberships SET granted_by = 'roo', approved_by = 'tada' "
                    "WHERE user_name = 'alice'")
    assert "did not seal" in _refused(registry, "alice")
