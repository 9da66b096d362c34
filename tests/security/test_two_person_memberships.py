"""One administrator who wants to read a project's data through an account they control: refused.

With ``registry.membership_approvals: 2`` (the chart's setting) a membership granted, or extended,
by one administrator is pending and grants nothing until a second administrator approves it: not
the one who granted it, not the member, never through ``--as``. Each attempt below is made against
the real registry service on a real database and must fail: the membership stays pending (no
access anywhere: ``check_access``, ``can_access``, ``active_projects``) and the refusal is audited.
"""

from __future__ import annotations

from datetime import date

import pytest

from pds_kernel.errors import InvalidInput, NotFound, PermissionDenied
from pds_kernel.permissions import SERVICE_REGISTRY_SYNC, Impersonation
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import RegistryRules
from tests.conftest import make_settings

PROJECT = "cardio-study"
UNTIL = date(2027, 6, 30)
LATER = date(2028, 6, 30)


def _world(tmp_path, approvals: int):
    runtime = Runtime(make_settings(tmp_path, registry=RegistryRules(membership_approvals=approvals)))
    registry = Registry.from_runtime(runtime)
    # the first installation: whoever opens the empty registry makes its first administrators, approved
    # at once (one registry file); an administrator made later waits for a second one's approval
    registry.apply("os:root", parse_registry({"users": [{"name": a, "admin": True} for a in ("root", "ada", "eve")]}))
    for user in ("alice", "mallory"):
        registry.upsert_user("root", user)
    registry.upsert_project("root", PROJECT, title="Cardiology", start_date=date(2026, 1, 1),
                            end_date=date(2028, 12, 31))
    return runtime, registry


@pytest.fixture
def world(tmp_path):
    runtime, registry = _world(tmp_path, 2)
    try:
        yield runtime, registry
    finally:
        runtime.close()


def _refused_approvals(runtime, actor: str) -> list:
    return [e for e in runtime.audit.entries()
            if e.action == "registry.member.approve" and e.outcome == "denied" and e.actor == actor]


def _no_access(registry, user: str, role: str = "researcher") -> None:
    today = date(2026, 6, 1)
    assert not registry.can_access(user, PROJECT, role, today=today)
    assert registry.active_projects(user, role, today=today) == []
    with pytest.raises(PermissionDenied, match="pending: a second administrator must approve it: "
                                               f"pds project approve-member {PROJECT} {user} --role {role}"):
        registry.check_access(user, PROJECT, role, action="airlock.access.submit", today=today)


def _file(*members: tuple[str, str, str]) -> object:
    return parse_registry({
        "users": [{"name": "root", "admin": True}, {"name": "ada", "admin": True}, {"name": "eve", "admin": True},
                  {"name": "alice"}, {"name": "mallory"}],
        "projects": [{"id": PROJECT, "title": "Cardiology", "start": "2026-01-01", "end": "2028-12-31",
                      "members": [{"user": u, "role": r, "expires": e} for u, r, e in members]}]})


def test_granter_approves_their_own_grant(world):
    """root creates an account, grants it a membership and approves the grant: refused."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    with pytest.raises(PermissionDenied, match="second, different administrator"):
        registry.approve_member("root", PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, "root")) == 1


def test_member_approves_their_own_membership(world):
    """ada, an administrator granted a membership by root, approves it herself: refused."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "ada", "output-checker", UNTIL)
    with pytest.raises(PermissionDenied, match="their own membership"):
        registry.approve_member("ada", PROJECT, "ada", "output-checker")
    _no_access(registry, "ada", "output-checker")
    assert len(_refused_approvals(runtime, "ada")) == 1


def test_granter_acting_as_another_administrator_approves(world):
    """root grants mallory, then approves ``--as ada``: an impersonated identity never approves."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    with pytest.raises(PermissionDenied, match="impersonated identity may never approve"):
        registry.approve_member(Impersonation("ada", by="root"), PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, "root acting as ada")) == 1


def test_administrator_impersonated_to_grant_approves(world):
    """root grants mallory ``--as ada``; ada's approval would make root's grant look two-person."""
    runtime, registry = world
    registry.add_member(Impersonation("ada", by="root"), PROJECT, "mallory", "researcher", UNTIL)
    for admin in ("ada", "root"):
        with pytest.raises(PermissionDenied, match="second, different administrator"):
            registry.approve_member(admin, PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")


def test_non_administrator_approves(world):
    """alice, a researcher, approves mallory's membership: refused."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        registry.approve_member("alice", PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, "alice")) == 1


