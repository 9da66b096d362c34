import sqlite3

import pytest
from sqlalchemy import text

from pds_kernel.audit import AuditEvent, Outcome
from pds_kernel.db import transaction


def _fill(runtime, n=5):
    for i in range(n):
        runtime.audit.record(AuditEvent(actor="alice", action="test.event", target=f"t{i}",
                                        project="p1", details={"i": i}))


def test_chain_verifies_and_entries_read_back(runtime):
    _fill(runtime)
    report = runtime.audit.verify()
    assert report.ok and report.entries == 5
    entries = runtime.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[1].prev_hash == entries[0].hash
    assert entries[3].details == {"i": 3}


def test_database_refuses_update_and_delete(runtime):
    _fill(runtime, 2)
    for statement in ("UPDATE audit_log SET actor='mallory'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            with transaction(runtime.sessions) as s:
                s.execute(text(statement))
    assert runtime.audit.verify().ok


def _tamper(runtime, *statements):
    path = runtime.settings.database_url[len("sqlite:///"):]
    runtime.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    for s in statements:
        conn.execute(s)
    conn.commit()
    conn.close()


def test_verify_names_edited_entry(runtime):
    _fill(runtime)
    _tamper(runtime, "UPDATE audit_log SET outcome='denied' WHERE seq=3")
    report = runtime.audit.verify()
    assert not report.ok
    assert [(p.seq, p.kind) for p in report.problems] == [(3, "edited")]


def test_verify_names_deleted_entries(runtime):
    _fill(runtime)
    _tamper(runtime, "DELETE FROM audit_log WHERE seq IN (2, 3)")
    report = runtime.audit.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "deleted")]
    assert "2..3" in report.problems[0].message


def test_verify_detects_reordered_entries(runtime):
    _fill(runtime)
    # swap the content of entries 2 and 3, keeping their hashes consistent with their content
    _tamper(runtime,
            "UPDATE audit_log SET seq=-2 WHERE seq=2",
            "UPDATE audit_log SET seq=2 WHERE seq=3",
            "UPDATE audit_log SET seq=3 WHERE seq=-2")
    report = runtime.audit.verify()
    assert not report.ok
    assert {p.seq for p in report.problems} & {2, 3}


def test_event_in_failed_transaction_is_not_written(runtime):
    with pytest.raises(RuntimeError):
        with transaction(runtime.sessions) as s:
            runtime.audit.record(AuditEvent(actor="a", action="x", outcome=Outcome.OK), session=s)
            raise RuntimeError("boom")
    assert runtime.audit.entries() == []
