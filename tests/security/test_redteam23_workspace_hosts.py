"""Red team 23: the keyed hosts of the workspaces (ADR 17, amended) and ``Referrer-Policy:
same-origin`` on every answer of a workspace's server, attacked by someone other than their author.

One real hub (tests/hub/hubfixtures.py, bubblewrap sandboxes): alice's diabetes-t2 workspace and
bob's mi-outcomes workspace run; carol is a member of diabetes-t2 (signed in, her workspace never
started); dave has no project. What was tried, each test asserting the attack FAILS:

1. bob or carol, signed in, ask the hub's authorize endpoint with the OAuth client id of alice's
   workspace (``jupyterhub-user-alice%40diabetes-t2-diabetes-t2``, formed from the two names)
   and a request oauthlib refuses *before* the hub checks who may access the server (no
   ``response_type``, an unsupported one, an unknown scope): oauthlib then redirects the error to
   the client's registered ``redirect_uri``, the workspace's keyed host;
2. the same endpoint as an oracle: does bob's answer for alice's running workspace differ from
   carol's never-started one and dave's that does not exist;
3. the same endpoint, anonymous; the token endpoint with her client id, as bob;
4. her kernel looks for bob's workspace's host or the key in its environment and in what the hub
   socket answers (``GET /hub/api/user``);
5. answers of her workspace's server without ``Referrer-Policy: same-origin``: an anonymous
   redirect, a redirect of the server's root, ``HEAD``, ``OPTIONS``, a 404, a ``304``, a 405, a
   refused write, ``/proxy/<closed port>/``, a WebSocket upgrade (101) and refused upgrades;
6. a person named like a workspace's keyed label, or like alice's workspace user, given its host.

Result: 1 and 2 GOT THROUGH. The hub's authorize endpoint (JupyterHub 5.5's handler, which
``WorkspaceOAuthAuthorizeHandler`` extends) let oauthlib validate the request before it checked
that the signed-in person may access the client's server; oauthlib redirects a non-fatal error
(``Missing response_type``, ``unsupported_response_type``, ``invalid_scope``) to the client's
registered callback. So any signed-in person, e.g. bob, asking
``GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice%2540diabetes-t2-diabetes-t2`` got
``302 Location: http://w--<alice's keyed label>.<hub host>/user/alice@diabetes-t2/diabetes-t2/
oauth_callback?error=invalid_request&...`` while the workspace ran (its OAuth client exists only
then): its keyed host, and whether it runs (400 ``Invalid client_id`` when it does not; with a valid
request 403 against 400, with a foreign ``redirect_uri`` ``Mismatching redirect URI`` against
``Invalid client_id``). Fixed the same day: before oauthlib reads the request, a server's client
the signed-in person may not access answers as an unknown one, on ``GET`` and on ``POST``
(:meth:`pds_kernel.hub.workspace_oauth.WorkspaceOAuthAuthorizeHandler.refuse_servers_out_of_reach`).
The rest failed already. 40 attempts.
"""

from __future__ import annotations

import re
import socket
import sys
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hub_kernel import execute
from hubfixtures import OTHER_PROJECT, PROJECT, hub_user, module_hub, signed_in, workspace_ready

from pds_kernel.hub.local import provision_account, workspace_host_key
from pds_kernel.hub.origins import WORKSPACE_LABEL, workspace_host_hook

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.timeout(300)]

P, Q = PROJECT, OTHER_PROJECT
ALICE_P, BOB_Q, CAROL_P, DAVE_P = hub_user("alice", P), hub_user("bob", Q), hub_user("carol", P), f"dave@{P}"


def client_id(user: str, server: str) -> str:
    """The OAuth client id JupyterHub gives a named server (jupyterhub.user.User): formed from names."""
    return f"jupyterhub-user-{quote(user)}-{quote(server)}"


