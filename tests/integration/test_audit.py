"""The audit trail on SQLite and on a real PostgreSQL server (``db_runtime``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from pds_kernel.audit import AuditEvent, Outcome
from pds_kernel.db import transaction


def _fill(runtime, n=5):
    for i in range(n):
        runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target=f"t{i}",
                                        project="p1", details={"i": i}))


def test_chain_verifies_and_entries_read_back(db_runtime):
    _fill(db_runtime)
    report = db_runtime.audit.verify()
    assert report.ok and report.entries == 5
    entries = db_runtime.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[1].prev_hash == entries[0].hash
    assert entries[3].details == {"i": 3}


def test_entries_written_together_chain_like_entries_written_one_by_one(db_runtime):
    """An ingest writes its files' entries with one insert: the chain must be the same as if
    they had been appended one at a time (the same seqs and links, verified), after entries
    written singly and before the next one."""
    _fill(db_runtime, 2)
    events = [AuditEvent(actor="ingest", action="ingest.file", target=f"F{i}.csv", details={"i": i})
              for i in range(4)]
    with transaction(db_runtime.sessions) as session:
        written = db_runtime.audit.record_many(events, session=session)
    _fill(db_runtime, 1)
    entries = db_runtime.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.target for e in entries[2:6]] == ["F0.csv", "F1.csv", "F2.csv", "F3.csv"]
    assert [e.hash for e in written] == [e.hash for e in entries[2:6]]
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(entries, entries[1:]))
    report = db_runtime.audit.verify()
    assert report.ok and report.entries == 7


def test_database_refuses_update_and_delete(db_runtime):
    _fill(db_runtime, 2)
    statements = ["UPDATE audit_log SET actor='mallory'", "DELETE FROM audit_log"]
    if db_runtime.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")  # row triggers do not fire on TRUNCATE
    for statement in statements:
        with pytest.raises(Exception, match="append-only"):
            with transaction(db_runtime.sessions) as s:
                s.execute(text(statement))
    assert db_runtime.audit.verify().ok


#: what an attacker with database rights must drop before editing rows (verify still catches it)
_GUARDS = {
    "sqlite": ("DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"),
    "postgresql": ("DROP TRIGGER audit_log_no_change ON audit_log",
                   "DROP TRIGGER audit_log_no_truncate ON audit_log"),
}


def _tamper(runtime, *statements):
    engine = runtime.engine
    with engine.begin() as conn:
        for s in _GUARDS[engine.dialect.name] + statements:
            conn.exec_driver_sql(s)


def test_verify_names_edited_entry(db_runtime):
    _fill(db_runtime)
    _tamper(db_runtime, "UPDATE audit_log SET outcome='denied' WHERE seq=3")
    report = db_runtime.audit.verify()
    assert not report.ok
    assert [(p.seq, p.kind) for p in report.problems] == [(3, "edited")]


def test_verify_names_deleted_entries(db_runtime):
    _fill(db_runtime)
    _tamper(db_runtime, "DELETE FROM audit_log WHERE seq IN (2, 3)")
    report = db_runtime.audit.verify()
    # the problem names the deleted entries themselves (2..3), not the one after them
    assert [(p.seq, p.until, p.kind) for p in report.problems] == [(2, 3, "deleted")]
    assert "2..3" in report.problems[0].message


def test_verify_detects_reordered_entries(db_runtime):
    _fill(db_runtime)
    # swap the content of entries 2 and 3, keeping their hashes consistent with their content
    _tamper(db_runtime,
            "UPDATE audit_log SET seq=-2 WHERE seq=2",
            "UPDATE audit_log SET seq=2 WHERE seq=3",
            "UPDATE audit_log SET seq=3 WHERE seq=-2")
    report = db_runtime.audit.verify()
    assert not report.ok
    assert {p.seq for p in report.problems} & {2, 3}


def test_event_in_failed_transaction_is_not_written(db_runtime):
    with pytest.raises(RuntimeError):
        with transaction(db_runtime.sessions) as s:
            db_runtime.audit.record(AuditEvent(actor="a", action="registry.read", outcome=Outcome.OK), session=s)
            raise RuntimeError("boom")
    assert db_runtime.audit.entries() == []


def test_an_uncatalogued_action_is_refused_and_nothing_of_its_batch_is_written(db_runtime):
    """The store writes only actions of ``pds_kernel/audit_actions.py``: a misspelt action fails
    before the chain moves, with the catalogued events of the same batch, and the trail stays whole."""
    _fill(db_runtime, 2)
    batch = [AuditEvent(actor="alice", action="registry.read", target="ok"),
             AuditEvent(actor="alice", action="airlock.request.relase", target="request:r1")]
    with pytest.raises(ValueError, match="'airlock.request.relase' is not in the catalogue"):
        db_runtime.audit.record_many(batch)
    with pytest.raises(ValueError, match="not in the catalogue"):
        with transaction(db_runtime.sessions) as s:
            db_runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target="first"), session=s)
            db_runtime.audit.record(AuditEvent(actor="alice", action="Registry.Read", target="second"), session=s)
    assert [e.target for e in db_runtime.audit.entries()] == ["t0", "t1"]
    report = db_runtime.audit.verify()
    assert report.ok and report.entries == 2


def test_concurrent_writers_keep_one_chain(db_runtime):
    """Writers in parallel threads (each its own connection) still produce one unbroken chain."""
    from concurrent.futures import ThreadPoolExecutor

    def write(worker: int) -> None:
        for i in range(8):
            db_runtime.audit.record(AuditEvent(actor=f"w{worker}", action="registry.read", target=str(i)))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    report = db_runtime.audit.verify()
    assert report.ok and report.entries == 32


def test_anchor_lines_are_written_for_each_commit_and_each_verification(runtime):
    """The precondition of the tail checks of tests/security/test_audit_tamper.py."""
    for i in range(3):
        runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target=f"t{i}"))
    with transaction(runtime.sessions) as s:  # one commit of two entries: one anchor, at its head
        runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target="a"), session=s)
        runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target="b"), session=s)
    anchors = runtime.settings.audit_anchor_file.read_text().splitlines()
    assert [json.loads(a)["seq"] for a in anchors] == [1, 2, 3, 5]
    assert runtime.audit.verify().ok
    last = json.loads(runtime.settings.audit_anchor_file.read_text().splitlines()[-1])
    assert (last["seq"], last["reason"]) == (5, "verify")


def test_verify_refuses_without_a_database(tmp_path):
    """Issue #15: no configuration must not create an empty database and call it intact."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
    result = subprocess.run([str(Path(sys.executable).parent / "pds"), "audit", "verify"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "no database at" in result.stderr and "intact" not in result.stdout
    assert not (tmp_path / "var").exists()


def test_show_limit_gives_the_newest_entries(runtime):
    for i in range(7):
        runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target=f"t{i}"))
    assert [e.seq for e in runtime.audit.entries(limit=3, newest=True)] == [5, 6, 7]
    assert [e.seq for e in runtime.audit.entries(limit=3)] == [1, 2, 3]


