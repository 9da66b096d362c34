"""Red team of the audit key's rotation (``pds audit rotate-key``, docs/adr/0014).

The attacker holds the database owner's rights (audit_support.py) and, in the attacks that say so,
the **retired** key: a leaked key is the reason to rotate. They never hold the new key nor write
access to the anchor store. Before this change there was no rotation at all: a key could only be
replaced, which made every keyed entry fail verification and broke every seal; so none of these
attempts could be run before (each test says what the nearest attempt did then).

The registry and the audit trail on SQLite and on a real PostgreSQL server; the local hub's
accounts in its real SQLite database; ``pds`` run for real where it says so.
"""

from __future__ import annotations

import secrets

import pytest
from audit_rotation_support import (
    TODAY,
    account_sealed,
    add_key,
    key_file,
    make_hub_world,
    make_registry,
    pds,
    rotate_and_kill,
    rotated,
    write_as_owner,
)
from audit_support import as_owner, fill, forged_hash, insert, rewrite_from, rows

from pds_kernel.audit import AuditEvent
from pds_kernel.audit_chain import compute_keyed_hash, row_values
from pds_kernel.audit_key import AuditKey
from pds_kernel.audit_rotation import ROTATE_ACTION
from pds_kernel.errors import IntegrityError, PermissionDenied
from pds_kernel.registry import Registry
from pds_kernel.rotate_audit_key import rotate_audit_key
from pds_kernel.runtime import Runtime


def _kinds(report) -> set[tuple[int, str]]:
    return {(p.seq, p.kind) for p in report.problems}


def _signed_with(row: dict, key: AuditKey) -> bool:
    class Row:
        pass

    stored = Row()
    stored.__dict__.update(row)
    return compute_keyed_hash(key, **row_values(stored)) == row["hash"]


@pytest.fixture
def rotated_world(db_runtime):
    """(runtime after the rotation, old key, new key, the rotation entry): 5 entries and the
    registry's before it, 4 after it."""
    make_registry(db_runtime)
    fill(db_runtime, 5)
    runtime, old, new, seq = rotated(db_runtime)
    fill(runtime, 4)
    assert runtime.audit.verify().ok
    yield runtime, old, new, seq
    runtime.close()


def test_entries_forged_with_the_retired_key_after_the_rotation(rotated_world):
    """The leaked old key re-signs an entry after the rotation and every entry after it, linked."""
    runtime, old, new, seq = rotated_world
    rewrite_from(runtime, seq + 2, key=old.secret, edit={"actor": "os:mallory"})
    report = runtime.audit.verify()
    assert {p.seq for p in report.problems} == set(range(seq + 2, seq + 5))
    forged = next(p for p in report.problems if p.seq == seq + 2)
    assert forged.kind == "rewritten" and f"signed with key {old.key_id}" in forged.message, forged.message
    # the same forgery, appended at the end as a new entry
    last = rows(runtime)[-1]
    row = dict(last, seq=last["seq"] + 1, prev_hash=last["hash"], actor="os:mallory")
    row["hash"] = forged_hash(row, old.secret)
    insert(runtime, row)
    named = next(p for p in runtime.audit.verify().problems if p.seq == row["seq"])
    assert named.kind == "rewritten" and f"signed with key {old.key_id}" in named.message


def test_the_rotation_entry_replayed(rotated_world):
    """The rotation entry copied to the end of the chain, as it is and re-signed with the leaked
    old key: neither counts as a rotation, both are named, and the platform keeps the new key."""
    runtime, old, new, seq = rotated_world
    rotation = next(r for r in rows(runtime) if r["seq"] == seq)
    last = rows(runtime)[-1]
    copy = dict(rotation, seq=last["seq"] + 1)
    insert(runtime, copy)
    report = runtime.audit.verify()
    assert (copy["seq"], "reordered") in _kinds(report), report.problems
    resigned = dict(rotation, seq=copy["seq"] + 1, prev_hash=copy["hash"])
    resigned["hash"] = forged_hash(resigned, old.secret)
    insert(runtime, resigned)
    report = runtime.audit.verify()
    assert (resigned["seq"], "rewritten") in _kinds(report), report.problems
    assert [r.seq for r in report.rotations] == [seq]
    runtime.audit.record(AuditEvent(actor="os:ops", action="airlock.request.list", target="scope:all"))
    assert _signed_with(rows(runtime)[-1], new)
    assert runtime.audit.key().key_id == new.key_id


