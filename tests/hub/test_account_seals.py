"""Seals of the local hub's accounts (:mod:`pds_kernel.hub.account_seals`): every platform write of an
account seals it, the accounts made before the seals are sealed once, and an account changed outside
the platform is refused until it is reset.

The real services on a real registry and a real hub database (SQLite files under ``tmp_path``), and
the real authenticator's ``authenticate`` and ``change_password`` on that database; no hub process
(tests/security/test_hub_account_seals.py signs in through one)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import onetimepass
import pytest

from pds_kernel.errors import InvalidInput
from pds_kernel.hub.account_seals import BROKEN, UPGRADE_ACTION, AccountSeals
from pds_kernel.hub.common import HubContext
from pds_kernel.hub.local import (
    PdsNativeAuthenticator,
    hub_dir,
    hub_session,
    provision_account,
    seal_accounts_made_before_seals,
    set_account_approval,
)
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Hub, RegistryRules
from tests.conftest import make_settings

PASSWORD = "long-enough-password"


@pytest.fixture
def world(tmp_path):
    """root and ada, approved administrators; alice and bob, users; two approvals."""
    runtime = Runtime(make_settings(tmp_path, registry=RegistryRules(membership_approvals=2)))
    registry = Registry.from_runtime(runtime)
    registry.apply("os:root", parse_registry({"users": [{"name": "root", "admin": True}, {"name": "ada", "admin": True},
                                                        {"name": "alice"}, {"name": "bob"}]}))
    yield runtime, registry
    runtime.close()


def _sealed(runtime, user: str) -> bool:
    with hub_session(runtime.settings) as session:
        from nativeauthenticator.orm import UserInfo

        return AccountSeals(runtime.audit).sealed(session, UserInfo.find(session, user))


def _write(runtime, sql: str, *values) -> None:
    """A write of the hub database outside the platform."""
    with sqlite3.connect(hub_dir(runtime.settings) / "jupyterhub.sqlite") as db:
        assert db.execute(sql, values).rowcount == 1


def _ok(runtime, action: str) -> list:
    return [e for e in runtime.audit.entries(action=action) if e.outcome == "ok"]


def test_every_platform_write_of_an_account_seals_it(world):
    runtime, registry = world
    settings = runtime.settings
    provision_account(settings, registry, "alice", PASSWORD, actor="root")  # pending: two approvals
    assert _sealed(runtime, "alice")
    set_account_approval(settings, registry, "alice", True, actor="ada")
    assert _sealed(runtime, "alice")
    set_account_approval(settings, registry, "alice", False, actor="root")
    assert _sealed(runtime, "alice")
    provision_account(settings, registry, "alice", PASSWORD, actor="root", reset=True)
    assert _sealed(runtime, "alice")
    assert [e.details["accounts"] for e in _ok(runtime, UPGRADE_ACTION)] == [0]  # a new installation


def test_the_accounts_made_before_the_seals_are_sealed_once(world):
    """Accounts written as the release before wrote them (no seal); the hub's start seals them, audited,
    once: an account written without a seal after that is never sealed by it."""
    runtime, registry = world
    from nativeauthenticator.orm import UserInfo

    with hub_session(runtime.settings) as session:
        session.add(UserInfo(username="alice", password=b"$2b$12$" + b"x" * 53, is_authorized=True, has_2fa=True))
        session.commit()
    assert not _sealed(runtime, "alice")
    assert seal_accounts_made_before_seals(runtime.settings, runtime.audit, "hub") == ["alice"]
    assert _sealed(runtime, "alice")
    [upgrade] = [e.details for e in _ok(runtime, UPGRADE_ACTION)]
    assert (upgrade["accounts"], upgrade["names"], len(upgrade["generation"])) == (1, ["alice"], 32)
    _write(runtime, "INSERT INTO users_info (username, password, is_authorized, has_2fa) VALUES ('bob', x'00', 1, 1)")
    assert seal_accounts_made_before_seals(runtime.settings, runtime.audit, "hub") is None
    assert not _sealed(runtime, "bob")
    provision_account(runtime.settings, registry, "bob", PASSWORD, actor="root", reset=True)
    assert len(_ok(runtime, UPGRADE_ACTION)) == 1


def test_an_account_changed_outside_the_platform_is_refused_until_it_is_reset(world):
    runtime, registry = world
    settings = runtime.settings
    provision_account(settings, registry, "alice", PASSWORD, actor="root")
    set_account_approval(settings, registry, "alice", True, actor="ada")
    _write(runtime, "UPDATE users_info SET otp_secret = 'JBSWY3DPEHPK3PXP' WHERE username = 'alice'")
    set_account_approval(settings, registry, "alice", False, actor="root")  # a revocation is made...
    assert not _sealed(runtime, "alice")  # ...but seals nothing
    assert runtime.audit.entries(action="hub.account.revoke")[-1].details["account_seal"].startswith("broken")
    with pytest.raises(InvalidInput, match="--reset"):
        set_account_approval(settings, registry, "alice", True, actor="ada")
    provision_account(settings, registry, "alice", PASSWORD, actor="root", reset=True)
    set_account_approval(settings, registry, "alice", True, actor="ada")
    assert _sealed(runtime, "alice")


def test_an_approval_written_outside_the_platform_is_undone_by_a_revocation(world):
    """Only the approval changed: the account's password and second factor are still the platform's,
    so an administrator's revocation seals it again, and a later approval is a real one."""
    runtime, registry = world
    settings = runtime.settings
    provision_account(settings, registry, "alice", PASSWORD, actor="root")  # pending
    _write(runtime, "UPDATE users_info SET is_authorized = 1 WHERE username = 'alice'")
    assert not _sealed(runtime, "alice")
    set_account_approval(settings, registry, "alice", False, actor="root")
    assert _sealed(runtime, "alice")
    set_account_approval(settings, registry, "alice", True, actor="ada")
    assert _sealed(runtime, "alice")


