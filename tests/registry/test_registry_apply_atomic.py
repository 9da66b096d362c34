"""``Registry.apply`` is all or nothing, whoever calls it.

The chart's registry Job (``python -m pds_kernel.k8s registry-apply``) calls ``Registry.apply``
directly, without the checks of ``pds project apply``: a file that cannot be applied whole must
write nothing there too, and say why. Runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from pds_kernel.errors import InvalidInput
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import load_registry_file, parse_registry

#: The first project is fine; the second names a user nobody created. Users are listed first, so
#: an item-by-item writer would create them and the first project before failing.
GHOST_MEMBER = """\
users:
  - {name: alice}
  - {name: root, admin: true}
projects:
  - id: p-one
    title: First project
    start: 2025-01-01
    end: 2099-12-31
    members: [{user: alice, role: researcher, expires: 2099-06-30}]
  - id: p-two
    title: Second project
    start: 2025-01-01
    end: 2099-12-31
    members:
      - {user: alice, role: researcher, expires: 2099-06-30}
      - {user: ghost, role: output-checker, expires: 2099-06-30}
"""


def _empty(registry: Registry, runtime) -> None:
    assert registry.projects() == []
    assert registry.users() == []
    assert runtime.audit.entries() == []  # not even an audit entry of a change that did not happen


def test_apply_refuses_an_unknown_member_and_writes_nothing(cli, tmp_path):
    path = tmp_path / "ghost.yaml"
    path.write_text(GHOST_MEMBER)
    registry = Registry.from_runtime(cli.runtime)
    with pytest.raises(InvalidInput) as caught:
        registry.apply("service:registry-sync", load_registry_file(path))
    message = str(caught.value)
    assert f"{path}: project p-two.members[1]: no user 'ghost'" in message
    _empty(registry, cli.runtime)


@pytest.mark.parametrize("body, problem", [
    ("users: [{name: a}, {name: a}]\n", "users[1]: user a is listed twice"),
    ("users: [{name: a}]\nprojects:\n  - id: p-one\n    title: T\n    start: 2025-01-01\n    end: 2026-01-01\n"
     "    members:\n      - {user: a, role: researcher, expires: 2025-06-01}\n"
     "      - {user: a, role: researcher, expires: 2025-07-01}\n",
     "project p-one.members[1]: a is listed twice as researcher"),
    ("users: [{name: a}]\nprojects:\n  - id: p-one\n    title: T\n    start: 2025-01-01\n    end: 2026-01-01\n"
     "    members: [{user: a, role: researcher, expires: 2026-01-02}]\n",
     "project p-one.members[0]: membership until 2026-01-02 outlives the project"),
    ("projects:\n  - {id: p-one, title: T, start: 2025-01-01, end: 2026-01-01}\n"
     f"  - {{id: p-two, title: {'x' * 301}, start: 2025-01-01, end: 2026-01-01}}\n",
     "project p-two.title: at most 300 characters, got 301"),
])
def test_apply_checks_the_whole_file_first(cli, body, problem):
    registry = Registry.from_runtime(cli.runtime)
    with pytest.raises(InvalidInput, match=problem.replace("[", r"\[").replace("]", r"\]")):
        registry.apply("service:registry-sync", parse_registry(yaml.safe_load(body), "values.yaml"))
    _empty(registry, cli.runtime)


def test_a_member_may_name_a_user_already_in_the_registry(cli):
    registry = Registry.from_runtime(cli.runtime)
    registry.upsert_user("os:ops", "bob")
    changes = registry.apply("service:registry-sync", parse_registry({"projects": [{
        "id": "p-one", "title": "T", "start": "2025-01-01", "end": "2099-12-31",
        "members": [{"user": "bob", "role": "researcher", "expires": "2099-01-01"}]}]}, "values.yaml"))
    assert changes == ["project p-one created", "p-one: bob researcher until 2099-01-01"]
    assert registry.can_access("bob", "p-one")


def test_a_failure_while_writing_rolls_back_everything(cli):
    """Past validation, a write the database itself refuses (a trigger on the second project's
    memberships) must still leave nothing behind: users, first project and audit entries included."""
    engine = cli.runtime.engine
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("""CREATE FUNCTION refuse_p_two() RETURNS trigger AS $$
                BEGIN IF NEW.project_id = 'p-two' THEN RAISE EXCEPTION 'refused by the database'; END IF;
                RETURN NEW; END $$ LANGUAGE plpgsql"""))
            conn.execute(text("CREATE TRIGGER refuse_p_two BEFORE INSERT ON registry_memberships "
                              "FOR EACH ROW EXECUTE FUNCTION refuse_p_two()"))
        else:
            conn.execute(text("CREATE TRIGGER refuse_p_two BEFORE INSERT ON registry_memberships "
                              "WHEN NEW.project_id = 'p-two' BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"))
    spec = parse_registry(yaml.safe_load(GHOST_MEMBER.replace("ghost", "alice")), "values.yaml")
    registry = Registry.from_runtime(cli.runtime)
    with pytest.raises(Exception, match="refused by the database"):
        registry.apply("service:registry-sync", spec)
    _empty(registry, cli.runtime)
    assert cli.runtime.audit.verify().ok


def _registry_job(cli, tmp_path: Path, file: Path) -> subprocess.CompletedProcess:
    """The chart's Job command, as its container runs it: settings from $PDS_CONFIG."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
    env["PDS_CONFIG"] = str(cli.config)
    return subprocess.run([sys.executable, "-m", "pds_kernel.k8s", "registry-apply", str(file)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.slow
def test_the_helm_registry_job_writes_nothing_from_a_bad_file(cli, tmp_path, registry_file):
    bad = tmp_path / "ghost.yaml"
    bad.write_text(GHOST_MEMBER)
    proc = _registry_job(cli, tmp_path, bad)
    assert proc.returncode == InvalidInput.exit_code, proc.stderr
    assert f"error: {bad}: project p-two.members[1]: no user 'ghost'" in proc.stderr
    assert "Traceback" not in proc.stderr
    _empty(Registry.from_runtime(cli.runtime), cli.runtime)

    proc = _registry_job(cli, tmp_path, registry_file)  # the same command with a good file applies it
    assert proc.returncode == 0, proc.stderr
    assert "project diabetes-t2 created" in proc.stdout
    registry = Registry.from_runtime(cli.runtime)
    assert [p.id for p in registry.projects()] == ["diabetes-t2", "mi-outcomes"]
    assert {e.actor for e in cli.runtime.audit.entries()} == {"service:registry-sync"}



#: root, an administrator, is an output checker of p-one: a grant made by ada, another administrator
OWN_MEMBERSHIP = """\
users:
  - {name: alice}
  - {name: root, admin: true}
  - {name: ada, admin: true}
projects:
  - id: p-one
    title: First project
    start: 2025-01-01
    end: 2099-12-31
    members:
      - {user: alice, role: researcher, expires: 2099-06-30}
      - {user: root, role: output-checker, expires: 2099-06-30}
"""


def test_a_file_may_keep_an_administrators_own_membership_unchanged(db_runtime):
    """Nobody grants themselves a membership (tests/security/test_self_grant.py), but another
    administrator may grant it, and its holder may then re-apply a file that keeps it as it is."""
    registry = Registry.from_runtime(db_runtime)
    spec = parse_registry(yaml.safe_load(OWN_MEMBERSHIP))
    registry.apply("ada", spec)
    assert registry.apply("root", spec) == []
    assert {(m.user_name, m.role.value) for m in registry.members("p-one")} == {
        ("alice", "researcher"), ("root", "output-checker")}
