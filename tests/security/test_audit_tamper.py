"""Attacks on the audit trail by someone with the database owner's rights (issue #11, item 7).

The attacker drops the append-only triggers and edits, deletes, renumbers, inserts or re-hashes
rows, or swaps the database for an older copy, on a real SQLite file and a real PostgreSQL server.
They hold neither the audit key nor write access to the anchor file. Each test is one attempt and
asserts that `pds audit verify` (its service function, and the real command where it says so)
fails and names the entries touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from audit_support import (
    as_owner,
    fill,
    forged_hash,
    insert,
    pds_audit_verify,
    restore,
    rewrite_from,
    rows,
    snapshot,
)

from pds_kernel.audit_chain import GENESIS_HASH
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Audit


def _named(report) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in report.problems]


def test_edit_a_field_after_dropping_the_triggers(db_runtime):
    fill(db_runtime, 6)
    as_owner(db_runtime, "UPDATE audit_log SET outcome = 'denied', actor = 'os:mallory' WHERE seq = 3")
    report = db_runtime.audit.verify()
    assert _named(report) == [(3, "edited")]


def test_delete_a_middle_entry(db_runtime):
    fill(db_runtime, 6)
    as_owner(db_runtime, "DELETE FROM audit_log WHERE seq = 4")
    report = db_runtime.audit.verify()
    assert [(p.seq, p.until, p.kind) for p in report.problems] == [(4, 4, "deleted")]
    assert "entry 4 was deleted" in report.problems[0].message


def test_delete_the_tail_as_in_the_attack_on_the_demo(db_runtime):
    """Issue #11: entries 86-88 removed and `pds audit verify` said intact."""
    fill(db_runtime, 88)
    as_owner(db_runtime, "DELETE FROM audit_log WHERE seq >= 86")
    result = pds_audit_verify(db_runtime)
    assert result.returncode == 7, result.stdout + result.stderr
    assert "entries 86..88 are missing at the end" in result.stdout
    assert "audit trail broken" in result.stderr
    report = db_runtime.audit.verify()
    assert [(p.seq, p.until, p.kind) for p in report.problems] == [(86, 88, "deleted")]


@pytest.fixture
def host_runtime(settings):
    """A runtime whose anchor file lives as on a host: in a directory others may traverse
    (``/tmp/pdsaudit-*``, 0755), the anchor directory itself created by the platform (0700)."""
    root = Path(tempfile.mkdtemp(prefix="pdsaudit-", dir="/tmp"))
    root.chmod(0o755)
    rt = Runtime(replace(settings, audit=Audit(anchor_file=str(root / "audit" / "anchors.jsonl"))))
    try:
        yield rt
    finally:
        rt.close()
        subprocess.run(["chattr", "-R", "-a", str(root)], capture_output=True)
        shutil.rmtree(root)


def test_delete_the_tail_and_the_last_anchor_line(host_runtime):
    """The attacker owns the database, not the platform's files: the anchor file (0600 in a 0700
    directory, owned by the platform's account) cannot be opened to cut its last lines."""
    runtime = host_runtime
    fill(runtime, 5)
    as_owner(runtime, "DELETE FROM audit_log WHERE seq = 5")
    anchor_file = runtime.settings.audit_anchor_file
    before = anchor_file.read_bytes()
    pid = os.fork()
    if pid == 0:  # the attacker: an unprivileged account on the same host
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            lines = anchor_file.read_bytes().splitlines(keepends=True)
            anchor_file.write_bytes(b"".join(lines[:-1]))
            os._exit(0)  # the attack got through
        except PermissionError:
            os._exit(13)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 13
    assert anchor_file.read_bytes() == before
    report = runtime.audit.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(5, "deleted")]