def test_the_rotation_entry_deleted(rotated_world):
    """Deleting the rotation entry would make the chain name the old key again (and the platform
    sign with it and accept seals made with it): verification names it, and every process that
    restarts refuses to write or check a seal rather than go back to the retired key."""
    runtime, old, new, seq = rotated_world
    as_owner(runtime, f"DELETE FROM audit_log WHERE seq = {seq}")
    report = runtime.audit.verify()
    assert (seq, "deleted") in _kinds(report)
    after = next(p for p in report.problems if p.seq == seq + 1)
    assert after.kind == "rewritten" and f"signed with key {new.key_id}" in after.message
    restarted = Runtime(runtime.settings)
    try:
        with pytest.raises(IntegrityError, match="rotation entry was removed"):
            restarted.audit.record(AuditEvent(actor="os:ops", action="airlock.request.list", target="scope:all"))
        with pytest.raises(IntegrityError, match="rotation entry was removed"):
            Registry.from_runtime(restarted).can_access("alice", "diab", today=TODAY)
    finally:
        restarted.close()


def test_the_rotation_entry_deleted_and_the_tail_resigned_with_the_retired_key(rotated_world):
    """The leaked old key rebuilds a chain with no rotation: entries renumbered, every one from the
    rotation on re-signed with the old key, the links right. The anchors (outside the database)
    name the new key and the old heads: verification refuses the chain."""
    runtime, old, new, seq = rotated_world
    as_owner(runtime, f"DELETE FROM audit_log WHERE seq = {seq}",
             f"UPDATE audit_log SET seq = seq - 1 WHERE seq > {seq}")
    rewrite_from(runtime, seq, key=old.secret)
    report = runtime.audit.verify()
    assert not report.ok
    assert report.rotations == ()
    assert any(new.key_id in p.message for p in report.problems), report.problems


def test_a_forged_approval_is_not_resealed_by_the_rotation(db_runtime):
    """Just before rotate-key, the attacker extends alice's membership and makes bob an
    administrator with a copy of root's seal. The rotation re-seals what the old key sealed, and
    only that: both stay refused, counted as broken."""
    registry = make_registry(db_runtime)
    write_as_owner(db_runtime, "UPDATE registry_memberships SET expires_on = '2099-12-31' WHERE user_name = 'alice'")
    write_as_owner(db_runtime, "UPDATE registry_users SET is_admin = :t, admin_granted_by = 'root', "
                               "admin_approved_by = 'root', admin_seal = (SELECT admin_seal FROM "
                               "registry_users WHERE name = 'root') WHERE name = 'bob'", t=True)
    assert not registry.can_access("alice", "diab", today=TODAY)
    runtime, old, new, seq = rotated(db_runtime)
    try:
        entry = next(e for e in runtime.audit.entries(action=ROTATE_ACTION) if e.seq == seq)
        assert entry.details["registry"]["broken"] == 2
        assert entry.details["registry"]["resealed"] >= 1  # root's approval
        registry = Registry.from_runtime(runtime)
        assert not registry.can_access("alice", "diab", today=TODAY)
        assert not registry.is_administrator("bob")
        assert registry.is_administrator("root")
        assert runtime.audit.verify().ok
    finally:
        runtime.close()


def test_a_forged_hub_account_is_not_resealed_by_the_rotation(tmp_path):
    """Just before rotate-key, the attacker approves bob's revoked account in the hub's database.
    alice's and root's accounts are re-sealed with the new key; bob's stays refused."""
    runtime, _ = make_hub_world(tmp_path)
    import sqlite3

    from pds_kernel.hub.local import hub_dir

    with sqlite3.connect(hub_dir(runtime.settings) / "jupyterhub.sqlite") as db:
        assert db.execute("UPDATE users_info SET is_authorized = 1 WHERE username = 'bob'").rowcount == 1
    assert not account_sealed(runtime, "bob")
    runtime, old, new, seq = rotated(runtime)
    try:
        assert account_sealed(runtime, "alice") and account_sealed(runtime, "root")
        assert not account_sealed(runtime, "bob")
        reseal = runtime.audit.entries(action="audit.key.reseal")[-1]
        assert reseal.details["hub"]["broken_names"] == ["bob"]
        assert reseal.details["hub"]["resealed"] == 3  # bob's seal carried over as it was: revoked
    finally:
        runtime.close()


def test_a_non_administrator_cannot_rotate_the_key(db_runtime):
    """bob (a registry user), an OS account and the real command run by the tests' OS user (mapped
    to no administrator) are refused, audited, and the key in force stays the old one."""
    make_registry(db_runtime)
    runtime, new = add_key(db_runtime)
    try:
        old = runtime.audit.keyring.keys[0]
        for actor in ("bob", "os:nobody"):
            with pytest.raises(PermissionDenied, match="may not rotate the audit key"):
                rotate_audit_key(runtime, actor)
        result = pds(runtime, "audit", "rotate-key")
        assert result.returncode != 0 and "may not rotate the audit key" in result.stdout + result.stderr
        denied = [e for e in runtime.audit.entries(action=ROTATE_ACTION) if e.outcome == "denied"]
        assert len(denied) == 3
        assert runtime.audit.key().key_id == old.key_id
        assert runtime.audit.verify().ok
    finally:
        runtime.close()


