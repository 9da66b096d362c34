"""Red team 9: the audit key's rotation run twice at once, and raced by a legitimate approval.

Real ``pds_kernel.rotate_audit_key`` in two processes, on SQLite and PostgreSQL (db_runtime), paused
at the worst place: one rotation has re-sealed the registry's approvals with its transaction open
when the other runs whole; an approval is written with the key its transaction read while the
rotation commits.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from pathlib import Path

from audit_rotation_support import TODAY, add_key, make_registry

from pds_kernel.audit_rotation import ROTATE_ACTION
from pds_kernel.registry import Registry
from pds_kernel.rotate_audit_key import rotate_audit_key

#: Run in a child process: a rotation (as root) that stops after re-sealing the approvals, its
#: transaction open, until the file argv[2] exists. argv: settings pickle path, go-file.
PAUSED_ROTATION = r'''
import os, pickle, sys, time
from pds_kernel.runtime import Runtime
import pds_kernel.rotate_audit_key as rotation

settings = pickle.load(open(sys.argv[1], "rb"))
real_reseal = rotation.reseal_approvals
def reseal_then_wait(*args):
    counts = real_reseal(*args)
    print("paused", flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.05)
    return counts
rotation.reseal_approvals = reseal_then_wait
report = rotation.rotate_audit_key(Runtime(settings), "root")
print("done", report.rotation_seq, flush=True)
'''


def _paused(script: str, runtime, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    settings_path, go = tmp_path / "settings.pickle", tmp_path / "go"
    settings_path.write_bytes(pickle.dumps(runtime.settings))
    child = subprocess.Popen([sys.executable, "-c", script, str(settings_path), str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "paused", child.stderr.read()
    return child, go


def _in_thread(target) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run():
        try:
            outcome.append(target())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_two_rotations_at_once(db_runtime, tmp_path):
    make_registry(db_runtime)
    runtime, new = add_key(db_runtime)
    try:
        old = runtime.audit.keyring.keys[-2]
        first, go = _paused(PAUSED_ROTATION, runtime, tmp_path)
        second, outcome = _in_thread(lambda: rotate_audit_key(runtime, "root"))
        second.join(3)  # it runs whole, or waits on the first's locks
        go.touch()
        out, err = first.communicate(timeout=60)
        second.join(60)
        assert not second.is_alive()
        assert first.returncode == 0 or "locked" in err or "serializ" in err.lower(), err[-2000:]
        assert not isinstance(outcome[0], Exception) or "locked" in str(outcome[0]), outcome
        assert runtime.audit.key().key_id == new.key_id
        # one rotation: the other run finished it (before, both recorded one, the second signed
        # with the new key it claimed to rotate to, and reported as a rotation done)
        (rotation,) = runtime.audit.entries(action=ROTATE_ACTION)
        assert rotation.details["from_key"] == old.key_id and rotation.details["to_key"] == new.key_id
        report = runtime.audit.verify()
        assert report.ok, report
        registry = Registry.from_runtime(runtime)
        assert registry.can_access("alice", "diab", today=TODAY) and registry.is_administrator("root")
    finally:
        runtime.close()


#: Run in a child process: root adds bob to diab; the approval's seal is computed, then the child
#: waits for the file argv[2] before the rest of the transaction (its audit entry, the commit).
PAUSED_APPROVAL = r'''
import os, pickle, sys, time
from datetime import date
from pds_kernel.registry import Registry
from pds_kernel.registry.seals import ApprovalSeals
from pds_kernel.runtime import Runtime

settings = pickle.load(open(sys.argv[1], "rb"))
real = ApprovalSeals._membership
def seal_then_wait(self, m):
    seal = real(self, m)
    if m.user_name == "bob" and not os.path.exists(sys.argv[2]):
        print("paused", flush=True)  # the seal is made
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.05)
    return seal
ApprovalSeals._membership = seal_then_wait
try:
    Registry.from_runtime(Runtime(settings)).add_member("root", "diab", "bob", "researcher", date(2027, 6, 30))
    print("added", flush=True)
except Exception as exc:
    print("refused", type(exc).__name__, exc, flush=True)
'''


def test_an_approval_sealed_while_the_key_rotates(db_runtime, tmp_path):
    """The approval's seal is made with the key its transaction read; the rotation commits before
    the approval does. Before, the approval committed sealed with the retired key: recorded as done
    in the audit trail, refused from then on without a word (a re-run of rotate-key was the only
    way to find it). Now the approval's transaction is refused, saying to run it again."""
    make_registry(db_runtime)
    runtime, new = add_key(db_runtime)
    try:
        approver, go = _paused(PAUSED_APPROVAL, runtime, tmp_path)
        rotation, outcome = _in_thread(lambda: rotate_audit_key(runtime, "root"))
        rotation.join(3)
        go.touch()
        out, err = approver.communicate(timeout=60)
        rotation.join(60)
        assert not rotation.is_alive() and not isinstance(outcome[0], Exception), outcome
        assert runtime.audit.key().key_id == new.key_id
        registry = Registry.from_runtime(runtime)
        if out.startswith("added"):  # it committed: then with a seal right under the key in force
            assert registry.can_access("bob", "diab", today=TODAY), "bob's approval is sealed with the retired key"
        else:
            assert out.startswith("refused IntegrityError") and "run it again" in out, out + err[-2000:]
            assert "bob" not in [m.user_name for m in registry.members("diab")]
        assert runtime.audit.verify().ok
    finally:
        runtime.close()
