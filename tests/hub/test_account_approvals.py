"""Hub accounts under the two-person rule (``registry.membership_approvals``): who created or reset
an account, when it waits for a second administrator, who may approve it, and what a reset ends.

The real services (:func:`pds_kernel.hub.local.provision_account`, ``set_account_approval`` and
so :func:`pds_kernel.hub.accounts.apply_account_approval`) on a real registry and a real hub
database (SQLite files under ``tmp_path``); no hub process (tests/security/test_two_person_account_attacks.py
signs in through one)."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager

import pytest

from pds_kernel import permissions
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.hub.local import hub_dir, provision_account, set_account_approval
from pds_kernel.hub.provisions import AccountSecret
from pds_kernel.registry import Registry
from pds_kernel.registry.models import MEMBERSHIP_APPROVALS_RULE
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import RegistryRules
from tests.conftest import make_settings

PASSWORD = "long-enough-password"


def _runtime(tmp_path, approvals: int) -> Runtime:
    return Runtime(make_settings(tmp_path, registry=RegistryRules(membership_approvals=approvals)))


def _world(tmp_path, approvals: int) -> tuple[Runtime, Registry]:
    """root, ada and eve, approved administrators (the first installation); alice, a user."""
    runtime = _runtime(tmp_path, approvals)
    registry = Registry.from_runtime(runtime)
    registry.apply("os:root", parse_registry({"users": [{"name": a, "admin": True} for a in ("root", "ada", "eve")]
                                              + [{"name": "alice"}]}))
    return runtime, registry


@contextmanager
def _opened(tmp_path, approvals: int):
    """The world of :func:`_world`, its runtime closed at the end."""
    runtime, registry = _world(tmp_path, approvals)
    try:
        yield runtime, registry
    finally:
        runtime.close()


@pytest.fixture
def two(tmp_path):
    with _opened(tmp_path, 2) as world:
        yield world


@pytest.fixture
def one(tmp_path):
    with _opened(tmp_path, 1) as world:
        yield world


def _account(settings, user: str) -> tuple[bool, str | None, str | None] | None:
    """(approved, provisioned_by, approved_by) of ``user``'s account, read from the hub database."""
    with sqlite3.connect(hub_dir(settings) / "jupyterhub.sqlite") as db:
        row = db.execute("SELECT is_authorized FROM users_info WHERE username = ?", (user,)).fetchone()
        made = db.execute("SELECT provisioned_by, approved_by FROM pds_account_provisions WHERE username = ?",
                          (user,)).fetchone()
    return None if row is None else (bool(row[0]), *(made or (None, None)))


def _entries(runtime, action: str, outcome: str = "ok") -> list:
    return [e for e in runtime.audit.entries(action=action) if e.outcome == outcome]


def _details(entry) -> dict:
    """An entry's details but its generation, a random token that each one has
    (tests/security/test_hub_account_generations.py)."""
    details = dict(entry.details)
    assert len(details.pop("generation")) == 32, entry.details
    return details


# ---- one approval (the local default, the demo): unchanged ------------------------------------------
def test_with_one_approval_an_account_is_approved_at_once(one):
    runtime, registry = one
    secret = provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root")
    assert isinstance(secret, AccountSecret) and not secret.pending and len(secret) == 16
    assert "approved" in secret.next_step
    assert _account(runtime.settings, "alice") == (True, "root", "root")
    provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root", reset=True)
    assert _account(runtime.settings, "alice") == (True, "root", "root")
    set_account_approval(runtime.settings, registry, "alice", False, actor="root")
    set_account_approval(runtime.settings, registry, "alice", True, actor="root")  # one person, as before
    assert _account(runtime.settings, "alice")[0] is True
    [create] = _entries(runtime, "hub.account.create")
    assert _details(create) == {"pending": False, "approvals": 1}


def test_with_one_approval_an_administrator_approves_his_own_revoked_account(one):
    runtime, registry = one
    provision_account(runtime.settings, registry, "ada", PASSWORD, actor="ada")
    set_account_approval(runtime.settings, registry, "ada", False, actor="root")
    set_account_approval(runtime.settings, registry, "ada", True, actor="ada")
    assert _account(runtime.settings, "ada")[0] is True


# ---- two approvals ---------------------------------------------------------------------------------
def test_an_account_created_by_one_administrator_waits_for_a_second(two):
    runtime, registry = two
    secret = provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root")
    assert secret.pending
    assert "pds hub account approve alice" in secret.next_step
    assert _account(runtime.settings, "alice") == (False, "root", None)
    [create] = _entries(runtime, "hub.account.create")
    assert _details(create) == {"pending": True, "approvals": 2}
    set_account_approval(runtime.settings, registry, "alice", True, actor="ada")
    assert _account(runtime.settings, "alice") == (True, "root", "ada")
    [approval] = _entries(runtime, "hub.account.approve")
    assert approval.actor == "ada"
    assert _details(approval) == {"via": "cli", "provisioned_by": "root", "provision": "create",
                                "second_administrator": True}


