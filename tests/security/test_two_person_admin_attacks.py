"""Red team of the two-person rule on administrators, second round (``registry.membership_approvals: 2``).

One administrator, root, wants a second approved administrator he controls, or a project's data,
alone; or a pending administrator (made by root, not yet approved) tries to act as an
administrator anywhere. Each attempt runs against the real registry service on a real database
(SQLite; PostgreSQL where the attack is a race) or through the real ``pds`` command, and must fail.
Each docstring says whether the attack got through before its fix.
"""

from __future__ import annotations

import getpass
import threading
from dataclasses import fields, replace
from datetime import date

import pytest
import yaml
from typer.testing import CliRunner

from pds_kernel import permissions
from pds_kernel.airlock.states import Actor
from pds_kernel.cli.app import app
from pds_kernel.cli.identity import resolve_actor
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.hub.common import build_load_roles, registry_admins, user_roles
from pds_kernel.permissions import SERVICE_REGISTRY_SYNC
from pds_kernel.registry import Registry
from pds_kernel.registry.bootstrap import Bootstrap
from pds_kernel.registry.models import MEMBERSHIP_APPROVALS_RULE, RegistryRule
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Database, RegistryRules, Settings
from tests.conftest import make_settings

PROJECT = "cardio-study"
UNTIL = date(2027, 6, 30)
TODAY = date(2026, 6, 1)


def _settings(tmp_path, approvals: int = 2, database: str | None = None) -> Settings:
    settings = make_settings(tmp_path, registry=RegistryRules(membership_approvals=approvals))
    return replace(settings, database=Database(url=database)) if database else settings


def _users(*admins: str, others: tuple[str, ...] = (), inactive: tuple[str, ...] = ()):
    return parse_registry({"users": [{"name": a, "admin": True, "active": a not in inactive} for a in admins]
                          + [{"name": u} for u in others]})


def _populate(registry: Registry, admins=("root", "ada", "eve")) -> None:
    registry.apply("os:root", _users(*admins))  # the first installation: approved at once
    for user in ("alice", "mallory"):
        registry.upsert_user("root", user)
    registry.upsert_project("root", PROJECT, title="Cardiology", start_date=date(2026, 1, 1),
                            end_date=date(2028, 12, 31))


@pytest.fixture
def world(tmp_path):
    """root, ada and eve, approved administrators; alice and mallory, users; a project; mallory is
    then made an administrator by root: pending."""
    runtime = Runtime(_settings(tmp_path))
    registry = Registry.from_runtime(runtime)
    _populate(registry)
    registry.upsert_user("root", "mallory", is_admin=True)
    assert registry.get_user("mallory").admin_pending
    try:
        yield runtime, registry
    finally:
        runtime.close()


def _approved_administrators(registry) -> set[str]:
    return {u.name for u in registry.users() if u.is_admin and u.active and not u.admin_pending}


def _config(tmp_path, settings: Settings, registry_user: str) -> str:
    config = tmp_path / "pds.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {f.name: str(getattr(settings.paths, f.name)) for f in fields(settings.paths)},
        "database": {"url": settings.database.url}, "registry": {"membership_approvals": 2},
        "cli": {"identities": {getpass.getuser(): registry_user}}}), encoding="utf-8")
    return str(config)


# ---- the bootstrap: bringing the registry back to "no approved administrator" ---------------------
def test_two_concurrent_demotions_leave_no_administrator(tmp_path, pg_database, monkeypatch):
    """root and ada are the only approved administrators. root, alone, runs two commands at once
    (PostgreSQL, read committed): one demotes himself and, once it has checked that an approved
    administrator remains (ada) but before it commits, the other demotes ada (root being one still
    in what it reads). Were both committed, the registry would hold none, whoever opens it would
    bootstrap it, and root would make himself and mallory administrators, approved at once (write
    skew). Did not get through: every audited write takes the audit trail's table lock before its
    last-administrator check (the audit entry of the change is written first), so the second
    demotion waits for the first to commit and finds itself removing the last one: refused."""
    runtime = Runtime(_settings(tmp_path, database=pg_database))
    try:
        registry = Registry.from_runtime(runtime)
        _populate(registry, admins=("root", "ada"))
        keep, calls, errors = Bootstrap.after_write, [], []

        def demote_ada():
            try:
                registry.upsert_user("root", "ada", is_admin=False)
            except InvalidInput as exc:
                errors.append(exc)

        def keep_then_race(bootstrap, s, seals, actor, had_administrator):
            keep(bootstrap, s, seals, actor, had_administrator)
            calls.append(had_administrator)
            if len(calls) == 1:  # root's own demotion passed its check, uncommitted: demote ada now
                thread = threading.Thread(target=demote_ada)
                thread.start()
                thread.join(timeout=3)  # done at once unless the first demotion holds its locks
                calls.append(thread)

        monkeypatch.setattr(Bootstrap, "after_write", keep_then_race)
        registry.upsert_user("root", "root", is_admin=False)
        monkeypatch.setattr(Bootstrap, "after_write", keep)
        calls[1].join(timeout=60)
        assert _approved_administrators(registry), "the registry was left with no approved administrator"
        assert len(errors) == 1 and "no active administrator" in str(errors[0])
        assert _approved_administrators(registry) == {"ada"}
        with pytest.raises(PermissionDenied):
            registry.upsert_user("root", "root", is_admin=True)
        with pytest.raises(PermissionDenied):
            registry.upsert_user("os:root", "mallory", is_admin=True)
        assert not registry.is_administrator("mallory")
    finally:
        runtime.close()


