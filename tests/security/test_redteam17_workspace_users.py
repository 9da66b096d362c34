"""Red team, seventeenth round: the workspace users of ADR 17.

Each workspace is now the one server of its own JupyterHub user (``alice@diabetes-t2``), on its own
host, and the person holds a role on it that the hub grants from the registry. One real hub
(tests/hub/hubfixtures.py) with the gate; alice works on diabetes-t2 (her workspace running), bob on
mi-outcomes, root administers. The attacks go at the new names and roles:

1. bob starts alice's workspace user, by the API and by the spawn page;
2. bob's token, and root's (an administrator: ``admin:servers``), open alice's running workspace;
3. alice starts a second server of her workspace user, or a workspace user of a project she is not
   in (by its name directly, and through her own path);
4. alice makes a token for her workspace user, or shares its server with bob (JupyterHub's sharing);
5. someone signs in with a workspace user's name;
6. a name with ``@`` is given to a new registry account (it would stand for another's workspace);
7. the workspace's own token acts at the gate for another project, and as its workspace user.

Before ADR 17 there were no workspace users: these guard the new names (none got through).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hub_kernel import execute
from hubfixtures import OTHER_PROJECT, PROJECT, hub_user, module_hub, signed_in, workspace_ready

from pds_kernel.errors import InvalidInput
from pds_kernel.hub.local import gate_public_url, provision_account, workspace_host_key
from pds_kernel.hub.origins import workspace_host_hook

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]

ALICE_WS = hub_user("alice", PROJECT)


@pytest.fixture(name="world", scope="module")
def world_fixture():
    """The hub with its gate; alice, bob and root signed in (tokens); alice's workspace running."""
    with module_hub("pdsr17", airlock=True) as hub:
        secrets = {name: provision_account(hub.settings, hub.registry, name, "correct-horse-battery-9", actor="root")
                   for name in ("root", "alice", "bob")}
        hub.start()
        people = signed_in(hub, secrets)
        started = people["alice"].api("POST", f"/hub/api/users/alice/servers/{PROJECT}")
        assert started.status_code in (201, 202), started.text
        yield hub, people, secrets, hub.server(workspace_ready(people["alice"], "alice", PROJECT))


def _running(hub) -> dict:
    return hub.admin_api("GET", f"/users/{ALICE_WS}").json()["servers"]


def test_another_researcher_cannot_start_or_stop_alices_workspace_user(world):
    hub, people, _, _ = world
    bob = people["bob"]
    for method in ("POST", "DELETE"):
        answer = bob.api(method, f"/hub/api/users/{ALICE_WS}/servers/{PROJECT}")
        assert answer.status_code in (403, 404), (method, answer.status_code, answer.text[:300])
    page = bob.http.get(f"{hub.url}/hub/spawn/{ALICE_WS}/{PROJECT}", timeout=60)
    assert page.status_code in (403, 404), page.status_code
    assert _running(hub)[PROJECT]["ready"], "alice's workspace still runs"


@pytest.mark.parametrize("who", ["bob", "root"])
def test_another_researcher_or_an_administrator_cannot_open_alices_workspace(world, who):
    """root holds ``admin:servers`` (start, stop), never ``access:servers``: the inside of a
    workspace is its person's alone."""
    _, people, _, address = world
    for path in ("api/contents/", "api/kernels", "lab"):
        answer = requests.get(f"{address}/{path}", headers={"Authorization": f"token {people[who].token}"},
                              timeout=60, allow_redirects=False)
        assert answer.status_code in (302, 403), (path, answer.status_code, answer.text[:200])
        assert "examples" not in answer.text


