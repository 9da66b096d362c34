"""Attacks on identity and permissions: the command line trusting whatever identity it is told,
``os:<name>`` claims, impersonated reviews, a halted project that keeps running, a purge decided
by one administrator or before the retention period, a service identity used beyond its right.

Each test is one attempt, made with the real ``pds`` command in a subprocess (run by the OS user of
the test, mapped or not to a registry user in its configuration), the real services on a fresh
database, and for workspaces a real hub with a real sandbox.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
from pathlib import Path

import pytest
from identity_cli_support import (
    HUB_PROJECT,
    PASSWORD,
    PROJECT,
    approved,
    fill_project_data,
    free_port_block,
    make_identity_world,
    make_world,
    submitted,
    wait_for,
)

from pds_kernel import permissions
from pds_kernel.airlock.models import Review
from pds_kernel.db import transaction
from pds_kernel.errors import PermissionDenied
from pds_kernel.extract.build import authorise
from pds_kernel.pseudo import KeyStore
from pds_kernel.registry.models import Project

DENIED = PermissionDenied.exit_code


@pytest.fixture
def world(tmp_path):
    w = make_identity_world(tmp_path)
    yield w
    w.runtime.close()


def _reviews(world) -> int:
    with transaction(world.runtime.sessions) as s:
        return s.query(Review).count()


def test_a_researcher_cannot_use_as(world):
    """alice (mapped) tries ``--as olga`` to read the review queue as a checker."""
    request_id = submitted(world)
    done = world.pds("--as", "olga", "airlock", "show", request_id, "--file", "0", user="alice")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "--as is for platform administrators only" in done.stderr
    assert "18-40" not in done.stdout
    [refused] = world.actions("cli.impersonate")
    assert (refused.actor, refused.outcome, refused.details["acting_as"]) == ("alice", "denied", "olga")


def test_pds_actor_in_the_environment_is_impersonation_too(world):
    """An unmapped OS user sets PDS_ACTOR=root to become the administrator."""
    done = world.pds("project", "add-member", PROJECT, "alice", "--role", "output-checker",
                     "--expires", "2099-01-01", env={"PDS_ACTOR": "root"})
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert not world.registry.can_access("alice", PROJECT, "output-checker")
    assert [e.outcome for e in world.actions("cli.impersonate")] == ["denied"]


def test_an_admin_acting_as_a_checker_cannot_review(world):
    """root, an administrator, ``--as olga`` approves alice's request."""
    request_id = submitted(world)
    done = world.pds("--as", "olga", "airlock", "review", request_id, "--decision", "approve", user="root")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "an impersonated identity may never review" in done.stderr
    assert _reviews(world) == 0
    denied = [e for e in world.actions("airlock.review.submit") if e.outcome == "denied"]
    assert [e.actor for e in denied] == ["root acting as olga"]
    assert world.runtime.audit.verify().ok


def test_two_impersonated_reviews_cannot_release(world):
    """The issue's attack: both 'independent' approvals and the release made by one operator."""
    request_id = approved(world)  # olga and omar approved for real; the operator only releases
    done = world.pds("--as", "olga", "airlock", "release", request_id, user="root")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "an impersonated identity may never release" in done.stderr
    assert not (world.runtime.settings.paths.outbox / PROJECT / request_id).exists()


def test_os_alice_is_not_an_administrator(world):
    """The OS account 'alice' claims administration: ``os:alice`` made alice a checker before."""
    assert not world.registry.is_administrator("os:alice")
    with pytest.raises(PermissionDenied):
        world.registry.add_member("os:alice", PROJECT, "alice", "output-checker", date(2099, 1, 1))
    assert not world.registry.can_access("alice", PROJECT, "output-checker")
    assert [e.outcome for e in world.actions("registry.member.add")] == ["ok", "ok", "ok", "denied"]


def test_an_admin_cannot_act_as_an_os_identity(world):
    """root tries ``--as os:alice`` (an identity the registry does not hold) to add a checker."""
    done = world.pds("--as", "os:alice", "project", "add-member", PROJECT, "alice", "--role",
                     "output-checker", "--expires", "2099-01-01", user="root")
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "there is no registry user 'os:alice'" in done.stderr
    assert not world.registry.can_access("alice", PROJECT, "output-checker")


def test_an_unmapped_os_user_cannot_administer_once_an_admin_exists(world):
    """An OS account with database access but no mapping re-declares itself administrator."""
    spec = world.root / "me.yaml"
    spec.write_text("users:\n  - {name: mallory, admin: true}\n")
    done = world.pds("project", "apply", str(spec))
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "only an administrator or the registry-sync Job" in done.stderr
    assert [u.name for u in world.registry.users() if u.is_admin] == ["ada", "root"]


