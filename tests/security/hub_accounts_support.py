"""Support of tests/security/test_hub_accounts.py: one real hub (tests/hub/hubfixtures.py) whose
accounts were made by the registry administrator, and the real ``pds`` command run by the OS user
of the tests mapped (``cli.identities``) to the registry user an attempt plays."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubfixtures import PASSWORD, PROJECT, Hub, free_port_block, make_world

from pds_kernel.hub.local import provision_account, set_account_approval

PDS = str(Path(sys.executable).with_name("pds"))
#: Accounts made by root: root, ada and abe administer the registry; the others are researchers.
ACCOUNTS = ("root", "ada", "abe", "alice", "bob", "carol")
#: Accounts left pending (revoked by root) when the world is made.
PENDING = ("alice", "bob")


def make_accounts_world(root: Path) -> tuple[Hub, dict[str, str]]:
    """The hubfixtures world plus administrators ``ada`` and ``abe`` and a researcher ``carol``; every account of
    :data:`ACCOUNTS` made by root, those of :data:`PENDING` then revoked (waiting for approval)."""
    hub = make_world(root, free_port_block())
    registry = hub.registry
    for admin in ("ada", "abe"):
        registry.upsert_user("root", admin, is_admin=True)
    registry.upsert_user("root", "carol")
    for researcher in ("bob", "carol"):
        registry.add_member("root", PROJECT, researcher, "researcher", date.today() + timedelta(days=100))
    secrets = {name: provision_account(hub.settings, registry, name, PASSWORD, actor="root")
               for name in ACCOUNTS}
    for name in PENDING:
        set_account_approval(hub.settings, registry, name, False, actor="root")
    return hub, secrets


def pds_as(hub: Hub, user: str | None, *args: str) -> subprocess.CompletedProcess:
    """The real ``pds`` with ``hub``'s configuration, its OS user mapped to ``user`` (None: unmapped)."""
    data = yaml.safe_load(hub.config.read_text())
    data["cli"] = {"identities": {getpass.getuser(): user} if user else {}}
    config = hub.root / f"pds-as-{user or 'unmapped'}.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
    return subprocess.run([PDS, "--config", str(config), *args], capture_output=True, text=True,
                          env={**env, "COLUMNS": "300"}, timeout=120)


def authorized(hub: Hub, user: str) -> bool | None:
    """Whether ``user``'s hub account is approved, read from the hub database (None: no account)."""
    import sqlite3

    from pds_kernel.hub.local import hub_dir

    with sqlite3.connect(hub_dir(hub.settings) / "jupyterhub.sqlite") as db:
        row = db.execute("SELECT is_authorized FROM users_info WHERE username = ?", (user,)).fetchone()
    return None if row is None else bool(row[0])


def denials(hub: Hub, action: str, target: str) -> list:
    """Audited refusals of ``action`` on ``target`` (``user:<name>``)."""
    return [e for e in hub.actions(action) if e.outcome == "denied" and e.target == target]