def test_one_file_deactivates_the_administrators_and_makes_new_ones(world):
    """root applies one registry file in which ada, eve and himself are deactivated and mallory and
    alice are administrators, hoping the write is judged "bootstrap" once the old administrators are
    gone (so that mallory and alice are approved at once). Refused: the bootstrap is decided when the
    write begins, and a write that leaves no approved administrator is refused whole. Did not get
    through."""
    _, registry = world
    spec = _users("root", "ada", "eve", "mallory", "alice", inactive=("root", "ada", "eve"))
    with pytest.raises(InvalidInput, match="no active administrator"):
        registry.apply("root", spec)
    assert _approved_administrators(registry) == {"root", "ada", "eve"}
    assert not registry.is_administrator("mallory") and not registry.is_administrator("alice")


def test_pending_administrators_keep_the_registry_administered_for_a_bootstrap(world):
    """root makes alice an administrator too (both she and mallory pending), then deactivates ada,
    eve and himself one by one, hoping the two pending administrators count as "administrators"
    until the last step and then, once all are pending, that the registry is open to a bootstrap
    where mallory approves alice. Refused at the last approved administrator. Did not get through."""
    _, registry = world
    registry.upsert_user("root", "alice", is_admin=True)
    for admin in ("ada", "eve"):
        registry.upsert_user("root", admin, is_admin=True, active=False)
    with pytest.raises(InvalidInput, match="no active administrator"):
        registry.upsert_user("root", "root", is_admin=True, active=False)
    with pytest.raises(PermissionDenied):
        registry.approve_administrator("mallory", "alice")
    assert not permissions.can_administer_registry(registry, "mallory")
    assert _approved_administrators(registry) == {"root"}


# ---- the rule itself -----------------------------------------------------------------------------
@pytest.mark.parametrize("write", ["add-user", "disable-user", "project", "remove-member"])
def test_lowered_promotion_after_a_deployment_that_only_wrote_users(tmp_path, write):
    """A registry from before the rule (root and ada administrators made by a process with one
    approval, no rule recorded). The deployment now runs with two approvals and only adds a user
    (``pds project add-user``), disables one, changes a project or removes a member; root then runs
    one command of his own with the setting at 1 and makes mallory an administrator: approved at
    once, so that mallory can approve what root grants. GOT THROUGH before the fix (only a
    promotion, a grant, an approval or a file recorded the rule, not every write); now every write
    of the registry by a process with 2 records it, and root's promotion is pending."""
    old = Runtime(_settings(tmp_path, approvals=1))
    deployment = Runtime(_settings(tmp_path, approvals=2))
    lowered = Runtime(_settings(tmp_path, approvals=1))
    try:
        Registry.from_runtime(old).apply("os:root", _users("root", "ada", others=("mallory", "bob")))
        with old.sessions() as s:
            assert s.get(RegistryRule, MEMBERSHIP_APPROVALS_RULE) is None
        Registry.from_runtime(old).upsert_project("root", PROJECT, title="Cardiology", start_date=date(2026, 1, 1),
                                                  end_date=date(2028, 12, 31))
        Registry.from_runtime(old).add_member("ada", PROJECT, "bob", "researcher", UNTIL)
        registry = Registry.from_runtime(deployment)
        if write == "add-user":
            registry.upsert_user("root", "carol")
        elif write == "disable-user":
            registry.upsert_user("root", "bob", active=False)
        elif write == "project":
            registry.upsert_project("root", PROJECT, title="Cardiology (2)")
        else:
            registry.remove_member("root", PROJECT, "bob")
        info = Registry.from_runtime(lowered).upsert_user("root", "mallory", is_admin=True)
        assert info.admin_pending, "a process with the rule lowered made mallory an administrator alone"
        assert not registry.is_administrator("mallory")
    finally:
        lowered.close()
        deployment.close()
        old.close()