def test_truncate_an_append_only_anchor_file_as_its_owner(host_runtime):
    """Locally hardened (docs/audit.md): the anchor file carries the append-only inode flag
    (`chattr +a`, set by root). Even the platform's own account, which must keep appending to it,
    cannot truncate or rewrite it."""
    runtime = host_runtime
    fill(runtime, 3)
    anchor_file = runtime.settings.audit_anchor_file
    os.chown(anchor_file, 65534, 65534)  # the platform's account owns its anchor file
    os.chown(anchor_file.parent, 65534, 65534)
    if subprocess.run(["chattr", "+a", str(anchor_file)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem or account cannot set the append-only flag")
    try:
        before = anchor_file.read_bytes()
        pid = os.fork()
        if pid == 0:  # the account that owns the file, without CAP_LINUX_IMMUTABLE
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                with open(anchor_file, "ab") as handle:  # appending stays possible
                    handle.write(b"")
                try:
                    os.truncate(anchor_file, 0)
                except PermissionError:
                    os._exit(13)
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 13
        assert anchor_file.read_bytes() == before
    finally:
        subprocess.run(["chattr", "-a", str(anchor_file)], check=True)
    assert runtime.audit.verify().ok  # and the platform still anchors


def test_drop_the_audit_table(db_runtime):
    fill(db_runtime, 4)
    as_owner(db_runtime, "DROP TABLE audit_log")
    db_runtime.close()
    result = pds_audit_verify(db_runtime)
    assert result.returncode == 7, result.stdout + result.stderr
    assert "audit_log are gone" in result.stderr


def test_reorder_two_entries(db_runtime):
    fill(db_runtime, 6)
    as_owner(db_runtime,
             "UPDATE audit_log SET seq = -2 WHERE seq = 2",
             "UPDATE audit_log SET seq = 2 WHERE seq = 5",
             "UPDATE audit_log SET seq = 5 WHERE seq = -2")
    report = db_runtime.audit.verify()
    assert _named(report) == [(2, "reordered"), (5, "reordered")]
    assert "entry 2 holds what was written as entry 5" in report.problems[0].message


def test_insert_a_forged_entry_in_the_middle(db_runtime):
    """Make room after entry 3 (renumber 4..6 to 5..7) and slip in an approval chained to entry 3."""
    fill(db_runtime, 6)
    as_owner(db_runtime, *[f"UPDATE audit_log SET seq = {s + 1} WHERE seq = {s}" for s in (6, 5, 4)])
    third = rows(db_runtime)[2]
    forged = dict(third, seq=4, actor="os:olga", target="request:r99", prev_hash=third["hash"],
                  details='{"decision": "approve"}')
    forged["hash"] = forged_hash(forged, None)
    insert(db_runtime, forged)
    report = db_runtime.audit.verify()
    assert _named(report) == [(4, "inserted"), (5, "reordered"), (6, "reordered"), (7, "reordered")]


def test_append_a_forged_entry(db_runtime):
    fill(db_runtime, 4)
    last = rows(db_runtime)[-1]
    forged = dict(last, seq=5, action="airlock.request.release", prev_hash=last["hash"])
    forged["hash"] = forged_hash(forged, secrets.token_bytes(32))
    insert(db_runtime, forged)
    report = db_runtime.audit.verify()
    assert _named(report) == [(5, "inserted")]


def test_rewrite_the_tail_with_recomputed_unkeyed_hashes(db_runtime):
    """Issue #11: the tail rewritten from entry 3 with hashes recomputed so that the chain links."""
    fill(db_runtime, 6)
    rewrite_from(db_runtime, 3, key=None, edit={"outcome": "denied"})
    result = pds_audit_verify(db_runtime)
    assert result.returncode == 7
    assert "entry 3 was rewritten: its hash was recomputed without the platform key" in result.stdout
    report = db_runtime.audit.verify()
    assert _named(report) == [(s, "rewritten") for s in range(3, 7)]


def test_rewrite_the_tail_with_another_key(db_runtime):
    fill(db_runtime, 6)
    rewrite_from(db_runtime, 2, key=secrets.token_bytes(32), edit={"actor": "os:nobody"})
    report = db_runtime.audit.verify()
    assert _named(report) == [(s, "rewritten") for s in range(2, 7)]
    assert "not made with the platform key" in report.problems[0].message


def test_downgrade_keyed_entries_to_the_unkeyed_rule(db_runtime):
    """Mark entries 4.. as written before the key existed (chain_version 1) and re-hash them
    with the unkeyed rule: the anchors say the chain is keyed from entry 1."""
    fill(db_runtime, 6)
    rewrite_from(db_runtime, 4, key=None, chain_version=1, edit={"target": "request:other"})
    report = db_runtime.audit.verify()
    assert _named(report) == [(s, "rewritten") for s in range(4, 7)]
    assert "chain version 1" in report.problems[0].message


def test_truncate_the_audit_table_to_zero(db_runtime):
    fill(db_runtime, 5)
    as_owner(db_runtime, "DELETE FROM audit_log")
    report = db_runtime.audit.verify()
    assert [(p.seq, p.until, p.kind) for p in report.problems] == [(1, 5, "deleted")]


def test_replace_the_key_file_and_rewrite_with_the_new_key(runtime):
    """An attacker who could also replace the key file (not only the database) signs a rewritten
    chain with their own key: the anchors name the key that wrote the chain."""
    fill(runtime, 4)
    own_key = secrets.token_bytes(32)
    rewrite_from(runtime, 1, key=own_key, edit={"actor": "os:mallory"})
    runtime.settings.audit_key_file.write_text(own_key.hex())
    fresh = Runtime(runtime.settings)
    try:
        report = fresh.audit.verify()
    finally:
        fresh.close()
    assert _named(report) == [(1, "wrong key")]
    assert "not the one that wrote the chain" in report.problems[0].message


# ---- swapping the whole database for an older copy ---------------------------------------------

def test_swap_the_database_for_an_older_backup(db_runtime):
    fill(db_runtime, 3)
    backup = snapshot(db_runtime, "old")
    fill(db_runtime, 4)  # entries 4..7: the ones the attacker wants gone
    restore(db_runtime, backup)
    report = db_runtime.audit.verify()
    assert [(p.seq, p.until, p.kind) for p in report.problems] == [(4, 7, "deleted")]
    assert "restored from an older backup" in report.problems[0].message


def test_restore_an_older_backup_and_write_new_entries_over_the_gap(db_runtime):
    """After rolling back, the attacker lets the platform write again so that the chain has no
    missing number at the end: the new entries are authentic but not the anchored ones."""
    fill(db_runtime, 3)
    backup = snapshot(db_runtime, "old")
    fill(db_runtime, 3)
    restore(db_runtime, backup)
    fresh = Runtime(replace(db_runtime.settings))
    try:
        fill(fresh, 3)
        report = fresh.audit.verify()
    finally:
        fresh.close()
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "rolled back"), (5, "rolled back"),
                                                         (6, "rolled back")]


