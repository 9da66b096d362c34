"""Attacks on the administration of hub accounts (``pds hub account add|approve|revoke`` and the
hub's accounts page ``POST /hub/authorize/USER``): only a platform administrator of the registry,
acting personally, creates, resets, approves or revokes an account.

Each test is one attempt against one real hub (started once for the module) and its real hub
database: through the real ``pds`` command run by the OS user of the tests mapped to the registry
user the attempt plays (``cli.identities``), or over HTTP with a real token or login cookie. Each
checks the account did not change and, where the service was reached, that the refusal is audited.
"""

from __future__ import annotations

import pytest
import requests
from hub_accounts_support import PASSWORD, authorized, denials, make_accounts_world, pds_as
from hub_identity_support import BridgeThread, request, started_world, statuses

from pds_kernel.errors import PermissionDenied

DENIED = PermissionDenied.exit_code


@pytest.fixture(scope="module")
def world():
    with started_world(make_accounts_world) as world:
        yield world


@pytest.fixture(scope="module")
def hub(world):
    return world[0]


@pytest.fixture(scope="module")
def secrets(world):
    return world[1]


def test_a_researcher_approves_her_own_pending_account(hub):
    done = pds_as(hub, "alice", "hub", "account", "approve", "alice")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "only a platform administrator may" in done.stderr
    assert authorized(hub, "alice") is False
    assert any(e.actor == "alice" for e in denials(hub, "hub.account.approve", "user:alice"))


def test_a_researcher_approves_another_pending_account(hub):
    done = pds_as(hub, "carol", "hub", "account", "approve", "bob")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert authorized(hub, "bob") is False
    assert any(e.actor == "carol" for e in denials(hub, "hub.account.approve", "user:bob"))


def test_a_researcher_revokes_an_administrator(hub, secrets):
    done = pds_as(hub, "carol", "hub", "account", "revoke", "ada")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert authorized(hub, "ada") is True
    assert hub.client().login("ada", secrets["ada"])
    assert any(e.actor == "carol" for e in denials(hub, "hub.account.revoke", "user:ada"))


def test_a_researcher_resets_an_administrators_password_and_second_factor(hub, secrets):
    """A reset prints a new password and TOTP secret: root's account would be carol's."""
    done = pds_as(hub, "carol", "hub", "account", "add", "root", "--reset")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "TOTP secret" not in done.stdout and "password:" not in done.stdout
    assert hub.client().login("root", secrets["root"])  # root's password and second factor unchanged
    assert any(e.actor == "carol" for e in denials(hub, "hub.account.reset", "user:root"))


def test_a_researcher_creates_an_account_for_a_user_without_one(hub):
    done = pds_as(hub, "carol", "hub", "account", "add", "dave")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert authorized(hub, "dave") is None
    assert denials(hub, "hub.account.create", "user:dave")


def test_an_unmapped_os_user_approves_an_account(hub):
    """The host's OS user with no registry identity (``os:<user>``) once an administrator exists."""
    done = pds_as(hub, None, "hub", "account", "approve", "bob")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert authorized(hub, "bob") is False
    assert any(e.actor.startswith("os:") for e in denials(hub, "hub.account.approve", "user:bob"))


def test_an_administrator_acting_as_another_administrator_approves(hub):
    """``--as`` never produces an approval, even from one administrator as another."""
    done = pds_as(hub, "root", "--as", "ada", "hub", "account", "approve", "bob")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "acting as" in done.stderr
    assert authorized(hub, "bob") is False
    assert any(e.actor == "root acting as ada" for e in denials(hub, "hub.account.approve", "user:bob"))


def test_the_hub_sync_token_approves_on_the_accounts_page(hub):
    """The ``pds-sync`` service token holds ``admin:users``, the hub scope the page requires (it is
    no registry administrator): JupyterHub takes no API token on its pages, so the post has no
    user and no form token, and the service behind it would refuse it anyway."""
    from pds_kernel.hub.local import sync_token

    response = requests.post(f"{hub.url}/hub/authorize/bob", data={"action": "approve"}, timeout=30,
                             headers={"Authorization": f"token {sync_token(hub.settings)}"},
                             allow_redirects=False)
    assert response.status_code == 403, response.status_code
    assert authorized(hub, "bob") is False


def test_a_workspace_token_approves_through_the_hub_socket(hub, secrets):
    """carol's workspace sends ``POST /hub/authorize/bob`` through its hub socket (the real bridge
    and policy) with its token (carol's full user token: stronger than a server's)."""
    carol = hub.client()
    assert carol.login("carol", secrets["carol"])
    token = carol.make_token("carol")
    bridge = BridgeThread(hub, "carol", token)
    try:
        raw = bridge.exchange(request("POST", "/hub/authorize/bob", token=token, body=b"action=approve",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"}))
    finally:
        bridge.close()
    assert statuses(raw) == [403], raw[:300]
    assert authorized(hub, "bob") is False


def test_a_demoted_administrator_approves_with_the_page_still_open(hub, secrets):
    """abe signs in as an administrator (the hub gave him its admin role at start), then the
    registry withdraws his administrator right; his open session posts the approval form."""
    abe = hub.client()
    assert abe.login("abe", secrets["abe"])
    page = abe.get("/hub/authorize")
    assert page.status_code == 200
    xsrf = abe.http.cookies.get("_xsrf", "")
    hub.registry.upsert_user("root", "abe", is_admin=False)
    response = abe.http.post(f"{hub.url}/hub/authorize/bob", data={"_xsrf": xsrf, "action": "approve"},
                             timeout=30, allow_redirects=False)
    assert response.status_code == 403, response.status_code
    assert authorized(hub, "bob") is False
    assert any(e.actor == "abe" for e in denials(hub, "hub.account.approve", "user:bob"))


def test_password_is_not_enough_for_a_pending_account(hub, secrets):
    """alice, pending, tries to sign in with her password and a valid code anyway."""
    assert not hub.client().login("alice", secrets["alice"], password=PASSWORD)
    assert authorized(hub, "alice") is False