def test_service_identity_approves(world):
    """The registry-sync Job's identity applies files; it never approves what it granted."""
    runtime, registry = world
    registry.apply(SERVICE_REGISTRY_SYNC, _file(("mallory", "researcher", "2027-06-30")))
    with pytest.raises(PermissionDenied):
        registry.approve_member(SERVICE_REGISTRY_SYNC, PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")


def test_approving_a_membership_that_does_not_exist(world):
    """ada approves a membership nobody granted (to have one appear approved later): refused."""
    runtime, registry = world
    with pytest.raises(NotFound, match="nothing to approve"):
        registry.approve_member("ada", PROJECT, "mallory", "researcher")
    with pytest.raises(NotFound):
        registry.approve_member("ada", "no-such-project", "mallory", "researcher")
    assert registry.members(PROJECT) == []
    assert len(_refused_approvals(runtime, "ada")) == 2
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    _no_access(registry, "mallory")  # a refused approval leaves nothing behind


def test_granter_extends_an_approved_membership(world):
    """Approved by ada until 2027, then extended by root alone: pending again, no access."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    assert registry.can_access("mallory", PROJECT, today=date(2026, 6, 1))
    extended = registry.add_member("root", PROJECT, "mallory", "researcher", LATER)
    assert extended.pending and extended.granted_by == "root"
    _no_access(registry, "mallory")


def test_granter_extends_a_pending_membership(world):
    """A pending membership extended by its granter stays pending."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.add_member("root", PROJECT, "mallory", "researcher", LATER)
    with pytest.raises(PermissionDenied):
        registry.approve_member("root", PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")


def test_approved_membership_shortened_then_extended_back(world):
    """Shortening keeps the approval; extending back to the approved date is an extension: pending."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", LATER)
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    short = registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    assert not short.pending and short.approved_by == "ada"
    assert registry.add_member("root", PROJECT, "mallory", "researcher", LATER).pending
    _no_access(registry, "mallory")


def test_registry_file_reapplied_to_approve(world):
    """root applies a file granting mallory, then applies it again, and ada applies it too: a file
    that keeps a pending membership as it is leaves it pending (approval is a separate act)."""
    _, registry = world
    spec = _file(("mallory", "researcher", "2027-06-30"))
    changes = registry.apply("root", spec)
    assert any("pending" in c for c in changes)
    assert registry.apply("root", spec) == []
    assert registry.apply("ada", spec) == []
    with pytest.raises(PermissionDenied):
        registry.approve_member("root", PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")


def test_registry_file_extends_an_approved_membership(world):
    """Granted by root, approved by ada, then extended by a file root applies: pending again."""
    _, registry = world
    registry.apply("root", _file(("mallory", "researcher", "2027-06-30")))
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    assert registry.can_access("mallory", PROJECT, today=date(2026, 6, 1))
    registry.apply("root", _file(("mallory", "researcher", "2028-06-30")))
    assert [m.granted_by for m in registry.members(PROJECT)] == ["root"]
    _no_access(registry, "mallory")


def test_approval_approved_twice(world):
    """A second approval of an approved membership is refused (and audited): nothing to approve."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    with pytest.raises(InvalidInput, match="not pending"):
        registry.approve_member("eve", PROJECT, "mallory", "researcher")
    assert [m.approved_by for m in registry.members(PROJECT)] == ["ada"]
    assert len(_refused_approvals(runtime, "eve")) == 1


def test_with_one_approval_a_grant_is_immediate_and_self_grants_still_refused(tmp_path):
    """``membership_approvals: 1`` (the one-machine default) keeps the behaviour of before: the
    granter's grant gives access at once; granting oneself is still refused."""
    runtime, registry = _world(tmp_path, 1)
    try:
        member = registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
        assert not member.pending and member.approved_by == member.granted_by == "root"
        assert registry.can_access("mallory", PROJECT, today=date(2026, 6, 1))
        with pytest.raises(PermissionDenied, match="nobody grants themselves"):
            registry.add_member("root", PROJECT, "root", "researcher", UNTIL)
    finally:
        runtime.close()
