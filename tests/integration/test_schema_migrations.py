"""Schema migrations of the platform database (issue #14): baseline, upgrade, refusals, and the
upgrade of a database written by the previous release's own code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, select, text

from pds_kernel import schema
from pds_kernel.audit_anchor import FileAnchorStore
from pds_kernel.audit_key import load_keyring
from pds_kernel.db import Base, import_models, make_engine
from pds_kernel.errors import IntegrityError
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Database

REPO = Path(__file__).resolve().parents[2]
#: the last commit of main before migrations (and the keyed audit chain) existed
PREVIOUS_RELEASE = "8444f71"
PDS = str(Path(sys.executable).parent / "pds")


def _upgrade(settings):
    engine = make_engine(settings.database_url)
    try:
        return schema.upgrade(engine)
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models_schema(db_settings):
    """An empty database upgraded revision by revision has the schema the models declare."""
    result = _upgrade(db_settings)
    assert result.created and result.after == schema.head_revision()
    engine = make_engine(db_settings.database_url)
    try:
        import_models()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO audit_log (seq, time, schema_version, actor, action, target, project, "
                                 "outcome, details, prev_hash, hash) VALUES (1, 't', 1, 'a', 'x', '', '', 'ok', "
                                 "'{}', 'p', 'h')")
        with pytest.raises(Exception, match="append-only"):  # the guards are part of the baseline
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM audit_log")
    finally:
        engine.dispose()


def test_alembic_agrees_with_the_revisions_read_from_file_names():
    """The check reads revisions from file names (no Alembic import): each file's revision id is
    its name, and the chain runs in the order of the names, each down to the one before."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(schema.alembic_config())
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert tuple(chain) == schema.revisions() and len(chain) >= 8
    assert script.get_current_head() == schema.head_revision()
    for before, after in zip(chain, chain[1:]):
        assert script.get_revision(after).down_revision == before


def test_the_stamp_of_a_new_database_is_alembics(db_settings, tmp_path):
    """A runtime creates and stamps a new database without Alembic: Alembic reads that stamp, and
    its own stamp (on a second database) leaves the same table, columns and key as ours."""
    from sqlalchemy import inspect

    def version_table(conn) -> tuple[list, dict]:
        found = inspect(conn)
        columns = [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns("alembic_version")]
        return columns, found.get_pk_constraint("alembic_version")

    rt = Runtime(db_settings)
    try:
        with rt.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == schema.head_revision()
            ours = version_table(conn)
    finally:
        rt.close()
    engine = make_engine(f"sqlite:///{tmp_path / 'alembic-stamped.db'}")
    try:
        with engine.begin() as conn:
            command.stamp(schema.alembic_config(conn), "head")
            theirs = version_table(conn)
    finally:
        engine.dispose()
    assert ours[0] == theirs[0] == [("version_num", "VARCHAR(32)", False)]
    assert ours[1]["constrained_columns"] == theirs[1]["constrained_columns"] == ["version_num"]
    assert ours[1]["name"] == "alembic_version_pkc" and theirs[1]["name"] in {"alembic_version_pkc", None}


def test_upgrade_is_idempotent(db_settings):
    _upgrade(db_settings)
    again = _upgrade(db_settings)
    assert not again.changed and again.before == again.after == schema.head_revision()


def test_a_new_runtime_creates_the_current_schema_and_a_stale_one_is_refused(db_settings, tmp_path):
    rt = Runtime(db_settings)
    try:
        with rt.engine.connect() as conn:
            assert schema.read_state(conn).current
    finally:
        rt.close()
    stale = db_settings
    if stale.database_url.startswith("sqlite:///"):
        stale = replace(stale, database=Database(url=f"sqlite:///{tmp_path / 'stale.db'}"))
    else:  # a fresh database next to the first one
        engine = make_engine(stale.database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()
    engine = make_engine(stale.database_url)
    with engine.begin() as conn:  # a database left at the baseline by an older release
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)
    engine.dispose()
    with pytest.raises(IntegrityError, match="run `pds db upgrade`"):
        _ = Runtime(stale).engine
    result = _upgrade(stale)
    assert (result.before, result.after) == (schema.BASELINE, schema.head_revision())


