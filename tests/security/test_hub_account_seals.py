"""Red team of the local hub's accounts by whoever can write the hub's database but holds no audit key.

The attacker (an operator with access to the hub's files, a stolen backup restored) writes
NativeAuthenticator's ``users_info`` rows with their own SQLite connection: approves an account,
makes an administrator's password or second factor their own, copies or renames rows, then signs in.
Before the seals every attempt that signs in below GOT THROUGH (the hub read whatever the row said);
clearing the second factor alone did not (``require_2fa``). Now an account is good only with the
platform's seal, an HMAC under the audit trail's key over its name, password hash, second factor,
approval and provision (``pds_kernel/hub/account_seals.py``); a row whose seal is missing or wrong
is refused with the words a wrong password gets, audited with its reason, and shown broken to the
administrators.

A row and its seal put back exactly as the platform once wrote them (a revoked account's old row, an
old password after a reset) signed in too, seals or not: a seal cannot tell an old row from the
current one. Each seal now also names its generation, the platform's write that made it, recorded in
that write's audit entry in the platform's database (``pds_kernel/hub/account_generations.py``): a
row put back names an older write than the audit trail's newest, and is refused as a broken seal.

One real hub (started once for the module) and its real database; sign-ins over HTTP as a browser
makes them; ``pds`` run by the OS user of the tests mapped to root.
"""

from __future__ import annotations

import pytest
from hub_account_seals_support import (  # noqa: F401  (the fixture world)
    ATTACKER_PASSWORD,
    ATTACKER_SECRET,
    PASSWORD,
    copy_seal,
    has_seal_table,
    known_hash,
    otp_secret,
    pds_as,
    put_back,
    read,
    refusals,
    says_wrong_credentials,
    seals_world_fixture,
    sign_in,
    snapshot,
    write,
)
from two_person_accounts_support import reset_with_pds

from pds_kernel.errors import InvalidInput

pytestmark = pytest.mark.slow


def _refused(hub, user: str, password: str, secret: str) -> None:
    """The sign-in is refused with a wrong password's words, and audited as a broken seal."""
    signed_in, message = sign_in(hub, user, password, secret)
    assert not signed_in, f"{user} signed in"
    assert says_wrong_credentials(message), message
    assert any("seal" in reason for reason in refusals(hub, user)), refusals(hub, user)


def test_a_revoked_account_approved_in_the_database(world):
    hub, secrets = world
    assert write(hub, "UPDATE users_info SET is_authorized = 1 WHERE username = 'bob'") == 1
    _refused(hub, "bob", PASSWORD, secrets["bob"])
    # the accounts page shows it for what it is
    root = hub.client()
    assert root.login("root", secrets["root"])
    page = root.get("/hub/authorize").text
    row = page[page.index('id="bob"'):]
    row = row[:row.index("</tr>")]
    assert "seal broken" in row, row
    # the platform's way still works: revoked and approved again by an administrator, bob signs in
    for approved in (False, True):
        assert pds_as(hub, "root", "hub", "account", "approve" if approved else "revoke", "bob").returncode == 0
    assert sign_in(hub, "bob", PASSWORD, secrets["bob"])[0]


def test_an_administrators_password_hash_replaced(world):
    """The attacker reads abe's second factor in the same database."""
    hub, secrets = world
    assert write(hub, "UPDATE users_info SET password = ? WHERE username = 'abe'", known_hash()) == 1
    _refused(hub, "abe", ATTACKER_PASSWORD, otp_secret(hub, "abe"))


def test_an_administrators_second_factor_swapped(world):
    """The attacker knows ada's password (phished) and makes the second factor theirs."""
    hub, secrets = world
    assert write(hub, "UPDATE users_info SET otp_secret = ? WHERE username = 'ada'", ATTACKER_SECRET) == 1
    _refused(hub, "ada", PASSWORD, ATTACKER_SECRET)


def test_the_second_factor_cleared(world):
    """ivy's password phished, her second factor switched off. This one was refused before the seals
    too (the hub requires a second factor of every account)."""
    hub, secrets = world
    assert write(hub, "UPDATE users_info SET has_2fa = 0 WHERE username = 'ivy'") == 1
    signed_in, message = sign_in(hub, "ivy", PASSWORD, ATTACKER_SECRET)
    assert not signed_in and says_wrong_credentials(message), message
    assert refusals(hub, "ivy")


def test_an_approved_accounts_seal_copied_to_a_revoked_one(world):
    """erin, revoked, approved in the database with carol's seal (a seal is no secret)."""
    hub, secrets = world
    assert write(hub, "UPDATE users_info SET is_authorized = 1 WHERE username = 'erin'") == 1
    copy_seal(hub, "carol", "erin")
    _refused(hub, "erin", PASSWORD, secrets["erin"])
    assert sign_in(hub, "carol", PASSWORD, secrets["carol"])[0]  # carol's own account is untouched


def test_an_account_renamed_to_a_user_without_one(world):
    """frank's row (and seal) becomes dave's: dave, a registry user with no hub account, would sign
    in with frank's password and second factor, which the attacker chose or knows."""
    hub, secrets = world
    assert write(hub, "UPDATE users_info SET username = 'dave' WHERE username = 'frank'") == 1
    if has_seal_table(hub):
        write(hub, "UPDATE pds_account_seals SET username = 'dave' WHERE username = 'frank'")
    _refused(hub, "dave", PASSWORD, secrets["frank"])


