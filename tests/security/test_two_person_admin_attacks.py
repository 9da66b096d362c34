"""Red team of the two-person rule on administrators, second round (``registry.membership_approvals: 2``).

One administrator, root, wants a second approved administrator he controls, or a project's data,
alone; or a pending administrator (made by root, not yet approved) tries to act as an
administrator anywhere. Each attempt runs against the real registry service on a real database
(SQLite; PostgreSQL where the attack is a race) or through the real ``pds`` command, and must fail.
Each docstring says whether the attack got through before its fix.
"""

from __future__ import annotations

import getpass
from dataclasses import fields, replace
from datetime import date

import pytest
import yaml

from pds_kernel.registry import Registry
from pds_kernel.registry.models import MEMBERSHIP_APPROVALS_RULE, RegistryRule
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Database, Paths, RegistryRules, Settings

PROJECT = "cardio-study"
UNTIL = date(2027, 6, 30)
TODAY = date(2026, 6, 1)


def _settings(tmp_path, approvals: int = 2, database: str | None = None) -> Settings:
    paths = Paths(**{f.name: tmp_path / f.name for f in fields(Paths)})
    settings = Settings(paths=paths, registry=RegistryRules(membership_approvals=approvals))
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
