"""Red team of the two-person rule on administrators (``registry.membership_approvals: 2``).

One administrator, root, wants a second administrator account he controls, to be the "second
administrator" of his own grants (memberships, and more administrators). Making a user an
administrator was one administrator's act; now the user made one (created as one, promoted,
reactivated) is no administrator until a second administrator approves it: not the one who made
them, not themselves, never through ``--as``, never a service identity. Each attempt runs against
the real registry service on a real database (SQLite) and must fail; a refused approval is audited.
"""

from __future__ import annotations

from datetime import date

import pytest

from pds_kernel import permissions
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.permissions import SERVICE_REGISTRY_SYNC, Impersonation
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import RegistryRules
from tests.conftest import make_settings

PROJECT = "cardio-study"
UNTIL = date(2027, 6, 30)
TODAY = date(2026, 6, 1)


def _runtime(tmp_path, approvals: int = 2) -> Runtime:
    return Runtime(make_settings(tmp_path, registry=RegistryRules(membership_approvals=approvals)))


def _users(*admins: str, others: tuple[str, ...] = ()):
    return parse_registry({"users": [{"name": a, "admin": True} for a in admins] + [{"name": u} for u in others]})


@pytest.fixture
def world(tmp_path):
    """root, ada and eve, approved administrators (the first installation made them); alice and
    mallory, users; a project."""
    runtime = _runtime(tmp_path)
    registry = Registry.from_runtime(runtime)
    registry.apply("os:root", _users("root", "ada", "eve"))
    for user in ("alice", "mallory"):
        registry.upsert_user("root", user)
    registry.upsert_project("root", PROJECT, title="Cardiology", start_date=date(2026, 1, 1),
                            end_date=date(2028, 12, 31))
    try:
        yield runtime, registry
    finally:
        runtime.close()


def _refused(runtime, actor: str) -> list:
    return [e for e in runtime.audit.entries()
            if e.action == "registry.user.approve_admin" and e.outcome == "denied" and e.actor == actor]


def _no_administrator(registry, user: str) -> None:
    """``user`` is no administrator by any decision built on it."""
    assert registry.get_user(user).admin_pending
    assert not registry.is_administrator(user)
    assert not permissions.can_administer_registry(registry, user)
    assert not permissions.can_manage_hub_accounts(registry, user)
    assert not permissions.can_impersonate(registry, user, "alice")
    assert not permissions.can_approve_package(registry, user)
    assert not permissions.can_view_platform(registry, user)


def test_promoted_account_approves_the_promoters_membership_grant(world):
    """root makes mallory an administrator, grants alice a membership and has mallory approve it.
    Refused: mallory is no administrator until a second administrator approves her. GOT THROUGH
    before the fix (the residual risk of docs/isolation.md)."""
    runtime, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    registry.add_member("root", PROJECT, "alice", "researcher", UNTIL)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        registry.approve_member("mallory", PROJECT, "alice", "researcher")
    assert not registry.can_access("alice", PROJECT, today=TODAY)
    _no_administrator(registry, "mallory")


def test_promoter_approves_his_own_promotion(world):
    """root makes mallory an administrator and approves it himself. Refused: a second, different
    administrator approves. Before the fix
    there was nothing to approve: mallory was an administrator at once."""
    runtime, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    with pytest.raises(PermissionDenied, match="second, different administrator"):
        registry.approve_administrator("root", "mallory")
    _no_administrator(registry, "mallory")
    assert len(_refused(runtime, "root")) == 1


def test_promoted_account_approves_its_own_promotion(world):
    """root makes mallory an administrator; mallory approves her own promotion. Refused: she is no
    administrator yet (and nobody approves themselves). Did not get through."""
    runtime, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    with pytest.raises(PermissionDenied):
        registry.approve_administrator("mallory", "mallory")
    _no_administrator(registry, "mallory")
    assert len(_refused(runtime, "mallory")) == 1


def test_approved_administrator_approves_themselves_after_reactivation(world):
    """eve, an approved administrator, is deactivated and reactivated by root (pending again), then
    approves her own return. Refused: nobody approves their own administrator role. Did not get through."""
    runtime, registry = world
    registry.upsert_user("root", "eve", is_admin=True, active=False)
    registry.upsert_user("root", "eve", is_admin=True, active=True)
    with pytest.raises(PermissionDenied):
        registry.approve_administrator("eve", "eve")
    _no_administrator(registry, "eve")


def test_promoter_approves_through_another_administrators_identity(world):
    """root makes mallory an administrator and approves ``--as ada``; or makes her one ``--as ada``
    and then ada (or root) approves. Refused: an impersonated identity never approves, and both the
    administrator behind ``--as`` and the one impersonated made the promotion. Did not get through."""
    runtime, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    with pytest.raises(PermissionDenied, match="impersonated identity may never approve"):
        registry.approve_administrator(Impersonation("ada", by="root"), "mallory")
    assert len(_refused(runtime, "root acting as ada")) == 1
    registry.upsert_user(Impersonation("ada", by="root"), "alice", is_admin=True)
    assert registry.get_user("alice").admin_granted_by == "root acting as ada"
    for admin in ("ada", "root"):
        with pytest.raises(PermissionDenied, match="second, different administrator"):
            registry.approve_administrator(admin, "alice")
    _no_administrator(registry, "mallory")
    _no_administrator(registry, "alice")


@pytest.mark.parametrize("identity", [SERVICE_REGISTRY_SYNC, "service:extract-build", "service:package-approval",
                                      "service:cohort-link", "os:ada", "os:root", "migration:0011"])
