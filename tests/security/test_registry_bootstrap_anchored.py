"""Red team of the registry's bootstrap, by whoever holds the database's credentials (its owner, who
can drop the audit table's triggers) but not the audit key, helped by any OS account that may run
``pds`` with the key (locally, anyone who can run it as the platform's account; on Kubernetes, any
pod holding the key).

While the registry holds no active, approved, sealed administrator it is in bootstrap: the first
writer administers it, and an administrator made then is approved at once. Before this red team
that was decided from the database alone, so the database owner could end every administrator's
validity (break their seals, delete their rows, deactivate them) and any such OS account then made
itself an approved administrator. Now the end of bootstrap is anchored outside the database
(``registry.bootstrap.end``) when the first administrator is approved, or, on an installation that
already had one, at its first write of this release; from then on bootstrap never applies again.

Every test runs on SQLite and on a real PostgreSQL server, through the real registry service and
the real ``pds`` command.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from registry_bootstrap_support import (
    RESTORE,
    assert_nobody_bootstraps,
    bootstrap_anchors,
    delete_bootstrap_entry,
    forget_bootstrap_anchors,
    pds,
    restarted,
    write_as_owner,
)
from registry_seals_support import world_fixture  # noqa: F401  (the fixture world)
from sqlalchemy import text

from pds_kernel.registry import Registry
from pds_kernel.registry.bootstrap import BOOTSTRAP_END
from pds_kernel.registry.seals import UPGRADE_ACTION
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import RegistryRules

pytestmark = pytest.mark.slow


def test_every_administrator_seal_broken_then_an_os_account_administers(world):
    """GOT THROUGH before: with root's and ada's seals broken, ``pds project add-user mallory
    --admin`` run by an OS account made mallory an approved administrator at once."""
    runtime, _registry = world
    assert write_as_owner(runtime, "UPDATE registry_users SET admin_seal = 'forged' WHERE is_admin = :yes",
                          yes=True) == 2
    assert_nobody_bootstraps(runtime)


def test_every_administrator_deleted(world):
    """GOT THROUGH before: the administrators' rows deleted, the registry bootstrapped again."""
    runtime, _registry = world
    assert write_as_owner(runtime, "DELETE FROM registry_users WHERE is_admin = :yes", yes=True) == 2
    assert_nobody_bootstraps(runtime)


def test_every_administrator_deactivated(world):
    """GOT THROUGH before: ``active`` flipped off on every administrator, the same."""
    runtime, _registry = world
    assert write_as_owner(runtime, "UPDATE registry_users SET active = :no WHERE is_admin = :yes",
                          yes=True, no=False) == 2
    assert_nobody_bootstraps(runtime)


def test_the_bootstrap_entry_deleted_too(world):
    """GOT THROUGH before: the audit entry of the end of bootstrap deleted (trigger dropped) and
    every seal broken: the anchor outside the database still says bootstrap is over."""
    runtime, _registry = world
    assert len(runtime.audit.entries(action=BOOTSTRAP_END)) == 1
    assert bootstrap_anchors(runtime) == 1
    delete_bootstrap_entry(runtime)
    write_as_owner(runtime, "UPDATE registry_users SET admin_seal = NULL WHERE name = 'root'")
    write_as_owner(runtime, "UPDATE registry_users SET admin_approved_by = NULL WHERE name = 'ada'")
    assert_nobody_bootstraps(runtime)


def test_the_refusal_is_audited_and_the_administrators_restored_from_backup_work(world):
    """The way out the refusal names: the administrators' rows put back as they were (their seals
    are still right under the key); until then every write is refused and audited."""
    runtime, _registry = world
    with runtime.engine.connect() as connection:
        backup = connection.execute(text("SELECT admin_seal FROM registry_users WHERE name = 'root'")).scalar_one()
    write_as_owner(runtime, "UPDATE registry_users SET admin_seal = 'forged' WHERE is_admin = :yes", yes=True)
    again, registry = restarted(runtime)
    try:
        refusal = pds(runtime, "project", "add-user", "carol")
        assert refusal.returncode != 0 and RESTORE in refusal.stdout + refusal.stderr
        denied = [e for e in again.audit.entries() if e.outcome == "denied" and e.actor.startswith("os:")]
        assert denied and RESTORE in denied[-1].details["reason"]
        write_as_owner(runtime, "UPDATE registry_users SET admin_seal = :seal WHERE name = 'root'", seal=backup)
        registry.upsert_user("root", "carol")
        assert registry.is_administrator("root")
    finally:
        again.close()


def test_a_fresh_installation_bootstraps_once(db_settings):
    """Control: a new registry is bootstrapped by its first writer (an OS account), whose first
    administrator is approved at once under the two-person rule; that ends bootstrap, anchored
    once; the next OS account is refused."""
    runtime = Runtime(replace(db_settings, registry=RegistryRules(membership_approvals=2)))
    try:
        registry = Registry.from_runtime(runtime)
        registry.upsert_user("os:setup", "alice")  # no administrator yet: bootstrap goes on
        assert bootstrap_anchors(runtime) == 0
        registry.apply("os:setup", parse_registry({"users": [{"name": "root", "admin": True}]}))
        assert registry.is_administrator("root")
        assert bootstrap_anchors(runtime) == 1
        assert len(runtime.audit.entries(action=BOOTSTRAP_END)) == 1
        assert runtime.audit.anchored(UPGRADE_ACTION)  # anchored by the same commit: both kept
        registry.upsert_user("root", "bob")
        assert bootstrap_anchors(runtime) == 1  # once
        assert_nobody_bootstraps(runtime, says="administrator may")
    finally:
        runtime.close()


def test_an_upgraded_installation_anchors_at_its_first_write(world):
    """Upgrade path: an installation of the release before (approved administrators, no anchor of
    the end of bootstrap) records it at its first registry write; then breaking every seal no
    longer reopens bootstrap."""
    runtime, _registry = world
    forget_bootstrap_anchors(runtime)
    again, registry = restarted(runtime)
    try:
        registry.upsert_user("root", "carol")
    finally:
        again.close()
    assert bootstrap_anchors(runtime) == 1
    assert len(runtime.audit.entries(action=BOOTSTRAP_END)) == 1
    write_as_owner(runtime, "UPDATE registry_users SET admin_seal = 'forged' WHERE is_admin = :yes", yes=True)
    assert_nobody_bootstraps(runtime)


def test_an_upgraded_installation_anchors_at_db_upgrade(world):
    """Upgrade path: ``pds db upgrade``, where it holds the key, records it too."""
    runtime, _registry = world
    forget_bootstrap_anchors(runtime)
    done = pds(runtime, "db", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    assert BOOTSTRAP_END in done.stdout
    assert bootstrap_anchors(runtime) == 1
    write_as_owner(runtime, "DELETE FROM registry_users WHERE is_admin = :yes", yes=True)
    assert_nobody_bootstraps(runtime)
