"""Red team of the two-person rule on memberships (``registry.membership_approvals: 2``).

An administrator who wants a project's data alone, or a researcher who wants more than they were
granted, tries to get a membership that gives access without a second administrator's approval.
Each attempt runs against the real registry service on a real database (SQLite; PostgreSQL where
the attack is a race) and must fail: no access through any path that decides it (``check_access``,
``can_access``, ``active_projects``, the hub's groups and roles, the airlock's checker rules), and a
refused approval is audited. Each docstring says whether the attack got through before its fix.
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
from pds_kernel.cli.app import app
from pds_kernel.errors import InvalidInput, NotFound, PermissionDenied
from pds_kernel.hub.common import auth_model, build_load_roles, project_groups, revoke_reason, user_roles
from pds_kernel.permissions import SERVICE_REGISTRY_SYNC, Impersonation
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Database, RegistryRules, Settings
from tests.conftest import make_settings

PROJECT = "cardio-study"
UNTIL = date(2027, 6, 30)
LATER = date(2028, 6, 30)
TODAY = date(2026, 6, 1)


def _settings(tmp_path, approvals: int = 2, database: str | None = None) -> Settings:
    settings = make_settings(tmp_path, registry=RegistryRules(membership_approvals=approvals))
    return replace(settings, database=Database(url=database)) if database else settings


def _populate(registry: Registry) -> None:
    # the first installation: whoever opens the empty registry makes its first administrators, approved
    # at once (one registry file); an administrator made later waits for a second one's approval
    registry.apply("os:root", parse_registry({"users": [{"name": a, "admin": True} for a in ("root", "ada", "eve")]}))
    for user in ("alice", "mallory"):
        registry.upsert_user("root", user)
    registry.upsert_project("root", PROJECT, title="Cardiology", start_date=date(2026, 1, 1),
                            end_date=date(2028, 12, 31))


@pytest.fixture
def world(tmp_path):
    runtime = Runtime(_settings(tmp_path))
    registry = Registry.from_runtime(runtime)
    _populate(registry)
    try:
        yield runtime, registry
    finally:
        runtime.close()


def _refused_approvals(runtime, actor: str) -> list:
    return [e for e in runtime.audit.entries()
            if e.action == "registry.member.approve" and e.outcome == "denied" and e.actor == actor]


def _no_access(registry, user: str, role: str = "researcher") -> None:
    """No path that decides access lets ``user`` in as ``role``."""
    assert not registry.can_access(user, PROJECT, role, today=TODAY)
    assert registry.active_projects(user, role, today=TODAY) == []
    with pytest.raises(PermissionDenied, match="pending"):
        registry.check_access(user, PROJECT, role, action="airlock.access.submit", today=TODAY)
    if role == "researcher":  # the hub's project groups are those of researchers
        assert PROJECT not in project_groups(registry, user, TODAY)
    assert role not in user_roles(registry, user, TODAY)
    assert user not in {u for r in build_load_roles(registry, TODAY) if r["name"] == role for u in r["users"]}


def _file(*members: tuple[str, str, str]) -> object:
    return parse_registry({
        "users": [{"name": "root", "admin": True}, {"name": "ada", "admin": True}, {"name": "eve", "admin": True},
                  {"name": "alice"}, {"name": "mallory"}],
        "projects": [{"id": PROJECT, "title": "Cardiology", "start": "2026-01-01", "end": "2028-12-31",
                      "members": [{"user": u, "role": r, "expires": e} for u, r, e in members]}]})


# ---- who approves -------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", ["Root", "ROOT", "root ", " root", "root\n", "root\t", "ｒoot", "root\u200b",
                                   "ro\u0307ot", "root\x00"])
def test_granter_approves_under_a_spelling_of_their_name(world, alias):
    """root grants mallory, then approves as a differently spelt ``root`` (case, whitespace, a
    full-width letter, a zero-width space, a NUL) hoping it passes as another person, or creates an
    account so spelt to approve with. Refused: no such account can exist (names are checked) and an
    unknown name is no administrator. Did not get through."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    with pytest.raises(InvalidInput, match="invalid user name"):
        registry.upsert_user("root", alias, is_admin=True)
    with pytest.raises(PermissionDenied):
        registry.approve_member(alias, PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, alias)) == 1