def test_approval_by_a_service_or_os_identity(world, identity):
    """root makes mallory an administrator and approves as a service identity (the registry-sync
    Job's among them), an OS account, or the migration's marker. Refused: only a registry
    administrator approves. Did not get through."""
    runtime, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        registry.approve_administrator(identity, "mallory")
    _no_administrator(registry, "mallory")
    assert len(_refused(runtime, identity)) == 1


def test_promotion_through_a_registry_file_reapplied(world):
    """root declares mallory ``admin: true`` in a registry file and applies it again and again (as
    himself, ``--as ada``, and through the registry-sync Job), hoping a later application counts as
    a second one. Refused: a file that makes an administrator makes a pending one, and re-applying
    it changes nothing. Did not get through."""
    _, registry = world
    spec = _users("root", "ada", "eve", "mallory", others=("alice",))
    assert any("mallory" in change and "pending" in change for change in registry.apply("root", spec))
    for actor in (Impersonation("ada", by="root"), SERVICE_REGISTRY_SYNC, "root"):
        assert registry.apply(actor, spec) == []
    _no_administrator(registry, "mallory")


def test_demoted_then_promoted_again_keeps_no_old_approval(world):
    """mallory was made an administrator by root and approved by ada; root demotes her (or
    deactivates her) and later makes her one again alone, hoping ada's old approval still counts.
    Refused: every promotion or reactivation is pending anew. Did not get through."""
    _, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    registry.approve_administrator("ada", "mallory")
    assert registry.is_administrator("mallory")
    registry.upsert_user("root", "mallory", is_admin=False)
    registry.upsert_user("root", "mallory", is_admin=True)
    _no_administrator(registry, "mallory")
    registry.approve_administrator("eve", "mallory")
    registry.upsert_user("root", "mallory", is_admin=True, active=False)
    registry.upsert_user("root", "mallory", is_admin=True, active=True)
    _no_administrator(registry, "mallory")


def test_promotion_approved_after_its_maker_left(world):
    """root makes mallory an administrator and is then deactivated; eve approves what root did,
    which would make the promotion of someone who is no administrator count. Refused: it is made
    again by an administrator, and another approves it. Did not get through."""
    _, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    registry.upsert_user("ada", "root", is_admin=True, active=False)
    with pytest.raises(PermissionDenied, match="no active administrator now"):
        registry.approve_administrator("eve", "mallory")
    _no_administrator(registry, "mallory")


def test_a_pending_administrator_does_not_count_as_the_last_one(world):
    """root makes mallory an administrator (pending), deactivates ada and eve, then steps down
    himself: were mallory counted, the registry would keep "an administrator", and a registry with
    no approved one is open to whoever opens it. Refused: only approved administrators count.
    Did not get through."""
    _, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    for admin in ("ada", "eve"):
        registry.upsert_user("root", admin, is_admin=True, active=False)
    with pytest.raises(InvalidInput, match="no active administrator"):
        registry.upsert_user("root", "root", is_admin=False)
    with pytest.raises(InvalidInput, match="no active administrator"):
        registry.apply("root", _users("mallory", others=("root",)))
    assert registry.is_administrator("root")
    assert not permissions.can_administer_registry(registry, "os:root")
    _no_administrator(registry, "mallory")


def test_a_pending_administrator_does_not_end_the_bootstrap(tmp_path):
    """On a first installation root, as his OS account, makes himself an administrator: approved
    at once (otherwise nobody could ever start), and then the bootstrap is over: his OS account can
    no longer write, and the next administrator he makes is pending. Works as intended."""
    runtime = _runtime(tmp_path)
    try:
        registry = Registry.from_runtime(runtime)
        assert not registry.upsert_user("os:root", "root", is_admin=True).admin_pending
        assert registry.is_administrator("root")
        with pytest.raises(PermissionDenied):
            registry.upsert_user("os:root", "mallory", is_admin=True)
        assert registry.upsert_user("root", "mallory", is_admin=True).admin_pending
        _no_administrator(registry, "mallory")
    finally:
        runtime.close()


def test_with_one_approval_nothing_changes(tmp_path):
    """With ``registry.membership_approvals: 1`` an administrator made by one administrator is one
    at once, as before (nothing is pending, so nothing is approved). Works as intended."""
    runtime = _runtime(tmp_path, approvals=1)
    try:
        registry = Registry.from_runtime(runtime)
        registry.upsert_user("os:root", "root", is_admin=True)
        registry.upsert_user("root", "mallory", is_admin=True)
        assert registry.is_administrator("mallory")
        with pytest.raises(InvalidInput, match="no pending administrator"):
            registry.approve_administrator("root", "mallory")
    finally:
        runtime.close()


def test_promotion_made_again_between_the_check_and_the_approval(world, monkeypatch):
    """root makes mallory an administrator; ada approves, and between the check of her approval and
    its write she demotes mallory and makes her one again herself, so that her approval (checked
    against root's promotion) lands on her own. Refused: the approval is written only if the user
    is still as checked (the row is locked meanwhile on PostgreSQL). Did not get through."""
    runtime, registry = world
    registry.upsert_user("root", "mallory", is_admin=True)
    checked = permissions.check_approve_administrator

    def check_then_change(registry_, actor, user_name, granted_by):
        checked(registry_, actor, user_name, granted_by)
        registry.upsert_user("ada", "mallory", is_admin=False)
        registry.upsert_user("ada", "mallory", is_admin=True)

    monkeypatch.setattr(permissions, "check_approve_administrator", check_then_change)
    with pytest.raises(InvalidInput, match="changed while being approved"):
        registry.approve_administrator("ada", "mallory")
    assert registry.get_user("mallory").admin_granted_by == "ada"
    _no_administrator(registry, "mallory")
    assert len(_refused(runtime, "ada")) == 1
