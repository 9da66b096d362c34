"""The names of ADR 17: a JupyterHub user per workspace, its host, and who it acts for at the gate."""

from __future__ import annotations

import pytest

from pds_kernel.airlock.web.identity import workspace_person
from pds_kernel.errors import InvalidInput
from pds_kernel.hub.origins import WORKSPACE_LABEL, workspace_host_hook
from pds_kernel.registry.names import check_new_user_name
from pds_kernel.workspace_names import (
    parse_gateway_name,
    parse_workspace_user,
    person_of,
    workspace,
    workspace_of_server,
)


def test_a_workspace_user_names_its_person_and_project_and_nothing_else():
    found = workspace("jean.dupont", "diabetes-t2")
    assert found.user == "jean.dupont@diabetes-t2" and found.server == "diabetes-t2"
    assert found.role == "workspace.jean.dupont.diabetes-t2"
    assert parse_workspace_user(found.user) == found
    assert person_of(found.user) == "jean.dupont" and person_of("alice") == "alice"
    for name in ("alice", "alice@", "@diabetes-t2", "a@b@diabetes-t2", "alice@Diabetes", "alice@di", None, 3,
                 "Alice@diabetes-t2", "alice@diabetes-t2/x"):
        assert parse_workspace_user(name) is None, name
    assert workspace_of_server("alice@diabetes-t2", "diabetes-t2") == workspace("alice", "diabetes-t2")
    assert workspace_of_server("alice@diabetes-t2", "mi-outcomes") is None
    assert workspace_of_server("alice", "diabetes-t2") is None
    with pytest.raises(InvalidInput):
        check_new_user_name("eve@diabetes-t2")  # no account is named like a workspace user


def test_the_same_workspace_has_its_dask_gateway_name():
    """dask-gateway keys a workspace's clusters by ``<person>/<project>``: one type, two renderings."""
    found = workspace("jean.dupont", "diabetes-t2")
    assert found.gateway_name == "jean.dupont/diabetes-t2"
    assert parse_gateway_name(found.gateway_name) == found == parse_workspace_user(found.user)
    for name in ("alice", "alice/", "/diabetes-t2", "a/b/diabetes-t2", "alice@diabetes-t2", "alice/Diabetes",
                 None, 3, "../diabetes-t2"):
        assert parse_gateway_name(name) is None, name


def test_the_persons_role_reaches_the_one_server_only():
    scopes = workspace("alice", "diabetes-t2").role_definition()["scopes"]
    assert sorted(scopes) == ["access:servers!server=alice@diabetes-t2/diabetes-t2",
                              "read:users:name!user=alice@diabetes-t2",
                              "servers!server=alice@diabetes-t2/diabetes-t2"]


KEY = bytes(range(32))


def test_each_workspace_has_a_host_of_its_own():
    subdomain_hook = workspace_host_hook(KEY)
    host = subdomain_hook("alice@diabetes-t2", "pds.example.org", "user")
    label, domain = host.split(".", 1)
    assert domain == "pds.example.org" and WORKSPACE_LABEL.fullmatch(label), host
    assert subdomain_hook("alice@diabetes-t2", "pds.example.org", "user") == host  # the same at every start
    assert subdomain_hook("alice", "pds.example.org", "user") == "alice.pds.example.org"
    assert subdomain_hook("airlock", "pds.example.org", "service") == "airlock--service.pds.example.org"
    names = ("alice@diabetes-t2", "alice@mi-outcomes", "bob@diabetes-t2", "jean.dupont@diabetes-t2",
             "jean_dupont@diabetes-t2", "jean-dupont@diabetes-t2", "a--b@cc-dd", "a@b--cc-dd", "alice", "w-alice",
             workspace("a" * 40, "p" + "x" * 38 + "z").user)
    hosts = {subdomain_hook(name, "h", "user") for name in names}
    assert len(hosts) == len(names)  # no two share a host, whatever their spelling or length
    assert all(len(host.split(".")[0]) <= 63 for host in hosts)


def test_a_workspaces_host_names_neither_its_person_nor_its_project():
    """Red team 18's residual (ADR 17, amended): the host is a keyed digest of the workspace's name;
    another key gives another host, and no part of the names is in it."""
    for person, project in (("alice", "diabetes-t2"), ("barbara", "mi-outcomes"), ("jean.dupont", "cohort")):
        label = workspace_host_hook(KEY)(f"{person}@{project}", "h", "user").split(".")[0]
        assert WORKSPACE_LABEL.fullmatch(label), label
        assert person not in label and project not in label
        assert label != workspace_host_hook(bytes(32))(f"{person}@{project}", "h", "user").split(".")[0]


@pytest.mark.parametrize("key", [b"", b"short", bytes(31), "0" * 64, None])
def test_a_key_too_short_or_not_bytes_is_refused(key):
    with pytest.raises(InvalidInput, match="at least 32 bytes"):
        workspace_host_hook(key)


def test_at_the_gate_a_workspace_user_is_its_person_in_its_project_only():
    assert workspace_person("alice@diabetes-t2", "diabetes-t2") == "alice"
    assert workspace_person("alice@diabetes-t2", "mi-outcomes") is None
    assert workspace_person("alice@diabetes-t2", None) is None  # it never acts as itself
    assert workspace_person("alice", None) == "alice" and workspace_person("alice", "diabetes-t2") == "alice"
    assert workspace_person(None, None) is None


def test_the_local_hub_keeps_its_key_of_the_workspaces_hosts(settings):
    """The local hub's key: made at the first start, 0600 in the hub's state folder, the same at
    every start (a workspace keeps its host); a file that holds no key refuses the start with what
    to do."""
    from pds_kernel.hub.local import hub_dir, workspace_host_key

    key = workspace_host_key(settings)
    path = hub_dir(settings) / "workspace-hosts.key"
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert workspace_host_key(settings) == key
    for held in ("not a key", "ab" * 8, ""):
        path.write_text(held)
        with pytest.raises(InvalidInput, match="remove it and start the hub again"):
            workspace_host_key(settings)
