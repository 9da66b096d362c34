"""Red team of the hub accounts' generations (``pds_kernel/hub/account_generations.py``,
``pds_kernel/audit_newest.py``) on SQLite and on a real PostgreSQL server for the platform's database.

Each account's seal names its generation: the platform's newest write of it, as that write's audit
entry records it. The attacker writes the hub's database (its SQLite file) and, where a test says
so, the platform's database with its owner's rights (audit_support.py: the append-only guards
dropped), and in one attempt holds the audit key retired by a rotation (a leaked key is the reason to
rotate). They never hold the key in force nor the anchor store. Every attempt puts back an account's
old row and seal as the platform wrote them, then makes the audit trail point at that older write.

The accounts are checked by the real authenticator (``authenticate``, as a sign-in does, on the real
hub database) and by what the accounts page, the watcher and a session's refresh ask; no hub process
(tests/security/test_hub_account_seals.py signs in through one).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import onetimepass
import pytest
from audit_rotation_support import make_registry, rotated
from audit_support import as_owner, fill, forged_hash, insert, rows
from hub_account_seals_support import put_back, snapshot

from pds_kernel.audit_anchor import FileAnchorStore
from pds_kernel.hub.account_seals import BROKEN, AccountSeals
from pds_kernel.hub.accounts import TOTP_STEP, current_step
from pds_kernel.hub.common import HubContext
from pds_kernel.hub.local import PdsNativeAuthenticator, hub_session, provision_account, set_account_approval
from pds_kernel.runtime import Runtime

PASSWORD = "long-enough-password"


@pytest.fixture(name="world")
def world_fixture(db_runtime):
    """root, an administrator; alice and bob, users; each with an approved hub account."""
    registry = make_registry(db_runtime)
    secrets = {name: str(provision_account(db_runtime.settings, registry, name, PASSWORD, actor="root"))
               for name in ("root", "alice", "bob")}
    return db_runtime, secrets


def refused(runtime: Runtime, user: str, secret: str) -> str | None:
    """The reason the real authenticator audits when it refuses ``user``'s sign-in with the right
    password and code; ``None`` when it signs them in."""
    from pds_kernel.registry import Registry

    registry = Registry.from_runtime(runtime)
    with hub_session(runtime.settings) as session:
        context = HubContext(settings=runtime.settings, runtime=runtime, registry=registry)
        auth = PdsNativeAuthenticator(context=context, db=session, membership_check_interval=0)
        while True:
            step = current_step()
            code = onetimepass.get_totp(secret, as_string=True, clock=step * TOTP_STEP).decode()
            if asyncio.run(auth.authenticate(None, {"username": user, "password": PASSWORD, "2fa": code})):
                return None
            if current_step() == step:  # not a code that expired while it was checked: a refusal
                break
        assert not auth.can_use_account(user)  # the watcher and a session's refresh refuse it too
        assert user in auth.account_seals.broken(session)  # the accounts page shows it broken
        return runtime.audit.entries(action="hub.login")[-1].details["reason"]


def sealed(runtime: Runtime, user: str) -> bool:
    with hub_session(runtime.settings) as session:
        return user not in AccountSeals(runtime.audit).broken(session)


def revoked_and_put_back(runtime: Runtime, user: str) -> dict:
    """``user``'s account revoked by root, then its row, seal and provision put back as they were
    before (the attacker's copy of the hub database): returns the revocation's audit entry."""
    before = snapshot(runtime, user)
    set_account_approval(runtime.settings, make_registry_of(runtime), user, False, actor="root")
    put_back(runtime, user, before)
    return next(e for e in reversed(runtime.audit.entries(action="hub.account.revoke")) if e.target == f"user:{user}")


def make_registry_of(runtime: Runtime):
    from pds_kernel.registry import Registry

    return Registry.from_runtime(runtime)


def test_an_old_row_put_back_names_an_older_write(world):
    """The hub database alone: the audit trail is whole, the seal names the write before the newest."""
    runtime, secrets = world
    revoked_and_put_back(runtime, "alice")
    assert refused(runtime, "alice", secrets["alice"]) == BROKEN
    assert runtime.audit.verify().ok
    assert sealed(runtime, "bob")


def test_an_entry_planted_naming_the_old_write(world):
    """The platform database's owner adds an approval of alice after her revocation, naming the
    generation of her old row (they read it in the trail); its hash is the best they can make
    without the key."""
    runtime, secrets = world
    created = next(e for e in runtime.audit.entries(action="hub.account.create") if e.target == "user:alice")
    revoked_and_put_back(runtime, "alice")
    last = rows(runtime)[-1]
    planted = dict(last, seq=last["seq"] + 1, action="hub.account.approve", target="user:alice", outcome="ok",
                   actor="root", details=json.dumps({"generation": created.details["generation"], "via": "cli"}),
                   prev_hash=last["hash"])
    planted["hash"] = forged_hash(planted, b"the attacker's own key, 32 bytes")
    insert(runtime, planted)
    reason = refused(runtime, "alice", secrets["alice"])
    assert reason.startswith(BROKEN) and "does not authenticate" in reason, reason


def test_the_revocation_deleted_from_the_platform_database(world):
    """The revocation's entry deleted (entries written after it stay): a gap before the latest
    anchor, seen by the hub that had checked alice before (it counts only the entries since) and by
    a process started afresh; ``pds audit verify`` names the entry."""
    runtime, secrets = world
    assert sealed(runtime, "alice")  # this process has found the trail whole after her newest write
    revocation = revoked_and_put_back(runtime, "alice")
    fill(runtime, 3)
    as_owner(runtime, "DELETE FROM audit_log WHERE seq = :seq", params=[{"seq": revocation.seq}])
    reason = refused(runtime, "alice", secrets["alice"])
    assert reason.startswith(BROKEN) and "missing" in reason, reason
    fresh = Runtime(runtime.settings)
    try:
        assert not sealed(fresh, "alice")
    finally:
        fresh.close()
    report = runtime.audit.verify()
    assert (revocation.seq, "deleted") in {(p.seq, p.kind) for p in report.problems}, report.problems


def test_the_revocation_cut_from_the_end_of_the_trail(world):
    """The revocation was the trail's last entry, and is deleted: the anchored head is gone. The
    attacker, who may append to the anchor file (red team 8) but not cut it, names the entry before
    as the latest; then lets the platform write on, which numbers new entries as the ones removed
    (the refused sign-in's own audit entry is one): each number is then anchored with two hashes."""
    runtime, secrets = world
    revocation = revoked_and_put_back(runtime, "alice")
    assert rows(runtime)[-1]["seq"] == revocation.seq
    as_owner(runtime, "DELETE FROM audit_log WHERE seq = :seq", params=[{"seq": revocation.seq}])
    before = rows(runtime)[-1]
    anchors = FileAnchorStore(Path(runtime.settings.audit_anchor_file), runtime.audit.keyring)
    anchors.append(replace(anchors.read()[-1], seq=before["seq"], head=before["hash"], time="2099-01-01T00:00:00+00:00"))
    reason = refused(runtime, "alice", secrets["alice"])
    assert reason.startswith(BROKEN) and f"entry {revocation.seq} is not the one anchored" in reason, reason
    fill(runtime, 2)
    assert rows(runtime)[-1]["seq"] > revocation.seq  # no number missing any more
    for process in (runtime, Runtime(runtime.settings)):  # this hub, and a process started afresh
        reason = refused(process, "alice", secrets["alice"])
        assert reason.startswith(BROKEN) and "anchored twice" in reason, reason
        if process is not runtime:
            process.close()
    assert not runtime.audit.verify().ok


def test_a_rotation_keeps_the_generations_and_the_retired_key_forges_none(world):
    """After ``pds audit rotate-key`` every account is sealed with the new key under the same
    generation. The attacker holds the retired key: they put back alice's row as the rotation sealed
    it after her revocation, and sign with the retired key a newer approval naming that generation
    (a valid hash under a key of the keyring, but not the key that signs that entry)."""
    runtime, secrets = world
    runtime, old, _, _ = rotated(runtime)
    try:
        assert all(sealed(runtime, user) for user in ("root", "alice", "bob"))
        resealed = [e for e in runtime.audit.entries(action="hub.account.create") if e.target == "user:alice"][-1]
        revoked_and_put_back(runtime, "alice")
        assert refused(runtime, "alice", secrets["alice"]) == BROKEN
        last = rows(runtime)[-1]
        planted = dict(last, seq=last["seq"] + 1, action="hub.account.approve", target="user:alice", outcome="ok",
                       actor="root", details=json.dumps({"generation": resealed.details["generation"]}),
                       prev_hash=last["hash"])
        planted["hash"] = forged_hash(planted, old.secret)
        insert(runtime, planted)
        reason = refused(runtime, "alice", secrets["alice"])
        assert reason.startswith(BROKEN) and "does not authenticate" in reason, reason
        assert sealed(runtime, "bob")
    finally:
        runtime.close()
