"""``pds project``: declarative apply, one-off commands, audit with the actor, clear errors.

Every test runs twice: on SQLite and on a real PostgreSQL server (``db_settings``)."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pds_kernel.errors import InvalidInput, NotFound, PermissionDenied
from pds_kernel.registry import Registry

OS_ACTOR = f"os:{getpass.getuser()}"


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _actions(cli, actor=None):
    return [(e.action, e.actor, e.target, e.project, e.outcome) for e in cli.runtime.audit.entries()
            if actor is None or e.actor == actor]


def test_apply_creates_everything_and_is_idempotent(cli, registry_file):
    out = _ok(cli("project", "apply", str(registry_file)))
    assert "project diabetes-t2 created" in out
    assert "diabetes-t2: alice researcher until 2099-06-30" in out
    assert "change(s) applied" in out
    reg = Registry.from_runtime(cli.runtime)
    assert [p.id for p in reg.projects()] == ["diabetes-t2", "mi-outcomes"]
    assert reg.get_project("diabetes-t2").min_cell == 11
    assert reg.get_user("root").is_admin
    assert reg.can_access("alice", "mi-outcomes") and reg.can_access("olga", "diabetes-t2", "output-checker")
    entries = cli.runtime.audit.entries()
    assert entries and all(e.actor == OS_ACTOR for e in entries)  # bootstrap: no admin yet
    assert {"registry.user.create", "registry.project.create", "registry.member.add"} <= {e.action for e in entries}

    before = len(entries)
    out = _ok(cli("project", "apply", str(registry_file), actor="root"))  # an administrator exists now
    assert "nothing changed" in out
    assert len(cli.runtime.audit.entries()) == before  # an unchanged apply writes nothing


def test_apply_prints_and_audits_each_change(cli, registry_file, tmp_path):
    _ok(cli("project", "apply", str(registry_file)))
    changed = registry_file.read_text().replace(
        "      - {user: olga, role: output-checker, expires: 2099-06-30}\n", ""
    ).replace("{user: bob, role: researcher, expires: 2099-06-30}", "{user: bob, role: researcher, expires: 2098-01-31}")
    edited = tmp_path / "edited.yaml"
    edited.write_text(changed)
    out = _ok(cli("project", "apply", str(edited), actor="root"))
    assert "diabetes-t2: olga output-checker removed" in out
    assert "mi-outcomes: bob researcher until 2098-01-31" in out
    mine = _actions(cli, actor="root")
    assert ("registry.member.remove", "root", "user:olga", "diabetes-t2", "ok") in mine
    assert ("registry.member.update", "root", "user:bob", "mi-outcomes", "ok") in mine


def test_one_off_commands_change_and_audit(cli, registry_file):
    _ok(cli("project", "apply", str(registry_file)))
    _ok(cli("project", "add-user", "carol", "--full-name", "Carol D", actor="root"))
    out = _ok(cli("project", "add-member", "mi-outcomes", "carol", "--role", "researcher",
                  "--expires", "2099-01-31", actor="root"))
    assert "carol is researcher of mi-outcomes until 2099-01-31" in out
    out = _ok(cli("project", "show", "mi-outcomes", actor="root"))
    assert "carol" in out and "2099-01-31" in out and "Outcomes after myocardial infarction" in out
    _ok(cli("project", "remove-member", "mi-outcomes", "bob", actor="root"))
    _ok(cli("project", "close", "diabetes-t2", "--reason", "protocol ended", actor="root"))
    _ok(cli("project", "disable-user", "olga", actor="root"))

    out = _ok(cli("project", "list", actor="root"))
    assert "closed" in out and "mi-outcomes" in out
    out = _ok(cli("project", "users", actor="root"))
    assert "carol" in out and "mi-outcomes" in out

    mine = _actions(cli, actor="root")
    assert ("registry.user.create", "root", "user:carol", "", "ok") in mine
    assert ("registry.member.add", "root", "user:carol", "mi-outcomes", "ok") in mine
    assert ("registry.member.remove", "root", "user:bob", "mi-outcomes", "ok") in mine
    assert ("registry.project.close", "root", "project:diabetes-t2", "diabetes-t2", "ok") in mine
    assert ("registry.user.update", "root", "user:olga", "", "ok") in mine
    close = [e for e in cli.runtime.audit.entries(action="registry.project.close")][0]
    assert close.details == {"reason": "protocol ended", "closed_on": date.today().isoformat()}  # retention clock
    assert cli.runtime.audit.verify().ok


def test_non_admin_is_refused_and_the_refusal_audited(cli, registry_file):
    _ok(cli("project", "apply", str(registry_file)))
    for args in (("close", "mi-outcomes", "--reason", "x"), ("add-user", "eve"),
                 ("add-member", "mi-outcomes", "alice", "--role", "output-checker", "--expires", "2099-01-01"),
                 ("apply", str(registry_file)), ("list",)):
        result = cli("project", *args, actor="alice")
        assert isinstance(result.exception, PermissionDenied), args
        assert "only an administrator" in str(result.exception)
    denied = [e for e in cli.runtime.audit.entries() if e.outcome == "denied"]
    assert len(denied) == 5 and {e.actor for e in denied} == {"alice"}
    assert Registry.from_runtime(cli.runtime).get_project("mi-outcomes").status.value == "active"
    # an unknown identity is no better than a non-admin one
    assert isinstance(cli("project", "list", actor="mallory").exception, PermissionDenied)


@pytest.mark.parametrize("body, where", [
    ("projects:\n  - {id: p-one, title: T, start: 2025-01-01, end: 2026-01-01, titel: x}\n",
     "projects[0]: unknown key(s) titel"),
    ("users:\n  - {name: ok}\n  - {name: Bad Name}\n", "invalid user name 'Bad Name'"),
    ("projects:\n  - id: p-one\n    title: T\n    start: 2025-01-01\n    end: 2026-01-01\n"
     "    members:\n      - {user: a, role: admin, expires: 2025-06-01}\n",
     "project p-one.members[0]: role 'admin'"),
    ("projects:\n  - {id: p-one, title: T, start: 2025-13-01, end: 2026-01-01}\n",
     "project p-one.start: '2025-13-01' is not a date"),
    ("projects:\n  - {id: p-one, title: T, start: 2025-01-01, end: 2026-01-01,\n"
     "    resources: {cpu: 2, ram: 4}}\n", "project p-one.resources: unknown key(s) ram"),
    ("projects: [\n  {id: p-one\n", "is not valid YAML"),
    ("colour: blue\n", "unknown key(s) colour"),
    ("projects:\n  - {id: p-one, title: T, start: 2025-01-01, end: 2026-01-01}\n"
     "  - id: p-two\n    title: T\n    start: 2025-01-01\n    end: 2026-01-01\n"
     "    members: [{user: ghost, role: researcher, expires: 2025-06-01}]\n",
     "project p-two.members[0]: no user 'ghost'"),
    ("projects:\n  - {id: p-one, title: T, start: 2025-01-01, end: 2026-01-01}\n"
     "  - id: p-two\n    title: T\n    start: 2025-01-01\n    end: 2026-01-01\n"
     "    members: [{user: a, role: researcher, expires: 2027-06-01}]\nusers: [{name: a}]\n",
     "project p-two.members[0]: membership until 2027-06-01 outlives"),
    ("projects:\n  - {id: p-one, title: T, start: 2025-01-01, end: 2024-01-01}\n",
     "project p-one: end 2024-01-01 is before start"),
])
def test_bad_registry_file_names_the_place(cli, tmp_path, body, where):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    result = cli("project", "apply", str(path))
    assert isinstance(result.exception, InvalidInput)
    assert where in str(result.exception)
    assert str(path) in str(result.exception) or "invalid user name" in where
    assert Registry.from_runtime(cli.runtime).projects() == []  # nothing written


def test_bad_yaml_error_gives_the_line(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("users:\n  - {name: a}\nprojects: [\n  {id: p-one\n")
    message = str(cli("project", "apply", str(path)).exception)
    assert "line" in message


def test_bad_options_are_clear(cli, registry_file):
    _ok(cli("project", "apply", str(registry_file)))
    result = cli("project", "add-member", "mi-outcomes", "olga", "--role", "researcher", "--expires", "next year", actor="root")
    assert isinstance(result.exception, InvalidInput) and "--expires" in str(result.exception)
    result = cli("project", "add-member", "mi-outcomes", "olga", "--role", "boss", "--expires", "2099-01-01", actor="root")
    assert isinstance(result.exception, InvalidInput) and "--role" in str(result.exception)
    result = cli("project", "add-member", "mi-outcomes", "olga", "--role", "researcher", "--expires", "2100-01-01", actor="root")
    assert isinstance(result.exception, InvalidInput) and "cannot outlive" in str(result.exception)
    result = cli("project", "show", "no-such-project", actor="root")
    assert isinstance(result.exception, NotFound)
    result = cli("project", "show", "../etc", actor="root")
    assert isinstance(result.exception, InvalidInput)
    result = cli("project", "add-user", "alice", actor="root")
    assert isinstance(result.exception, InvalidInput) and "already exists" in str(result.exception)
    result = cli("project", "close", "mi-outcomes", "--reason", "  ", actor="root")
    assert isinstance(result.exception, InvalidInput)


def test_console_error_is_one_line_with_exit_code(cli, tmp_path):
    """Through the real ``pds`` entry point: one line on stderr, the error's exit code, no traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("projects:\n  - {id: p-one, title: T, start: 2025-01-01, end: 2026-01-01, titel: x}\n")
    # COLUMNS: Rich wraps long lines at 80 columns when stderr is not a terminal (see report: app.py
    # should print errors with soft_wrap=True so that the line never wraps)
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.run([str(Path(sys.executable).parent / "pds"), "--config", str(cli.config),
                           "project", "apply", str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == InvalidInput.exit_code
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown key(s) titel" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
