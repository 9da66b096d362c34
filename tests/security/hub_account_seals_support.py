"""Support of tests/security/test_hub_account_seals.py: one real hub (tests/hub/hubfixtures.py) whose
accounts were made by the platform, and the attacker's own connection to the hub's SQLite database
(no platform code, no audit key).

Registry and accounts: root, ada and abe administer it; the researchers alice, carol, erin, frank,
gus, hana, ivy, jack, kim and mia; bob and erin revoked (pending); dave, a registry user with no hub
account. Each
attempt plays on its own accounts: a sign-in takes one code per user and 30-second step, and five
refused sign-ins in a row block a user for 10 minutes."""

from __future__ import annotations

import html
import re
import sqlite3
import sys
from datetime import date, timedelta
from pathlib import Path

import bcrypt
import onetimepass
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hub_identity_support import started_world
from hubfixtures import PASSWORD, PROJECT, Hub, free_port_block, make_world
from two_person_accounts_support import _fresh_step, pds_as  # noqa: F401  (pds_as re-exported)

from pds_kernel.hub.local import hub_dir, provision_account, set_account_approval
from tests.conftest import TEST_PASSWORD_COST

ADMINS = ("root", "ada", "abe")
RESEARCHERS = ("alice", "bob", "carol", "erin", "frank", "gus", "hana", "ivy", "jack", "kim", "mia")
#: Accounts revoked when the world is made (waiting for an administrator's approval).
REVOKED = ("bob", "erin")
#: What the attacker makes their own password.
ATTACKER_PASSWORD = "attacker-owns-this-9"
#: What the attacker makes their own second factor.
ATTACKER_SECRET = "JBSWY3DPEHPK3PXP"


def make_seals_world(root: Path) -> tuple[Hub, dict[str, str]]:
    """The world above; returns (hub, {user: TOTP secret}). Every password is :data:`PASSWORD`."""
    hub = make_world(root, free_port_block())
    registry, until = hub.registry, date.today() + timedelta(days=100)
    for admin in ("ada", "abe"):
        registry.upsert_user("root", admin, is_admin=True)
    for researcher in RESEARCHERS:
        if researcher not in ("alice", "bob"):
            registry.upsert_user("root", researcher)
            registry.add_member("root", PROJECT, researcher, "researcher", until)
    secrets = {name: str(provision_account(hub.settings, registry, name, PASSWORD, actor="root"))
               for name in (*ADMINS, *RESEARCHERS)}
    for name in REVOKED:
        set_account_approval(hub.settings, registry, name, False, actor="root")
    return hub, secrets


@pytest.fixture(name="world", scope="module")
def seals_world_fixture():
    """(the started hub of :func:`make_seals_world`, {user: TOTP secret}), for a module."""
    with started_world(make_seals_world) as world:
        yield world


def hub_db(hub: Hub) -> Path:
    return hub_dir(hub.settings) / "jupyterhub.sqlite"


def write(hub: Hub, sql: str, *values) -> int:
    """The attacker's own connection to the hub database: rows written, no platform code, no key.
    Returns the number of rows changed."""
    with sqlite3.connect(hub_db(hub)) as db:
        return db.execute(sql, values).rowcount


def read(hub: Hub, sql: str, *values) -> list[tuple]:
    with sqlite3.connect(hub_db(hub)) as db:
        return db.execute(sql, values).fetchall()


def has_seal_table(hub: Hub) -> bool:
    return bool(read(hub, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'pds_account_seals'"))


def copy_seal(hub: Hub, source: str, target: str) -> None:
    """Put ``source``'s seal on ``target`` (a seal is a column of no secret: anyone who reads the
    database can copy one). Nothing to copy where there are no seals (the code before the fix)."""
    if has_seal_table(hub):
        write(hub, "DELETE FROM pds_account_seals WHERE username = ?", target)
        write(hub, "INSERT INTO pds_account_seals (username, seal) SELECT ?, seal FROM pds_account_seals "
                   "WHERE username = ?", target, source)


#: What a snapshot of an account holds: its row, its seal, its provision (all three are sealed together).
_SNAPSHOT = {
    "users_info": ("password", "otp_secret", "has_2fa", "is_authorized"),
    "pds_account_seals": ("seal",),
    "pds_account_provisions": ("provision_id", "action", "provisioned_by", "provisioned_at", "approvals",
                               "approved_by"),
}


def snapshot(hub: Hub, user: str) -> dict[str, tuple]:
    """Everything the hub database holds of ``user``'s account, as the attacker copies it (a backup)."""
    found = {}
    for table, columns in _SNAPSHOT.items():
        rows = read(hub, f"SELECT {', '.join(columns)} FROM {table} WHERE username = ?", user)
        assert len(rows) == 1, (table, user, rows)
        found[table] = rows[0]
    return found


def put_back(hub: Hub, user: str, copy: dict[str, tuple]) -> None:
    """Write ``copy`` (a :func:`snapshot`, of ``user`` or of another user) as ``user``'s account,
    exactly: its row, its seal and its provision."""
    for table, columns in _SNAPSHOT.items():
        assignments = ", ".join(f"{column} = ?" for column in columns)
        assert write(hub, f"UPDATE {table} SET {assignments} WHERE username = ?", *copy[table], user) == 1


def known_hash(password: str = ATTACKER_PASSWORD) -> bytes:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(TEST_PASSWORD_COST))


def otp_secret(hub: Hub, user: str) -> str:
    """``user``'s second factor as the attacker reads it from the database."""
    return read(hub, "SELECT otp_secret FROM users_info WHERE username = ?", user)[0][0]


#: the refusal a wrong password gets (PdsLoginHandler): the page must say the same for a broken seal
_REFUSAL_START = "Wrong user name, password or code"


def sign_in(hub: Hub, user: str, password: str, secret: str) -> tuple[bool, str]:
    """A sign-in as ``user`` with ``password`` and a valid code of ``secret``, as a browser does:
    (signed in, the login page's error when refused)."""
    step = _fresh_step(user)
    client = hub.client()
    xsrf = client._xsrf("/hub/login")
    code = onetimepass.get_totp(secret, as_string=True, clock=step * 30).decode()
    response = client.http.post(hub.url + "/hub/login?next=/hub/home", timeout=30, allow_redirects=False,
                                data={"_xsrf": xsrf, "username": user, "password": password, "2fa": code})
    from two_person_accounts_support import _USER_STEPS

    if response.status_code == 302 and "jupyterhub-hub-login" in client.http.cookies:
        _USER_STEPS[user] = step  # the hub claims a code's step only for a sign-in it lets through
        return True, ""
    found = re.search(r'<p class="login_error">\s*(.*?)\s*</p>', response.text, re.S)
    return False, html.unescape(found.group(1)) if found else response.text[:500]


def says_wrong_credentials(message: str) -> bool:
    """The page's answer is the one a wrong password gets: nothing about a seal or an approval."""
    return message.startswith(_REFUSAL_START) and "seal" not in message and "approv" not in message


def refusals(hub: Hub, user: str) -> list[str]:
    """Reasons of the audited refused sign-ins of ``user``."""
    return [e.details.get("reason", "") for e in hub.actions("hub.login")
            if e.target == f"user:{user}" and e.outcome == "denied"]
