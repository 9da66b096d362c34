"""The two-person rule on memberships (``registry.membership_approvals``): a membership granted or
extended with 2 approvals waits for a second administrator; the setting, the service, the audit
trail and the ``pds project`` commands. The attacks on it are in
tests/security/test_two_person_memberships.py.

Every test that uses the database runs twice: on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.permissions import SERVICE_REGISTRY_SYNC, Impersonation
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import RegistryRules, load_settings

TODAY = date(2026, 6, 1)
UNTIL = date(2027, 6, 30)


@pytest.fixture
def two(db_settings):
    """A registry with two approvals: administrators root and ada, researcher alice, a project."""
    runtime = Runtime(replace(db_settings, registry=RegistryRules(membership_approvals=2)))
    registry = Registry.from_runtime(runtime)
    # the first installation makes both administrators at once (an administrator made later is
    # pending: tests/registry/test_administrator_approvals.py)
    registry.apply("os:setup", parse_registry({"users": [{"name": "root", "admin": True}, {"name": "ada", "admin": True}]}))
    registry.upsert_user("root", "alice")
    registry.upsert_project("root", "diab", title="Diabetes", start_date=date(2026, 1, 1), end_date=date(2028, 1, 1))
    yield runtime, registry
    runtime.close()


def test_a_grant_is_pending_until_a_second_administrator_approves_it(two):
    runtime, registry = two
    member = registry.add_member("root", "diab", "alice", "researcher", UNTIL)
    assert member.pending and (member.granted_by, member.approved_by) == ("root", None)
    assert not registry.can_access("alice", "diab", today=TODAY)
    assert registry.active_projects("alice", today=TODAY) == []
    with pytest.raises(PermissionDenied) as refused:
        registry.check_access("alice", "diab", action="airlock.access.submit", today=TODAY)
    assert str(refused.value) == ("the researcher membership of alice in diab is pending: a second administrator "
                                  "must approve it: pds project approve-member diab alice --role researcher")

    approved = registry.approve_member("ada", "diab", "alice", "researcher")
    assert not approved.pending and (approved.granted_by, approved.approved_by) == ("root", "ada")
    assert registry.can_access("alice", "diab", today=TODAY)
    assert [p.id for p in registry.active_projects("alice", today=TODAY)] == ["diab"]
    assert registry.members("diab") == [approved]

    add = runtime.audit.entries(action="registry.member.add")[-1]
    assert add.actor == "root" and add.details["pending"] is True
    approval = runtime.audit.entries(action="registry.member.approve")[-1]
    assert (approval.actor, approval.target, approval.project, approval.outcome) == ("ada", "user:alice", "diab", "ok")
    assert approval.details == {"role": "researcher", "expires_on": "2027-06-30", "granted_by": "root"}
    assert runtime.audit.verify().ok


def test_shortening_and_removing_need_no_approval(two):
    _, registry = two
    registry.add_member("root", "diab", "alice", "researcher", UNTIL)
    registry.approve_member("ada", "diab", "alice", "researcher")
    shorter = registry.add_member("root", "diab", "alice", "researcher", date(2026, 12, 31))
    assert (shorter.granted_by, shorter.approved_by) == ("root", "ada")
    assert registry.can_access("alice", "diab", today=TODAY)
    assert registry.remove_member("root", "diab", "alice") == 1
    assert not registry.can_access("alice", "diab", today=TODAY)


def test_a_registry_file_grants_pending_memberships_that_an_administrator_approves(two):
    """The chart's registry-sync Job is recorded as the granter; any administrator who is not the
    member approves through the CLI (the service call here)."""
    _, registry = two
    spec = parse_registry({"projects": [{"id": "diab", "title": "Diabetes", "start": "2026-01-01", "end": "2028-01-01",
                                         "members": [{"user": "alice", "role": "researcher", "expires": "2027-06-30"}]}]})
    changes = registry.apply(SERVICE_REGISTRY_SYNC, spec)
    assert changes == ["diab: alice researcher until 2027-06-30 (pending: a second administrator must approve it)"]
    [member] = registry.members("diab")
    assert member.pending and member.granted_by == SERVICE_REGISTRY_SYNC
    assert registry.apply(SERVICE_REGISTRY_SYNC, spec) == []  # re-applied: still pending, nothing written
    registry.approve_member("root", "diab", "alice", "researcher")
    assert registry.can_access("alice", "diab", today=TODAY)


def test_an_impersonated_grant_records_both_people(two):
    _, registry = two
    member = registry.add_member(Impersonation("ada", by="root"), "diab", "alice", "researcher", UNTIL)
    assert member.granted_by == "root acting as ada" and member.pending


@pytest.mark.parametrize("value", [0, 3, -1, True])
def test_any_other_number_of_approvals_is_refused(runtime, value):
    with pytest.raises(InvalidInput, match="registry.membership_approvals is .*: use 1 .* or 2"):
        Registry(runtime.sessions, runtime.audit, value)


def test_the_setting_comes_from_the_environment():
    assert load_settings(environ={}).registry.membership_approvals == 1
    settings = load_settings(environ={"PDS_REGISTRY__MEMBERSHIP_APPROVALS": "2"})
    assert settings.registry.membership_approvals == 2
    with pytest.raises(InvalidInput, match="expected an integer"):
        load_settings(environ={"PDS_REGISTRY__MEMBERSHIP_APPROVALS": "two"})


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_the_cli_shows_pending_memberships_and_approves_them(two_person_cli):
    cli, runtime = two_person_cli, two_person_cli.runtime
    registry = Registry.from_runtime(runtime)
    assert registry.membership_approvals == 2
    # the first installation makes both administrators at once (an administrator made later is
    # pending: tests/registry/test_administrator_approvals.py)
    registry.apply("os:setup", parse_registry({"users": [{"name": "root", "admin": True}, {"name": "ada", "admin": True}]}))
    registry.upsert_user("root", "alice")
    registry.upsert_project("root", "diab", title="Diabetes", start_date=date(2026, 1, 1), end_date=date(2099, 1, 1))
    out = _ok(cli("project", "add-member", "diab", "alice", "--role", "researcher", "--expires", "2098-12-31",
                  actor="root"))
    assert "pending" in out and "pds project approve-member diab alice --role researcher" in out
    out = _ok(cli("project", "show", "diab", actor="root"))
    assert "alice" in out and "pending" in out
    assert "0 (+1 pending)" in _ok(cli("project", "list", actor="root"))

    refused = cli("project", "approve-member", "diab", "alice", "--role", "researcher", actor="root")
    assert isinstance(refused.exception, PermissionDenied)
    refused = cli("--as", "ada", "project", "approve-member", "diab", "alice", "--role", "researcher", actor="root")
    assert isinstance(refused.exception, PermissionDenied)
    out = _ok(cli("project", "approve-member", "diab", "alice", "--role", "researcher", actor="ada"))
    assert "granted by root, approved by ada" in out
    out = _ok(cli("project", "show", "diab", actor="root"))
    assert "pending" not in out and "ada" in out
    assert registry.can_access("alice", "diab")
    denied = [e.actor for e in runtime.audit.entries(action="registry.member.approve") if e.outcome == "denied"]
    assert denied == ["root", "root acting as ada"]


def test_the_platform_page_and_the_hub_name_a_pending_membership(two):
    from pds_kernel.hub.common import revoke_reason
    from pds_kernel.overview import build_overview

    runtime, registry = two
    registry.add_member("root", "diab", "alice", "researcher", UNTIL)
    assert revoke_reason(registry, "alice", "diab", TODAY) == (
        "the membership of alice in diab is pending a second administrator's approval")
    [row] = build_overview(runtime, registry, "ada", [], today=TODAY, verify_audit=False).projects
    assert [(m.user, m.pending) for m in row.members] == [("alice", True)]
    registry.approve_member("ada", "diab", "alice", "researcher")
    [row] = build_overview(runtime, registry, "ada", [], today=TODAY, verify_audit=False).projects
    assert [(m.user, m.pending) for m in row.members] == [("alice", False)]