def test_a_database_from_a_newer_release_is_never_downgraded(db_settings):
    _upgrade(db_settings)
    engine = make_engine(db_settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(IntegrityError, match="never downgrades"):
        _upgrade(db_settings)
    with pytest.raises(IntegrityError, match="does not know"):
        _ = Runtime(db_settings).engine


# ---- a database of the previous release ----------------------------------------------------------

_FILL = r'''
"""Run with the previous release's code: registry, requests and reviews, through its services."""
import io, sys
from datetime import date
from pds_kernel.runtime import Runtime
from pds_kernel.settings import load_settings
from pds_kernel.registry import Registry, Role
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.audit import AuditEvent
from dataclasses import replace

assert sys.modules["pds_kernel"].__file__.startswith(sys.argv[1]), sys.modules["pds_kernel"].__file__
rt = Runtime(load_settings())
reg = Registry.from_runtime(rt)
for name in ("alice", "bob", "olga", "omar"):
    reg.upsert_user("os:setup", name, full_name=name.title())
reg.upsert_user("os:setup", "root", is_admin=True)
far = date(2099, 12, 31)
for pid in ("diab-2024", "mi-2025"):
    reg.upsert_project("os:setup", pid, title=pid, start_date=date(2020, 1, 1), end_date=far)
reg.add_member("os:setup", "diab-2024", "alice", Role.RESEARCHER, far)
reg.add_member("os:setup", "diab-2024", "olga", Role.OUTPUT_CHECKER, far)
reg.add_member("os:setup", "diab-2024", "omar", Role.OUTPUT_CHECKER, far)
reg.add_member("os:setup", "mi-2025", "bob", Role.RESEARCHER, far)
service = AirlockService(rt, limits=replace(AirlockLimits(), auto_release=False), registry=reg)
table = b"age,count\n18-40,120\n40-65,230\n65+,310\n"
approve = {0: {"decision": "approve", "comment": "fine"}}
released = service.create("alice", "diab-2024", [("ages.csv", io.BytesIO(table))], "figure 2")
service.review("olga", released.id, approve)
service.review("omar", released.id, approve)
service.release("omar", released.id)
changes = service.create("alice", "diab-2024", [("ages.csv", io.BytesIO(table))], "figure 3")
service.review("olga", changes.id, {0: {"decision": "request_changes", "comment": "round them"}})
service.create("alice", "diab-2024", [("draft.csv", io.BytesIO(table))], "later", submit=False)
rt.audit.record(AuditEvent(actor="os:setup", action="test.previous_release", target="db"))
rt.close()
'''


def _previous_release(tmp_path: Path) -> Path:
    """The previous release's ``pds_kernel`` (``git archive`` of its commit: the same files a
    ``git worktree add`` would check out, without touching the repository's worktree list)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the previous release's code is not available")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE, "pds_kernel"],
                             capture_output=True, timeout=120)
    if archive.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_RELEASE} is not in this clone: {archive.stderr.decode().strip()}")
    tree = tmp_path / f"release-{PREVIOUS_RELEASE}"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _environment(settings, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
    env.update({f"PDS_PATHS__{name.upper()}": str(getattr(settings.paths, name))
                for name in ("raw", "lake", "projects", "outbox", "staging", "keys", "homes", "state", "reports")})
    env.update(PDS_DATABASE__URL=settings.database_url, COLUMNS="200", **extra)
    return env


def _dump(settings) -> dict[str, list]:
    """Every row of every platform table, read by reflection (independent of either release's code)."""
    engine = make_engine(settings.database_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: [dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
                    for name, table in meta.tables.items() if name != "alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_upgrade_a_database_written_by_the_previous_release(backend, settings, tmp_path, request):
    if backend == "postgres":
        settings = replace(settings, database=Database(url=request.getfixturevalue("pg_database")))
    tree = _previous_release(tmp_path)
    env = _environment(settings, PYTHONPATH=str(tree))
    filled = subprocess.run([sys.executable, "-c", _FILL, str(tree)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert filled.returncode == 0, filled.stderr[-3000:]
    before = _dump(settings)
    assert len(before["registry_users"]) == 5 and len(before["registry_memberships"]) == 4
    assert len(before["airlock_requests"]) == 3 and len(before["airlock_reviews"]) == 3
    assert len(before["audit_log"]) >= 15 and "chain_version" not in before["audit_log"][0]

    current = _environment(settings)
    outputs = []
    for argv in (["db", "upgrade"], ["db", "upgrade"]):  # the second one has nothing to do
        done = subprocess.run([PDS, *argv], env=current, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "sealed the approvals made before this release (memberships: 4, administrators: 1;" in outputs[0]
    assert "recorded the end of the registry's bootstrap" in outputs[0]  # it holds an administrator: root
    assert "already at schema revision" in outputs[1] and "sealed" not in outputs[1] and "bootstrap" not in outputs[1]

    after = _dump(settings)
    # the first upgrade sealed the approvals it found (revision 0012), under the audit key, once:
    # one keyed entry after the old release's, whose chain goes on; then the end of its bootstrap
    ended = after["audit_log"].pop()
    assert (ended["action"], json.loads(ended["details"])) == ("registry.bootstrap.end", {"administrators": ["root"]})
    sealed = after["audit_log"].pop()
    assert (sealed["action"], sealed["chain_version"]) == ("registry.seals.upgrade", 2)
    assert json.loads(sealed["details"]) == {"memberships": 4, "administrators": 1}
    seals = {row["user_name"]: row.pop("seal") for row in after["registry_memberships"]}
    admin_seals = {row["name"]: row.pop("admin_seal") for row in after["registry_users"]}
    assert all(re.fullmatch("[0-9a-f]{64}", seal) for seal in seals.values())
    assert [name for name, seal in admin_seals.items() if seal] == ["root"] and re.fullmatch("[0-9a-f]{64}", admin_seals["root"])
    # tables added since that release start empty; columns added since then hold their defaults
    assert after.keys() >= before.keys()
    assert all(after[table] == [] for table in after.keys() - before.keys())
    added_columns = {"chain_version": {1}, "max_table_rows": {None}, "direction": {"export"}, "closed_on": {None},
                     "halted_at": {None}, "halt_reason": {None}, "purge_requested_by": {None}, "purged_at": {None},
                     "granted_by": {None}, "approved_by": {"migration:0009"},
                     "admin_granted_by": {None}, "admin_approved_by": {None, "migration:0011"}}
    for table, rows in before.items():
        kept = [{k: v for k, v in row.items() if k not in added_columns} for row in after[table]]
        assert kept == rows, table
        for column, defaults in added_columns.items():
            assert {row[column] for row in after[table] if column in row} <= defaults, (table, column)
    assert {row["chain_version"] for row in after["audit_log"]} == {1}

    # and anchored it outside the database: a deleted entry would not make the mark count again
    anchors = FileAnchorStore(settings.audit_anchor_file, load_keyring(settings.audit_key_file, create=False)).read()
    assert [a.seq for a in anchors if a.reason == "registry.seals.upgrade"] == [sealed["seq"]]
    assert [a.seq for a in anchors if a.reason == "registry.bootstrap.end"] == [ended["seq"]]
    verified = subprocess.run([PDS, "audit", "verify"], env=current, cwd=tmp_path, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"intact: {len(before['audit_log']) + 2} entries" in verified.stdout

    # the current code works on the upgraded data, and the chain goes on keyed
    rt = Runtime(settings)
    try:
        from pds_kernel.airlock.service import AirlockService
        from pds_kernel.registry import Registry

        registry = Registry.from_runtime(rt)
        assert {p.id for p in registry.projects()} == {"diab-2024", "mi-2025"}
        assert {(m.user_name, str(m.role.value)) for m in registry.members("diab-2024")} == {
            ("alice", "researcher"), ("olga", "output-checker"), ("omar", "output-checker")}
        # memberships granted before approvals were recorded stay valid (approved by the migration)
        assert {m.approved_by for m in registry.memberships_of("alice")} == {"migration:0009"}
        # administrators made before their approval was recorded stay administrators (0011)
        assert {u.name: u.admin_approved_by for u in registry.users()} == {
            "alice": None, "bob": None, "olga": None, "omar": None, "root": "migration:0011"}
        assert registry.is_administrator("root")
        assert registry.can_access("alice", "diab-2024") and registry.can_access("olga", "diab-2024", "output-checker")
        states = sorted(v.state for v in AirlockService(rt, registry=registry).list_requests("alice"))
        assert states == ["draft", "released", "under_review"]
        registry.upsert_user("root", "newcomer")  # os:<user> no longer administers: root is an admin
        report = rt.audit.verify()
        assert report.ok and report.keyed_from == len(before["audit_log"]) + 1
        assert json.loads(Path(rt.settings.audit_anchor_file).read_text().splitlines()[-1])["seq"] == report.entries
    finally:
        rt.close()