def _authenticator(runtime, registry, session) -> PdsNativeAuthenticator:
    context = HubContext(settings=runtime.settings, runtime=runtime, registry=registry)
    return PdsNativeAuthenticator(context=context, db=session, membership_check_interval=0)


def test_a_password_change_seals_the_account_and_a_broken_one_is_refused(world):
    runtime, registry = world
    settings = runtime.settings
    secret = provision_account(settings, registry, "alice", PASSWORD, actor="root")
    set_account_approval(settings, registry, "alice", True, actor="ada")
    with hub_session(settings) as session:
        auth = _authenticator(runtime, registry, session)
        assert auth.change_password("alice", "another-long-password") is True
        assert _sealed(runtime, "alice")
        code = onetimepass.get_totp(str(secret), as_string=True).decode()
        login = {"username": "alice", "password": "another-long-password", "2fa": code}
        assert asyncio.run(auth.authenticate(None, login))["name"] == "alice"
        _write(runtime, "UPDATE users_info SET has_2fa = 0 WHERE username = 'alice'")
        assert auth.change_password("alice", "a-third-long-password") is None
        refused = runtime.audit.entries(action="hub.account.password")[-1]
        assert (refused.outcome, refused.details["reason"]) == ("denied", BROKEN)
        assert asyncio.run(auth.authenticate(None, login)) is None
        assert runtime.audit.entries(action="hub.login")[-1].details["reason"] == BROKEN
        assert not auth.can_use_account("alice")


def test_a_users_own_password_change_on_the_hub_keeps_the_account_sealed(hub):
    """Through the real page: alice changes her password, signs in with the new one."""
    from hubfixtures import PASSWORD as HUB_PASSWORD

    secret = str(provision_account(hub.settings, hub.registry, "alice", HUB_PASSWORD, actor="root"))
    alice = hub.client()
    assert alice.login("alice", secret)
    page = alice.get("/hub/change-password")
    assert page.status_code == 200
    changed = alice.http.post(f"{hub.url}/hub/change-password", timeout=30, data={
        "_xsrf": alice.http.cookies.get("_xsrf", ""), "old_password": HUB_PASSWORD,
        "new_password": "a-new-long-password-7", "new_password_confirmation": "a-new-long-password-7"})
    assert "changed successfully" in changed.text, changed.text[-800:]
    assert _sealed(hub.runtime, "alice")
    [changed] = hub.actions("hub.account.password")
    assert changed.outcome == "ok" and changed.details["remote_ip"] and len(changed.details["generation"]) == 32
    assert hub.client().login("alice", secret, password="a-new-long-password-7")


def _stored_hash(settings, user: str) -> bytes:
    with hub_session(settings) as session:
        from nativeauthenticator.orm import UserInfo

        return bytes(UserInfo.find(session, user).password)


def test_passwords_are_hashed_at_the_configured_bcrypt_cost(world):
    """``hub.password_cost``: the suite's 4 (tests/conftest.py) for a provisioning and a user's own
    change; the default, 12, for a reset made under the default settings; what it hashed signs in."""
    import bcrypt

    runtime, registry = world
    settings = runtime.settings
    assert settings.hub.password_cost == 4
    provision_account(settings, registry, "alice", PASSWORD, actor="root")
    assert _stored_hash(settings, "alice").startswith(b"$2b$04$")
    set_account_approval(settings, registry, "alice", True, actor="ada")
    with hub_session(settings) as session:
        assert _authenticator(runtime, registry, session).change_password("alice", "another-long-password")
    assert _stored_hash(settings, "alice").startswith(b"$2b$04$")
    in_use = replace(settings, hub=Hub())
    assert in_use.hub.password_cost == 12
    provision_account(in_use, registry, "alice", PASSWORD, actor="root", reset=True)
    stored = _stored_hash(settings, "alice")
    assert stored.startswith(b"$2b$12$") and bcrypt.checkpw(PASSWORD.encode(), stored)
    for cost in (3, 19):
        with pytest.raises(InvalidInput, match="hub.password_cost must be between 4 and 18"):
            Hub(password_cost=cost)