def test_cli_show_limit_lists_the_newest_entries(runtime, tmp_path):
    """Issue #15: ``pds audit show --limit N`` showed the oldest N entries."""
    from dataclasses import fields

    import yaml
    from typer.testing import CliRunner

    from pds_kernel.cli.app import app

    for i in range(7):
        runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target=f"target-{i}"))
    config = tmp_path / "pds.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {f.name: str(getattr(runtime.settings.paths, f.name)) for f in fields(runtime.settings.paths)},
        "database": {"url": runtime.settings.database.url}}))
    shown = CliRunner().invoke(app, ["--config", str(config), "audit", "show", "--limit", "3"],
                               env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert [f"target-{i}" in shown.output for i in range(7)] == [False] * 4 + [True] * 3, shown.output
    assert shown.output.index("target-4") < shown.output.index("target-6"), "oldest first among them"


def test_cli_show_names_an_action_that_is_not_catalogued(runtime, tmp_path):
    """``pds audit show --action`` with a misspelt action says so and suggests the closest one,
    instead of an empty table that reads as "nothing happened"."""
    from dataclasses import fields

    import yaml
    from typer.testing import CliRunner

    from pds_kernel.cli.app import app

    runtime.audit.record(AuditEvent(actor="alice", action="registry.read", target="target-a"))
    config = tmp_path / "pds.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {f.name: str(getattr(runtime.settings.paths, f.name)) for f in fields(runtime.settings.paths)},
        "database": {"url": runtime.settings.database.url}}))

    def show(action: str) -> str:
        shown = CliRunner().invoke(app, ["--config", str(config), "audit", "show", "--action", action],
                                   env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        return shown.output

    misspelt = show("registry.raed")
    assert "'registry.raed' is not an action of this release" in misspelt
    assert "did you mean registry.read" in misspelt and "target-a" not in misspelt
    right = show("registry.read")
    assert "not an action" not in right and "target-a" in right
