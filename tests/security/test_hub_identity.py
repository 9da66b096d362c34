"""Red team, hub socket and identity: each test is one attack on a real JupyterHub (local mode, as
``pds hub run`` starts it) or on the real hub-socket bridge in front of its API, asserted to fail.

Findings this closes (issue #11, items 4 and 5): a kernel logged in through the hub socket and
minted a full user token; a registry admin's name could be claimed by sign-up; an admin could
revoke, discard and take over a researcher's account with GET links; a cookie outlived its logout;
a TOTP code worked twice; an expired member's workspace ran until the next 300 s refresh.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import date, timedelta

import onetimepass
import pytest
import requests
from hub_identity_support import (
    UNCLAIMED_ADMIN,
    UNCLAIMED_RESEARCHER,
    BridgeThread,
    account_row,
    make_identity_world,
    pds_cli,
    request,
    started_world,
    statuses,
    token_count,
)
from hubfixtures import PASSWORD, PROJECT, Hub, current_totp

#: A request's own time on top of the server's cache (the hub and the server share two cores).
INTERVAL_SLACK = 10

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    with started_world(make_identity_world) as world:
        yield world


@pytest.fixture(scope="module")
def hub(world) -> Hub:
    return world[0]


@pytest.fixture(scope="module")
def secrets(world) -> dict[str, str]:
    return world[1]


@pytest.fixture(scope="module")
def alice(hub, secrets):
    """alice, logged in (cookies) and holding a full user API token."""
    client = hub.client()
    assert client.login("alice", secrets["alice"])
    client.make_token("alice")
    return client


@pytest.fixture(scope="module")
def admin(hub, secrets):
    client = hub.client()
    assert client.login("root", secrets["root"])
    return client


@pytest.fixture(scope="module")
def bridge(hub, alice):
    """alice's hub socket, as her workspace has it; her API token plays the server's token (a
    stronger token than a real server's, so what the bridge refuses the hub would have done)."""
    bridge = BridgeThread(hub, "alice", alice.token)
    yield bridge
    bridge.close()


def refused(bridge: BridgeThread, data: bytes) -> bool:
    raw = bridge.exchange(data)
    return statuses(raw) == [403] and b"refused by the workspace hub socket" in raw


def wait_ready(client, user: str, server: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.hub.workspaces(user).get(server)
        if state and state["ready"]:
            return state
        time.sleep(0.3)
    raise TimeoutError(f"{user}/{server} not ready")


def spawn(hub: Hub, user: str, secret: str):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    client = hub.client()
    assert client.login(user, secret)
    client.make_token(user)
    started = client.api("POST", f"/hub/api/users/{user}/servers/{PROJECT}")
    assert started.status_code in (201, 202), started.text
    return client, wait_ready(client, user, PROJECT)


@pytest.fixture(scope="module")
def alice_workspace(hub, alice):
    """alice's real workspace of the project, started with the ``alice`` client (one for the
    module: another login would wait for the next TOTP step, a spawn right after a stop for the
    stop), as (client, server state); stopped at the end."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    started = alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}")
    assert started.status_code in (201, 202), started.text
    yield alice, wait_ready(alice, "alice", PROJECT)
    assert alice.api("DELETE", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (202, 204)


# ---- the hub socket --------------------------------------------------------------------------------
def test_kernel_logs_in_and_mints_a_token_through_the_hub_socket(hub: Hub, secrets, alice_workspace):
    """The demo attack, from inside a real workspace: POST /hub/login with the user's password and
    code through 127.0.0.1:8081, then create a token with the server's own token."""
    from hub_kernel import execute

    client, state = alice_workspace
    code = onetimepass.get_totp(secrets["alice"], as_string=True).decode()
    attack = f"""
import json, os, urllib.parse, urllib.request, urllib.error
def call(method, path, body=b"", headers=None):
    req = urllib.request.Request("http://127.0.0.1:8081" + path, data=body or None, method=method,
                                 headers=headers or {{}})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()[:200].decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200].decode(errors="replace")
form = urllib.parse.urlencode({{"username": "alice", "password": {PASSWORD!r}, "2fa": {code!r}}}).encode()
token = os.environ["JUPYTERHUB_API_TOKEN"]
results = {{
    "login": call("POST", "/hub/login", form, {{"Content-Type": "application/x-www-form-urlencoded"}}),
    "mint": call("POST", "/hub/api/users/alice/tokens", b'{{"note": "x"}}',
                 {{"Authorization": "token " + token, "Content-Type": "application/json"}}),
    "users": call("GET", "/hub/api/users", b"", {{"Authorization": "token " + token}}),
    "identity": call("GET", "/hub/api/user", b"", {{"Authorization": "token " + token}}),
}}
print(json.dumps({{k: v[0] for k, v in results.items()}}))
"""
    result = execute(hub.server(state), client.token, attack)
    assert result["error"] is None, result["error"]
    codes = json.loads(result["stdout"].strip().splitlines()[-1])
    assert codes == {"login": 403, "mint": 403, "users": 403, "identity": 200}, codes
    refusals = [e for e in hub.actions("hub.socket.refused") if e.actor == "alice" and e.project == PROJECT]
    # exactly the attack's requests were refused: the server's own calls (version check, identity,
    # activity) went through
    assert {e.details["path"] for e in refusals} == {"/hub/login", "/hub/api/users/alice/tokens",
                                                    "/hub/api/users"}


def test_kernel_asks_the_oauth_endpoint_for_a_token_with_the_servers_client_secret(hub: Hub, alice_workspace):
    """From inside a real workspace: the server's OAuth client id and secret are in the kernel's
    environment; ask /hub/api/oauth2/token for a token by every grant that needs no browser."""
    from hub_kernel import execute

    client, state = alice_workspace
    attack = f"""
import json, os, urllib.parse, urllib.request, urllib.error
secret, client_id = os.environ["JUPYTERHUB_API_TOKEN"], os.environ.get("JUPYTERHUB_CLIENT_ID", "")
out = {{}}
for grant in ("client_credentials", "password", "refresh_token", "implicit"):
    form = {{"grant_type": grant, "client_id": client_id, "client_secret": secret, "username": "alice",
             "password": {PASSWORD!r}, "refresh_token": secret, "scope": "tokens admin:users"}}
    req = urllib.request.Request("http://127.0.0.1:8081/hub/api/oauth2/token", method="POST",
                                 data=urllib.parse.urlencode(form).encode(),
                                 headers={{"Authorization": "token " + secret,
                                          "Content-Type": "application/x-www-form-urlencoded"}})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            out[grant] = [r.status, r.read().decode(errors="replace")]
    except urllib.error.HTTPError as e:
        out[grant] = [e.code, e.read().decode(errors="replace")]
print(json.dumps(out))
"""
    result = execute(hub.server(state), client.token, attack)
    assert result["error"] is None, result["error"]
    answers = json.loads(result["stdout"].strip().splitlines()[-1])
    assert all(status >= 400 and "access_token" not in body for status, body in answers.values()), answers

def test_token_creation_with_the_server_token(hub, alice, bridge):
    before = token_count(hub, "alice", alice.token)
    assert refused(bridge, request("POST", "/hub/api/users/alice/tokens", token=alice.token,
                                   body=b'{"note": "stolen"}', headers={"Content-Type": "application/json"}))
    assert token_count(hub, "alice", alice.token) == before


def test_token_creation_with_a_browser_cookie(hub, alice, bridge):
    cookie = "; ".join(f"{c.name}={c.value}" for c in alice.http.cookies)
    xsrf = alice.http.cookies.get("_xsrf", "")
    before = token_count(hub, "alice", alice.token)
    assert refused(bridge, request("POST", "/hub/api/users/alice/tokens", body=b"{}",
                                   headers={"Cookie": cookie, "X-XSRFToken": xsrf}))
    assert token_count(hub, "alice", alice.token) == before


def test_signup_through_the_hub_socket(bridge):
    form = f"username={UNCLAIMED_ADMIN}&signup_password=x&signup_password_confirmation=x".encode()
    assert refused(bridge, request("POST", "/hub/signup", body=form))


def test_activity_report_on_another_users_path(alice, bridge):
    assert refused(bridge, request("POST", "/hub/api/users/bob/activity", token=alice.token,
                                   body=b'{"last_activity": "2026-01-01T00:00:00Z", "servers": {}}'))


def test_admin_endpoint_with_the_server_token(alice, bridge):
    assert refused(bridge, request("GET", "/hub/api/users", token=alice.token))


@pytest.mark.parametrize("path", [
    "/hub/api/../login",
    "/hub/api/users/alice/activity/../tokens",
    "/hub/api/users/alice/./tokens",
    "/hub/api/users/alice/%2e%2e/%2e%2e/login",
    "/hub/api/users/alice%2Ftokens",
    "//hub/api/users/alice/tokens",
])
def test_path_traversal_and_encoding(hub, alice, bridge, path):
    before = token_count(hub, "alice", alice.token)
    assert refused(bridge, request("POST", path, token=alice.token, body=b"{}"))
    assert token_count(hub, "alice", alice.token) == before


def test_absolute_form_request_target(alice, bridge):
    assert refused(bridge, request("POST", "http://127.0.0.1:8081/hub/api/users/alice/tokens",
                                   token=alice.token, body=b"{}"))


def test_http_1_0_request(alice, bridge):
    assert refused(bridge, request("GET", "/hub/api/users/alice", token=alice.token, version="HTTP/1.0"))


def test_two_content_lengths(hub, alice, bridge):
    smuggled = request("POST", "/hub/api/users/alice/tokens", token=alice.token, body=b"{}")
    data = (f"POST /hub/api/users/alice/activity HTTP/1.1\r\nHost: x\r\nAuthorization: token {alice.token}\r\n"
            f"Content-Length: 0\r\nContent-Length: {len(smuggled)}\r\n\r\n").encode() + smuggled
    before = token_count(hub, "alice", alice.token)
    assert refused(bridge, data)
    assert token_count(hub, "alice", alice.token) == before


def test_chunked_body_hiding_a_second_request(hub, alice, bridge):
    smuggled = request("POST", "/hub/api/users/alice/tokens", token=alice.token, body=b"{}")
    data = (f"POST /hub/api/users/alice/activity HTTP/1.1\r\nHost: x\r\nAuthorization: token {alice.token}\r\n"
            f"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n").encode() + smuggled
    before = token_count(hub, "alice", alice.token)
    assert refused(bridge, data)
    assert token_count(hub, "alice", alice.token) == before


def test_oversize_header(alice, bridge):
    assert refused(bridge, request("GET", "/hub/api/user", token=alice.token, headers={"X-Pad": "a" * 20000}))


def test_pipelined_second_request(hub, alice, bridge):
    """An allowed request first, a token creation pipelined behind it on the same connection: the
    second is refused and the connection closed; the 403 comes after the first one's whole answer or
    alone, never inside it (the first answer may be dropped)."""
    data = request("GET", "/hub/api/user", token=alice.token) + request(
        "POST", "/hub/api/users/alice/tokens", token=alice.token, body=b'{"note": "pipelined"}')
    before = token_count(hub, "alice", alice.token)
    raw = bridge.exchange(data)
    assert statuses(raw) in ([403], [200, 403]), raw[:300]
    assert token_count(hub, "alice", alice.token) == before


def test_bare_lf_framing(hub, alice, bridge):
    data = (b"GET /hub/api/ HTTP/1.1\nHost: x\n\n"
            + request("POST", "/hub/api/users/alice/tokens", token=alice.token, body=b"{}"))
    before = token_count(hub, "alice", alice.token)
    assert refused(bridge, data)
    assert token_count(hub, "alice", alice.token) == before


def test_websocket_upgrade_to_the_hub(alice, bridge):
    assert refused(bridge, request("GET", "/hub/api/user", token=alice.token, headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}))


def test_two_authorization_headers(alice, bridge):
    data = request("POST", "/hub/api/users/alice/activity", token=alice.token, body=b"{}",
                   headers={"Authorization": "token " + "f" * 32})
    assert refused(bridge, data)


def test_oauth_exchange_with_another_token(bridge):
    body = b"client_id=jupyterhub-user-alice&grant_type=authorization_code&code=x"
    assert refused(bridge, request("POST", "/hub/api/oauth2/token", token="0" * 32, body=body,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"}))


# ---- identity --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [UNCLAIMED_ADMIN, UNCLAIMED_RESEARCHER])
def test_sign_up_as_a_registry_user_without_account(hub, name):
    """Claim a registry admin's (or researcher's) name through /hub/signup, then log in."""
    client = hub.client()
    client.signup(name, password="attacker-chosen-9")
    assert client.get("/hub/signup").status_code == 404
    assert account_row(hub, name) is None
    assert not client.login(name, "A" * 16, password="attacker-chosen-9", code="123456")


def test_get_link_toggles_an_account(hub, admin, secrets):
    """A page the admin visits embeds <img src=/hub/authorize/bob> (NativeAuthenticator's toggle)."""
    assert admin.get("/hub/authorize/bob").status_code == 405
    assert account_row(hub, "bob")[0] == 1


def test_get_discard_link(hub, admin):
    xsrf = admin.http.cookies.get("_xsrf", "")
    revoke = admin.http.post(f"{hub.url}/hub/authorize/erin", data={"_xsrf": xsrf, "action": "revoke"},
                             timeout=30)
    assert revoke.status_code == 200
    assert admin.get("/hub/discard/erin").status_code == 404
    assert account_row(hub, "erin") is not None
    assert any(e.actor == "root" and e.target == "user:erin" for e in hub.actions("hub.account.revoke"))


def test_cross_site_post_without_xsrf(hub, admin):
    response = admin.http.post(f"{hub.url}/hub/authorize/frank", data={"action": "revoke"}, timeout=30,
                               headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
                                        "Sec-Fetch-Mode": "navigate"})
    assert response.status_code == 403
    assert account_row(hub, "frank")[0] == 1


def test_admin_sets_another_users_password(hub, admin, secrets):
    before = account_row(hub, "dave")
    xsrf = admin.http.cookies.get("_xsrf", "")
    assert admin.get("/hub/change-password/dave").status_code == 404
    posted = admin.http.post(f"{hub.url}/hub/change-password/dave", timeout=30, data={
        "_xsrf": xsrf, "new_password": "admin-chosen-99", "new_password_confirmation": "admin-chosen-99"})
    assert posted.status_code == 404
    assert account_row(hub, "dave") == before
    assert not hub.client().login("dave", secrets["dave"], password="admin-chosen-99")


def test_admin_takes_over_a_researchers_account(hub, admin):
    """Revoke carol (allowed, audited), then discard, sign up as her and log in: each step fails."""
    xsrf = admin.http.cookies.get("_xsrf", "")
    admin.http.post(f"{hub.url}/hub/authorize/carol", data={"_xsrf": xsrf, "action": "revoke"}, timeout=30)
    admin.http.post(f"{hub.url}/hub/discard/carol", data={"_xsrf": xsrf}, timeout=30)
    admin.get("/hub/discard/carol")
    admin.signup("carol", password="admin-chosen-99")
    row = account_row(hub, "carol")
    assert row is not None and row[0] == 0
    assert not hub.client().login("carol", "A" * 16, password="admin-chosen-99", code="123456")


def test_admin_joins_a_projects_hub_group_and_starts_a_workspace(hub, admin):
    """The administrator holds admin:groups: they put themselves in the project's hub group (the
    group the hub gives members) and start a workspace of the project for themselves."""
    xsrf = {"X-XSRFToken": admin.http.cookies.get("_xsrf", "")}
    created = admin.http.post(f"{hub.url}/hub/api/groups/{PROJECT}", headers=xsrf, timeout=30)  # if absent
    joined = admin.http.post(f"{hub.url}/hub/api/groups/{PROJECT}/users", json={"users": ["root"]},
                             headers=xsrf, timeout=30)
    try:
        assert joined.status_code == 200, joined.text  # allowed by the hub: the registry decides
        started = admin.http.post(f"{hub.url}/hub/api/users/root/servers/{PROJECT}", headers=xsrf, timeout=60)
        deadline = time.monotonic() + 10
        running = False
        while time.monotonic() < deadline and not running and started.status_code < 400:
            state = hub.workspaces("root").get(PROJECT)
            running = bool(state and state["ready"])
            time.sleep(0.5)
        assert not running, "the administrator got a workspace of a project they are not a member of"
        assert started.status_code >= 400 or PROJECT not in hub.workspaces("root")
    finally:
        hub.admin_api("DELETE", f"/groups/{PROJECT}/users", json={"users": ["root"]})
        hub.admin_api("DELETE", f"/users/root/servers/{PROJECT}")
        if created.status_code == 201:
            hub.admin_api("DELETE", f"/groups/{PROJECT}")

def test_admin_renames_their_hub_user_to_a_researchers_name(hub, secrets):
    """An admin with admin:users renames their own hub user (whose cookie they hold) to a
    researcher who has not logged in yet, to get that researcher's groups and servers."""
    admin = hub.client()
    assert admin.login("root", secrets["root"])
    admin.make_token("root")
    renamed = admin.api("PATCH", "/hub/api/users/root", json={"name": UNCLAIMED_RESEARCHER})
    assert renamed.status_code == 403, renamed.text
    me = admin.http.get(f"{hub.url}/hub/api/user", timeout=30).json()
    assert me["name"] == "root" and PROJECT not in me.get("groups", [])
    assert any(e.actor == "root" for e in hub.actions("hub.user.rename"))


def test_revoked_researcher_keeps_using_an_api_token(hub, admin, secrets):
    jack = hub.client()
    assert jack.login("jack", secrets["jack"])
    jack.make_token("jack")
    assert jack.api("GET", "/hub/api/user").status_code == 200
    xsrf = admin.http.cookies.get("_xsrf", "")
    admin.http.post(f"{hub.url}/hub/authorize/jack", data={"_xsrf": xsrf, "action": "revoke"}, timeout=30)
    assert jack.api("GET", "/hub/api/user").status_code == 403
    assert "login" in jack.get("/hub/home").url


def test_deleted_token_keeps_opening_the_running_workspace(hub, alice_workspace):
    """alice finds a hub token of hers pasted in a shared document and deletes it at the hub. The
    token must stop opening her running workspace within the membership watcher's interval: the
    single-user server kept JupyterHub's default cache of the hub's answers, so the deleted token
    still read her server for up to 300 s. Got through before the server's ``HubOAuth.cache_max_age``
    was set to :data:`TOKEN_CACHE_SECONDS`."""
    from pds_kernel.sandbox.notebook_server import TOKEN_CACHE_SECONDS

    client, state = alice_workspace
    xsrf = client.http.cookies.get("_xsrf", "")
    made = client.http.post(f"{hub.url}/hub/api/users/alice/tokens", headers={"X-XSRFToken": xsrf},
                            json={"note": "pasted in a shared document"}, timeout=30)
    made.raise_for_status()
    leaked, token_id = made.json()["token"], made.json()["id"]
    status_url = f"{hub.server(state)}/api/status"

    def server_status() -> int:
        return requests.get(status_url, headers={"Authorization": f"token {leaked}"}, timeout=30,
                            allow_redirects=False).status_code

    assert server_status() == 200  # the server has seen (and cached) the token
    assert client.api("DELETE", f"/hub/api/users/alice/tokens/{token_id}").status_code == 204
    deleted = time.monotonic()
    limit = TOKEN_CACHE_SECONDS + INTERVAL_SLACK
    while server_status() == 200:
        assert time.monotonic() - deleted < limit, f"the deleted token still opens the server after {limit} s"
        time.sleep(1)
    assert server_status() in (401, 403)


def test_session_and_token_outlive_a_revocation_on_the_host(hub, secrets):
    """The operator revokes lena with `pds hub account revoke` while she is logged in with a
    cookie and an API token, the hub running: both must stop working at once, and so her login."""
    lena = hub.client()
    assert lena.login("lena", secrets["lena"])
    lena.make_token("lena")
    assert lena.get("/hub/api/user").status_code == 200 and lena.api("GET", "/hub/api/user").status_code == 200
    done = pds_cli(hub, "hub", "account", "revoke", "lena")
    assert done.returncode == 0, done.stderr
    assert lena.get("/hub/api/user").status_code == 403
    assert lena.api("GET", "/hub/api/user").status_code == 403
    assert not hub.client().login("lena", secrets["lena"])
    assert any(e.actor == "root" and e.target == "user:lena" for e in hub.actions("hub.account.revoke"))


def test_session_cookie_after_logout(hub, secrets):
    bob = hub.client()
    assert bob.login("bob", secrets["bob"])
    stolen = requests.Session()
    stolen.cookies.update(bob.http.cookies)
    assert stolen.get(f"{hub.url}/hub/api/user", timeout=30).status_code == 200  # the copy works...
    bob.logout()
    assert stolen.get(f"{hub.url}/hub/api/user", timeout=30).status_code == 403  # ...until logout
    assert "login" in stolen.get(f"{hub.url}/hub/home", timeout=30).url


def test_totp_code_replay(hub, secrets):
    code = current_totp(secrets["henry"])
    assert hub.client().login("henry", secrets["henry"], code=code)
    assert not hub.client().login("henry", secrets["henry"], code=code)
    refusals = [e for e in hub.actions("hub.login") if e.actor == "henry" and e.outcome == "denied"]
    assert any(e.details["reason"] == "second-factor code used already" for e in refusals)


def test_totp_code_replay_after_a_hub_restart(hub_world_for_restart):
    """The used code is kept in the hub database: a restart does not make it valid again."""
    hub, secret = hub_world_for_restart
    if 30 - time.time() % 30 < 20:  # room in this window for the login, the restart and the replay
        time.sleep(30 - time.time() % 30 + 0.2)
    window = int(time.time()) // 30
    code = onetimepass.get_totp(secret, as_string=True).decode()
    assert hub.client().login("henry", secret, code=code)
    hub.stop()
    hub.start()
    replayed = hub.client().login("henry", secret, code=code)
    assert int(time.time()) // 30 == window, "the restart took too long for this test to mean anything"
    assert not replayed


@pytest.fixture
def hub_world_for_restart():
    with started_world(make_identity_world) as (hub, secrets):
        yield hub, secrets["henry"]


def test_expired_member_keeps_a_running_workspace(hub, secrets):
    """kate's membership ends while her workspace runs and she never calls the hub again: the
    workspace must stop within 30 s, audited (not at the next login or 300 s refresh)."""
    client, _ = spawn(hub, "kate", secrets["kate"])
    hub.registry.add_member("root", PROJECT, "kate", "researcher", date.today() - timedelta(days=1))
    expired = time.monotonic()
    deadline = expired + 30
    while time.monotonic() < deadline:
        if PROJECT not in hub.workspaces("kate"):
            break
        time.sleep(0.5)
    took = time.monotonic() - expired
    assert PROJECT not in hub.workspaces("kate"), "still running after 30 s"
    stops = [e for e in hub.actions("workspace.stop")
             if e.target == "user:kate" and e.details.get("checked_at") == "watcher"]
    assert stops and "expired" in stops[0].details["reason"], (stops, took)