@pytest.fixture(name="world", scope="module")
def world_fixture():
    """The hub; root, alice, bob, carol, dave signed in (tokens); alice's P and bob's Q running."""
    with module_hub("pdsr23") as hub:
        later = date.today() + timedelta(days=100)
        hub.registry.upsert_user("root", "carol")
        hub.registry.add_member("root", P, "carol", "researcher", later)
        secrets = {name: provision_account(hub.settings, hub.registry, name, "correct-horse-battery-9", actor="root")
                   for name in ("root", "alice", "bob", "carol", "dave")}
        hub.start()
        people = signed_in(hub, secrets)
        for person, project in (("alice", P), ("bob", Q)):
            started = people[person].api("POST", f"/hub/api/users/{person}/servers/{project}")
            assert started.status_code in (201, 202), started.text
        addresses = {person: hub.server(workspace_ready(people[person], person, project))
                     for person, project in (("alice", P), ("bob", Q))}
        yield hub, people, addresses


def _label(address: str) -> str:
    return urlsplit(address).hostname.split(".")[0]


def _authorize(hub, session, params: dict) -> requests.Response:
    return (session or requests).get(f"{hub.url}/hub/api/oauth2/authorize?{urlencode(params)}",
                                     allow_redirects=False, timeout=30)


#: Requests oauthlib refuses before the hub checks who may access the client's server.
EARLY_ERRORS = {
    "no response_type": {},
    "an unsupported response_type": {"response_type": "token"},
    "an unknown scope": {"response_type": "code", "scope": "no-such-scope"},
    "a role as scope": {"response_type": "code", "scope": "admin"},
    "another site's redirect_uri": {"response_type": "code", "redirect_uri": "http://evil.example/cb"},
    "the control, a valid request": {"response_type": "code"},
}


def test_her_workspaces_client_id_is_formed_from_the_names(world):
    """The premise of the attacks below: the client id is not secret (her host's anonymous redirect)."""
    hub, _, addresses = world
    answer = requests.get(addresses["alice"] + "/lab", allow_redirects=False, timeout=30)
    assert answer.status_code == 302
    assert f"client_id={quote(client_id(ALICE_P, P), safe='')}" in answer.headers["Location"]


@pytest.mark.parametrize("who", ["bob", "carol"])
@pytest.mark.parametrize("variant", list(EARLY_ERRORS))
def test_another_person_is_not_sent_to_her_workspaces_host_by_the_authorize_endpoint(world, who, variant):
    """bob (another project) and carol (her project), signed in, ask the authorize endpoint with the
    client id of alice's workspace, no ``redirect_uri``, and a request oauthlib refuses early: the
    error must not be redirected to her workspace's registered callback (its keyed host)."""
    hub, people, addresses = world
    label = _label(addresses["alice"])
    answer = _authorize(hub, people[who].http, {"client_id": client_id(ALICE_P, P), **EARLY_ERRORS[variant]})
    location = answer.headers.get("Location", "")
    assert label not in location and label not in answer.text, (answer.status_code, location)
    assert answer.status_code in (400, 403, 404), (answer.status_code, location)


def _authorize_shape(hub, session, user: str, server: str, params: dict) -> tuple:
    """What bob can compare of one answer, the workspace user's name taken out: status, whether the
    redirect stays on the hub, the redirect's first query field, the page's words (tokens, which
    differ at each answer, taken out)."""
    answer = _authorize(hub, session, {"client_id": client_id(user, server), **params})
    location = answer.headers.get("Location", "")
    host = urlsplit(location).hostname or ""
    words = re.sub(r"[A-Za-z0-9|_\-]{20,}", "", answer.text.replace(quote(user, safe=""), "").replace(user, ""))
    return (answer.status_code, "hub" if host in ("", urlsplit(hub.url).hostname) else "elsewhere",
            urlsplit(location).query.replace(quote(user, safe=""), "<u>").split("&")[0][:20], words)


@pytest.mark.parametrize("variant", list(EARLY_ERRORS))
def test_the_authorize_endpoint_does_not_tell_another_person_whether_her_workspace_runs(world, variant):
    """bob compares his answers for alice's running workspace, carol's never started one, and
    dave's, which does not exist (dave has no project): they must not differ."""
    hub, people, _ = world
    bob = people["bob"].http
    shapes = {user: _authorize_shape(hub, bob, user, P, EARLY_ERRORS[variant]) for user in (ALICE_P, CAROL_P, DAVE_P)}
    said = {user: (*shape[:3], re.findall(r"[A-Z][a-z]+ (?:client_id|redirect URI|[a-z]+ permission)[^<\n]*", shape[3])[:1])
            for user, shape in shapes.items()}
    assert len(set(shapes.values())) == 1, said


