"""An expired membership, a closed or ended project, or a disabled account grants nothing, anywhere:
the registry answers, the hub's groups, the workspace spec, the extract builder and the airlock
checks all say no, and every refusal decided by ``check_access`` is in the audit trail.

Runs on SQLite and on a real PostgreSQL server (``db_runtime``)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pds_kernel.errors import PermissionDenied
from pds_kernel.extract.build import authorise as authorise_extract
from pds_kernel.hub.common import auth_model, project_groups
from pds_kernel.registry import Registry, Role
from pds_kernel.sandbox.spec import authorised_workspace_spec

TODAY = date.today()


@pytest.fixture
def registry(db_runtime) -> Registry:
    reg = Registry.from_runtime(db_runtime)
    for name in ("alice", "bob", "carol", "dave"):
        reg.upsert_user("root", name)
    reg.upsert_user("root", "root", is_admin=True)
    for pid in ("open-one", "closed-one", "ended-one"):
        reg.upsert_project("root", pid, title=pid, start_date=TODAY - timedelta(days=400),
                           end_date=TODAY + timedelta(days=400))
    valid = TODAY + timedelta(days=30)
    reg.add_member("root", "open-one", "alice", Role.RESEARCHER, valid)
    reg.add_member("root", "open-one", "bob", Role.RESEARCHER, TODAY - timedelta(days=1))  # expired
    reg.add_member("root", "open-one", "carol", Role.OUTPUT_CHECKER, TODAY - timedelta(days=1))
    reg.add_member("root", "open-one", "dave", Role.RESEARCHER, valid)
    reg.add_member("root", "closed-one", "alice", Role.RESEARCHER, valid)
    reg.add_member("root", "ended-one", "alice", Role.RESEARCHER, TODAY - timedelta(days=2))
    reg.close_project("root", "closed-one", reason="protocol ended")
    reg.upsert_project("root", "ended-one", end_date=TODAY - timedelta(days=2))
    reg.upsert_user("root", "dave", active=False)  # disabled account, membership still on record
    return reg


def test_valid_membership_grants_access_everywhere(db_runtime, registry):
    assert registry.can_access("alice", "open-one")
    assert [p.id for p in registry.active_projects("alice")] == ["open-one"]
    assert project_groups(registry, "alice") == ["open-one"]
    spec = authorised_workspace_spec(db_runtime.settings, registry, "alice", "open-one")
    assert spec.project == "open-one" and spec.mount("extract-open-one").read_only
    granted = db_runtime.audit.entries(action="workspace.start")
    assert [(e.actor, e.project, e.outcome) for e in granted] == [("alice", "open-one", "ok")]


@pytest.mark.parametrize("user, project, role, why", [
    ("bob", "open-one", Role.RESEARCHER, "expired on"),
    ("carol", "open-one", Role.OUTPUT_CHECKER, "expired on"),
    ("alice", "closed-one", Role.RESEARCHER, "is closed"),
    ("alice", "ended-one", Role.RESEARCHER, "runs from"),
    ("dave", "open-one", Role.RESEARCHER, "no active account"),
    ("eve", "open-one", Role.RESEARCHER, "no active account"),
    ("alice", "no-such-project", Role.RESEARCHER, "not a member"),
])
def test_nothing_granted_anywhere(db_runtime, registry, user, project, role, why):
    assert not registry.can_access(user, project, role)
    assert project not in [p.id for p in registry.active_projects(user, role)]
    assert project not in project_groups(registry, user)
    model = auth_model(registry, user)
    assert model is None or project not in model["groups"]
    if role == Role.RESEARCHER:
        with pytest.raises(PermissionDenied, match=why):
            authorised_workspace_spec(db_runtime.settings, registry, user, project)
    with pytest.raises(PermissionDenied, match=why):
        registry.check_access(user, project, role, action="airlock.access.submit")
    denied = [e for e in db_runtime.audit.entries() if e.outcome == "denied"]
    assert denied and all(e.project == project and e.target == f"user:{user}" for e in denied)
    assert all(why in e.details["reason"] for e in denied)


def test_closed_or_ended_project_builds_no_extract(db_runtime, registry):
    for project, why in (("closed-one", "closed"), ("ended-one", "runs from")):
        with pytest.raises(PermissionDenied, match=why):
            authorise_extract(db_runtime, "root", project, "extract.build")
    assert authorise_extract(db_runtime, "root", "open-one", "extract.build").id == "open-one"
    refusals = db_runtime.audit.entries(action="extract.build")
    assert [(e.project, e.outcome) for e in refusals] == [("closed-one", "denied"), ("ended-one", "denied")]


def test_every_registry_change_is_audited_with_its_actor(db_runtime, registry):
    entries = db_runtime.audit.entries()
    changes = [e for e in entries if e.action.startswith("registry.")]
    assert {e.actor for e in changes} == {"root"}
    kinds = [e.action for e in changes]
    assert kinds.count("registry.user.create") == 5
    assert kinds.count("registry.project.create") == 3
    assert kinds.count("registry.member.add") == 6
    assert "registry.project.close" in kinds and kinds.count("registry.project.update") == 1
    assert kinds.count("registry.user.update") == 1  # dave disabled
    assert db_runtime.audit.verify().ok


def test_a_renewed_membership_grants_again(registry):
    assert not registry.can_access("bob", "open-one")
    registry.add_member("root", "open-one", "bob", Role.RESEARCHER, TODAY + timedelta(days=10))
    assert registry.can_access("bob", "open-one")
    # expiry is inclusive: valid through the last day, not the day after
    assert registry.can_access("bob", "open-one", today=TODAY + timedelta(days=10))
    assert not registry.can_access("bob", "open-one", today=TODAY + timedelta(days=11))
