"""Rotating the audit key for years (``pds audit rotate-key``, docs/audit.md, docs/adr/0014): an
installation of one key file keeps working, each rotation is recorded and verified, a lost
retired key leaves its entries readable but unverifiable, and a process that missed the new key
refuses to write. Real database, real key files and anchors, the real command."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from audit_rotation_support import TODAY, add_key, key_file, make_registry, rotated
from audit_support import fill

from pds_kernel.audit import AuditEvent
from pds_kernel.audit_key import AuditKey
from pds_kernel.errors import IntegrityError, InvalidInput
from pds_kernel.registry import Registry
from pds_kernel.rotate_audit_key import rotate_audit_key
from pds_kernel.runtime import Runtime


def _event(i: int = 0) -> AuditEvent:
    return AuditEvent(actor="os:ops", action="airlock.request.list", target=f"scope:{i}")


def test_a_key_file_of_one_key_is_a_keyring_of_it(runtime):
    fill(runtime, 3)
    secret = bytes.fromhex(key_file(runtime).read_text().strip())
    assert runtime.audit.keyring.ids == (AuditKey(secret).key_id,)
    assert {a.key_id for a in runtime.audit._anchors.read()} == {AuditKey(secret).key_id}
    report = runtime.audit.verify()
    assert report.ok and report.rotations == () and report.head_key == AuditKey(secret).key_id


def test_rotate_key_without_a_new_key_says_what_to_do(runtime):
    make_registry(runtime)
    with pytest.raises(InvalidInput, match="add a new key at the end of the keyring"):
        rotate_audit_key(runtime, "root")


@pytest.mark.parametrize("lost", [0, 1], ids=["oldest key lost", "middle key lost"])
def test_two_rotations_then_a_retired_key_lost(db_runtime, lost):
    """Years of use: two rotations, seals carried along; then a retired key is lost and taken out
    of the keyring: its entries are listed as unverifiable, the rest verifies, writing goes on."""
    make_registry(db_runtime)
    fill(db_runtime, 3)
    runtime, k0, k1, first = rotated(db_runtime)
    fill(runtime, 2)
    runtime, _, k2, second = rotated(runtime)
    fill(runtime, 2)
    report = runtime.audit.verify()
    assert report.ok, report.problems
    assert [(r.seq, r.from_key, r.to_key) for r in report.rotations] == [
        (first, k0.key_id, k1.key_id), (second, k1.key_id, k2.key_id)]
    assert report.head_key == k2.key_id
    assert Registry.from_runtime(runtime).can_access("alice", "diab", today=TODAY)
    lines = key_file(runtime).read_text().splitlines()
    key_file(runtime).write_text("\n".join(lines[:lost] + lines[lost + 1:]) + "\n")
    runtime.close()
    runtime = Runtime(runtime.settings)
    try:
        runtime.audit.record(_event())
        report = runtime.audit.verify()
        assert report.ok, report.problems
        assert report.unverifiable == (((1, first, k0.key_id),) if lost == 0 else
                                       ((first + 1, second, k1.key_id),))
        assert runtime.audit.key().key_id == k2.key_id
        assert len(runtime.audit.entries()) == report.entries  # readable
        assert Registry.from_runtime(runtime).can_access("alice", "diab", today=TODAY)
    finally:
        runtime.close()


def test_a_process_that_missed_the_new_key_refuses_to_write(runtime):
    """A pod not restarted after the Secret changed holds the old keyring only: after the rotation
    it refuses to write (never signs with the old key after the rotation point)."""
    make_registry(runtime)
    stale = Runtime(runtime.settings)
    stale.audit.record(_event())  # keyring read at start: the old key only
    rotated_runtime, old, new, seq = rotated(runtime)
    try:
        with pytest.raises(IntegrityError, match="lacks: update the keyring"):
            stale.audit.record(_event(1))
        rotated_runtime.audit.record(_event(2))
        report = stale.audit.verify()  # it cannot check what the new key signed, says so, anchors nothing
        assert report.unverifiable == ((seq + 1, seq + 1, new.key_id),) and report.anchored is None
        assert rotated_runtime.audit.verify().ok
    finally:
        stale.close()
        rotated_runtime.close()


def test_the_commands(runtime, tmp_path):
    """`pds audit rotate-key` run by an administrator says what it did; `pds audit verify` lists
    the rotation."""
    make_registry(runtime)
    fill(runtime, 2)
    runtime, new = add_key(runtime)
    settings = runtime.settings
    config = tmp_path / "pds.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {"state": str(settings.paths.state)}, "database": {"url": settings.database_url},
        "audit": {"key_file": str(settings.audit_key_file), "anchor_file": str(settings.audit_anchor_file)},
        "cli": {"identities": {getpass.getuser(): "root"}}}))
    env = dict(os.environ, PDS_CONFIG=str(config), COLUMNS="200")

    def pds(*args):
        return subprocess.run([sys.executable, str(Path(sys.executable).parent / "pds"), *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    try:
        done = pds("audit", "rotate-key")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"key {new.key_id} signs from now on" in done.stdout
        assert "registry approvals: 2 re-sealed, 0 already sealed with the new key, 0 with a broken seal" in done.stdout
        assert "hub accounts: none here" in done.stdout
        verified = pds("audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "audit trail intact" in verified.stdout
        assert f"key {new.key_id} from entry" in verified.stdout
    finally:
        runtime.close()


def test_nothing_is_recorded_after_a_rotation_in_its_transaction(runtime):
    """The anchor of a rotation's commit names the old key's last entry and retires that key from
    there on (docs/adr/0014): an entry after it in the same transaction would be signed with the new
    key and make that anchor retire the wrong one. Refused, and the transaction leaves nothing."""
    from pds_kernel.audit_rotation import ROTATE_ACTION

    fill(runtime, 1)
    runtime, new = add_key(runtime)
    try:
        before = len(runtime.audit.entries())
        session = runtime.sessions()
        try:
            runtime.audit.record(AuditEvent(actor="root", action=ROTATE_ACTION, target=f"audit-key:{new.key_id}",
                                            details={"to_key": new.key_id}), session=session, anchor_reason=ROTATE_ACTION)
            with pytest.raises(IntegrityError, match="nothing is recorded after audit.key.rotate"):
                runtime.audit.record(_event(), session=session)
        finally:
            session.rollback()
            session.close()
        assert len(runtime.audit.entries()) == before
        runtime.audit.record(_event(1))  # the next transaction is not held by the refused one
        assert len(runtime.audit.entries()) == before + 1
    finally:
        runtime.close()