def test_the_authorize_form_posted_by_another_person_is_answered_as_an_unknown_client(world):
    """bob posts the authorize page's form (his own session and XSRF token) with the client id of
    alice's running workspace and of dave's, which does not exist: the same refusal, never a
    redirect to her host."""
    hub, people, addresses = world
    bob = people["bob"]
    label = _label(addresses["alice"])
    answers = {}
    for user in (ALICE_P, DAVE_P):
        page = bob.http.get(f"{hub.url}/hub/home", timeout=30)
        xsrf = bob.http.cookies.get("_xsrf") or re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
        answer = bob.http.post(f"{hub.url}/hub/api/oauth2/authorize?" + urlencode(
            {"client_id": client_id(user, P), "response_type": "code"}), data={"_xsrf": xsrf, "scopes": "identify"},
            allow_redirects=False, timeout=30)
        assert label not in answer.headers.get("Location", "") and label not in answer.text
        answers[user] = (answer.status_code, answer.headers.get("Location", ""))
    assert answers[ALICE_P] == answers[DAVE_P] and answers[ALICE_P][0] == 400, answers


def test_the_refusal_is_audited(world):
    """Every access decision is audited: bob's request for her workspace's client leaves a refusal
    naming him and the server."""
    hub, people, _ = world
    before = len(hub.actions("hub.oauth.authorize"))
    answer = _authorize(hub, people["bob"].http, {"client_id": client_id(ALICE_P, P), "response_type": "code"})
    assert answer.status_code == 400
    entries = hub.actions("hub.oauth.authorize")[before:]
    assert [(e.actor, e.target, e.outcome) for e in entries] == [("bob", f"server:{ALICE_P}/{P}", "denied")]


@pytest.mark.parametrize("variant", list(EARLY_ERRORS))
def test_an_anonymous_client_is_only_sent_to_sign_in(world, variant):
    hub, _, addresses = world
    answer = _authorize(hub, None, {"client_id": client_id(ALICE_P, P), **EARLY_ERRORS[variant]})
    assert answer.status_code == 302 and urlsplit(answer.headers["Location"]).path == "/hub/login"
    assert _label(addresses["alice"]) not in answer.headers["Location"] + answer.text


def test_anonymous_answers_on_the_hubs_host_do_not_tell_whether_her_workspace_runs(world):
    """Anonymous, on the hub's own host (no key needed): her workspace user's paths answer alike for
    alice's running workspace, carol's never started one and dave's that does not exist."""
    hub, _, addresses = world

    def shapes(user: str) -> list:
        found = []
        for method, path in [("GET", f"/user/{user}/{P}/lab"), ("POST", f"/user/{user}/{P}/api/contents"),
                             ("GET", f"/hub/user/{user}/{P}/"), ("GET", f"/hub/spawn-pending/{user}/{P}"),
                             ("GET", f"/hub/api/users/{user}/servers/{P}/progress"), ("GET", f"/hub/api/users/{user}"),
                             ("GET", f"/hub/api/oauth2/authorize?client_id={quote(client_id(user, P), safe='')}")]:
            answer = requests.request(method, hub.url + path, allow_redirects=False, timeout=30)
            assert _label(addresses["alice"]) not in answer.text + answer.headers.get("Location", "")
            named = path.replace(user, "<u>").replace(quote(quote(user, safe=""), safe=""), "<u>")
            found.append((method, named.replace(quote(user, safe=""), "<u>"), answer.status_code,
                          urlsplit(answer.headers.get("Location", "")).path.replace(user, "<u>")))
        return found

    assert shapes(ALICE_P) == shapes(CAROL_P) == shapes(DAVE_P)


def test_the_key_is_kept_out_of_the_hubs_log_and_from_other_users(world):
    hub, _, _ = world
    path = hub.settings.paths.state / "hub" / "workspace-hosts.key"
    assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
    assert workspace_host_key(hub.settings).hex() not in hub.log.read_text(errors="replace")


