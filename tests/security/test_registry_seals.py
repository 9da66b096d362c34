"""Red team of the two-person rule by whoever holds the database's credentials, not the audit key.

The attacker (a database administrator, a stolen connection string) writes the registry's rows
directly, with their own connection, to give someone access or make an administrator without a
second administrator. Before the seals (revision 0012) every attempt below GOT THROUGH: access was
whatever ``approved_by`` said. Now an approval counts only with the registry's seal, an HMAC under
the audit trail's key (``pds_kernel/registry/seals.py``), which the database does not hold.

Every test runs on SQLite and on a real PostgreSQL server, through the real registry service.
"""

from __future__ import annotations

from datetime import date

import pytest
from registry_seals_support import TODAY, UNTIL, world_fixture  # noqa: F401  (the fixture world)
from registry_seals_support import refused_access as _refused
from registry_seals_support import write_rows as _write
from sqlalchemy import text

from pds_kernel.db import make_engine
from pds_kernel.errors import PermissionDenied
from pds_kernel.permissions import can_administer_registry


def _alice_seal(runtime) -> str:
    engine = make_engine(runtime.settings.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT seal FROM registry_memberships WHERE user_name = 'alice'")).scalar_one()
    finally:
        engine.dispose()


def test_a_pending_membership_approved_in_the_database(world):
    runtime, registry = world
    _write(runtime, "UPDATE registry_memberships SET approved_by = 'ada' WHERE user_name = 'mallory'")
    reason = _refused(registry, "mallory")
    assert "approval the registry did not seal" in reason and "pds project approve-member diab mallory" in reason
    assert registry.active_projects("mallory", today=TODAY) == []
    assert [m.pending for m in registry.memberships_of("mallory")] == [True]  # shown as what it is
    denied = runtime.audit.entries(action="airlock.access.submit")[-1]
    assert (denied.outcome, denied.target) == ("denied", "user:mallory")
    # the legitimate way still works: a second administrator approves it, and it is sealed
    registry.approve_member("ada", "diab", "mallory", "researcher")
    assert registry.can_access("mallory", "diab", today=TODAY)


def test_a_membership_inserted_in_the_database_with_a_copied_seal(world):
    runtime, registry = world
    _write(runtime, "INSERT INTO registry_memberships (project_id, user_name, role, expires_on, granted_by, "
                    "approved_by, seal) VALUES ('diab', 'bob', 'researcher', :until, 'root', 'ada', :seal)",
           until=UNTIL, seal=_alice_seal(runtime))
    assert "did not seal" in _refused(registry, "bob")


def test_a_membership_extended_in_the_database(world):
    runtime, registry = world
    _write(runtime, "UPDATE registry_projects SET end_date = :end WHERE id = 'diab'", end=date(2031, 1, 1))
    _write(runtime, "UPDATE registry_memberships SET expires_on = :later WHERE user_name = 'alice'",
           later=date(2030, 12, 31))
    assert "did not seal" in _refused(registry, "alice")


def test_a_membership_given_to_another_user_in_the_database(world):
    """alice's approved, sealed row renamed to bob's."""
    runtime, registry = world
    _write(runtime, "UPDATE registry_memberships SET user_name = 'bob' WHERE user_name = 'alice'")
    assert "did not seal" in _refused(registry, "bob")


def test_a_forged_approval_is_not_sealed_by_a_later_shortening(world):
    """The attacker forges mallory's approval, then root, unaware, shortens her membership: the
    registry re-seals what it keeps of a shortened membership, but never an approval it did not seal."""
    runtime, registry = world
    _write(runtime, "UPDATE registry_memberships SET approved_by = 'ada' WHERE user_name = 'mallory'")
    shortened = registry.add_member("root", "diab", "mallory", "researcher", date(2027, 1, 31))
    assert shortened.pending
    assert "is pending: a second administrator must approve it" in _refused(registry, "mallory")


def test_an_administrator_made_in_the_database(world):
    runtime, registry = world
    _write(runtime, "UPDATE registry_users SET is_admin = :yes, admin_granted_by = 'root', "
                    "admin_approved_by = 'ada' WHERE name = 'bob'", yes=True)
    assert not registry.is_administrator("bob")
    assert not can_administer_registry(registry, "bob")
    with pytest.raises(PermissionDenied):
        registry.add_member("bob", "diab", "bob", "researcher", UNTIL)
    assert registry.get_user("bob").admin_pending  # shown as a pending administrator


def test_an_administrator_seal_copied_to_another_user(world):
    runtime, registry = world
    engine = make_engine(runtime.settings.database_url)
    try:
        with engine.connect() as connection:
            root = connection.execute(text("SELECT admin_granted_by, admin_approved_by, admin_seal FROM "
                                           "registry_users WHERE name = 'root'")).one()
    finally:
        engine.dispose()
    _write(runtime, "UPDATE registry_users SET is_admin = :yes, admin_granted_by = :g, admin_approved_by = :a, "
                    "admin_seal = :seal WHERE name = 'bob'", yes=True, g=root[0], a=root[1], seal=root[2])
    assert not registry.is_administrator("bob")


def test_a_deactivated_administrator_reactivated_in_the_database(world):
    runtime, registry = world
    registry.upsert_user("root", "ada", is_admin=True, active=False)
    _write(runtime, "UPDATE registry_users SET active = :yes WHERE name = 'ada'", yes=True)
    assert not registry.is_administrator("ada")


def test_the_upgrade_mark_written_on_a_forged_approval(world):
    """``migration:0012`` marks the approvals an upgrade found, before the registry sealed them:
    once the registry has sealed them (its first write), that mark counts no more."""
    runtime, registry = world
    _write(runtime, "UPDATE registry_memberships SET approved_by = 'ada', seal = 'migration:0012' "
                    "WHERE user_name = 'mallory'")
    _write(runtime, "UPDATE registry_users SET is_admin = :yes, admin_approved_by = 'ada', "
                    "admin_seal = 'migration:0012' WHERE name = 'bob'", yes=True)
    assert "did not seal" in _refused(registry, "mallory")
    assert not registry.is_administrator("bob")
    registry.upsert_user("root", "carol")  # another write: nothing is sealed again
    assert not registry.can_access("mallory", "diab", today=TODAY) and not registry.is_administrator("bob")
    assert [e.details for e in runtime.audit.entries(action="registry.seals.upgrade")] == [
        {"memberships": 0, "administrators": 0}]
