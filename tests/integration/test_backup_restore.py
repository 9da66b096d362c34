"""The backup and restore of docs/deploy-kubernetes.md (sections 3 and 6), with the real tools:
``pg_dump -Fc`` and ``pg_restore`` of PostgreSQL, and a copy of the audit chain's anchor file.

What the procedure promises: the restored database holds every row of the dump and its chain
verifies against the anchor copy taken with the dump; against the live anchor file (never restored
over), ``pds audit verify`` names exactly the entries written after the dump, i.e. what the restore
lost."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Database

pytestmark = pytest.mark.postgres


def pg_tool(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.skip(f"{name} is not installed")
    return str(found[-1])


def as_postgres(argv: list[str]) -> list[str]:
    """The socket directory is the postgres account's: run its tools as that account when root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def create_database(pg_server) -> str:
    name = f"t_{secrets.token_hex(6)}"
    admin = create_engine(pg_server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return name


def pg_dump(pg_server, database: str) -> bytes:
    result = subprocess.run(as_postgres([pg_tool("pg_dump"), "-Fc", "-h", str(pg_server.socket_dir),
                                         "-U", pg_server.user, database]),
                            capture_output=True, check=True, timeout=120)
    return result.stdout


def pg_restore(pg_server, database: str, dump: bytes) -> None:
    subprocess.run(as_postgres([pg_tool("pg_restore"), "--no-owner", "-h", str(pg_server.socket_dir),
                                "-U", pg_server.user, "-d", database]),
                   input=dump, capture_output=True, check=True, timeout=120)


def fill(registry: Registry, first: int, n: int) -> None:
    for i in range(first, first + n):
        registry.upsert_user("admin", f"user{i}")


def test_dump_restore_and_anchor_copy_round_trip(pg_server, settings, tmp_path):
    source_name = create_database(pg_server)
    source = replace(settings, database=Database(url=pg_server.url(source_name)))
    runtime = Runtime(source)
    try:
        registry = Registry.from_runtime(runtime)
        registry.upsert_project("admin", "alpha-study", title="Alpha", start_date=date(2025, 1, 1),
                                end_date=date(2030, 12, 31))
        fill(registry, 0, 3)
        registry.add_member("admin", "alpha-study", "user1", "researcher", date(2030, 6, 30))
        before = len(runtime.audit.entries())
        # the nightly backup: the dump, then a copy of the anchors
        dump = pg_dump(pg_server, source_name)
        anchor_copy = tmp_path / "anchors-copy.jsonl"
        shutil.copyfile(source.audit_anchor_file, anchor_copy)
        fill(registry, 3, 2)  # written after the backup: what a restore loses
        after = len(runtime.audit.entries())
    finally:
        runtime.close()
    assert after == before + 2

    target_name = create_database(pg_server)
    pg_restore(pg_server, target_name, dump)
    restored = replace(source, database=Database(url=pg_server.url(target_name)))

    # against the anchor copy of the same time: intact, every row of the dump is there
    with_copy = Runtime(replace(restored, audit=replace(restored.audit, anchor_file=str(anchor_copy))))
    try:
        report = with_copy.audit.verify()
        assert report.ok, report.problems
        assert report.entries == before
        assert [u.name for u in Registry.from_runtime(with_copy).users()] == ["user0", "user1", "user2"]
        assert [m.user_name for m in Registry.from_runtime(with_copy).members("alpha-study")] == ["user1"]
    finally:
        with_copy.close()

    # against the live anchors (never restored over): the lost entries are named
    with_live = Runtime(restored)
    try:
        report = with_live.audit.verify()
        assert [(p.seq, p.until, p.kind) for p in report.problems] == [(before + 1, after, "deleted")]
    finally:
        with_live.close()