# ---- a pending administrator's powers ------------------------------------------------------------
def test_pending_administrator_manages_hub_accounts(world, tmp_path):
    """mallory, a pending administrator, creates a hub account for alice, resets ada's, revokes
    eve's (``pds hub account add|--reset|revoke``). Refused and audited before the hub's database is
    touched. Did not get through."""
    from pds_kernel.hub.local import provision_account, set_account_approval

    runtime, registry = world
    for user, reset in (("alice", False), ("ada", True)):
        with pytest.raises(PermissionDenied, match="only a platform administrator"):
            provision_account(runtime.settings, registry, user, "long-enough-password", actor="mallory",
                              reset=reset)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        set_account_approval(runtime.settings, registry, "eve", False, actor="mallory")
    denied = {e.action for e in runtime.audit.entries() if e.actor == "mallory" and e.outcome == "denied"}
    assert denied == {"hub.account.create", "hub.account.reset", "hub.account.revoke"}


def test_pending_administrator_applies_a_registry_file_through_pds(world, tmp_path):
    """mallory, pending, runs ``pds project apply`` with a file that makes alice an administrator and
    a member, then ``pds project approve-admin alice`` and ``add-member``. Refused: she is no
    administrator. Did not get through."""
    runtime, registry = world
    config = _config(tmp_path, runtime.settings, "mallory")
    spec = tmp_path / "registry.yaml"
    spec.write_text(yaml.safe_dump({
        "users": [{"name": n, "admin": True} for n in ("root", "ada", "eve", "mallory", "alice")],
        "projects": [{"id": PROJECT, "title": "Cardiology", "start": "2026-01-01", "end": "2028-12-31",
                      "members": [{"user": "alice", "role": "researcher", "expires": "2027-06-30"}]}]}))
    runner = CliRunner()
    for args in (["project", "apply", str(spec)], ["project", "approve-admin", "alice"],
                 ["project", "add-member", PROJECT, "alice", "--role", "researcher", "--expires", "2027-06-30"],
                 ["project", "add-user", "carol", "--admin"]):
        done = runner.invoke(app, ["--config", config, *args])
        assert done.exit_code != 0, (args, done.output)
    assert not registry.get_user("alice").is_admin
    assert registry.members(PROJECT) == []
    assert _approved_administrators(registry) == {"root", "ada", "eve"}


def test_pending_administrator_in_the_hub_and_the_airlock(world):
    """mallory, pending, is looked for among the hub's administrators (the ``pds-admin`` role of
    ``load_roles``, the administrators the hub syncs, her roles at sign-in) and on the airlock as an
    administrator (an administrator's moves, submitting for someone else, seeing any request).
    Absent everywhere. Did not get through."""
    _, registry = world
    assert "mallory" not in registry_admins(registry)
    assert "admin" not in user_roles(registry, "mallory", TODAY)
    admins = next(r for r in build_load_roles(registry, TODAY) if r["users"] and "root" in r["users"])
    assert "mallory" not in admins["users"]
    assert all("mallory" not in r["users"] for r in build_load_roles(registry, TODAY))
    assert not permissions.can_act(registry, Actor.ADMIN, "mallory", PROJECT, "alice")
    assert not permissions.can_act(registry, Actor.AUTHOR, "mallory", PROJECT, "alice")
    assert not permissions.can_view(registry, "mallory", PROJECT, "alice")
    with pytest.raises(PermissionDenied, match="admins only"):
        permissions.check_submitter(registry, "mallory", PROJECT, "alice")
    assert not permissions.can_see_package_requests(registry, "mallory", PROJECT)


def test_pending_administrator_acts_as_another_user(world):
    """mallory, pending, runs ``pds --as ada`` (an approved administrator) to approve her own
    promotion or anything else as ada. Refused (and audited) before any command runs. Did not get
    through."""
    runtime, registry = world
    runtime.settings.cli.identities["mallory-os"] = "mallory"
    try:
        with pytest.raises(PermissionDenied, match="--as is for platform administrators"):
            resolve_actor(runtime, "ada", os_user="mallory-os")
    finally:
        del runtime.settings.cli.identities["mallory-os"]
    assert [e.outcome for e in runtime.audit.entries() if e.action == "cli.impersonate"] == ["denied"]


