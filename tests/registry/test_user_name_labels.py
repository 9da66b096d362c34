"""New user names must be valid Kubernetes label values (a workspace's pods carry ``pds.user``);
accounts named by the earlier rule (ending in '.', '_' or '-') keep working where they can, and are
told what to do where they cannot (a pod on Kubernetes: tests/k8s/test_spawner.py).

Every test runs twice: on SQLite and on a real PostgreSQL server (``db_settings``)."""

from __future__ import annotations

import re

import pytest

from pds_kernel.db import transaction
from pds_kernel.errors import InvalidInput
from pds_kernel.registry import Registry
from pds_kernel.registry.models import User
from pds_kernel.registry.names import check_label_safe_user_name, check_new_user_name, check_user_name

#: Kubernetes' rule for a label value (k8s.io/apimachinery validation: at most 63 characters)
K8S_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def _names():
    """Every name of 1 to 3 characters over the characters that matter, and the length limits."""
    alphabet = "a0._-Z"
    names = list(alphabet)
    names += [a + b for a in alphabet for b in alphabet]
    names += [a + b + c for a in alphabet for b in alphabet for c in alphabet]
    names += ["a" * 62 + "b", "a" * 63 + "b", "a" * 62 + "-", "a" * 61 + "-b"]
    return names


def test_every_new_name_is_a_kubernetes_label_value():
    accepted = []
    for name in _names():
        try:
            check_new_user_name(name)
        except InvalidInput:
            continue
        accepted.append(name)
        assert len(name) <= 63 and K8S_LABEL_VALUE.fullmatch(name), name
        assert check_label_safe_user_name(name) == name
    assert {"a", "a0", "a.0", "a_0", "a-0", "a.a"} <= set(accepted)
    assert "a" * 62 + "b" in accepted and "a" * 61 + "-b" in accepted


@pytest.mark.parametrize("name", ["bob-", "bob.", "bob_", "a" * 62 + "-"])
def test_a_name_ending_in_a_separator_is_an_existing_accounts_name_only(name):
    assert check_user_name(name) == name  # accounts named before the rule are still named
    with pytest.raises(InvalidInput, match="end it with a letter or digit"):
        check_new_user_name(name)
    with pytest.raises(InvalidInput, match="pds project add-user NEW-NAME"):
        check_label_safe_user_name(name)


@pytest.mark.parametrize("name", ["bob-", "jean.", "al_ice_"])
def test_no_route_creates_such_an_account(cli, registry_file, tmp_path, name):
    """The service refuses (not only the command): the CLI, a declarative apply and the library."""
    assert cli("project", "apply", str(registry_file)).exit_code == 0  # root, an administrator
    registry = Registry.from_runtime(cli.runtime)
    before = [u.name for u in registry.users()]
    result = cli("project", "add-user", name, actor="root")
    assert isinstance(result.exception, InvalidInput) and "end it with a letter or digit" in str(result.exception)
    spec = tmp_path / "users.yaml"
    spec.write_text(f"users:\n  - {{name: ok-user}}\n  - {{name: '{name}'}}\n")
    result = cli("project", "apply", str(spec), actor="root")
    assert isinstance(result.exception, InvalidInput) and "end it with a letter or digit" in str(result.exception)
    with pytest.raises(InvalidInput, match="end it with a letter or digit"):
        registry.upsert_user("root", name)
    assert [u.name for u in registry.users()] == before  # the apply wrote nothing, not even ok-user


def _account_of_an_earlier_release(registry: Registry, name: str) -> None:
    """A row as the release before the rule wrote it (no administrator: no seal)."""
    with transaction(registry._sessions) as s:
        s.add(User(name=name, full_name="", email="", is_admin=False, active=True))


def test_an_existing_account_so_named_is_still_managed(cli, registry_file):
    assert cli("project", "apply", str(registry_file)).exit_code == 0
    registry = Registry.from_runtime(cli.runtime)
    _account_of_an_earlier_release(registry, "bob-")
    registry.add_member("root", "mi-outcomes", "bob-", "researcher", registry.get_project("mi-outcomes").end_date)
    assert registry.can_access("bob-", "mi-outcomes")
    listed = cli("project", "users", actor="root")
    assert "bob- (cannot start on Kubernetes: rename)" in listed.output  # what an administrator finds them by
    assert "alice (cannot" not in listed.output
    result = cli("project", "disable-user", "bob-", actor="root")
    assert result.exit_code == 0, (result.output, result.exception)
    assert not registry.get_user("bob-").active