def test_the_token_endpoint_tells_another_person_nothing_of_her_workspace(world):
    """bob posts a made-up code to the token endpoint with her client id, and with dave's (none):
    the answers are alike and name no host."""
    hub, people, addresses = world
    found = {}
    for user in (ALICE_P, DAVE_P):
        answer = requests.post(f"{hub.url}/hub/api/oauth2/token", timeout=30, headers={
            "Authorization": f"token {people['bob'].token}"}, data={
            "client_id": client_id(user, P), "client_secret": "x" * 32, "grant_type": "authorization_code",
            "code": "made-up", "redirect_uri": f"{hub.url}/x"})
        assert _label(addresses["alice"]) not in answer.text + answer.headers.get("Location", "")
        found[user] = (answer.status_code, answer.text.replace(quote(user, safe=""), "<u>").replace(user, "<u>"))
    assert found[ALICE_P] == found[DAVE_P], found


def test_a_member_of_her_project_is_not_given_her_workspaces_host(world):
    """carol shares alice's project: her home page, her own user, the project's paths and alice's
    workspace user's paths, as carol, never name alice's host."""
    hub, people, addresses = world
    carol, label = people["carol"], _label(addresses["alice"])
    seen = []
    for path in ("/hub/home", f"/hub/spawn/carol/{P}", f"/hub/spawn-pending/{ALICE_P}/{P}", f"/hub/user/{ALICE_P}/{P}/lab",
                 f"/user/{ALICE_P}/{P}/lab", f"/hub/user-redirect/{P}/", "/hub/token"):
        answer = carol.http.get(hub.url + path, allow_redirects=False, timeout=30)
        seen.append((path, answer.status_code, answer.headers.get("Location", "") + answer.text))
    for path in ("/hub/api/user", "/hub/api/users/carol", f"/hub/api/users/{ALICE_P}", f"/hub/api/users/{CAROL_P}",
                 f"/hub/api/users/{ALICE_P}/servers/{P}/progress"):
        answer = carol.api("GET", path, allow_redirects=False)
        seen.append((path, answer.status_code, answer.headers.get("Location", "") + answer.text))
    assert not [(path, status) for path, status, text in seen if label in text]


def test_her_kernel_finds_no_other_workspaces_host_nor_the_key(world):
    """alice's notebook reads its environment and asks the hub socket who its token is (the one
    read-only request it allows): nothing names bob's workspace's host or holds the key."""
    hub, people, addresses = world
    bobs, key = _label(addresses["bob"]), workspace_host_key(hub.settings)
    code = """
import os, json, urllib.request
api = os.environ["JUPYTERHUB_API_URL"]
req = urllib.request.Request(api + "/user", headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
try:
    told = urllib.request.urlopen(req, timeout=20).read().decode()
except Exception as exc:
    told = repr(exc)
print(json.dumps({"env": dict(os.environ), "user": told}))
"""
    ran = execute(addresses["alice"], people["alice"].token, code)
    assert ran["error"] is None, ran["error"]
    out = ran["stdout"]
    assert bobs not in out and key.hex() not in out, "the kernel saw bob's host or the key"
    assert not [w for w in WORKSPACE_LABEL.findall(out) if w != _label(addresses["alice"])], out[-2000:]


# ---- 5. Referrer-Policy on every answer of her workspace's server ---------------------------------
def _policies(answer: requests.Response) -> list:
    return answer.raw.headers.getlist("Referrer-Policy")