def test_pending_administrator_approves_root_and_root_approves_her(world):
    """root makes alice an administrator too; mallory (pending) approves alice and alice (pending)
    approves mallory: two pending administrators vouching for each other, both made by root.
    Refused: only an approved administrator approves. Did not get through."""
    _, registry = world
    registry.upsert_user("root", "alice", is_admin=True)
    with pytest.raises(PermissionDenied):
        registry.approve_administrator("mallory", "alice")
    with pytest.raises(PermissionDenied):
        registry.approve_administrator("alice", "mallory")
    registry.add_member("root", PROJECT, "alice", "researcher", UNTIL)
    with pytest.raises(PermissionDenied):
        registry.approve_member("mallory", PROJECT, "alice", "researcher")
    assert not registry.can_access("alice", PROJECT, today=TODAY)
    assert _approved_administrators(registry) == {"root", "ada", "eve"}


# ---- the registry-sync Job as the one who made the administrator --------------------------------
def test_promotion_through_the_registry_sync_job_approved_by_another(world):
    """root writes the chart's values with mallory ``admin: true`` (the registry-sync Job applies
    them) and approves mallory himself, the Job being the one who made her. Works, by design: the
    Job's promotion is approved by any approved administrator but the user, and who wrote the values
    is not recorded in the registry (the chart's history is). RESIDUAL (docs/isolation.md): whoever
    can write the chart's values, or run the Job's command with the database's settings, holds the
    deployment's database credentials, which write any row. The approval names root and the Job."""
    runtime, registry = world
    registry.upsert_user("root", "mallory", is_admin=False)
    registry.apply(SERVICE_REGISTRY_SYNC, _users("root", "ada", "eve", "mallory", others=("alice",)))
    assert registry.get_user("mallory").admin_granted_by == SERVICE_REGISTRY_SYNC
    with pytest.raises(PermissionDenied):
        registry.approve_administrator("mallory", "mallory")
    registry.approve_administrator("root", "mallory")
    [entry] = [e for e in runtime.audit.entries() if e.action == "registry.user.approve_admin" and e.outcome == "ok"]
    assert entry.actor == "root" and entry.details["admin_granted_by"] == SERVICE_REGISTRY_SYNC


def test_reset_of_another_administrators_hub_account_waits_for_a_second_administrator(world):
    """root gives ada's hub account a new password and second factor (``pds hub account add ada
    --reset``) to sign in to the hub as ada, with her memberships and reviews. Before the fix the
    reset was approved at once (only audited): GOT THROUGH by design then (RESIDUAL). Now, under
    the two-person rule, the account waits for a second administrator, neither root nor ada
    (tests/security/test_two_person_account_attacks.py signs in through a real hub); the reset is
    audited with its actor, and a pending administrator (mallory) may not do it at all."""
    from pds_kernel.hub.local import provision_account, set_account_approval

    runtime, registry = world
    provision_account(runtime.settings, registry, "ada", "long-enough-password", actor="ada")
    set_account_approval(runtime.settings, registry, "ada", True, actor="eve")
    assert provision_account(runtime.settings, registry, "ada", "another-long-password", actor="root",
                             reset=True).pending
    with pytest.raises(PermissionDenied):
        provision_account(runtime.settings, registry, "ada", "a-third-long-password", actor="mallory", reset=True)
    with pytest.raises(PermissionDenied, match="second, different administrator"):
        set_account_approval(runtime.settings, registry, "ada", True, actor="root")
    resets = [(e.actor, e.target, e.outcome) for e in runtime.audit.entries() if e.action == "hub.account.reset"]
    assert resets == [("root", "user:ada", "ok"), ("mallory", "user:ada", "denied")]
    approvals = [(e.actor, e.outcome) for e in runtime.audit.entries() if e.action == "hub.account.approve"]
    assert approvals == [("eve", "ok"), ("root", "denied")]


@pytest.mark.parametrize("identity", [SERVICE_REGISTRY_SYNC, "migration:0011", "os:ada"])
def test_promoter_poses_as_the_registry_sync_job_with_as(world, identity):
    """root runs ``pds --as service:registry-sync`` (or as the migration's marker, or another OS
    account) to make alice an administrator, so that the promotion reads as the Job's (or nobody's)
    and he may approve it himself. Refused before any command runs: ``--as`` takes a registry
    user, and a service identity or an OS account is none. Did not get through."""
    runtime, registry = world
    runtime.settings.cli.identities["root-os"] = "root"
    try:
        with pytest.raises(PermissionDenied, match="no registry user"):
            resolve_actor(runtime, identity, os_user="root-os")
    finally:
        del runtime.settings.cli.identities["root-os"]
    assert registry.get_user("alice").admin_granted_by is None