def test_user_name_shaped_like_an_impersonation_label(world):
    """An account named ``"eve acting as root"`` would make ``persons_of`` read two people out of
    one label (and a plain string so named would pass as an approver other than the granter).
    Refused: a user name holds no space, and a plain string that looks like a label is nobody.
    Did not get through."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    for name in ("eve acting as root", "eve_acting_as_root acting as ada"):
        with pytest.raises(InvalidInput):
            registry.upsert_user("root", name, is_admin=True)
        with pytest.raises(PermissionDenied):
            registry.approve_member(name, PROJECT, "mallory", "researcher")
    assert permissions.persons_of("root acting as ada") == {"root", "ada"}
    _no_access(registry, "mallory")


@pytest.mark.parametrize("identity", ["os:ada", "os:eve", SERVICE_REGISTRY_SYNC, "service:extract-build",
                                      "service:package-approval", "service:cohort-link", "migration:0009"])
def test_approval_by_an_identity_that_is_not_a_registry_administrator(world, identity):
    """root grants mallory and approves as the OS identity of another administrator, a service
    identity, or the migration's marker. Refused (only a registry administrator approves).
    Did not get through."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        registry.approve_member(identity, PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, identity)) == 1


def test_inactive_or_demoted_administrator_approves(world):
    """eve, deactivated (or no longer an administrator), approves root's grant. Refused: only an
    active administrator approves. Did not get through."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.upsert_user("root", "eve", is_admin=True, active=False)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        registry.approve_member("eve", PROJECT, "mallory", "researcher")
    registry.upsert_user("root", "eve", is_admin=False, active=True)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        registry.approve_member("eve", PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, "eve")) == 2


def test_granter_deactivated_and_reactivated_approves(world):
    """root grants mallory, is deactivated by ada and reactivated (an account that looks new; a
    reactivated administrator is pending, so eve approves him again): still the granter, refused.
    Did not get through."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.upsert_user("ada", "root", is_admin=True, active=False)
    registry.upsert_user("ada", "root", is_admin=True, active=True)
    registry.approve_administrator("eve", "root")
    with pytest.raises(PermissionDenied, match="second, different administrator"):
        registry.approve_member("root", PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")


def test_member_made_administrator_approves_their_own_membership(world):
    """root grants mallory, then makes her an administrator (ada approving it) so that she approves
    herself. Refused: nobody approves their own membership. Did not get through."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.upsert_user("root", "mallory", is_admin=True)
    registry.approve_administrator("ada", "mallory")
    with pytest.raises(PermissionDenied, match="their own membership"):
        registry.approve_member("mallory", PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, "mallory")) == 1


def test_granter_through_the_registry_file_approves(world):
    """root grants mallory through a registry file he applies (``--as ada`` too), then approves.
    Refused: the file's applier is the granter. Did not get through."""
    _, registry = world
    registry.apply(Impersonation("ada", by="root"), _file(("mallory", "researcher", "2027-06-30")))
    for admin in ("root", "ada"):
        with pytest.raises(PermissionDenied, match="second, different administrator"):
            registry.approve_member(admin, PROJECT, "mallory", "researcher")
    _no_access(registry, "mallory")



def test_pending_member_deactivated_and_reactivated(world):
    """mallory's pending membership: her account is deactivated and reactivated (by ada, who did
    not grant it), hoping the account's new start counts as a review. Still pending; and once
    approved, a deactivated member has no access either. Did not get through."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.upsert_user("ada", "mallory", active=False)
    registry.upsert_user("ada", "mallory", active=True)
    _no_access(registry, "mallory")
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    registry.upsert_user("root", "mallory", active=False)
    assert not registry.can_access("mallory", PROJECT, today=TODAY)
    assert registry.active_projects("mallory", today=TODAY) == []

# ---- what an approval covers --------------------------------------------------------------------
def test_approved_role_swapped_for_another_role(world):
    """mallory's researcher membership is approved; root then grants her output-checker (the
    airlock's reviewer) hoping the approval carries over. Refused: each role is its own membership,
    pending until approved, and a pending checker neither reviews nor reads contents.
    Did not get through."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    checker = registry.add_member("root", PROJECT, "mallory", "output-checker", UNTIL)
    assert checker.pending
    _no_access(registry, "mallory", "output-checker")
    with pytest.raises(PermissionDenied, match="pending"):
        permissions.check_checker(registry, "mallory", PROJECT, "alice")
    assert not permissions.can_read_contents(registry, "mallory", PROJECT, "alice")
    assert not permissions.can_act(registry, permissions.Actor.CHECKER, "mallory", PROJECT, "alice")
    assert PROJECT not in permissions.projects_checked_by(registry, "mallory")


def test_removed_and_added_again_keeps_no_approval(world):
    """An approved membership removed and added again by root (directly, and through a file that
    drops it then lists it again with the same date): the old approval must not come back.
    Did not get through."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    registry.remove_member("root", PROJECT, "mallory")
    assert registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL).pending
    _no_access(registry, "mallory")
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    registry.apply("root", _file())
    registry.apply("root", _file(("mallory", "researcher", "2027-06-30")))
    _no_access(registry, "mallory")


def test_extension_through_every_writer_is_pending_again(world):
    """Approved until 2027, then extended by the registry-sync service (from values root wrote) and,
    once approved again by eve, by root ``--as eve``: each extension is pending, and neither root nor
    eve approves the second one. Did not get through."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    registry.apply(SERVICE_REGISTRY_SYNC, _file(("mallory", "researcher", "2027-12-31")))
    _no_access(registry, "mallory")
    registry.approve_member("eve", PROJECT, "mallory", "researcher")
    registry.add_member(Impersonation("eve", by="root"), PROJECT, "mallory", "researcher", LATER)
    _no_access(registry, "mallory")
    for admin in ("root", "eve"):
        with pytest.raises(PermissionDenied):
            registry.approve_member(admin, PROJECT, "mallory", "researcher")


def test_expired_membership_shortened_keeps_nothing_alive(world):
    """An approved membership that expired is "shortened" by its granter (keeps its approval) then
    moved forward: the move forward is an extension, pending. Did not get through."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", date(2026, 3, 31))
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    registry.add_member("root", PROJECT, "mallory", "researcher", date(2026, 3, 1))
    assert not registry.can_access("mallory", PROJECT, today=TODAY)
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    _no_access(registry, "mallory")


def test_pending_member_in_the_hub(world):
    """A pending researcher signs in to the hub: no project group, no role, their server is stopped
    with the reason. Did not get through."""
    _, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    assert auth_model(registry, "mallory", TODAY)["groups"] == []
    assert "pending" in revoke_reason(registry, "mallory", PROJECT, TODAY)
    with pytest.raises(PermissionDenied, match="pending"):
        permissions.check_admit_workspace(registry, "mallory", PROJECT, action="workspace.start",
                                          groups={PROJECT}, today=TODAY)
    _no_access(registry, "mallory")


# ---- the audit trail of approvals ---------------------------------------------------------------
def test_approval_audit_names_the_approver_and_the_grant(world):
    """The approval's audit entry must name the real approver and the grant it approved (who, what
    role, until when), so that a reviewer of the trail sees both people; an impersonated attempt is
    recorded under its full label. Did not get through (nothing forgeable found)."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
    with pytest.raises(PermissionDenied):
        registry.approve_member(Impersonation("eve", by="root"), PROJECT, "mallory", "researcher")
    registry.approve_member("ada", PROJECT, "mallory", "researcher")
    [ok] = [e for e in runtime.audit.entries() if e.action == "registry.member.approve" and e.outcome == "ok"]
    assert ok.actor == "ada" and ok.project == PROJECT and ok.target == "user:mallory"
    assert ok.details == {"role": "researcher", "expires_on": "2027-06-30", "granted_by": "root"}
    assert len(_refused_approvals(runtime, "root acting as eve")) == 1
    assert runtime.audit.verify().ok