def test_identities_cannot_come_from_the_environment(world):
    """PDS_CLI__IDENTITIES would let any shell map itself to an administrator."""
    done = world.pds("project", "list", env={"PDS_CLI__IDENTITIES": "root=root"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cli.identities is read from the configuration file only" in done.stderr


def test_release_during_a_halt_is_refused(world):
    """An approved request is released by a checker while the project is halted."""
    request_id = approved(world)
    done = world.pds("project", "halt", PROJECT, "--reason", "suspected breach", user="root")
    assert done.returncode == 0, done.stderr
    released = world.pds("airlock", "release", request_id, user="olga")
    assert released.returncode == DENIED, released.stdout + released.stderr
    assert "halted" in released.stderr
    assert not (world.runtime.settings.paths.outbox / PROJECT / request_id).exists()


def test_a_halted_project_builds_no_extract(world):
    """An administrator builds an extract of a halted project."""
    world.pds("project", "halt", PROJECT, "--reason", "audit", user="root")
    with pytest.raises(PermissionDenied, match="halted"):
        authorise(world.runtime, "root", PROJECT, "extract.build")


def test_purge_by_one_administrator_twice_is_refused(world):
    """root approves the purge, then runs it again as the 'second' administrator."""
    made = fill_project_data(world)
    world.registry.close_project("root", PROJECT, reason="permit ended")
    first = world.pds("project", "purge", PROJECT, "--yes", user="root", retention_days=0)
    assert first.returncode == 0 and "second, different administrator" in first.stdout, first.stderr
    again = world.pds("project", "purge", PROJECT, "--yes", user="root", retention_days=0)
    assert again.returncode == DENIED, again.stdout + again.stderr
    assert "a second, different administrator must approve it" in again.stderr
    assert all(path.is_file() for path in made.values())
    assert not world.actions("project.purge") or all(e.outcome == "denied" for e in world.actions("project.purge"))


def test_purge_through_impersonation_is_refused(world):
    """root approves, then acts ``--as ada`` to give the second approval himself."""
    made = fill_project_data(world)
    world.registry.close_project("root", PROJECT, reason="permit ended")
    assert world.pds("project", "purge", PROJECT, "--yes", user="root", retention_days=0).returncode == 0
    done = world.pds("--as", "ada", "project", "purge", PROJECT, "--yes", user="root", retention_days=0)
    assert done.returncode == DENIED, done.stdout + done.stderr
    assert "never through --as" in done.stderr
    assert all(path.is_file() for path in made.values())


def test_purge_before_the_retention_period_is_refused(world):
    """Two administrators agree to purge a project closed today, with 30 days of retention."""
    made = fill_project_data(world)
    world.registry.close_project("root", PROJECT, reason="permit ended")
    for admin in ("root", "ada"):
        done = world.pds("project", "purge", PROJECT, "--yes", user=admin)
        assert done.returncode == DENIED, done.stdout + done.stderr
        assert "retention period" in done.stderr
    assert all(path.is_file() for path in made.values())
    with transaction(world.runtime.sessions) as s:
        assert s.get(Project, PROJECT).purge_requested_by is None


@pytest.mark.parametrize("attempt", ["close-project", "add-member", "halt", "build-extract",
                                     "destroy-key", "impersonate"])
def test_the_registry_sync_identity_does_nothing_but_apply(world, attempt):
    """The chart's registry-sync identity used for anything but applying the declared registry."""
    from pds_kernel.project_end import ProjectEnd

    actor = permissions.SERVICE_REGISTRY_SYNC
    registry = world.registry
    KeyStore.from_runtime(world.runtime).ensure(PROJECT, "root")
    attempts = {
        "close-project": lambda: registry.close_project(actor, PROJECT, reason="x"),
        "add-member": lambda: registry.add_member(actor, PROJECT, "alice", "output-checker", date(2099, 1, 1)),
        "halt": lambda: ProjectEnd(world.runtime, registry).halt(actor, PROJECT, "x"),
        "build-extract": lambda: authorise(world.runtime, actor, PROJECT, "extract.build"),
        "destroy-key": lambda: KeyStore.from_runtime(world.runtime).destroy(PROJECT, actor, confirm=True),
        "impersonate": lambda: permissions.check_impersonate(registry, actor, "root"),
    }
    with pytest.raises(PermissionDenied):
        attempts[attempt]()
    info = registry.get_project(PROJECT)
    assert info.status.value == "active" and not info.halted
    assert not registry.can_access("alice", PROJECT, "output-checker")
    assert KeyStore.from_runtime(world.runtime).exists(PROJECT)


@pytest.mark.functional
def test_a_halted_project_stops_its_workspace_and_starts_none():
    """alice's workspace runs; an administrator halts the project (``pds project halt``); the
    hub's watcher stops the workspace, and alice's new start is refused until the halt is lifted."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    from pds_kernel.hub.local import provision_account

    root = Path(tempfile.mkdtemp(prefix="pdsi", dir="/tmp"))
    hub = make_world(root, free_port_block())
    try:
        secret = provision_account(hub.settings, hub.registry, "alice", PASSWORD, actor="root")
        hub.start()
        alice = hub.client()
        assert alice.login("alice", secret)
        alice.make_token("alice")
        hub_project = HUB_PROJECT
        assert alice.api("POST", f"/hub/api/users/alice/servers/{hub_project}").status_code in (201, 202)
        wait_for(lambda: (hub.workspaces("alice")
                          .get(hub_project) or {}).get("ready"), timeout=120)

        import subprocess
        import sys
        halted = subprocess.run([str(Path(sys.executable).with_name("pds")), "--config", str(hub.config),
                                 "project", "halt", hub_project, "--reason", "suspected breach"],
                                capture_output=True, text=True, timeout=120)
        assert halted.returncode == 0, halted.stderr
        wait_for(lambda: hub_project not in hub.workspaces("alice"), timeout=90)
        again = alice.api("POST", f"/hub/api/users/alice/servers/{hub_project}")
        assert again.status_code == 403, again.text
        stops = [e for e in hub.actions("workspace.stop")
                 if e.project == hub_project and e.details.get("cause") == "access revoked"]
        assert stops and "halted" in stops[0].details["reason"]
        assert any(e.outcome == "denied" for e in hub.actions("workspace.refused"))
    finally:
        hub.stop()
        hub.runtime.close()
        shutil.rmtree(root, ignore_errors=True)