def test_a_reset_waits_for_a_second_administrator_again(two):
    runtime, registry = two
    provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root")
    set_account_approval(runtime.settings, registry, "alice", True, actor="ada")
    secret = provision_account(runtime.settings, registry, "alice", "another-password", actor="eve", reset=True)
    assert secret.pending
    assert _account(runtime.settings, "alice") == (False, "eve", None)
    with pytest.raises(PermissionDenied, match="eve created or reset the hub account of alice"):
        set_account_approval(runtime.settings, registry, "alice", True, actor="eve")
    set_account_approval(runtime.settings, registry, "alice", True, actor="root")  # root made the first one: fine
    assert _account(runtime.settings, "alice") == (True, "eve", "root")


def test_the_first_installation_makes_an_account_approved_at_once(tmp_path):
    """While the registry holds no approved administrator, whoever opens it may create accounts
    (as it may create administrators), and they are approved at once: otherwise nobody could sign
    in to a first installation. The audit entry says it was a bootstrap."""
    runtime = _runtime(tmp_path, 2)
    try:
        registry = Registry.from_runtime(runtime)
        registry.upsert_user("os:op", "root")  # no administrator yet
        secret = provision_account(runtime.settings, registry, "root", PASSWORD, actor="os:op")
        assert not secret.pending
        assert _account(runtime.settings, "root") == (True, "os:op", "os:op")
        [create] = _entries(runtime, "hub.account.create")
        assert _details(create) == {"pending": False, "approvals": 2, "bootstrap": True}
    finally:
        runtime.close()


def test_administrators_cross_approve_their_own_accounts(two):
    """The documented start under two approvals: each administrator creates their own account
    (pending), another approves it."""
    runtime, registry = two
    for admin in ("root", "ada"):
        assert provision_account(runtime.settings, registry, admin, PASSWORD, actor=admin).pending
    set_account_approval(runtime.settings, registry, "root", True, actor="ada")
    set_account_approval(runtime.settings, registry, "ada", True, actor="root")
    assert _account(runtime.settings, "root") == (True, "root", "ada")
    assert _account(runtime.settings, "ada") == (True, "ada", "root")


def test_nobody_approves_his_own_revoked_account(two):
    """Revoking is one administrator's act; approving one's own account back is nobody's."""
    runtime, registry = two
    provision_account(runtime.settings, registry, "ada", PASSWORD, actor="ada")
    set_account_approval(runtime.settings, registry, "ada", True, actor="root")
    set_account_approval(runtime.settings, registry, "ada", False, actor="eve")
    with pytest.raises(PermissionDenied, match="may not approve their own hub account"):
        set_account_approval(runtime.settings, registry, "ada", True, actor="ada")
    assert _account(runtime.settings, "ada")[0] is False
    set_account_approval(runtime.settings, registry, "ada", True, actor="eve")  # the one who revoked: fine
    assert _account(runtime.settings, "ada")[0] is True


def test_revoking_a_pending_account_keeps_it_pending(two):
    runtime, registry = two
    provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root")
    set_account_approval(runtime.settings, registry, "alice", False, actor="root")  # one person: allowed
    with pytest.raises(PermissionDenied, match="second, different administrator"):
        set_account_approval(runtime.settings, registry, "alice", True, actor="root")
    assert _account(runtime.settings, "alice") == (False, "root", None)


def test_a_reset_by_an_administrator_since_demoted_is_made_again(two):
    runtime, registry = two
    provision_account(runtime.settings, registry, "alice", PASSWORD, actor="eve")
    registry.upsert_user("root", "eve", is_admin=False)
    with pytest.raises(PermissionDenied, match="no active administrator now"):
        set_account_approval(runtime.settings, registry, "alice", True, actor="ada")
    assert _account(runtime.settings, "alice")[0] is False
    [refusal] = _entries(runtime, "hub.account.approve", "denied")
    assert "pds hub account add alice --reset" in refusal.details["reason"]