@pytest.mark.parametrize("role", ["Researcher", "researcher ", "owner", "admin"])
def test_refused_approval_with_an_odd_role_leaves_no_trace(world, role):
    """root probes approvals with a role spelt otherwise (or one that is no membership role),
    hoping a refusal that is not audited lets him try quietly. Before the fix a role that is no
    role was refused before the audited part of the approval: the refusal left no entry (``admin``,
    a role, was audited as nothing to approve). GOT THROUGH before the fix (an unaudited refusal,
    though no access); now every refusal is audited."""
    runtime, registry = world
    registry.add_member("eve", PROJECT, "mallory", "researcher", UNTIL)
    with pytest.raises((InvalidInput, NotFound)):
        registry.approve_member("root", PROJECT, "mallory", role)
    _no_access(registry, "mallory")
    assert len(_refused_approvals(runtime, "root")) == 1

# ---- races ----------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_granter_extends_while_the_second_administrator_approves(tmp_path, pg_database, monkeypatch):
    """root granted mallory until 2027; while ada approves that grant, root extends it to 2028 in
    between ada's check and her write (PostgreSQL, read committed). Before the fix the approval
    was written over the extension by the membership's id: mallory held 2028, "approved by ada",
    who had never seen it (the extension, having read the row while it was pending, wrote only its
    new date). GOT THROUGH before the fix; now the approval and every grant or extension lock the
    row they read (``SELECT ... FOR UPDATE``; SQLite's writers are serialised already), so the
    extension waits for the approval, reads it, and makes the membership pending again."""
    runtime = Runtime(_settings(tmp_path, database=pg_database))
    try:
        registry = Registry.from_runtime(runtime)
        _populate(registry)
        registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
        original, reads, threads = Registry._membership, [], []

        def read_then_race(self, s, *args, **kwargs):
            member = original(self, s, *args, **kwargs)
            reads.append(member)
            if len(reads) == 2:  # the approval's write step has read the row: root extends it now
                thread = threading.Thread(target=registry.add_member,
                                          args=("root", PROJECT, "mallory", "researcher", LATER))
                threads.append(thread)
                thread.start()
                thread.join(timeout=3)  # done at once unless the approval holds the row
            return member

        monkeypatch.setattr(Registry, "_membership", read_then_race)
        try:
            registry.approve_member("ada", PROJECT, "mallory", "researcher")
        except InvalidInput:
            pass  # refusing an approval of a membership that changed would do as well
        monkeypatch.setattr(Registry, "_membership", original)
        threads[0].join(timeout=60)
        [member] = registry.members(PROJECT)
        assert member.expires_on == LATER
        assert member.pending, f"the extension of root was approved by {member.approved_by} unseen"
        _no_access(registry, "mallory")
    finally:
        runtime.close()