def test_a_changed_account_approved_by_an_unaware_administrator(world):
    """hana, revoked by root; the attacker makes her password theirs and waits for an administrator
    to approve her again: an approval must not seal credentials the platform did not write."""
    hub, secrets = world
    assert pds_as(hub, "root", "hub", "account", "revoke", "hana").returncode == 0
    assert write(hub, "UPDATE users_info SET password = ? WHERE username = 'hana'", known_hash()) == 1
    done = pds_as(hub, "root", "hub", "account", "approve", "hana")
    assert done.returncode == InvalidInput.exit_code, done.stdout + done.stderr
    assert "pds hub account add hana --reset" in done.stderr
    assert read(hub, "SELECT is_authorized FROM users_info WHERE username = 'hana'") == [(0,)]
    refused = [e for e in hub.actions("hub.account.approve") if e.target == "user:hana" and e.outcome == "denied"]
    assert refused and "seal" in refused[-1].details["reason"]
    _refused(hub, "hana", ATTACKER_PASSWORD, secrets["hana"])


def test_a_seal_deleted_before_an_upgrade(world):
    """alice's password made the attacker's and her seal deleted, hoping the one-time sealing of
    the accounts that existed before the seals (run at the hub's start, by ``pds db upgrade`` and
    by ``pds hub account``) takes her row for one of them."""
    hub, secrets = world
    assert write(hub, "UPDATE users_info SET password = ? WHERE username = 'alice'", known_hash()) == 1
    if has_seal_table(hub):
        assert write(hub, "DELETE FROM pds_account_seals WHERE username = 'alice'") == 1
    assert pds_as(hub, "root", "db", "upgrade").returncode == 0
    assert pds_as(hub, "root", "hub", "account", "revoke", "ivy").returncode == 0  # an account write
    _refused(hub, "alice", ATTACKER_PASSWORD, secrets["alice"])


def test_a_revoked_accounts_old_row_put_back(world):
    """gus, revoked by root; his row and seal as they were before, put back exactly. This GOT THROUGH
    with the seals alone (a strict expected failure); the seal now names an older write."""
    hub, secrets = world
    before = read(hub, "SELECT password, otp_secret, has_2fa, is_authorized FROM users_info WHERE username = 'gus'")
    seal = read(hub, "SELECT seal FROM pds_account_seals WHERE username = 'gus'") if has_seal_table(hub) else []
    assert pds_as(hub, "root", "hub", "account", "revoke", "gus").returncode == 0
    write(hub, "UPDATE users_info SET password = ?, otp_secret = ?, has_2fa = ?, is_authorized = ? "
               "WHERE username = 'gus'", *before[0])
    if seal:
        write(hub, "UPDATE pds_account_seals SET seal = ? WHERE username = 'gus'", seal[0][0])
    _refused(hub, "gus", PASSWORD, secrets["gus"])


def test_an_old_password_put_back_after_a_reset(world):
    """jack's password leaked; root resets his account (a new password and second factor). The
    attacker, who knows the old password and read the old second factor, puts back jack's row, seal
    and provision as they were before the reset (from a backup)."""
    hub, secrets = world
    before = snapshot(hub, "jack")
    reset_with_pds(hub, "root", "jack")
    put_back(hub, "jack", before)
    _refused(hub, "jack", PASSWORD, secrets["jack"])
    # the platform's way still works: a new reset lets jack in
    new_password, new_secret, _ = reset_with_pds(hub, "root", "jack")
    assert sign_in(hub, "jack", new_password, new_secret)[0]


def test_an_old_row_put_back_after_a_revocation_and_approvals(world):
    """kim approved, revoked, approved again, revoked again: four platform writes, each snapshotted.
    The attacker puts back each approved state in turn, the newest first then the oldest (the
    generation going back one write, then three)."""
    hub, secrets = world
    states = {"approved once": snapshot(hub, "kim")}
    for step, action in enumerate(("revoke", "approve", "revoke")):
        assert pds_as(hub, "root", "hub", "account", action, "kim").returncode == 0
        states[f"{action} {step}"] = snapshot(hub, "kim")
    for name in ("approve 1", "approved once"):
        assert states[name]["users_info"][3] == 1, name
        put_back(hub, "kim", states[name])
        _refused(hub, "kim", PASSWORD, secrets["kim"])
    put_back(hub, "kim", states["revoke 2"])  # the current state, exactly: not approved, sealed as it is
    assert pds_as(hub, "root", "hub", "account", "approve", "kim").returncode == 0
    assert sign_in(hub, "kim", PASSWORD, secrets["kim"])[0]


def test_another_users_row_and_seal_copied_onto_this_name(world):
    """carol, a researcher, wants mia's projects: she copies her own row, seal and provision onto
    mia's name, and signs in as mia with her own password and second factor."""
    hub, secrets = world
    put_back(hub, "mia", snapshot(hub, "carol"))
    _refused(hub, "mia", PASSWORD, secrets["carol"])