def test_alice_starts_no_other_server_and_no_workspace_of_a_project_she_is_not_in(world):
    hub, people, _, _ = world
    alice = people["alice"]
    other_server = alice.api("POST", f"/hub/api/users/{ALICE_WS}/servers/{OTHER_PROJECT}")
    assert other_server.status_code in (403, 404), other_server.text[:300]
    not_hers = alice.api("POST", f"/hub/api/users/{hub_user('alice', OTHER_PROJECT)}/servers/{OTHER_PROJECT}")
    assert not_hers.status_code in (403, 404), not_hers.text[:300]
    through_her_path = alice.api("POST", f"/hub/api/users/alice/servers/{OTHER_PROJECT}", allow_redirects=False)
    assert through_her_path.status_code == 403 and "researcher" in through_her_path.text, through_her_path.text[:300]
    assert set(_running(hub)) == {PROJECT}
    assert hub.admin_api("GET", f"/users/{hub_user('alice', OTHER_PROJECT)}").status_code == 404, \
        "a refused start makes no workspace user"
    refused = [e for e in hub.actions("workspace.refused") if e.project == OTHER_PROJECT]
    assert refused and refused[-1].actor == "alice" and refused[-1].details["stage"] == "admission"


def test_alice_cannot_make_a_token_for_her_workspace_user_or_share_its_server(world):
    _, people, _, address = world
    alice = people["alice"]
    token = alice.api("POST", f"/hub/api/users/{ALICE_WS}/tokens", json={"note": "mine"})
    assert token.status_code in (403, 404), token.text[:300]
    share = alice.api("POST", f"/hub/api/shares/{ALICE_WS}/{PROJECT}", json={"user": "bob"})
    assert share.status_code in (403, 404), share.text[:300]
    answer = requests.get(f"{address}/api/contents/", headers={"Authorization": f"token {people['bob'].token}"},
                          timeout=60)
    assert answer.status_code == 403


def test_nobody_signs_in_as_a_workspace_user(world):
    hub, _, secrets, _ = world
    client = hub.client()
    assert not client.login(ALICE_WS, secrets["alice"])
    refused = [e for e in hub.actions("hub.login") if e.outcome == "denied" and e.actor == ALICE_WS]
    assert refused and "not an active registry user" in refused[-1].details["reason"]


def test_no_account_is_named_like_a_workspace_user(world):
    hub, _, _, _ = world
    with pytest.raises(InvalidInput):
        hub.registry.upsert_user("root", f"eve@{PROJECT}")
    with pytest.raises(InvalidInput):
        provision_account(hub.settings, hub.registry, ALICE_WS, "correct-horse-battery-9", actor="root")


def test_the_workspace_token_acts_for_alice_in_her_project_only_at_the_gate(world):
    """Inside the workspace, its own token (the workspace user's) asks the gate: it is alice there,
    and it submits for her project only."""
    hub, people, _, address = world
    code = """
import json, pathlib
from pds_kernel.airlock.client import AirlockClient
client = AirlockClient()
pathlib.Path("t.csv").write_text("atc,persons\\nA10BA02,37\\n")
out = [client.request("GET", "api/me")]
try:
    out.append(client.submit(["t.csv"], "a table", project=OTHER)["id"])
except Exception as exc:
    out.append("refused: " + str(exc)[:200])
print(json.dumps(out))
""".replace("OTHER", repr(OTHER_PROJECT))
    result = execute(address, people["alice"].token, code)
    assert result["error"] is None, result["error"]
    me, other = json.loads(result["stdout"].strip().splitlines()[-1])
    assert me == {"name": "alice"}, me
    assert other.startswith("refused: ") and f"a workspace of project {PROJECT} can only submit" in other, other
    assert gate_public_url(hub.settings).startswith("http://airlock--service.")


def test_home_page_links_to_the_workspace_on_its_own_host(world):
    hub, people, _, address = world
    page = people["alice"].get("/hub/home")
    assert page.status_code == 200
    assert f'href="{address}/"' in page.text or f'href="{urljoin(address + "/", "")}"' in page.text, page.text[-2000:]
    key = workspace_host_key(hub.settings)  # the hub's own, in its state folder (ADR 17, amended)
    assert address.startswith("http://" + workspace_host_hook(key)(f"alice@{PROJECT}", "pds.localhost:", "user"))