def test_every_http_answer_of_her_workspace_says_same_origin(world):
    hub, people, addresses = world
    base, auth = addresses["alice"], {"Authorization": f"token {people['alice'].token}"}
    static = requests.get(base + "/static/favicon.ico", headers=auth, timeout=30)
    etag = static.headers.get("Etag", '"x"')
    probes = {
        "anonymous /lab (to the hub)": ("GET", "/lab", {}),
        "anonymous API": ("GET", "/api/contents/", {}),
        "anonymous HEAD": ("HEAD", "/lab", {}),
        "the server's root": ("GET", "/", auth),
        "HEAD /lab": ("HEAD", "/lab", auth),
        "OPTIONS": ("OPTIONS", "/api/contents", auth),
        "a 404": ("GET", "/api/no-such-thing", auth),
        "a 304": ("GET", "/static/favicon.ico", {**auth, "If-None-Match": etag}),
        "a 405": ("PATCH", "/api/status", auth),
        "a refused write": ("PUT", "/api/contents/../../etc/x", auth),
        "bad JSON": ("POST", "/api/sessions", {**auth, "Content-Type": "application/json"}),
        "a closed port's relay": ("GET", "/proxy/1/x", auth),
        "a relay's redirect": ("GET", "/proxy/1", auth),
        "the OAuth callback": ("GET", "/oauth_callback?code=x&state=y", {}),
        "a double slash": ("GET", "//lab", auth),
        "a dotted path": ("GET", "/api/../api/status", auth),
    }
    missing = {}
    for kind, (method, path, headers) in probes.items():
        answer = requests.request(method, base + path, headers=headers, data="{" if kind == "bad JSON" else None,
                                  allow_redirects=False, timeout=30)
        if _policies(answer) != ["same-origin"]:
            missing[kind] = (answer.status_code, _policies(answer))
    assert not missing, missing


def _raw_upgrade(hub, address: str, path: str, headers: dict) -> tuple[int, list]:
    """A WebSocket upgrade sent by hand to the proxy (the workspace's Host header); the answer's
    status and its ``Referrer-Policy`` values."""
    parts = urlsplit(address)
    lines = [f"GET {parts.path}{path} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", *[f"{k}: {v}" for k, v in headers.items()]]
    if not any(k.lower() == "sec-websocket-version" for k in headers):
        lines.append("Sec-WebSocket-Version: 13")
    with socket.create_connection(("127.0.0.1", hub.port), timeout=30) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line, *fields = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    policies = [v.strip() for k, _, v in (f.partition(":") for f in fields) if k.lower() == "referrer-policy"]
    return int(status_line.split()[1]), policies


@pytest.mark.parametrize("kind,path,extra,authorized", [
    ("an accepted upgrade (101)", "/api/events/subscribe", {}, True),
    ("an upgrade to no kernel", "/api/kernels/00000000-0000-0000-0000-000000000000/channels", {}, True),
    ("an unsupported version", "/api/events/subscribe", {"Sec-WebSocket-Version": "7"}, True),
    ("another origin", "/api/events/subscribe", {"Origin": "http://evil.example"}, True),
    ("an anonymous upgrade", "/api/events/subscribe", {}, False),
    ("an upgrade of a closed port's relay", "/proxy/1/ws", {}, True),
])
def test_websocket_answers_of_her_workspace_say_same_origin(world, kind, path, extra, authorized):
    hub, people, addresses = world
    headers = {**({"Authorization": f"token {people['alice'].token}"} if authorized else {}), **extra}
    status, policies = _raw_upgrade(hub, addresses["alice"], path, headers)
    if kind.startswith("an accepted"):
        assert status == 101, status
    assert policies == ["same-origin"], (kind, status, policies)


# ---- 6. hosts that collide -------------------------------------------------------------------------
def test_a_person_named_like_a_workspace_gets_another_host(world):
    """A person named exactly like alice's keyed label, like her workspace user, or like its hashed
    or IDNA spellings: none is given her workspace's host (nor bob's)."""
    hub, _, addresses = world
    hook = workspace_host_hook(workspace_host_key(hub.settings))
    domain = urlsplit(hub.url).hostname
    taken = {urlsplit(addresses[p]).hostname for p in ("alice", "bob")}
    label = _label(addresses["alice"])
    for name in (label, label.upper(), f"{label}.", "w-" + label[3:], "alice--diabetes-t2", "w-alice--diabetes-t2",
                 f"alice%40{P}", f"ALICE@{P}", f"alice@{P}@x", f" alice@{P}"):
        for kind in ("user", "service"):
            assert hook(name, domain, kind) not in taken, (name, kind)
    assert hook(ALICE_P, domain, "user") == urlsplit(addresses["alice"]).hostname
