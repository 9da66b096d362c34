"""An administrator who wants to read a project grants themselves a membership: refused.

A membership opens a project's data (its extract, its workspace), so nobody grants or extends one
to themselves: an administrator's own memberships come from another administrator, or from a
registry file applied by someone else. Each attempt is made against the real registry service on
a real database and must fail, leave no membership and be audited as denied.
"""

from __future__ import annotations

from datetime import date

import pytest

from pds_kernel.errors import PermissionDenied
from pds_kernel.permissions import Impersonation
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from tests.conftest import make_settings

PROJECT = "cardio-study"
UNTIL = date(2027, 6, 30)


@pytest.fixture
def world(tmp_path):
    runtime = Runtime(make_settings(tmp_path))
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("os:root", "root", is_admin=True)
    registry.upsert_user("root", "ada", is_admin=True)
    registry.upsert_user("root", "alice")
    registry.upsert_project("root", PROJECT, title="Cardiology", start_date=date(2026, 1, 1),
                            end_date=date(2028, 12, 31))
    try:
        yield runtime, registry
    finally:
        runtime.close()


def _denied(runtime, actor: str) -> list:
    return [e for e in runtime.audit.entries() if e.outcome == "denied" and e.actor == actor]


def _file(*members: tuple[str, str, str]) -> object:
    return parse_registry({
        "users": [{"name": "root", "admin": True}, {"name": "ada", "admin": True}, {"name": "alice"}],
        "projects": [{"id": PROJECT, "title": "Cardiology", "start": "2026-01-01", "end": "2028-12-31",
                      "members": [{"user": u, "role": r, "expires": e} for u, r, e in members]}]})


def test_administrator_adds_themselves_to_a_project(world):
    runtime, registry = world
    with pytest.raises(PermissionDenied, match="nobody grants themselves access"):
        registry.add_member("root", PROJECT, "root", "researcher", UNTIL)
    assert registry.members(PROJECT) == []
    assert [e.action for e in _denied(runtime, "root")] == ["registry.member.add"]


def test_administrator_makes_themselves_output_checker_to_read_staged_files(world):
    _, registry = world
    with pytest.raises(PermissionDenied):
        registry.add_member("root", PROJECT, "root", "output-checker", UNTIL)
    assert registry.members(PROJECT) == []


def test_administrator_extends_their_own_expired_membership(world):
    """Granted by another administrator, then extended by themselves: refused."""
    _, registry = world
    registry.add_member("ada", PROJECT, "root", "researcher", date(2026, 3, 1))
    with pytest.raises(PermissionDenied):
        registry.add_member("root", PROJECT, "root", "researcher", UNTIL)
    assert [m.expires_on for m in registry.members(PROJECT)] == [date(2026, 3, 1)]


def test_administrator_acting_as_a_researcher_grants_the_administrator(world):
    """``--as alice`` (an impersonation by root) adding root: still root granting root."""
    _, registry = world
    with pytest.raises(PermissionDenied):
        registry.add_member(Impersonation("alice", by="root"), PROJECT, "root", "researcher", UNTIL)
    assert registry.members(PROJECT) == []


def test_administrator_applies_a_registry_file_that_lists_themselves(world):
    """The file is all or nothing: alice's legitimate line is not applied either."""
    runtime, registry = world
    spec = _file(("alice", "researcher", "2027-06-30"), ("root", "researcher", "2027-06-30"))
    with pytest.raises(PermissionDenied):
        registry.apply("root", spec)
    assert registry.members(PROJECT) == []
    assert [e.action for e in _denied(runtime, "root")] == ["registry.apply"]


def test_administrator_extends_their_membership_through_a_registry_file(world):
    _, registry = world
    registry.add_member("ada", PROJECT, "root", "researcher", date(2026, 3, 1))
    with pytest.raises(PermissionDenied):
        registry.apply("root", _file(("root", "researcher", "2027-06-30")))
    assert [m.expires_on for m in registry.members(PROJECT)] == [date(2026, 3, 1)]
