"""Shared by the red-team tests of the registry's approval seals: a registry under the two-person
rule, the attacker's own database connection, and the registry's audited refusal."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import text

from pds_kernel.db import make_engine
from pds_kernel.errors import PermissionDenied
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import RegistryRules

TODAY = date(2026, 6, 1)
UNTIL = date(2027, 6, 30)


@pytest.fixture(name="world")
def world_fixture(db_settings):
    """Two approved administrators (root, ada), researchers alice (approved member of diab) and
    mallory (pending member of diab), user bob (no membership), under the two-person rule."""
    runtime = Runtime(replace(db_settings, registry=RegistryRules(membership_approvals=2)))
    registry = Registry.from_runtime(runtime)
    registry.apply("os:setup", parse_registry({"users": [{"name": "root", "admin": True}, {"name": "ada", "admin": True}]}))
    for name in ("alice", "mallory", "bob"):
        registry.upsert_user("root", name)
    registry.upsert_project("root", "diab", title="Diabetes", start_date=date(2026, 1, 1), end_date=date(2028, 1, 1))
    registry.add_member("root", "diab", "alice", "researcher", UNTIL)
    registry.approve_member("ada", "diab", "alice", "researcher")
    registry.add_member("root", "diab", "mallory", "researcher", UNTIL)
    assert registry.can_access("alice", "diab", today=TODAY)
    assert not registry.can_access("mallory", "diab", today=TODAY)
    yield runtime, registry
    runtime.close()


def write_rows(runtime, sql: str, **values) -> None:
    """The attacker's own connection to the database: rows written, no platform code, no key."""
    engine = make_engine(runtime.settings.database_url)
    try:
        with engine.begin() as connection:
            assert connection.execute(text(sql), values).rowcount == 1
    finally:
        engine.dispose()


def refused_access(registry, user: str, project: str = "diab") -> str:
    """The registry's audited refusal of ``user``'s access (the reason)."""
    assert not registry.can_access(user, project, today=TODAY)
    with pytest.raises(PermissionDenied) as refused:
        registry.check_access(user, project, action="airlock.access.submit", today=TODAY)
    return str(refused.value)
