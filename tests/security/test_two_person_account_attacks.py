"""Red team of the two-person rule on local hub accounts (``registry.membership_approvals: 2``).

One administrator, root, wants to sign in as someone else, alone: another administrator (ada),
an output checker (olga) or a researcher (alice), to get their memberships and reviews. An
administrator chooses the password and second factor of every account he creates or resets
(``pds hub account add USER [--reset]``). Before the fix such an account was approved at once and
the reset was only audited: every attempt below that signs in GOT THROUGH then. Now the account
waits for a second administrator, neither the one who made it nor its user, personally.

One real hub (started once for the module, setting 1: the registry keeps 2) and its real database;
the real ``pds`` command run by the OS user of the tests mapped to the administrator an attempt
plays, also set to 1; the hub's accounts page over HTTP with a real login cookie. Each attempt
checks the account stays unapproved (nobody signs in with root's credentials) and that the refusal
is audited.
"""

from __future__ import annotations

import re

import onetimepass
import pytest
from hub_identity_support import started_world
from two_person_accounts_support import (
    _fresh_step,
    account,
    denied,
    make_two_person_world,
    pds_as,
    post_account_action,
    refused_as_not_approved,
    reset_with_pds,
    sign_in,
)

from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.hub import accounts
from pds_kernel.hub.local import provision_account, set_account_approval
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

DENIED = PermissionDenied.exit_code


@pytest.fixture(scope="module")
def world():
    with started_world(make_two_person_world) as world:
        yield world


@pytest.fixture(scope="module")
def hub(world):
    return world[0]


@pytest.fixture(scope="module")
def credentials(world):
    return world[1]


def _approve_as_second(hub, credentials, user: str, password: str, secret: str, by: str = "abe", *,
                       then_sign_in: bool = False) -> None:
    """The legitimate end: another administrator approves (and the user may sign in with the new
    credentials: checked where ``then_sign_in``; each sign-in takes a 30-second step of the user's)."""
    done = pds_as(hub, by, "hub", "account", "approve", user)
    assert done.returncode == 0, done.stdout + done.stderr
    approved, _, approved_by = account(hub, user)
    assert approved and approved_by == by
    if then_sign_in:
        assert sign_in(hub, user, password, secret), [
            (e.outcome, e.details) for e in hub.actions("hub.login") if e.target == f"user:{user}"][-3:]
    credentials[user] = (password, secret)



def _refused_approval_on_the_command_line(hub, credentials, user: str, *, approver: str, message: str,
                                          try_sign_in: bool = False) -> None:
    """root resets ``user``'s account; ``approver`` runs ``pds hub account approve USER``: refused with
    ``message``, the account still unapproved (and, where ``try_sign_in``, no sign-in with its new
    credentials), the refusal audited; then the legitimate second administrator approves it."""
    password, secret, _ = reset_with_pds(hub, "root", user)
    done = pds_as(hub, approver, "hub", "account", "approve", user)
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert message in done.stderr
    assert account(hub, user) == (False, "root", None)
    if try_sign_in:
        assert refused_as_not_approved(hub, user, password, secret)
    assert denied(hub, "hub.account.approve", user, approver)
    _approve_as_second(hub, credentials, user, password, secret)

def test_an_administrator_resets_another_administrators_account_and_signs_in(hub, credentials):
    """root resets ada's account (a new password and second factor he reads) and signs in as ada."""
    password, secret, printed = reset_with_pds(hub, "root", "ada")
    assert "waits for a second administrator" in printed and "pds hub account approve ada" in printed
    assert account(hub, "ada") == (False, "root", None)
    client, step = hub.client(), _fresh_step("ada")
    page = client.http.post(hub.url + "/hub/login?next=/hub/home", timeout=30, allow_redirects=False, data={
        "_xsrf": client._xsrf("/hub/login"), "username": "ada", "password": password,
        "2fa": onetimepass.get_totp(secret, as_string=True, clock=step * 30).decode()})
    assert page.status_code != 302 and "jupyterhub-hub-login" not in client.http.cookies
    assert "waits for a second administrator" in page.text
    assert denied(hub, "hub.login", "ada")[-1].details["reason"] == "account not approved yet"
    assert sign_in(hub, "ada", *credentials["ada"]) is None  # her old credentials are gone too
    _approve_as_second(hub, credentials, "ada", password, secret, then_sign_in=True)


def test_an_administrator_approves_his_own_reset_of_a_checker_on_the_command_line(hub, credentials):
    """root resets olga's account, then approves it himself (``pds hub account approve olga``)."""
    _refused_approval_on_the_command_line(hub, credentials, "olga", approver="root",
                                          message="second, different administrator", try_sign_in=True)