@pytest.mark.postgres
def test_two_processes_record_the_rule_at_once(tmp_path, pg_database, monkeypatch):
    """The registry's rule is recorded by the first write of a process set to 2. Two such writes at
    the same moment on PostgreSQL both found no rule row and both inserted one: the second failed
    on the key and the administrator's command ended in a database error (fix: the row is inserted
    ignoring a conflict, then read locked; the rule is raised once, audited once)."""
    base = Runtime(_settings(tmp_path, approvals=1, database=pg_database))
    deployments = [Runtime(_settings(tmp_path, approvals=2, database=pg_database)) for _ in range(2)]
    try:
        _populate(Registry.from_runtime(base))
        original, barrier, errors = Registry._rule, threading.Barrier(2, timeout=20), []
        seen: set[int] = set()

        def both_find_no_rule(s):
            rule = original(s)
            if threading.get_ident() not in seen:  # each write's first look: wait for the other's
                seen.add(threading.get_ident())
                barrier.wait()
            return rule

        monkeypatch.setattr(Registry, "_rule", staticmethod(both_find_no_rule))

        def write(runtime, name):
            try:
                Registry.from_runtime(runtime).upsert_user("root", name)
            except Exception as exc:  # the test reports any failure
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(d, f"user{i}")) for i, d in enumerate(deployments)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        monkeypatch.setattr(Registry, "_rule", staticmethod(original))
        assert errors == [], errors
        assert {"user0", "user1"} <= {u.name for u in Registry.from_runtime(base).users()}
        raised = [e for e in base.audit.entries() if e.action == "registry.rule.update"]
        assert len(raised) == 1 and raised[0].details == {"membership_approvals": 2}
        registry = Registry.from_runtime(base)
        assert registry.add_member("root", PROJECT, "mallory", "researcher", UNTIL).pending
    finally:
        for runtime in (base, *deployments):
            runtime.close()


# ---- the rule itself ------------------------------------------------------------------------------
def test_granter_lowers_the_rule_in_their_own_process(tmp_path):
    """The deployment runs with two approvals (the chart sets ``PDS_REGISTRY__MEMBERSHIP_APPROVALS``
    on its pods); root runs one command of his own with the rule at 1 (that variable set to 1 in
    his shell, or ``--config`` naming his own copy of the file) and grants mallory: the grant was
    approved by root himself and mallory was in. GOT THROUGH before the fix; now the registry keeps
    the highest rule of any process that granted, approved or applied (``registry_rules``); one whose
    setting is lower works under the registry's rule: the grant is pending."""
    deployment = Runtime(_settings(tmp_path, approvals=2))
    lowered = Runtime(_settings(tmp_path, approvals=1))  # the same database, root's own setting
    try:
        registry = Registry.from_runtime(deployment)
        _populate(registry)
        registry.apply(SERVICE_REGISTRY_SYNC, _file(("alice", "researcher", "2027-06-30")))
        mine = Registry.from_runtime(lowered)
        member = mine.add_member("root", PROJECT, "mallory", "researcher", UNTIL)
        assert member.pending and member.approved_by is None
        assert mine.apply("root", _file(("alice", "researcher", "2027-06-30"),
                                        ("mallory", "researcher", "2027-12-31"))) != []
        _no_access(registry, "mallory")
        with pytest.raises(PermissionDenied):
            mine.approve_member("root", PROJECT, "mallory", "researcher")
        _no_access(mine, "mallory")
    finally:
        lowered.close()
        deployment.close()


