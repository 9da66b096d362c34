"""What an attacker with the database owner's rights does to the audit trail (for test_audit_tamper).

The attacker can run any SQL on the platform database (drop the append-only triggers, update,
delete, insert, renumber) and knows the hash rules (they are in the source), but holds neither the
audit key (a platform secret file / Kubernetes Secret) nor write access to the anchor store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from sqlalchemy import create_engine, text

from pds_kernel.audit import AuditEvent
from pds_kernel.audit_chain import GENESIS_HASH, compute_hash
from pds_kernel.runtime import Runtime

#: the append-only guards an attacker with owner rights drops first
GUARDS = {
    "sqlite": ("DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"),
    "postgresql": ("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
                   "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log"),
}

COLUMNS = ("seq", "time", "schema_version", "actor", "action", "target", "project", "outcome",
           "details", "prev_hash", "hash", "chain_version")


def fill(runtime: Runtime, n: int) -> None:
    """``n`` ordinary entries, each written (and anchored) by the platform."""
    for i in range(n):
        runtime.audit.record(AuditEvent(actor=f"os:user{i % 3}", action="airlock.review.submit",
                                        target=f"request:r{i}", project="diabetes-t2",
                                        details={"decision": "approve", "i": i}))


def as_owner(runtime: Runtime, *statements: str, params: list[dict] | None = None) -> None:
    """Run ``statements`` with the database owner's rights, the guards dropped first."""
    with runtime.engine.begin() as conn:
        for guard in GUARDS[runtime.engine.dialect.name]:
            conn.exec_driver_sql(guard)
        for i, statement in enumerate(statements):
            conn.execute(text(statement), (params or [{}] * len(statements))[i])


def rows(runtime: Runtime) -> list[dict]:
    with runtime.engine.connect() as conn:
        result = conn.execute(text(f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY seq"))
        return [dict(r._mapping) for r in result]


def forged_hash(row: dict, key: bytes | None) -> str:
    """The attacker's best hash: the unkeyed rule (``key`` None) or an HMAC under a key of theirs."""
    fields = {k: row[k] for k in COLUMNS if k not in ("hash", "chain_version")}
    if key is None:
        return compute_hash(**fields)
    payload = dict(fields, chain_version=row["chain_version"])
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def rewrite_from(runtime: Runtime, first: int, key: bytes | None, edit: dict | None = None,
                 chain_version: int | None = None) -> None:
    """Edit entry ``first`` (``edit``), then re-hash it and every later entry so that the chain
    links up again: the rewrite an attacker without the platform key can do."""
    stored = rows(runtime)
    prev = GENESIS_HASH
    updates = []
    for row in stored:
        if row["seq"] < first:
            prev = row["hash"]
            continue
        if row["seq"] == first and edit:
            row.update(edit)
        if chain_version is not None:
            row["chain_version"] = chain_version
        row["prev_hash"] = prev
        row["hash"] = forged_hash(row, key)
        prev = row["hash"]
        updates.append(row)
    statements = ["UPDATE audit_log SET " + ", ".join(f"{c} = :{c}" for c in COLUMNS if c != "seq")
                  + " WHERE seq = :seq"] * len(updates)
    as_owner(runtime, *statements, params=updates)


def insert(runtime: Runtime, row: dict) -> None:
    as_owner(runtime, f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES "
                      f"({', '.join(':' + c for c in COLUMNS)})", params=[row])


def pds_audit_verify(runtime: Runtime) -> subprocess.CompletedProcess:
    """The real ``pds audit verify`` of this installation (same database, key and anchors)."""
    settings = runtime.settings
    env = dict(os.environ, PDS_DATABASE__URL=settings.database_url,
               PDS_PATHS__STATE=str(settings.paths.state),
               PDS_AUDIT__KEY_FILE=str(settings.audit_key_file),
               PDS_AUDIT__ANCHOR_FILE=str(settings.audit_anchor_file), COLUMNS="200")
    env.pop("PDS_CONFIG", None)
    return subprocess.run([str(Path(sys.executable).parent / "pds"), "audit", "verify"], env=env,
                          cwd=settings.paths.state, capture_output=True, text=True, timeout=120)


def sqlite_file(runtime: Runtime) -> Path:
    return Path(runtime.settings.database_url[len("sqlite:///"):])


def snapshot(runtime: Runtime, name: str) -> str:
    """A backup taken by the attacker (or an old one found lying around)."""
    if runtime.engine.dialect.name == "sqlite":
        target = sqlite_file(runtime).with_name(name)
        with closing(sqlite3.connect(sqlite_file(runtime))) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        return str(target)
    url = runtime.engine.url
    runtime.close()
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{url.database}_{name}" TEMPLATE "{url.database}"')
    admin.dispose()
    return f"{url.database}_{name}"


def restore(runtime: Runtime, backup: str) -> None:
    runtime.close()
    if runtime.settings.database_url.startswith("sqlite:///"):
        path = sqlite_file(runtime)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(backup, path)
        return
    url = create_engine(runtime.settings.database_url).url
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{url.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{url.database}" TEMPLATE "{backup}"')
        conn.exec_driver_sql(f'DROP DATABASE "{backup}"')
    admin.dispose()
