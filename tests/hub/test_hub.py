"""A real JupyterHub in local mode: second-factor login, project servers in the sandbox, refusals,
revocation at login, and the audit trail. Each test starts its own hub (see conftest.py)."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from urllib.parse import urljoin

import pytest
from hub_kernel import delete_kernel, execute
from hubfixtures import OTHER_PROJECT, PASSWORD, PROJECT, Hub, hub_user

from pds_kernel.audit import Outcome
from pds_kernel.hub.local import provision_account

pytestmark = [pytest.mark.functional, pytest.mark.timeout(240)]

DASK_CODE = """
import json
from pds_kernel import workspace
client = workspace.dask_client()
ddf = workspace.dask_dataframe("ER_PRS_F")
counts = ddf.groupby("atc")["person"].count().compute()
print(json.dumps({"counts": {k: int(v) for k, v in counts.items()},
                  "workers": len(client.scheduler_info()["workers"])}))
client.close()
"""


#: Leaves a Dask cluster running (kernel kept) and writes data files in the private home.
WORKSPACE_FILES_CODE = """
from pathlib import Path
from pds_kernel import workspace
client = workspace.dask_client()
rows = "".join(f"{i};{i % 7};{i % 3}\\n" for i in range(20000))
Path("big.csv").write_text("id;a;b\\n" + rows)
Path("renamed.txt").write_text("id;a;b\\n" + rows)  # the same data under a harmless name
Path("notes.txt").write_text("a short note")
print(client.dashboard_link)
"""

# The kernel holds the server's token: it may spend its own served-bytes budget, never another
# workspace's, never with a negative or oversized reservation (the hub's ledger answers).
LEDGER_CODE = """
import json, os, urllib.error, urllib.request
api, me = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_USER"]
def post(path, body):
    req = urllib.request.Request(api + path, method="POST", data=json.dumps(body).encode(),
                                 headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as err:
        return err.code
project = os.environ["PDS_PROJECT"]
print(json.dumps([post(f"/pds/served-bytes/{me}/{project}", {"want": 10, "need": 10}),
                  post(f"/pds/served-bytes/bob/{project}", {"want": 10, "need": 10}),
                  post(f"/pds/served-bytes/{me}/{project}", {"want": -10**9, "need": -10**9})]))
"""


def wait_ready(client, user: str, server: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = client.api("GET", f"/hub/api/users/{hub_user(user, server)}").json()
        state = model["servers"].get(server)
        if state and state["ready"]:
            return state
        time.sleep(0.3)
    raise TimeoutError(f"{user}/{server} not ready")


def wait_stopped(hub: Hub, user: str, server: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server not in hub.admin_api("GET", f"/users/{hub_user(user, server)}").json()["servers"]:
            return
        time.sleep(0.3)
    raise TimeoutError(f"{user}/{server} still running")


def provision(hub: Hub, user: str) -> str:
    return provision_account(hub.settings, hub.registry, user, PASSWORD, actor="root")


def test_accounts_second_factor_spawn_run_dask_and_stop(hub: Hub):
    """Accounts come from `pds hub account add` (no web sign-up); an admin revokes and approves an
    account with POST forms; login needs password + an unused code; then a project workspace."""
    admin = hub.client()
    admin.signup("root")
    assert admin.get("/hub/signup").status_code == 404, "no web sign-up"
    root_secret = provision(hub, "root")
    assert admin.login("root", root_secret)

    alice = hub.client()
    secret = provision(hub, "alice")
    xsrf = admin.http.cookies.get("_xsrf", "")
    assert admin.get("/hub/authorize/alice").status_code == 405, "no GET link changes an account"
    revoke = admin.http.post(hub.url + "/hub/authorize/alice", data={"_xsrf": xsrf, "action": "revoke"},
                             timeout=30)
    assert revoke.status_code == 200, revoke.text[-300:]
    assert not alice.login("alice", secret), "a revoked account cannot log in"
    approve = admin.http.post(hub.url + "/hub/authorize/alice", data={"_xsrf": xsrf, "action": "approve"},
                              timeout=30)
    assert approve.status_code == 200
    decisions = [(e.action, e.actor, e.outcome, e.details.get("via")) for e in hub.actions("hub.account.approve")
                 + hub.actions("hub.account.revoke") if e.target == "user:alice"]
    assert decisions == [("hub.account.approve", "root", "ok", "web"), ("hub.account.revoke", "root", "ok", "web")]
    assert not alice.login("alice", secret, code="000000"), "a wrong second factor is refused"
    assert not alice.login("alice", secret, password="wrong-password-1"), "a wrong password is refused"
    assert alice.login("alice", secret)

    mallory = hub.client()
    mallory.signup("mallory")  # not in the registry, and no sign-up anyway
    assert not mallory.login("mallory", "A" * 16)

    alice.make_token("alice")
    model = alice.api("GET", "/hub/api/users/alice").json()
    assert model["groups"] == [PROJECT]
    assert alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (201, 202)
    state = wait_ready(alice, "alice", PROJECT)
    home = hub.client().get("/hub/home")  # anonymous: redirected to login
    assert "login" in home.url

    result = execute(hub.server(state), alice.token, DASK_CODE)
    assert result["error"] is None, result["error"]
    payload = json.loads(result["stdout"].strip().splitlines()[-1])
    assert payload["counts"] == {"A10BA02": 133, "A10BB09": 67}
    assert payload["workers"] >= 1

    page = alice.get("/hub/home")
    assert PROJECT in page.text and OTHER_PROJECT not in page.text

    # Through the hub's proxy, as a browser would: the Dask dashboard is served, the lockdown holds.
    base = hub.server(state)
    kept = execute(base, alice.token, WORKSPACE_FILES_CODE, keep=True)
    try:
        assert kept["error"] is None, kept["error"]
        link = kept["stdout"].strip().splitlines()[-1]
        assert link == f"/user/{hub_user('alice', PROJECT)}/{PROJECT}/proxy/8787/status"
        dashboard = alice.api("GET", urljoin(base, link))  # on her own host, as from her JupyterLab
        server_log = hub.settings.paths.state / "logs" / f"alice.{PROJECT}.log"
        assert dashboard.status_code == 200 and "bokeh" in dashboard.text.lower(), server_log.read_text()[-3000:]
        refused = {
            "files/big.csv": 403, "files/notes.txt": 403, "view/notes.txt": 403,
            "nbconvert/html/examples/01-claims-per-month-dask.ipynb?download=true": 403,
            "api/contents/big.csv": 403, "api/contents/renamed.txt": 403,
            "api/contents/renamed.txt?type=file&format=text": 403, "proxy/22/": 403,
        }
        got = {path: alice.api("GET", f"{state['url']}{path}").status_code for path in refused}
        assert got == refused
        allowed = {"api/contents/big.csv?content=0": 200, "api/contents/notes.txt": 200,
                   "api/contents/examples/01-claims-per-month-dask.ipynb": 200}
        assert {path: alice.api("GET", f"{state['url']}{path}").status_code for path in allowed} == allowed
        ledger = execute(base, alice.token, LEDGER_CODE)
        assert ledger["error"] is None, ledger["error"]
        own, other, negative = json.loads(ledger["stdout"].strip().splitlines()[-1])
        assert (own, negative) == (200, 400) and other in (403, 404)  # JupyterHub hides others: 404
    finally:
        delete_kernel(base, alice.token, kept["kernel_id"])

    # A registry admin runs the hub (accounts, servers) but cannot open someone's workspace.
    admin.make_token("root")
    assert admin.get("/hub/admin").status_code == 200
    # the registry's roles are JupyterHub roles
    assert "researcher" in admin.api("GET", "/hub/api/users/alice").json()["roles"]
    assert "pds-admin" in admin.api("GET", "/hub/api/users/root").json()["roles"]
    assert admin.api("GET", f"{state['url']}api/contents").status_code == 403
    share = admin.api("POST", f"/hub/api/shares/alice/{PROJECT}", json={"user": "root"})
    assert share.status_code == 403, share.text
    assert admin.api("GET", "/hub/api/users/root").json()["admin"] is False

    assert alice.api("DELETE", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (202, 204)
    wait_stopped(hub, "alice", PROJECT)
    alice.logout()

    logins = hub.actions("hub.login")
    assert any(e.actor == "alice" and e.outcome == Outcome.OK for e in logins)
    assert sum(e.actor == "alice" and e.outcome == Outcome.DENIED for e in logins) >= 3
    assert any(e.actor == "mallory" and e.outcome == Outcome.DENIED for e in logins)
    assert any(e.target == "user:alice" and e.actor == "root" for e in hub.actions("hub.account.revoke"))
    assert any(e.target == "user:alice" and e.actor == "root" for e in hub.actions("hub.account.approve"))
    assert [e.project for e in hub.actions("workspace.start")] == [PROJECT]
    reserved = hub.actions("workspace.bytes_reserved")  # the hub's served-bytes ledger, audited
    assert reserved and {(e.actor, e.project) for e in reserved} == {("alice", PROJECT)}
    assert [e.details["cause"] for e in hub.actions("workspace.stop")] == ["stopped"]
    assert [e.actor for e in hub.actions("hub.logout")] == ["alice"]
    assert hub.runtime.audit.verify().ok


def test_non_member_is_refused_via_url_and_rest(hub_world: Hub):
    secret = provision(hub_world, "bob")
    hub_world.start()
    bob = hub_world.client()
    assert bob.login("bob", secret)
    bob.make_token("bob")
    assert bob.api("GET", "/hub/api/users/bob").json()["groups"] == [OTHER_PROJECT]

    refused = bob.api("POST", f"/hub/api/users/bob/servers/{PROJECT}")
    assert refused.status_code == 403, refused.text
    assert "not a researcher" in refused.json()["message"] or "not a member" in refused.json()["message"]
    default = bob.api("POST", "/hub/api/users/bob/server")
    assert default.status_code == 403, default.text

    page = bob.get(f"/hub/spawn/bob/{PROJECT}")
    assert page.status_code == 403, (page.status_code, page.text[-500:])
    assert not bob.api("GET", "/hub/api/users/bob").json()["servers"].get(PROJECT, {}).get("ready")

    refusals = hub_world.actions("workspace.refused")
    assert len([e for e in refusals if e.project == PROJECT and e.actor == "bob"]) >= 2
    assert all(e.outcome == Outcome.DENIED for e in refusals)
    # decided at the hub's door (before JupyterHub creates the server), never by the spawner
    decisions = [e for e in hub_world.actions("workspace.admit") if e.project == PROJECT]
    assert decisions and all(e.outcome == Outcome.DENIED for e in decisions)
    assert not [e for e in hub_world.actions("workspace.authorise") if e.project == PROJECT]
    assert not hub_world.actions("workspace.start")
    # and nothing was left behind: no phantom server counted against bob's server limit
    # (JupyterHub keeps a default-server row for every user: it is not a named server)
    stored = bob.api("GET", "/hub/api/users/bob?include_stopped_servers").json()["servers"]
    assert [name for name in stored if name] == []
    assert "not a researcher of project" in page.text


@pytest.mark.parametrize("revoke, reason", [
    ("expire", "expired"),
    ("close", "closed"),
])
def test_revoked_access_stops_the_server_at_next_login(hub_world: Hub, revoke: str, reason: str):
    """An expired membership or a closed project: the running server stops at the next login."""
    secret = provision(hub_world, "alice")
    hub_world.start()
    alice = hub_world.client()
    assert alice.login("alice", secret)
    alice.make_token("alice")
    assert alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (201, 202)
    wait_ready(alice, "alice", PROJECT)

    if revoke == "expire":
        hub_world.registry.add_member("root", PROJECT, "alice", "researcher", date.today() - timedelta(days=1))
    else:
        hub_world.registry.close_project("root", PROJECT, reason="study ended")
    again = hub_world.client()
    assert again.login("alice", secret)
    wait_stopped(hub_world, "alice", PROJECT)
    model = hub_world.admin_api("GET", "/users/alice").json()
    assert model["groups"] == []

    stops = [e for e in hub_world.actions("workspace.stop") if e.details.get("cause") == "access revoked"]
    assert stops and stops[0].project == PROJECT and reason in stops[0].details["reason"], stops
    assert alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}").status_code == 403
    # her home page says why, though the project is no longer hers to list; a hub restart keeps it
    told = f"Your workspace {PROJECT} was stopped: the registry no longer lets you work in this project"
    assert told in again.get("/hub/home").text
    if revoke == "close":
        hub_world.stop()
        hub_world.start()
        page = again.get("/hub/home")
        assert page.url.endswith("/hub/home") and told in page.text, page.url
