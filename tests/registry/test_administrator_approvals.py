"""The two-person rule on administrators (``registry.membership_approvals: 2``): a user made an
administrator (created as one, promoted, reactivated) is none until a second administrator
approves it; the first installation's writer makes approved administrators at once; with one
approval nothing changes. The service, the audit trail and the ``pds project`` commands. The
attacks on it are in tests/security/test_two_person_admins.py.

Every test that uses the database runs twice: on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from pds_kernel import permissions
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.permissions import SERVICE_REGISTRY_SYNC
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import RegistryRules

TODAY = date(2026, 6, 1)


def _admins(*names: str):
    return parse_registry({"users": [{"name": name, "admin": True} for name in names]})


@pytest.fixture
def two(db_settings):
    """A registry with two approvals whose first installation made root and ada administrators."""
    runtime = Runtime(replace(db_settings, registry=RegistryRules(membership_approvals=2)))
    registry = Registry.from_runtime(runtime)
    registry.apply("os:setup", _admins("root", "ada"))
    registry.upsert_user("root", "alice")
    yield runtime, registry
    runtime.close()


def test_the_first_installation_makes_approved_administrators(two):
    _, registry = two
    for name in ("root", "ada"):
        user = registry.get_user(name)
        assert not user.admin_pending and (user.admin_granted_by, user.admin_approved_by) == ("os:setup", "os:setup")
        assert registry.is_administrator(name)
    assert not permissions.can_administer_registry(registry, "os:setup")  # bootstrapped: over


def test_an_administrator_made_later_is_none_until_a_second_one_approves(two):
    runtime, registry = two
    made = registry.upsert_user("root", "bea", is_admin=True)
    assert made.admin_pending and (made.admin_granted_by, made.admin_approved_by) == ("root", None)
    assert not registry.is_administrator("bea") and not permissions.can_administer_registry(registry, "bea")
    with pytest.raises(PermissionDenied):
        registry.upsert_user("bea", "carl")
    create = runtime.audit.entries(action="registry.user.create")[-1]
    assert create.details == {"is_admin": True, "active": True, "admin_pending": True}

    approved = registry.approve_administrator("ada", "bea")
    assert not approved.admin_pending and (approved.admin_granted_by, approved.admin_approved_by) == ("root", "ada")
    assert registry.is_administrator("bea") and registry.get_user("bea") == approved
    entry = runtime.audit.entries(action="registry.user.approve_admin")[-1]
    assert (entry.actor, entry.target, entry.outcome, entry.details) == (
        "ada", "user:bea", "ok", {"admin_granted_by": "root"})
    with pytest.raises(InvalidInput, match="no pending administrator"):
        registry.approve_administrator("ada", "bea")
    assert runtime.audit.verify().ok


def test_a_promotion_is_pending_and_a_demotion_needs_no_approval(two):
    _, registry = two
    assert registry.upsert_user("root", "alice", is_admin=True).admin_pending
    registry.approve_administrator("ada", "alice")
    demoted = registry.upsert_user("root", "alice", is_admin=False)
    assert not registry.is_administrator("alice")
    assert (demoted.admin_granted_by, demoted.admin_approved_by) == (None, None)
    again = registry.upsert_user("ada", "alice", is_admin=True)
    assert again.admin_pending and again.admin_granted_by == "ada"
    registry.approve_administrator("root", "alice")
    registry.upsert_user("root", "alice", is_admin=True, active=False)  # deactivating needs none either
    assert not registry.is_administrator("alice")
    assert registry.upsert_user("root", "alice", is_admin=True, active=True).admin_pending  # reactivated


def test_a_registry_file_makes_pending_administrators_and_reapplying_approves_nothing(two):
    _, registry = two
    spec = _admins("root", "ada", "bea")
    changes = registry.apply("root", spec)
    assert changes == ["user bea created (administrator pending: a second administrator must approve it)"]
    assert registry.apply("root", spec) == [] and registry.apply(SERVICE_REGISTRY_SYNC, spec) == []
    assert registry.get_user("bea").admin_pending
    registry.approve_administrator("ada", "bea")
    assert registry.is_administrator("bea")


def test_the_registry_sync_job_makes_a_pending_administrator_any_other_one_approves(two):
    _, registry = two
    registry.apply(SERVICE_REGISTRY_SYNC, _admins("bea"))
    assert registry.get_user("bea").admin_granted_by == SERVICE_REGISTRY_SYNC
    registry.approve_administrator("root", "bea")
    assert registry.is_administrator("bea")


def test_with_one_approval_an_administrator_is_one_at_once(db_settings):
    runtime = Runtime(db_settings)
    try:
        registry = Registry.from_runtime(runtime)
        assert registry.membership_approvals == 1
        registry.upsert_user("os:setup", "root", is_admin=True)
        made = registry.upsert_user("root", "bea", is_admin=True)
        assert not made.admin_pending and (made.admin_granted_by, made.admin_approved_by) == ("root", "root")
        assert registry.is_administrator("bea")
        with pytest.raises(InvalidInput, match="no pending administrator"):
            registry.approve_administrator("root", "bea")
    finally:
        runtime.close()


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_the_cli_marks_a_pending_administrator_and_approves_it(two_person_cli):
    cli, runtime = two_person_cli, two_person_cli.runtime
    registry = Registry.from_runtime(runtime)
    registry.apply("os:setup", _admins("root", "ada"))
    out = _ok(cli("project", "add-user", "bea", "--admin", actor="root"))
    assert "pending" in out and "pds project approve-admin bea" in out
    assert "pending" in _ok(cli("project", "users", actor="root"))

    refused = cli("project", "approve-admin", "bea", actor="root")
    assert isinstance(refused.exception, PermissionDenied)
    refused = cli("--as", "ada", "project", "approve-admin", "bea", actor="root")
    assert isinstance(refused.exception, PermissionDenied)
    out = _ok(cli("project", "approve-admin", "bea", actor="ada"))
    assert "made one by root, approved by ada" in out
    assert "pending" not in _ok(cli("project", "users", actor="root"))
    assert registry.is_administrator("bea")
    denied = [e.actor for e in runtime.audit.entries(action="registry.user.approve_admin") if e.outcome == "denied"]
    assert denied == ["root", "root acting as ada"]