def test_an_administrator_approves_his_own_reset_on_the_accounts_page(hub, credentials):
    """root, signed in to the hub, resets olga's account and posts the approval form himself."""
    root = sign_in(hub, "root", *credentials["root"])
    assert root is not None
    password, secret, _ = reset_with_pds(hub, "root", "olga")
    page = root.get("/hub/authorize")
    assert page.status_code == 200
    assert re.search(r"waits for a second administrator\s*\(reset by root\)", page.text)
    response = post_account_action(root, hub, "olga", "approve")
    assert response.status_code == 403, response.status_code
    assert account(hub, "olga") == (False, "root", None)
    assert refused_as_not_approved(hub, "olga", password, secret)
    assert [e for e in denied(hub, "hub.account.approve", "olga", "root") if e.details.get("via") == "web"]
    # the second administrator on the same page: allowed (abe: ada signed in moments ago, and a
    # second sign-in of hers would wait for the next 30-second step)
    abe = sign_in(hub, "abe", *credentials["abe"])
    assert abe is not None
    abe.get("/hub/authorize")
    response = post_account_action(abe, hub, "olga", "approve")
    assert response.status_code == 302, response.status_code
    assert account(hub, "olga") == (True, "root", "abe")
    assert sign_in(hub, "olga", password, secret)
    credentials["olga"] = (password, secret)


def test_the_user_approves_the_reset_of_his_own_account(hub, credentials):
    """root resets ada's account for her, ada approves it herself (no second administrator saw it)."""
    _refused_approval_on_the_command_line(hub, credentials, "ada", approver="ada",
                                          message="may not approve their own hub account")


@pytest.mark.parametrize("persona", ["ada", "abe"])
def test_the_resetting_administrator_approves_as_another_administrator(hub, credentials, persona):
    """root resets alice's account and approves it ``--as`` ada (or abe), a second administrator."""
    password, secret, _ = reset_with_pds(hub, "root", "alice")
    done = pds_as(hub, "root", "--as", persona, "hub", "account", "approve", "alice")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "acting as" in done.stderr
    assert account(hub, "alice") == (False, "root", None)
    assert refused_as_not_approved(hub, "alice", password, secret)
    assert denied(hub, "hub.account.approve", "alice", f"root acting as {persona}")
    _approve_as_second(hub, credentials, "alice", password, secret, by="ada")