@pytest.mark.parametrize("granter", ["os:root", "mallory"])
def test_bootstrap_entered_again_to_grant_as_nobody_in_particular(world, granter):
    """root deactivates every administrator, himself last: the registry holds no active
    administrator, so whoever opens it may administer it (the first installation's bootstrap). He
    grants mallory's membership as an OS account (``os:root``: his OS user without its
    ``cli.identities`` entry) or as mallory's own colleague account, reactivates himself and
    approves: the grant looked like someone else's. GOT THROUGH before the fixes; now the registry
    refuses the write that would leave it without an active administrator (it never bootstraps
    again), and a grant is approved only when an administrator who is one still (the one behind
    ``--as``) or the registry-sync Job made it."""
    runtime, registry = world
    registry.add_member("root", PROJECT, "alice", "researcher", UNTIL)
    for admin in ("ada", "eve"):
        registry.upsert_user("root", admin, is_admin=True, active=False)
    with pytest.raises(InvalidInput, match="no active administrator"):
        registry.upsert_user("root", "root", is_admin=True, active=False)
    with pytest.raises(InvalidInput, match="no active administrator"):
        registry.upsert_user("root", "root", is_admin=False)
    assert registry.is_administrator("root")
    member = "alice" if granter == "mallory" else "mallory"
    with pytest.raises(PermissionDenied):
        registry.add_member(granter, PROJECT, member, "researcher", LATER)
    assert not registry.can_access(member, PROJECT, "researcher", today=TODAY)


def test_a_grant_made_while_the_registry_bootstrapped_is_granted_again(tmp_path):
    """On the first installation nobody is an administrator yet and whoever opens the registry
    bootstraps it: root, as his OS account, grants mallory before making himself and ada
    administrators, then ada approves the grant as if an administrator had made it. Refused: only
    an administrator's grant (or the registry-sync Job's) is approved; an administrator grants it
    again and another approves that."""
    runtime = Runtime(_settings(tmp_path))
    try:
        registry = Registry.from_runtime(runtime)
        for user in ("alice", "mallory"):
            registry.upsert_user("os:root", user)
        registry.upsert_project("os:root", PROJECT, title="Cardiology", start_date=date(2026, 1, 1),
                                end_date=date(2028, 12, 31))
        assert registry.add_member("os:root", PROJECT, "mallory", "researcher", UNTIL).pending
        registry.apply("os:root", parse_registry({"users": [{"name": "root", "admin": True},
                                                            {"name": "ada", "admin": True}]}))
        with pytest.raises(PermissionDenied, match="grant it again"):
            registry.approve_member("ada", PROJECT, "mallory", "researcher")
        _no_access(registry, "mallory")
        assert len(_refused_approvals(runtime, "ada")) == 1
    finally:
        runtime.close()


def test_granter_lowers_the_rule_for_one_pds_command(tmp_path, monkeypatch):
    """The same attack through the real ``pds`` command: the configuration file says 2 and maps
    root's OS user to root; root runs ``PDS_REGISTRY__MEMBERSHIP_APPROVALS=1 pds project add-member``.
    GOT THROUGH before the fix (the grant approved itself); now it is pending."""
    settings = _settings(tmp_path, approvals=2)
    deployment = Runtime(settings)
    try:
        registry = Registry.from_runtime(deployment)
        _populate(registry)
        registry.apply(SERVICE_REGISTRY_SYNC, _file())
        config = tmp_path / "pds.yaml"
        config.write_text(yaml.safe_dump({
            "paths": {f.name: str(getattr(settings.paths, f.name)) for f in fields(settings.paths)},
            "database": {"url": settings.database.url}, "registry": {"membership_approvals": 2},
            "cli": {"identities": {getpass.getuser(): "root"}}}), encoding="utf-8")
        monkeypatch.setenv("PDS_REGISTRY__MEMBERSHIP_APPROVALS", "1")
        done = CliRunner().invoke(app, ["--config", str(config), "project", "add-member", PROJECT, "mallory",
                                        "--role", "researcher", "--expires", "2027-06-30"])
        assert done.exit_code == 0, done.output
        assert "pending" in done.output
        _no_access(registry, "mallory")
    finally:
        deployment.close()