def test_provisioning_records_the_rule_for_every_later_process(two, tmp_path):
    """A process set to 2 that only makes a hub account records the rule, as every registry write
    does: a later command set to 1 works under 2."""
    runtime, _ = two
    runtime.close()
    fresh = tmp_path / "fresh"
    base = _runtime(fresh, 1)
    try:
        Registry.from_runtime(base).apply("os:root", parse_registry(
            {"users": [{"name": a, "admin": True} for a in ("root", "ada")] + [{"name": "alice"}]}))
        assert Registry.from_runtime(base).approvals_rule() == 1
        deployment = _runtime(fresh, 2)
        try:
            provision_account(deployment.settings, Registry.from_runtime(deployment), "ada", PASSWORD, actor="root")
        finally:
            deployment.close()
        lowered = Registry.from_runtime(base)
        assert lowered.approvals_rule() == 2
        rules = [e.details for e in base.audit.entries(action="registry.rule.update")]
        assert rules == [{MEMBERSHIP_APPROVALS_RULE: 2}]
        assert provision_account(base.settings, lowered, "alice", PASSWORD, actor="root").pending
    finally:
        base.close()


def test_approvals_rule_reads_without_writing(two):
    runtime, registry = two
    before = len(runtime.audit.entries())
    assert registry.approvals_rule() == 2
    assert Registry(runtime.sessions, runtime.audit, 1).approvals_rule() == 2  # recorded by the first write
    assert len(runtime.audit.entries()) == before


def test_a_reset_ends_the_accounts_sessions_and_tokens(one):
    """Even with one approval: the login cookies (``cookie_id``) and API tokens issued before a
    reset stand no more (the old credentials may be in someone else's hands)."""
    from jupyterhub import orm

    from pds_kernel.hub.local import hub_session

    runtime, registry = one
    provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root")
    with hub_session(runtime.settings) as db:
        user = orm.User(name="alice")
        db.add_all([user, orm.OAuthClient(identifier="jupyterhub")])  # what a running hub holds
        db.commit()
        user.new_api_token(note="a thief's")
        cookie, tokens = user.cookie_id, db.query(orm.APIToken).filter(orm.APIToken.user_id == user.id).count()
        assert tokens == 1
    provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root", reset=True)
    with hub_session(runtime.settings) as db:
        user = orm.User.find(db, "alice")
        assert user.cookie_id != cookie
        assert db.query(orm.APIToken).filter(orm.APIToken.user_id == user.id).count() == 0
    [reset] = _entries(runtime, "hub.account.reset")
    assert _details(reset) == {"pending": False, "approvals": 1, "tokens_deleted": 1}


# ---- the decision itself (permissions) --------------------------------------------------------------
@pytest.mark.parametrize(("actor", "user", "by", "pending", "approvals", "allowed"), [
    ("ada", "alice", "root", True, 2, True),       # the second administrator
    ("root", "alice", "root", True, 2, False),     # the one who made it
    ("alice", "alice", "root", True, 2, False),    # its user (no administrator anyway)
    ("ada", "ada", "root", True, 2, False),        # its user, an administrator
    ("ada", "alice", "root acting as eve", True, 2, True),
    ("eve", "alice", "root acting as eve", True, 2, False),  # the one impersonated
    ("ada", "alice", "os:op", True, 2, False),     # made by no administrator: made again
    ("root", "alice", "root", True, 1, False),     # pending stays pending whatever the rule says now
    ("root", "alice", "root", False, 2, True),     # approved before, revoked since: one person
    ("ada", "ada", "root", False, 2, False),       # but never one's own
    ("ada", "ada", "root", False, 1, True),        # with one approval, as before
])
def test_can_approve_hub_account(two, actor, user, by, pending, approvals, allowed):
    _, registry = two
    registry.upsert_user("root", "alice")
    assert permissions.can_approve_hub_account(registry, actor, user, by, pending=pending,
                                               approvals=approvals) is allowed
    if allowed:
        permissions.check_approve_hub_account(registry, actor, user, by, pending=pending, approvals=approvals)
    else:
        with pytest.raises(PermissionDenied):
            permissions.check_approve_hub_account(registry, actor, user, by, pending=pending,
                                                  approvals=approvals)


def test_an_approval_of_an_account_that_does_not_exist_is_refused_and_audited(two):
    from pds_kernel.errors import NotFound

    runtime, registry = two
    with pytest.raises(NotFound):
        set_account_approval(runtime.settings, registry, "alice", True, actor="ada")
    assert _entries(runtime, "hub.account.approve", "denied")


def test_a_second_create_is_refused(two):
    runtime, registry = two
    provision_account(runtime.settings, registry, "alice", PASSWORD, actor="root")
    with pytest.raises(InvalidInput, match="--reset"):
        provision_account(runtime.settings, registry, "alice", PASSWORD, actor="ada")
    assert _account(runtime.settings, "alice") == (False, "root", None)
