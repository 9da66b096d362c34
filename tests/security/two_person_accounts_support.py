"""Support of tests/security/test_two_person_account_attacks.py: one real hub (tests/hub/hubfixtures.py)
whose registry keeps the two-person rule (recorded 2 in ``registry_rules``), while the hub's and
the ``pds`` command's own setting is 1 (the lowered setting every attempt runs under).

Registry: root, ada, abe, approved administrators; olga, output checker of the project; alice and
bob, researchers; dave, a user. Accounts made under the rule as documented: each administrator
creates their own and another approves it; root creates the others', ada approves them. (Attempts
spread over several users: five refused sign-ins of one user in a row block it for 10 minutes.)"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import onetimepass
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubfixtures import PASSWORD, PROJECT, Hub, free_port_block, make_world

from pds_kernel.hub.local import provision_account, set_account_approval
from pds_kernel.registry import Registry

PDS = str(Path(sys.executable).with_name("pds"))
ADMINS = ("root", "ada", "abe")
#: who approves each administrator's own account
APPROVER = {"root": "ada", "ada": "root", "abe": "root"}


def make_two_person_world(root: Path) -> tuple[Hub, dict[str, tuple[str, str]]]:
    """The world above; returns (hub, {user: (password, TOTP secret)})."""
    hub = make_world(root, free_port_block())
    registry, until = hub.registry, date.today() + timedelta(days=100)
    for admin in ("ada", "abe"):
        registry.upsert_user("root", admin, is_admin=True)
    registry.upsert_user("root", "olga")
    registry.add_member("root", PROJECT, "olga", "output-checker", until)
    strict = Registry(hub.runtime.sessions, hub.runtime.audit, 2)
    assert strict.record_approvals_rule("root") == 2  # a process set to 2 wrote: the registry keeps it
    credentials = {}
    for admin in ADMINS:
        secret = provision_account(hub.settings, strict, admin, PASSWORD, actor=admin)
        assert secret.pending
        credentials[admin] = (PASSWORD, str(secret))
    for admin in ADMINS:
        set_account_approval(hub.settings, strict, admin, True, actor=APPROVER[admin])
    for user in ("olga", "alice", "bob", "dave"):
        credentials[user] = (PASSWORD, str(provision_account(hub.settings, strict, user, PASSWORD, actor="root")))
        set_account_approval(hub.settings, strict, user, True, actor="ada")
    return hub, credentials


def pds_as(hub: Hub, user: str | None, *args: str, approvals: int = 1) -> subprocess.CompletedProcess:
    """The real ``pds`` with ``hub``'s configuration and ``registry.membership_approvals:
    approvals``, its OS user mapped to ``user``."""
    data = yaml.safe_load(hub.config.read_text())
    data["cli"] = {"identities": {getpass.getuser(): user} if user else {}}
    data["registry"] = {"membership_approvals": approvals}
    config = hub.root / f"pds-2p-{user or 'unmapped'}-{approvals}.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
    return subprocess.run([PDS, "--config", str(config), *args], capture_output=True, text=True,
                          env={**env, "COLUMNS": "300"}, timeout=120)


def reset_with_pds(hub: Hub, admin: str, user: str) -> tuple[str, str, str]:
    """``pds hub account add USER --reset`` run by ``admin``: (password, secret, what it printed)."""
    done = pds_as(hub, admin, "hub", "account", "add", user, "--reset")
    assert done.returncode == 0, done.stdout + done.stderr
    password = re.search(r"^password: (\S+)$", done.stdout, re.M).group(1)
    secret = re.search(r"^TOTP secret: (\S+)$", done.stdout, re.M).group(1)
    return password, secret, done.stdout


def account(hub: Hub, user: str) -> tuple[bool, str | None, str | None]:
    """(approved, provisioned_by, approved_by) of ``user``'s account in the hub database."""
    import sqlite3

    from pds_kernel.hub.local import hub_dir

    with sqlite3.connect(hub_dir(hub.settings) / "jupyterhub.sqlite") as db:
        (approved,) = db.execute("SELECT is_authorized FROM users_info WHERE username = ?", (user,)).fetchone()
        made = db.execute("SELECT provisioned_by, approved_by FROM pds_account_provisions WHERE username = ?",
                          (user,)).fetchone()
    return (bool(approved), *(made or (None, None)))


def denied(hub: Hub, action: str, user: str, actor: str | None = None) -> list:
    """Audited refusals of ``action`` on ``user`` (by ``actor`` when given)."""
    return [e for e in hub.actions(action) if e.outcome == "denied" and e.target == f"user:{user}"
            and (actor is None or e.actor == actor)]


#: user -> the 30-second step of their last sign-in (the hub takes one code per user and step)
_USER_STEPS: dict[str, int] = {}


def _fresh_step(user: str, margin: float = 8.0) -> int:
    """Wait until a code read now reaches the hub in its window, in a step ``user`` has not
    signed in with yet; return that step."""
    while True:
        now = time.time()
        step, left = int(now) // 30, 30 - now % 30
        if left >= margin and _USER_STEPS.get(user) != step:
            return step
        time.sleep(left + 0.2)


def sign_in(hub: Hub, user: str, password: str, secret: str):
    """A browser session signed in as ``user`` (password and a valid code), or ``None`` if refused."""
    step = _fresh_step(user)
    client = hub.client()
    if not client.login(user, secret, password=password,
                        code=onetimepass.get_totp(secret, as_string=True, clock=step * 30).decode()):
        return None
    _USER_STEPS[user] = step
    return client


def refused_as_not_approved(hub: Hub, user: str, password: str, secret: str) -> bool:
    """True when a sign-in with ``user``'s right password and a valid code is refused because the
    account is not approved (the audited reason), not for a code used already."""
    if sign_in(hub, user, password, secret) is not None:
        return False
    last = [e for e in hub.actions("hub.login") if e.target == f"user:{user}"][-1]
    return last.outcome == "denied" and last.details.get("reason") == "account not approved yet"


def post_account_action(session, hub: Hub, user: str, action: str):
    """``session`` (a signed-in browser) posts the accounts page's form ``action`` on ``user``'s
    account, with its XSRF token, as the page's button does; the response, not followed."""
    return session.http.post(f"{hub.url}/hub/authorize/{user}", timeout=30, allow_redirects=False,
                             data={"_xsrf": session.http.cookies.get("_xsrf", ""), "action": action})