@pytest.mark.parametrize("keyring, message", [
    ("{a}\n{a}\n", "twice"),
    ("{a}\n{b_id} {a}\n", "names key"),  # a line claiming another key's id
    ("{a}\nnot-hex-at-all\n", "not hexadecimal"),
    ("{a}\n0123abcd\n", "shorter than 16 bytes"),
    ("{a}\n{b_id} {b} extra\n", "is not `<hex key>`"),
    ("# only a comment\n", "holds no key"),
])
def test_a_keyring_with_a_key_twice_or_a_malformed_key(runtime, keyring, message):
    """A keyring the platform cannot trust is refused at start, saying which line; nothing is written."""
    fill(runtime, 2)
    a = AuditKey(bytes.fromhex(key_file(runtime).read_text().strip()))
    b = AuditKey(secrets.token_bytes(32))
    key_file(runtime).write_text(keyring.format(a=a.secret.hex(), b=b.secret.hex(), b_id=b.key_id))
    restarted = Runtime(runtime.settings)
    try:
        with pytest.raises(IntegrityError, match=message):
            restarted.audit.record(AuditEvent(actor="os:ops", action="airlock.request.list", target="scope:all"))
    finally:
        restarted.close()
    assert len(rows(runtime)) == 2
    result = pds(runtime, "audit", "verify")
    assert result.returncode != 0 and message.split()[0] in result.stdout + result.stderr


def test_a_rotation_killed_before_its_commit(db_runtime, tmp_path):
    """Killed after re-sealing the registry, before the rotation entry commits: nothing happened
    (one transaction), alice keeps her access, and the re-run rotates."""
    make_registry(db_runtime)
    runtime, new = add_key(db_runtime)
    try:
        rotate_and_kill(runtime, "before-commit", tmp_path)
        assert not runtime.audit.entries(action=ROTATE_ACTION)
        assert runtime.audit.key().key_id != new.key_id
        assert Registry.from_runtime(runtime).can_access("alice", "diab", today=TODAY)
        done = rotate_audit_key(runtime, "root")
        assert done.rotation_seq is not None and done.registry["resealed"] >= 2
        assert Registry.from_runtime(runtime).can_access("alice", "diab", today=TODAY)
        assert runtime.audit.verify().ok
    finally:
        runtime.close()


def test_a_rotation_killed_between_account_reseals(tmp_path):
    """Killed after the rotation committed and one hub account was re-sealed: every account is
    either sealed with the new key or refused (none valid without a seal of the key in force);
    the re-run re-seals the rest, loses none, and records no second rotation."""
    runtime, _ = make_hub_world(tmp_path)
    runtime, new = add_key(runtime)
    try:
        rotate_and_kill(runtime, "between-accounts", tmp_path)
        assert runtime.audit.key().key_id == new.key_id
        sealed = {user: account_sealed(runtime, user) for user in ("alice", "bob", "root")}
        assert sum(sealed.values()) == 1, sealed  # the one re-sealed before the kill; the others refused
        done = rotate_audit_key(runtime, "root")  # the re-run finishes the re-sealing
        assert done.rotation_seq is None
        assert (done.hub["resealed"], done.hub["already"], done.hub["broken"]) == (2, 1, 0)
        again = rotate_audit_key(runtime, "root")  # and another one has nothing left to do
        assert (again.hub["resealed"], again.hub["already"]) == (0, 3)
        assert all(account_sealed(runtime, user) for user in ("alice", "bob", "root"))
        assert len(runtime.audit.entries(action=ROTATE_ACTION)) == 1
        assert runtime.audit.verify().ok
    finally:
        runtime.close()



def test_a_planted_rotation_entry_nested_200000_deep(rotated_world):
    """A row planted at the end as a rotation whose details are JSON nested 200,000 deep: reading
    it made every writer and verification fail with a RecursionError (got through before its fix,
    a denial of service). It is no rotation: writing goes on with the key in force, and
    verification names the row."""
    runtime, old, new, seq = rotated_world
    last = rows(runtime)[-1]
    planted = dict(last, seq=last["seq"] + 1, prev_hash=last["hash"], action=ROTATE_ACTION, outcome="ok",
                   details="[" * 200_000 + "]" * 200_000)
    planted["hash"] = forged_hash(planted, old.secret)
    insert(runtime, planted)
    runtime.audit.record(AuditEvent(actor="os:ops", action="airlock.request.list", target="scope:all"))
    assert _signed_with(rows(runtime)[-1], new)
    report = runtime.audit.verify()
    assert [r.seq for r in report.rotations] == [seq]
    assert any(p.seq == planted["seq"] for p in report.problems), report.problems