def test_rewrite_the_entries_written_before_the_key(db_runtime):
    """An upgraded database keeps its unkeyed entries (rule 1). The attacker edits one and
    re-hashes the unkeyed part, which needs no key: the first keyed entry, and the anchor of the
    unkeyed head, still bind the old hashes."""
    previous = GENESIS_HASH
    legacy = []
    for seq in range(1, 6):  # what the previous release wrote (no key, no anchor)
        row = dict(seq=seq, time=f"2026-11-0{seq}T00:00:00+00:00", schema_version=1, actor="os:setup",
                   action="registry.user.upsert", target=f"user:u{seq}", project="", outcome="ok",
                   details="{}", prev_hash=previous, chain_version=1)
        row["hash"] = forged_hash(row, None)
        previous = row["hash"]
        legacy.append(row)
    for row in legacy:
        insert(db_runtime, row)
    assert db_runtime.audit.verify().ok  # anchors the unkeyed head: the chain is keyed from entry 6
    fill(db_runtime, 3)
    rewrite_from(db_runtime, 2, key=None, edit={"actor": "os:mallory"}, chain_version=1)
    stored = rows(db_runtime)
    assert [r["chain_version"] for r in stored] == [1] * 8  # the keyed entries re-hashed too
    report = db_runtime.audit.verify()
    assert not report.ok
    named = _named(report)
    assert (5, "rewritten") in named and all((s, "rewritten") in named for s in (6, 7, 8))
