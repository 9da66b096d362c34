"""Which hub identities the gate accepts, and the project a workspace's own token is confined to.

The models are what JupyterHub 5.5 answers at ``/hub/api/user`` (scopes as observed for a browser
session of the gate, a token the user made, and a workspace's ``$JUPYTERHUB_API_TOKEN``).
"""

from __future__ import annotations

from pds_kernel.airlock.web.identity import workspace_project

GATE = {"access:services!service=airlock"}
IDENTIFY = ["read:users:activity!user=alice", "read:users:groups!user=alice", "read:users:name!user=alice"]


def model(*scopes: str) -> dict:
    return {"name": "alice", "kind": "user", "scopes": [*IDENTIFY, *scopes]}


def test_the_user_themselves():
    assert workspace_project(model("access:services!service=airlock"), GATE) == (True, None)  # page session
    assert workspace_project(model("access:services", "access:servers!user=alice"), GATE) == (True, None)


def test_a_workspace_token_is_confined_to_its_project():
    server_token = model("access:servers!server=alice/diabetes-t2", "users:activity!user=alice")
    assert workspace_project(server_token, GATE) == (True, "diabetes-t2")
    assert workspace_project(server_token, set()) == (True, "diabetes-t2")  # also outside a hub


def test_other_tokens_are_refused():
    assert workspace_project(model(), GATE) == (False, None)  # identify-only token
    assert workspace_project(model("access:services!service=other"), GATE) == (False, None)
    two = model("access:servers!server=alice/a", "access:servers!server=alice/b")
    assert workspace_project(two, GATE) == (False, None)
    someone_else = model("access:servers!server=bob/diabetes-t2")
    assert workspace_project(someone_else, GATE) == (False, None)
