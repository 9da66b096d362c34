"""Shared by tests/security/test_registry_bootstrap_anchored.py: the database owner's tools against
a registry whose bootstrap ended (approved administrators exist), and the OS account's attempt to
administer it afterwards, through the real ``pds`` and through the service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_rotation_support import pds, write_as_owner
from sqlalchemy import text

from pds_kernel.db import make_engine
from pds_kernel.errors import PermissionDenied
from pds_kernel.hub.local import provision_account
from pds_kernel.registry import Registry
from pds_kernel.registry.bootstrap import BOOTSTRAP_END
from pds_kernel.runtime import Runtime

#: What the refusal tells the operator to do (restore the administrators from a backup).
RESTORE = "backup"


def restarted(runtime: Runtime) -> tuple[Runtime, Registry]:
    """A new process on the same database, key and anchors (a new ``pds`` command, a restarted hub)."""
    again = Runtime(runtime.settings)
    return again, Registry.from_runtime(again)


def delete_bootstrap_entry(runtime: Runtime) -> None:
    """As the database owner: drop the append-only trigger, delete the ``registry.bootstrap.end`` entry."""
    if runtime.engine.dialect.name == "postgresql":
        drop = "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log"
    else:
        drop = "DROP TRIGGER IF EXISTS audit_log_no_delete"
    engine = make_engine(runtime.settings.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(drop))
            connection.execute(text(f"DELETE FROM audit_log WHERE action = '{BOOTSTRAP_END}'"))
    finally:
        engine.dispose()
    assert runtime.audit.entries(action=BOOTSTRAP_END) == []


def bootstrap_anchors(runtime: Runtime) -> int:
    return sum(1 for a in runtime.audit._anchors.read() if a.reason == BOOTSTRAP_END)


def forget_bootstrap_anchors(runtime: Runtime) -> None:
    """An installation of the release before this one: neither the entry nor its anchor exist."""
    delete_bootstrap_entry(runtime)
    path = Path(runtime.settings.audit_anchor_file)
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if json.loads(line)["reason"] != BOOTSTRAP_END]
    path.write_text("".join(kept))
    assert bootstrap_anchors(runtime) == 0


def assert_nobody_bootstraps(runtime: Runtime, says: str = RESTORE) -> None:
    """Whoever runs ``pds`` (an OS account mapped to nobody) and the service called by an OS
    account or a new user are refused, saying what to do (``says``: with no administrator left, to
    restore them from a backup); nobody became an administrator."""
    done = pds(runtime, "project", "add-user", "eve", "--admin")
    assert done.returncode != 0, done.stdout
    assert says in done.stdout + done.stderr, done.stdout + done.stderr
    again, registry = restarted(runtime)
    try:
        for actor in ("os:mallory", "mallory"):
            with pytest.raises(PermissionDenied, match=says):
                registry.upsert_user(actor, "mallory", is_admin=True)
        with pytest.raises(PermissionDenied):
            registry.apply("os:mallory", _spec_making("mallory"))
        with pytest.raises(PermissionDenied, match=says):  # nor a hub account made by whoever opens it
            provision_account(again.settings, registry, "alice", "a long password", actor="os:mallory")
        for name in ("mallory", "eve"):
            assert not registry.is_administrator(name)
            assert all(not u.is_admin for u in registry.users() if u.name == name)
    finally:
        again.close()


def _spec_making(name: str):
    from pds_kernel.registry.spec import parse_registry

    return parse_registry({"users": [{"name": name, "admin": True}]})


__all__ = ["write_as_owner", "pds"]