def test_the_setting_lowered_to_one_after_the_rule_was_recorded(hub, credentials):
    """The registry keeps 2; root runs ``pds`` with ``registry.membership_approvals: 1`` (his own
    configuration file) to reset alice's account and approve it himself."""
    from pds_kernel.registry import Registry

    done = pds_as(hub, "root", "hub", "account", "add", "alice", "--reset", approvals=1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "waits for a second administrator" in done.stdout
    password = re.search(r"^password: (\S+)$", done.stdout, re.M).group(1)
    secret = re.search(r"^TOTP secret: (\S+)$", done.stdout, re.M).group(1)
    done = pds_as(hub, "root", "hub", "account", "approve", "alice", approvals=1)
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert account(hub, "alice") == (False, "root", None)
    assert refused_as_not_approved(hub, "alice", password, secret)
    assert denied(hub, "hub.account.approve", "alice", "root")
    lowered = Registry(hub.runtime.sessions, hub.runtime.audit, 1)
    assert lowered.approvals_rule() == 2
    with pytest.raises(PermissionDenied):  # nor in a process of his own
        set_account_approval(hub.settings, lowered, "alice", True, actor="root")
    _approve_as_second(hub, credentials, "alice", password, secret, by="ada")


def test_a_pending_reset_stays_pending_when_the_rule_is_lowered_in_the_database(hub, credentials):
    """Going back to 1 is a change made in the database, outside ``pds``; a reset made under 2
    before it still needs its second administrator."""
    import sqlite3

    from pds_kernel.db import sqlite_path

    password, secret, _ = reset_with_pds(hub, "root", "dave")
    before = len(denied(hub, "hub.account.approve", "dave", "root"))
    path = sqlite_path(hub.settings.database_url)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE registry_rules SET value = 1 WHERE name = 'membership_approvals'")
    try:
        done = pds_as(hub, "root", "hub", "account", "approve", "dave")
        assert done.returncode == DENIED, done.stdout + done.stderr
        assert account(hub, "dave") == (False, "root", None)
        assert refused_as_not_approved(hub, "dave", password, secret)
        assert len(denied(hub, "hub.account.approve", "dave", "root")) == before + 1
    finally:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE registry_rules SET value = 2 WHERE name = 'membership_approvals'")
    _approve_as_second(hub, credentials, "dave", password, secret, by="ada")


@pytest.mark.parametrize("approver_saw", ["an account revoked after its approval", "a pending reset"])
def test_a_reset_lands_between_the_second_administrators_check_and_write(hub, credentials, monkeypatch,
                                                                          approver_saw):
    """ada approves bob's account (revoked by root after its approval, or pending after a
    reset by root); between ada's decision and her write, root resets bob's account again, with
    credentials ada never saw. The approval is a conditional write on the provision it decided on
    and on no pending reset: ada's approval is refused (audited), bob stays pending."""
    if approver_saw == "a pending reset":
        reset_with_pds(hub, "root", "bob")
    else:
        set_account_approval(hub.settings, hub.registry, "bob", False, actor="root")
    original, late = accounts.find_provision, {}

    def reset_after_the_read(db, username):
        seen = original(db, username)
        if not late:  # the approval has read what it decides on: root resets now (his own session)
            late["secret"] = provision_account(hub.settings, hub.registry, "bob", "root-knows-this-1",
                                               actor="root", reset=True)
        return seen

    monkeypatch.setattr(accounts, "find_provision", reset_after_the_read)
    with pytest.raises(InvalidInput, match="changed while it was being approved"):
        set_account_approval(hub.settings, hub.registry, "bob", True, actor="ada")
    monkeypatch.setattr(accounts, "find_provision", original)
    assert account(hub, "bob") == (False, "root", None)
    assert refused_as_not_approved(hub, "bob", "root-knows-this-1", late["secret"])
    assert [e for e in denied(hub, "hub.account.approve", "bob", "ada") if "changed while" in e.details["reason"]]
    _approve_as_second(hub, credentials, "bob", "root-knows-this-1", str(late["secret"]), by="ada")


def test_a_reset_ends_the_sessions_and_tokens_a_thief_holds(hub, credentials):
    """Someone holds olga's login cookie and an API token (a stolen session); root resets her
    account. Before the fix the token survived a reset (only the cookie's ``cookie_id`` was
    renewed): GOT THROUGH. Now both stand no more."""
    thief = sign_in(hub, "olga", *credentials["olga"])
    assert thief is not None
    thief.make_token("olga")
    assert thief.api("GET", "/hub/api/user").status_code == 200
    password, secret, _ = reset_with_pds(hub, "root", "olga")
    assert thief.api("GET", "/hub/api/user").status_code == 403
    assert thief.get("/hub/home", allow_redirects=False).status_code == 302  # to the login page
    [reset] = [e for e in hub.actions("hub.account.reset") if e.target == "user:olga"][-1:]
    assert reset.details["tokens_deleted"] >= 1 and reset.details["pending"] is True
    _approve_as_second(hub, credentials, "olga", password, secret, by="ada")


@pytest.mark.parametrize("withdrawn", ["demoted", "deactivated"])
def test_an_administrator_withdrawn_from_the_registry_approves(hub, credentials, withdrawn):
    """abe, once an administrator (his hub sign-in and his host account stay), approves root's
    reset of dave after the registry withdrew his role; the one who withdrew it then makes him an
    administrator again (pending) and ada approves that. (dave, not olga: olga signed in just
    before, and a refused sign-in of hers would wait for the next 30-second step.)"""
    password, secret, _ = reset_with_pds(hub, "root", "dave")
    registry = hub.registry
    registry.upsert_user("root", "abe", is_admin=withdrawn == "deactivated", active=withdrawn != "deactivated")
    try:
        done = pds_as(hub, "abe", "hub", "account", "approve", "dave")
        assert done.returncode == DENIED, done.stdout + done.stderr
        assert account(hub, "dave") == (False, "root", None)
        assert refused_as_not_approved(hub, "dave", password, secret)
        assert denied(hub, "hub.account.approve", "dave", "abe")
    finally:
        registry.upsert_user("root", "abe", is_admin=True, active=True)
        registry.approve_administrator("ada", "abe")
    _approve_as_second(hub, credentials, "dave", password, secret, by="ada")


def test_a_revoked_account_is_approved_by_its_own_administrator(hub, credentials):
    """ada revokes abe's hub account (a suspicion); abe, still an administrator, approves his own
    account back on the host."""
    set_account_approval(hub.settings, hub.registry, "abe", False, actor="ada")
    done = pds_as(hub, "abe", "hub", "account", "approve", "abe")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert account(hub, "abe")[0] is False
    assert refused_as_not_approved(hub, "abe", *credentials["abe"])
    assert denied(hub, "hub.account.approve", "abe", "abe")
    done = pds_as(hub, "root", "hub", "account", "approve", "abe")  # another administrator: allowed
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_last_administrator_resets_an_account_alone(tmp_path):
    """root demotes every other administrator, so nobody can be his second one, then resets a
    researcher's account: it stays pending (a registry never goes back to having no administrator,
    so no bootstrap), and his own approval is refused. Real registry and hub database, no hub."""

    from pds_kernel.registry import Registry
    from pds_kernel.registry.spec import parse_registry
    from pds_kernel.runtime import Runtime
    from pds_kernel.settings import RegistryRules

    runtime = Runtime(make_settings(tmp_path, registry=RegistryRules(membership_approvals=2)))
    try:
        registry = Registry.from_runtime(runtime)
        registry.apply("os:root", parse_registry({"users": [{"name": "root", "admin": True},
                                                            {"name": "ada", "admin": True}, {"name": "alice"}]}))
        registry.upsert_user("root", "ada", is_admin=False)
        with pytest.raises(InvalidInput):
            registry.upsert_user("root", "root", is_admin=False)  # the last one stays
        assert provision_account(runtime.settings, registry, "alice", "long-enough-password", actor="root").pending
        with pytest.raises(PermissionDenied):
            set_account_approval(runtime.settings, registry, "alice", True, actor="root")
        assert [e for e in runtime.audit.entries(action="hub.account.approve") if e.outcome == "denied"]
    finally:
        runtime.close()

