"""Support of tests/security/test_audit_key_rotation.py: an installation whose audit key is rotated
the way an operator does it (a key added at the end of the keyring, every process restarted, then
``pds audit rotate-key``), and the attacker's tools (audit_support.py: the database owner's rights).

The registry: root, an approved administrator; alice, an approved researcher of diab; bob, a user.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import date
from pathlib import Path

from sqlalchemy import text

from pds_kernel.audit_key import AuditKey
from pds_kernel.db import make_engine
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.rotate_audit_key import rotate_audit_key
from pds_kernel.runtime import Runtime
from tests.conftest import make_settings

TODAY = date(2026, 6, 1)
UNTIL = date(2027, 6, 30)


def make_registry(runtime: Runtime) -> Registry:
    registry = Registry.from_runtime(runtime)
    registry.apply("os:setup", parse_registry({"users": [{"name": "root", "admin": True}]}))
    for name in ("alice", "bob"):
        registry.upsert_user("root", name)
    registry.upsert_project("root", "diab", title="Diabetes", start_date=date(2026, 1, 1), end_date=date(2028, 1, 1))
    registry.add_member("root", "diab", "alice", "researcher", UNTIL)
    assert registry.can_access("alice", "diab", today=TODAY)
    return registry


def key_file(runtime: Runtime) -> Path:
    return Path(runtime.settings.audit_key_file)


def add_key(runtime: Runtime) -> tuple[Runtime, AuditKey]:
    """Append a new key to the keyring and restart (a new runtime reads the keyring at start)."""
    new = AuditKey(secrets.token_bytes(32))
    path = key_file(runtime)
    with path.open("a", encoding="ascii") as handle:
        handle.write(f"{new.key_id} {new.secret.hex()}\n")
    runtime.close()
    return Runtime(runtime.settings), new


def rotated(runtime: Runtime, actor: str = "root") -> tuple[Runtime, AuditKey, AuditKey, int]:
    """Rotate to a new key: (the restarted runtime, the old key, the new key, the rotation entry)."""
    runtime, new = add_key(runtime)
    old = runtime.audit.keyring.keys[-2]
    done = rotate_audit_key(runtime, actor)
    assert (done.from_key, done.to_key) == (old.key_id, new.key_id)
    return runtime, old, new, done.rotation_seq


def write_as_owner(runtime: Runtime, sql: str, **values) -> int:
    """The attacker's own connection to the platform database (no key): rows changed."""
    engine = make_engine(runtime.settings.database_url)
    try:
        with engine.begin() as connection:
            return connection.execute(text(sql), values).rowcount
    finally:
        engine.dispose()


def pds(runtime: Runtime, *args: str) -> subprocess.CompletedProcess:
    """The real ``pds`` of this installation, run by the OS user of the tests (mapped to nobody)."""
    settings = runtime.settings
    env = dict(os.environ, PDS_DATABASE__URL=settings.database_url, PDS_PATHS__STATE=str(settings.paths.state),
               PDS_AUDIT__KEY_FILE=str(settings.audit_key_file),
               PDS_AUDIT__ANCHOR_FILE=str(settings.audit_anchor_file), COLUMNS="200")
    env.pop("PDS_CONFIG", None)
    # the script under this interpreter (its shebang may name another checkout's interpreter)
    return subprocess.run([sys.executable, str(Path(sys.executable).parent / "pds"), *args], env=env,
                          cwd=settings.paths.state, capture_output=True, text=True, timeout=120)


#: Run in a child process: rotate the audit key as ``root`` and be killed (SIGKILL) at a given point,
#: the way a node dies or an operator's session is cut. argv: settings pickle path, where to die.
KILLED_ROTATION = r'''
import os, pickle, signal, sys
from pds_kernel.runtime import Runtime
import pds_kernel.rotate_audit_key as rotation
import pds_kernel.hub.account_seals as account_seals

settings = pickle.load(open(sys.argv[1], "rb"))
where = sys.argv[2]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where == "before-commit":  # the registry re-sealed, the rotation entry not yet committed
    real_reseal = rotation.reseal_approvals
    def reseal_then_die(*args):
        real_reseal(*args)
        die()
    rotation.reseal_approvals = reseal_then_die
else:  # "between-accounts": the rotation committed, one hub account re-sealed and committed
    real_write = account_seals.AccountSeals.write
    calls = []
    def write_then_die(self, db, account):
        if calls:
            die()
        calls.append(account.username)
        real_write(self, db, account)
    account_seals.AccountSeals.write = write_then_die
rotation.rotate_audit_key(Runtime(settings), "root")
print("not killed")
'''


def rotate_and_kill(runtime: Runtime, where: str, tmp: Path) -> subprocess.CompletedProcess:
    import pickle

    path = tmp / "settings.pickle"
    path.write_bytes(pickle.dumps(runtime.settings))
    result = subprocess.run([sys.executable, "-c", KILLED_ROTATION, str(path), where],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stdout + result.stderr
    return result


def make_hub_world(root: Path) -> tuple[Runtime, Registry]:
    """A local installation (SQLite) whose hub has accounts: root's, alice's (approved) and bob's
    (revoked by root), each sealed by the platform. No hub process: the seals are checked as a
    sign-in checks them (:meth:`pds_kernel.hub.account_seals.AccountSeals.sealed`)."""

    from pds_kernel.hub.local import provision_account, set_account_approval

    runtime = Runtime(make_settings(root))
    registry = make_registry(runtime)
    for name in ("root", "alice", "bob"):
        provision_account(runtime.settings, registry, name, "long-enough-password", actor="root")
    set_account_approval(runtime.settings, registry, "bob", False, actor="root")
    return runtime, registry


def account_sealed(runtime: Runtime, user: str) -> bool:
    """Whether a sign-in would take ``user``'s account: it is not among the accounts whose seal is
    missing or wrong under the key in force (what the accounts page shows as broken)."""
    from pds_kernel.hub.account_seals import AccountSeals
    from pds_kernel.hub.local import hub_session

    with hub_session(runtime.settings) as db:
        broken = AccountSeals(runtime.audit).broken(db)
    return user not in broken
