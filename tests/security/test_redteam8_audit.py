"""Red team, eighth round: the audit trail against entries built to stop its readers, two processes
writing at once, and a verifier fed a huge entry, on a real SQLite file and a real PostgreSQL
server. The attacker of tests/security/audit_support.py: the database owner's rights, neither the
audit key nor the anchor store.

One got through before its fix: a row whose details are JSON nested 200,000 deep (planted by the
database owner) made every reader of the trail (``pds audit show``, and the extract's publication
check of a workspace's start, which reads ``extract.build`` entries) fail with a RecursionError
instead of reading the rest; verification named it, but nobody could list the trail any more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from audit_support import fill, insert, restore, rows, snapshot

from pds_kernel.audit import AuditEvent
from pds_kernel.audit_anchor import FileAnchorStore
from pds_kernel.runtime import Runtime

#: a writer in another process: the platform's own code on the same database, key and anchors
WRITER = """
import sys, time
from pds_kernel.audit import AuditEvent
from pds_kernel.audit_anchor import FileAnchorStore
from pds_kernel.runtime import Runtime
from pds_kernel.runtime import Runtime
from pds_kernel.settings import load_settings
runtime = Runtime(load_settings())
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
for i in range(int(sys.argv[3])):
    runtime.audit.record(AuditEvent(actor=sys.argv[1], action="airlock.review.submit", target=f"request:{i}",
                                    project="diabetes-t2", details={"i": i}))
runtime.close()
"""


#: the ``pds`` command's entry point, run by this interpreter (its script may name another checkout's)
PDS = "import sys; from pds_kernel.cli import main; sys.argv[0] = 'pds'; sys.exit(main())"


def _env(runtime) -> dict:
    settings = runtime.settings
    env = dict(os.environ, PDS_DATABASE__URL=settings.database_url, PDS_PATHS__STATE=str(settings.paths.state),
               PDS_AUDIT__KEY_FILE=str(settings.audit_key_file),
               PDS_AUDIT__ANCHOR_FILE=str(settings.audit_anchor_file))
    env.pop("PDS_CONFIG", None)
    return env


def test_two_processes_and_the_gate_writing_at_once_never_fork_the_chain(db_runtime):
    """Three writers at the same instant: one chain, every entry once, each anchored head on it."""
    fill(db_runtime, 1)  # the key exists before the writers start
    start, each = time.time() + 2.0, 60
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"os:writer{n}", str(start), str(each)],
                                env=_env(db_runtime), cwd=db_runtime.settings.paths.state,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in (1, 2)]
    time.sleep(max(0.0, start - time.time()))
    for i in range(each):
        db_runtime.audit.record(AuditEvent(actor="os:gate", action="airlock.review.submit", target=f"request:{i}",
                                           project="diabetes-t2", details={"i": i}))
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()[-2000:]
    stored = rows(db_runtime)
    assert [r["seq"] for r in stored] == list(range(1, 2 + 3 * each))
    assert len({r["prev_hash"] for r in stored}) == len(stored)  # no two entries chained to one
    by_actor = {a: sum(r["actor"] == a for r in stored) for a in ("os:writer1", "os:writer2", "os:gate")}
    assert by_actor == dict.fromkeys(by_actor, each)
    report = db_runtime.audit.verify()
    assert report.ok, report.problems


def test_entry_nested_deep_enough_to_stop_every_reader(db_runtime):
    """The owner plants details of JSON nested 200,000 deep: verification names it, and the trail
    stays readable (the rest of it, and that entry as unreadable)."""
    fill(db_runtime, 3)
    last = rows(db_runtime)[-1]
    insert(db_runtime, dict(last, seq=4, details="[" * 200_000 + "]" * 200_000, prev_hash=last["hash"],
                            hash="0" * 64))
    report = db_runtime.audit.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "inserted")]
    entries = db_runtime.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert "unreadable" in entries[-1].details["error"]


def test_pds_audit_show_with_the_planted_entry(runtime):
    """The real command lists the trail, the planted entry included."""
    fill(runtime, 2)
    last = rows(runtime)[-1]
    insert(runtime, dict(last, seq=3, details="{" + '"a":{' * 100_000 + "}" * 100_001, prev_hash=last["hash"],
                         hash="0" * 64, actor="os:mallory"))
    done = subprocess.run([sys.executable, "-c", PDS, "audit", "show"], env=_env(runtime),
                          cwd=runtime.settings.paths.state, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "os:mallory" in done.stdout and "Recursion" not in done.stdout + done.stderr


def test_huge_entry_does_not_stall_the_verifier(db_runtime):
    """A 30 MB detail (planted) is hashed once, named, and the verification ends in seconds."""
    fill(db_runtime, 3)
    last = rows(db_runtime)[-1]
    insert(db_runtime, dict(last, seq=4, details='"' + "x" * 30_000_000 + '"', prev_hash=last["hash"], hash="0" * 64))
    began = time.monotonic()
    report = db_runtime.audit.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "inserted")]
    assert time.monotonic() - began < 30


@pytest.mark.parametrize("actor", ["\u043elga", "olga\u200b", "olga\u202e", "OLGA", "olga "])
def test_confusable_actor_reaches_no_decision(runtime, actor):
    """A name that reads as ``olga`` (Cyrillic o, zero-width space, right-to-left override, case,
    a blank) is refused at the gate's service before anything is decided or audited as olga."""
    from pds_kernel.airlock.service import AirlockService
    from pds_kernel.errors import InvalidInput

    service = AirlockService(runtime)
    with pytest.raises(InvalidInput, match="invalid user name"):
        service.review(actor, "0" * 32, {0: {"decision": "approve"}})
    assert not [e for e in runtime.audit.entries() if e.actor == actor]


def test_roll_back_and_append_anchors_for_the_old_head(db_runtime):
    """The attacker restores an older copy of the database and, able to append to the anchor file
    (as the platform's account can, even with ``chattr +a``) but not to cut it, appends anchors
    that call the old head the latest, written later: the anchors of the entries rolled back are
    still there, and verification names them."""
    fill(db_runtime, 3)
    backup = snapshot(db_runtime, "old")
    old_head = rows(db_runtime)[-1]
    fill(db_runtime, 4)  # entries 4..7: the ones the attacker wants gone
    anchors = FileAnchorStore(Path(db_runtime.settings.audit_anchor_file), db_runtime.audit.keyring)
    last = anchors.read()[-1]
    restore(db_runtime, backup)
    assert last.seq == 7
    for reason in ("write", "verify"):
        anchors.append(replace(last, seq=old_head["seq"], head=old_head["hash"], time="2099-01-01T00:00:00+00:00",
                               reason=reason))
    fresh = Runtime(db_runtime.settings)
    try:
        report = fresh.audit.verify()
    finally:
        fresh.close()
    assert not report.ok
    assert (4, 7, "deleted") in [(p.seq, p.until, p.kind) for p in report.problems], report.problems
