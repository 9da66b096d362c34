"""Red team, eighteenth round (A): the hub side of ADR 17, a JupyterHub user per workspace, attacked by
someone other than its author.

One real hub (tests/hub/hubfixtures.py, no gate): alice works on diabetes-t2 and mi-outcomes (both
workspaces running), bob on mi-outcomes, carol on diabetes-t2 (signed in, nothing running), root
administers. What a researcher, or a page or script in her browser or notebook, tried:

1. her own paths (``/hub/api/users/alice/servers/P``, ``/hub/spawn/alice/P``), which the hub sends on
   (``307``) to her workspace user: encoded slashes, ``..``, ``@`` and ``%40``, double encoding, a NUL,
   a Unicode hyphen, capitals, another person's workspace user as the project, markup in the name
   (reflected on the refusal page), and a kept query string with an outside ``next`` and encoded
   line ends: the redirect never leaves the hub nor names another workspace;
2. another person on her paths, and what his answers tell him of her workspaces (an oracle of who
   works on which project);
3. JupyterHub's authorize endpoint, whose confirmation page a person's own workspace skips: a
   redirect address of another site, of her other workspace, or with a path after it; scopes beyond
   the workspace's (``inherit``, her other workspace, a role's name); another person's session;
   the workspace's own token, and hers, used instead of a session; a code its page reads,
   exchanged by its notebook with its server's token (the client's secret), and her other
   workspace's code exchanged so; a code sent to its callback with a state the page chose;
4. the workspace's own token (``$JUPYTERHUB_API_TOKEN``, read in her notebook) on the hub's REST API:
   list users, read or start or stop her other workspace, make tokens, share its server, start her
   workspaces through her own path, open her other workspace;
5. her role on her workspace user: its tokens, a share code, admin rights, its activity, deleting it,
   its default server, a server with no name or another spelling of the project;
6. names: pairs of person and project (``--`` in either, ``w-`` and ``xn--`` people, lookalike
   legacy names, names too long for a DNS label) that would give two workspaces, or a workspace and
   a person, one host; role names of two pairs, or of a pair and a role of JupyterHub or the
   platform, that would be one;
7. a person whose hub account an administrator revoked: her workspace started by an administrator,
   and the refresh of her workspace user's token;
8. a membership withdrawn while the hub is down: her role on that workspace after the restart.

70 attempts. Before the fix 2 got through (7: an administrator started the workspace of a person
whose hub account was revoked, and it ran until the membership watcher stopped it; the refresh of
its workspace user asked the registry alone, so its token stayed valid). The fix: the hub's
admission refuses a workspace whose person's hub account is not approved
(:func:`pds_kernel.hub.admission.check_workspace_admission`, ``account_ok``, audited as
``workspace.refused``), and the local authenticator's refresh of a workspace user asks the same
(:func:`pds_kernel.hub.common.refresh_workspace_user`). The 68 others failed already. What remains
(docs/isolation.md), one strict expected failure: an anonymous request to a workspace's host said
whether it ran, and its host named its person and project. Closed since (ADR 17, amended): the host
is a keyed digest of the workspace's name, and every address formed from the names answers alike;
two attempts on those hosts were added then (another person looking for her host in the hub's
answers, a kernel looking for the hub's key): 73 attempts, none got through.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from jupyterhub import orm
from jupyterhub.roles import _validate_role_name, get_default_roles
from jupyterhub.scopes import _check_scopes_exist
from jupyterhub.utils import subdomain_hook_idna

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hub_kernel import execute
from hubfixtures import OTHER_PROJECT, PROJECT, hub_user, module_hub, signed_in, workspace_ready

from pds_kernel.errors import InvalidInput
from pds_kernel.hub.common import ADMIN_ROLE, HubContext
from pds_kernel.hub.local import (
    PdsNativeAuthenticator,
    hub_session,
    provision_account,
    set_account_approval,
    workspace_host_key,
)
from pds_kernel.hub.origins import WORKSPACE_LABEL, workspace_host_hook
from pds_kernel.workspace_names import parse_workspace_user, workspace

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.timeout(300)]

P, Q = PROJECT, OTHER_PROJECT
ALICE_P, ALICE_Q = hub_user("alice", P), hub_user("alice", Q)
EVIL = "evil.example"


@pytest.fixture(name="world", scope="module")
def world_fixture():
    """The hub; root, alice, bob and carol signed in (tokens); alice's two workspaces running, and the
    token of her diabetes-t2 workspace's server as her notebook reads it."""
    with module_hub("pdsr18") as hub:
        later = date.today() + timedelta(days=100)
        hub.registry.add_member("root", Q, "alice", "researcher", later)
        hub.registry.upsert_user("root", "carol")
        hub.registry.add_member("root", P, "carol", "researcher", later)
        secrets = {name: provision_account(hub.settings, hub.registry, name, "correct-horse-battery-9", actor="root")
                   for name in ("root", "alice", "bob", "carol")}
        hub.start()
        people = signed_in(hub, secrets)
        for project in (P, Q):
            started = people["alice"].api("POST", f"/hub/api/users/alice/servers/{project}")
            assert started.status_code in (201, 202), started.text
        addresses = {project: hub.server(workspace_ready(people["alice"], "alice", project)) for project in (P, Q)}
        ran = execute(addresses[P], people["alice"].token, "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])")
        assert ran["error"] is None, ran["error"]
        server_token = ran["stdout"].strip().splitlines()[-1]
        yield hub, people, addresses, server_token


def _hub_users(hub) -> set[str]:
    return {model["name"] for model in hub.admin_api("GET", "/users").json()}


def _servers(hub, user: str) -> set[str]:
    return set(hub.admin_api("GET", f"/users/{user}").json().get("servers") or {})


def _roles(hub, user: str) -> set[str]:
    return set(hub.admin_api("GET", f"/users/{user}").json().get("roles") or [])


def _as_token(token: str) -> dict:
    return {"Authorization": f"token {token}"}


# ---- 1. her own paths and the 307 --------------------------------------------------------------
CRAFTED_PROJECTS = [
    f"{P}%2F..%2Fbob@{Q}",        # an encoded path to another person's workspace user
    f"bob@{Q}",                    # another person's workspace user as the project
    f"bob%40{Q}",                  # the same, its @ encoded
    f"{P}%2540{Q}",                # a double-encoded @
    f"{P}%00",                     # a NUL after the project
    "diabetes%E2%80%90t2",         # a Unicode hyphen (U+2010)
    P.upper(),                     # capitals
    f"{P}.",                       # a trailing dot (a DNS spelling of the same name)
    f"%20{P}",                     # a blank before it
    f"{Q}%3Fnext=//{EVIL}",        # an encoded query inside the name
]


@pytest.mark.parametrize("project", CRAFTED_PROJECTS)
def test_a_crafted_project_on_her_own_path_reaches_no_workspace(world, project):
    hub, people, _, _ = world
    before = _hub_users(hub)
    answer = people["alice"].api("POST", f"/hub/api/users/alice/servers/{project}", allow_redirects=False)
    assert answer.status_code in (400, 403, 404), (answer.status_code, answer.headers.get("Location"))
    assert "Location" not in answer.headers
    assert _hub_users(hub) == before, "a refused start makes no hub user"
    assert _servers(hub, hub_user("bob", Q)) == set()


@pytest.mark.parametrize("person", ["bob%2F..%2Falice", f"alice%40{P}%40x", "ALICE", f"alice%40{P}%2F..%2F{Q}",
                                    f"alice%2540{P}", f"alice%40{P}%00"])
def test_a_crafted_person_on_the_api_reaches_no_workspace(world, person):
    hub, people, _, _ = world
    answer = people["alice"].api("POST", f"/hub/api/users/{person}/servers/{P}", allow_redirects=False)
    assert answer.status_code in (400, 403, 404) and "Location" not in answer.headers, answer.status_code


def test_markup_in_the_project_is_not_reflected_on_the_refusal_page(world):
    hub, people, _, _ = world
    page = people["alice"].http.get(f"{hub.url}/hub/spawn/alice/%3Cimg%20src=x%20onerror=alert(1)%3E",
                                    allow_redirects=False, timeout=30)
    assert page.status_code == 403
    assert "onerror=alert(1)>" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text


@pytest.mark.parametrize("path", [
    f"/hub/api/users/alice/servers/{P}?next=https://{EVIL}/&a=%0d%0aLocation:%20http://{EVIL}/",
    f"/hub/spawn/alice/{P}?next=//{EVIL}/",
    f"/hub/spawn/alice/{P}?next=http://{EVIL}/x",
    f"/hub/spawn/alice/{P}?next=http://w-bob--{Q}.pds.localhost/",
])
def test_the_kept_query_never_sends_her_off_the_hub_or_to_another_workspace(world, path):
    """The 307 keeps the query; each hop after it stays on the hub or her own workspace's host."""
    hub, people, addresses, _ = world
    alice = people["alice"]
    method = "POST" if "/api/" in path else "GET"
    answer = alice.http.request(method, hub.url + path, allow_redirects=False, timeout=30,
                                headers={"Authorization": f"token {alice.token}"} if method == "POST" else {})
    assert answer.status_code == 307
    location = answer.headers["Location"]
    own = f"/hub/api/users/{ALICE_P}/servers/{P}?" if method == "POST" else f"/hub/spawn/{ALICE_P}/{P}?"
    assert location.startswith(own), location
    assert "\r" not in location and "\n" not in location
    if method == "GET":
        hops = [urljoin(hub.url, location)]
        for _ in range(5):
            answer = alice.http.get(hops[-1], allow_redirects=False, timeout=30)
            if "Location" not in answer.headers:
                break
            hops.append(urljoin(hops[-1], answer.headers["Location"]))
        for hop in hops:
            assert urlsplit(hop).hostname in (urlsplit(hub.url).hostname, urlsplit(addresses[P]).hostname), hops


# ---- 2. another person on her paths ---------------------------------------------------------------
def test_another_person_on_her_own_paths_is_refused_and_sent_nowhere(world):
    hub, people, _, _ = world
    bob = people["bob"]
    for method in ("POST", "DELETE"):
        answer = bob.api(method, f"/hub/api/users/alice/servers/{P}", allow_redirects=False)
        assert answer.status_code in (403, 404) and "Location" not in answer.headers, (method, answer.status_code)
    page = bob.http.get(f"{hub.url}/hub/spawn/alice/{P}", allow_redirects=False, timeout=30)
    assert page.status_code in (403, 404) and "Location" not in page.headers
    assert _servers(hub, ALICE_P) == {P}


def test_another_person_cannot_tell_her_workspaces_from_none(world):
    """bob's answers about alice's running workspaces, dave's (none) and a project that does not
    exist are the same: nothing says who works on which project."""
    hub, people, _, _ = world
    bob = people["bob"]

    def answers(person: str, project: str) -> list:
        name = f"{person}@{project}"
        found = [bob.api(method, path, allow_redirects=False).status_code for method, path in [
            ("GET", f"/hub/api/users/{name}"), ("POST", f"/hub/api/users/{name}/servers/{project}"),
            ("GET", f"/hub/api/users/{name}/servers/{project}/progress"),
            ("POST", f"/hub/api/users/{person}/servers/{project}")]]
        for path in (f"/hub/spawn/{name}/{project}", f"/hub/spawn-pending/{name}/{project}", f"/hub/user/{name}/{project}/"):
            found.append(bob.http.get(hub.url + path, allow_redirects=False, timeout=30).status_code)
        return found

    running = answers("alice", P)
    assert answers("alice", Q) == running == answers("dave", P) == answers("alice", "no-such-project"), running


#: What an anonymous client asks a workspace's host (method, path after the server's prefix, headers):
#: a page, the server's and JupyterLab's APIs, ``HEAD``, a WebSocket upgrade, a write, the OAuth
#: callback. Each answer must not depend on whether the workspace runs or exists.
ANONYMOUS_PROBES = [
    ("GET", "/lab", {}),
    ("GET", "/api/status", {}),
    ("GET", "/lab/api/settings", {}),
    ("HEAD", "/lab", {}),
    ("GET", "/api/kernels/x/channels", {"Upgrade": "websocket", "Connection": "Upgrade",
                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}),
    ("POST", "/api/contents", {}),
    ("GET", "/oauth_callback", {}),
]
#: Headers whose presence says nothing of the workspace (the clock, the connection's own).
_NEUTRAL_HEADERS = {"date", "connection", "keep-alive"}


def _anonymous_answer(address: str, person: str, method: str, path: str, headers: dict) -> tuple:
    """What an anonymous client can compare of one answer, the person's name taken out: status, the
    redirect's path, the headers' names, the cookies' names, the body's length class (digits)."""
    answer = requests.request(method, address + path, headers=headers, allow_redirects=False, timeout=30)
    location = urlsplit(answer.headers.get("Location", "")).path.replace(person, "<person>")
    cookies = sorted(c.split("=", 1)[0].replace(person, "<person>") for c in answer.raw.headers.getlist("Set-Cookie"))
    size = int(answer.headers.get("Content-Length") or len(answer.content))
    return (answer.status_code, location, tuple(sorted({name.lower() for name in answer.headers} - _NEUTRAL_HEADERS)),
            tuple(cookies), len(str(size)) if size else 0)


def _guessed_addresses(hub, real: str, person: str, project: str) -> dict[str, str]:
    """The addresses of ``person``'s workspace of ``project`` that someone without the hub's key can
    form from the two names (the server's path after each): the host of ADR 17 before its amendment
    (``w-<person>--<project>``), JupyterHub's own host for the workspace user's name, the person's
    own host, and the hub's host."""
    hub_parts = urlsplit(hub.url)
    port = f":{hub_parts.port}" if hub_parts.port else ""
    path = urlsplit(real).path.replace("alice", person).replace(P, project)
    name = f"{person}@{project}"
    hosts = {"ADR 17's first host": f"w-{person}--{project}.{hub_parts.hostname}",
             "JupyterHub's own host": subdomain_hook_idna(name, hub_parts.hostname, "user"),
             "the person's host": f"{person}.{hub_parts.hostname}",
             "the hub's host": hub_parts.hostname}
    return {kind: f"{hub_parts.scheme}://{host}{port}{path}" for kind, host in hosts.items()}


def test_an_anonymous_request_cannot_tell_whether_her_workspace_runs(world):
    """Got through before the fix (a strict expected failure since red team 18): anyone who guessed
    a person and a project asked their workspace's host, ``w-alice--diabetes-t2``: a running
    workspace sent a page to the hub's authorize endpoint, answered its APIs ``403``, ``HEAD``
    ``405`` and a WebSocket ``404`` with its own headers and cookies; one that did not run (carol's)
    or did not exist (dave's) sent every request to the hub. Now a workspace's host is a keyed
    digest of its name (``w--<26 characters>``, :func:`pds_kernel.hub.origins.workspace_host_hook`):
    at every address formed from the names, alice's running workspace, carol's stopped one and
    dave's that does not exist answer alike."""
    hub, _, addresses, _ = world
    real = addresses[P]
    label = urlsplit(real).hostname.split(".")[0]
    assert WORKSPACE_LABEL.fullmatch(label), real
    assert workspace_host_hook(workspace_host_key(hub.settings))(ALICE_P, "h", "user") == f"{label}.h"
    differ = []
    guessed = {person: _guessed_addresses(hub, real, person, P) for person in ("alice", "carol", "dave")}
    assert real not in guessed["alice"].values()
    for kind in guessed["alice"]:
        for method, path, headers in ANONYMOUS_PROBES:
            answers = {person: _anonymous_answer(addresses[kind] + path, person, method, "", headers)
                       for person, addresses in guessed.items()}
            if len(set(answers.values())) > 1:
                differ.append((kind, method, path, answers))
    assert not differ, differ
    # the control: at its real address, her running workspace answers otherwise (the oracle the
    # key now hides)
    told = [(method, path) for method, path, headers in ANONYMOUS_PROBES
            if _anonymous_answer(real + path, "alice", method, "", headers)
            != _anonymous_answer(guessed["alice"]["ADR 17's first host"] + path, "alice", method, "", headers)]
    assert told, "the probes no longer tell a running workspace from one that is not"


def test_another_signed_in_person_is_not_given_her_workspaces_host(world):
    """bob, signed in, looks for the host of alice's running workspace where the hub might name it:
    her users in the REST API (his session's token), the pages he may open, the redirects of her
    paths; none holds it (with it he could ask whether it runs)."""
    hub, people, addresses, _ = world
    bob = people["bob"]
    label = urlsplit(addresses[P]).hostname.split(".")[0]
    seen = []
    for path in (f"/hub/api/users/{ALICE_P}", f"/hub/api/users/{ALICE_P}/servers/{P}/progress", "/hub/api/users/alice",
                 "/hub/api/users", f"/hub/api/users/{ALICE_P}/servers/{P}"):
        answer = bob.api("GET", path, allow_redirects=False)
        seen.append((path, answer.status_code, answer.headers.get("Location", ""), answer.text))
    for path in ("/hub/home", f"/hub/spawn-pending/{ALICE_P}/{P}", f"/hub/user/{ALICE_P}/{P}/", f"/user/{ALICE_P}/{P}/lab",
                 f"/hub/spawn/alice/{P}", "/hub/token"):
        answer = bob.http.get(hub.url + path, allow_redirects=False, timeout=30)
        seen.append((path, answer.status_code, answer.headers.get("Location", ""), answer.text))
    told = [(path, status) for path, status, location, text in seen if label in location or label in text]
    assert not told, told
    assert label in people["alice"].get("/hub/home").text  # the control: her own home page links to it


def test_a_kernel_cannot_read_the_key_of_the_workspaces_hosts(world):
    """alice's notebook (in her sandbox) looks for the hub's key, which would give her every other
    workspace's host: at its path on the host, its folder, the environment of her kernel and of
    the sandbox's first process; it is nowhere in her sandbox."""
    hub, people, addresses, _ = world
    key = workspace_host_key(hub.settings).hex()
    path = hub.settings.paths.state / "hub" / "workspace-hosts.key"
    assert path.is_file()
    code = f"""
import os, pathlib
found = []
for p in ({str(path)!r}, {str(path.parent)!r}, "/proc/1/environ", "/proc/self/environ"):
    try:
        data = pathlib.Path(p).read_bytes() if not os.path.isdir(p) else "\\n".join(os.listdir(p)).encode()
        found.append((p, {key!r}.encode() in data or bytes.fromhex({key!r}) in data))
    except OSError as exc:
        found.append((p, type(exc).__name__))
print(found)
"""
    ran = execute(addresses[P], people["alice"].token, code)
    assert ran["error"] is None, ran["error"]
    result = ran["stdout"].strip().splitlines()[-1]
    assert "True" not in result and key not in ran["stdout"], result
    assert f"({str(path)!r}, 'FileNotFoundError')" in result or f"({str(path)!r}, 'PermissionError')" in result, result


# ---- 3. the skipped confirmation page ------------------------------------------------------------
def _client_of(address: str) -> dict:
    """The OAuth request a workspace's server makes of an anonymous browser: its client id and
    redirect address."""
    answer = requests.get(address + "/lab", allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.status_code
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    return {"client_id": query["client_id"][0], "redirect_uri": query["redirect_uri"][0]}


def _authorize(hub, client: dict, session=None, headers=None, **changes) -> requests.Response:
    params = {**client, "response_type": "code", "state": "chosen-by-the-page", **changes}
    url = f"{hub.url}/hub/api/oauth2/authorize?{urlencode(params)}"
    return (session or requests).get(url, headers=headers or {}, allow_redirects=False, timeout=30)


def _no_code(answer: requests.Response) -> None:
    assert "code=" not in answer.headers.get("Location", ""), answer.headers.get("Location")


def test_her_own_workspace_is_authorized_without_the_page_and_only_to_its_own_address(world):
    """The control of the attacks below: her session, her workspace's own request."""
    hub, people, addresses, _ = world
    client = _client_of(addresses[P])
    answer = _authorize(hub, client, people["alice"].http)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(client["redirect_uri"] + "?code=")


@pytest.mark.parametrize("where", ["another site", "her other workspace", "a path after it"])
def test_a_redirect_address_of_the_pages_choice_gets_no_code(world, where):
    hub, people, addresses, _ = world
    client = _client_of(addresses[P])
    redirect = {"another site": f"http://{EVIL}/cb",
                "her other workspace": _client_of(addresses[Q])["redirect_uri"],
                "a path after it": client["redirect_uri"] + "/../../../x"}[where]
    answer = _authorize(hub, client, people["alice"].http, redirect_uri=redirect)
    assert answer.status_code == 400
    _no_code(answer)


@pytest.mark.parametrize("scope", ["inherit", f"access:servers!server={ALICE_Q}/{Q}", "access:servers!user=alice",
                                   "tokens", "read:users", f"workspace.alice.{Q}", "researcher", "admin"])
def test_scopes_beyond_the_workspaces_get_no_code(world, scope):
    hub, people, addresses, _ = world
    client = _client_of(addresses[P])
    answer = _authorize(hub, client, people["alice"].http, scope=scope)
    _no_code(answer)
    assert answer.headers.get("Location", "").startswith(client["redirect_uri"] + "?error=invalid_scope")


def test_another_persons_session_gets_no_code_for_her_workspace(world):
    hub, people, addresses, _ = world
    answer = _authorize(hub, _client_of(addresses[P]), people["bob"].http)
    # refused as a client that does not exist (red team 23: a 403 told him it runs)
    assert answer.status_code == 400 and "Invalid client_id parameter value." in answer.text
    _no_code(answer)


@pytest.mark.parametrize("whose", ["the workspace's token, its own client", "the workspace's token, her other workspace",
                                   "her own token, her other workspace"])
def test_a_token_instead_of_a_session_gets_no_code(world, whose):
    hub, people, addresses, server_token = world
    token = people["alice"].token if whose.startswith("her own") else server_token
    client = _client_of(addresses[P] if whose.endswith("own client") else addresses[Q])
    answer = _authorize(hub, client, headers=_as_token(token))
    _no_code(answer)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/hub/login")


def _code(hub, alice, client: dict) -> str:
    answer = _authorize(hub, client, alice.http)
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def _exchange(hub, client: dict, secret: str, code: str) -> requests.Response:
    return requests.post(f"{hub.url}/hub/api/oauth2/token", timeout=30, data={
        "client_id": client["client_id"], "client_secret": secret, "grant_type": "authorization_code",
        "code": code, "redirect_uri": client["redirect_uri"]})


def test_a_code_her_workspace_reads_gives_a_token_for_that_workspace_only(world):
    """Script in her workspace's page opens the authorize address (no page to confirm) and reads the
    code its own callback receives; her notebook exchanges it with its server's token (the client's
    secret). The token is hers, for that one workspace: nothing of her other workspace, no token,
    no start."""
    hub, people, addresses, server_token = world
    client = _client_of(addresses[P])
    exchanged = _exchange(hub, client, server_token, _code(hub, people["alice"], client))
    assert exchanged.status_code == 200, exchanged.text[:200]
    token = exchanged.json()["access_token"]
    model = requests.get(f"{hub.url}/hub/api/user", headers=_as_token(token), timeout=30).json()
    assert model["name"] == "alice"
    assert {scope for scope in model["scopes"] if scope.startswith("access:")} == {f"access:servers!server={ALICE_P}/{P}"}
    for method, url in [("GET", f"{addresses[Q]}/api/contents/"), ("POST", f"{hub.url}/hub/api/users/alice/tokens"),
                        ("POST", f"{hub.url}/hub/api/users/alice/servers/{Q}"),
                        ("DELETE", f"{hub.url}/hub/api/users/{ALICE_Q}/servers/{Q}")]:
        answer = requests.request(method, url, headers=_as_token(token), allow_redirects=False, timeout=30)
        assert answer.status_code in (302, 403, 404), (method, url, answer.status_code)
    assert _servers(hub, ALICE_Q) == {Q}


def test_her_other_workspaces_code_is_not_exchanged_with_this_workspaces_secret(world):
    hub, people, addresses, server_token = world
    other = _client_of(addresses[Q])
    exchanged = _exchange(hub, other, server_token, _code(hub, people["alice"], other))
    assert exchanged.status_code in (400, 401, 403) and "access_token" not in exchanged.text


@pytest.mark.parametrize("state_cookie", [None, "chosen-by-the-page"])
def test_a_code_sent_to_her_workspace_without_its_own_state_signs_nobody_in(world, state_cookie):
    """A page of another origin sends a browser to the workspace's callback with a code and the
    state it chose (login CSRF: the browser would be signed in to a workspace as someone else),
    with no state cookie, or one it tossed unsigned."""
    hub, people, addresses, _ = world
    client = _client_of(addresses[P])
    browser = requests.Session()
    if state_cookie is not None:
        for name in ("jupyterhub-user-alice%40diabetes-t2-diabetes-t2-oauth-state", "oauth-state"):
            browser.cookies.set(name, state_cookie, domain=urlsplit(addresses[P]).hostname)
    code = _code(hub, people["alice"], client)
    answer = browser.get(f"{client['redirect_uri']}?{urlencode({'code': code, 'state': 'chosen-by-the-page'})}",
                         allow_redirects=False, timeout=30)
    assert answer.status_code == 403, answer.status_code
    assert not [c for c in browser.cookies if c.name.startswith("jupyterhub-user-") and not c.name.endswith("state")]
    assert requests.get(f"{addresses[P]}/api/contents/", cookies=browser.cookies, timeout=30,
                        allow_redirects=False).status_code in (302, 403)


# ---- 4. the workspace's own token on the hub -------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("GET", "/hub/api/users"),
    ("GET", f"/hub/api/users/{ALICE_Q}"),
    ("GET", "/hub/api/users/alice"),
    ("POST", f"/hub/api/users/{ALICE_Q}/servers/{Q}"),
    ("DELETE", f"/hub/api/users/{ALICE_Q}/servers/{Q}"),
    ("DELETE", f"/hub/api/users/{ALICE_P}/servers/{P}"),
    ("POST", f"/hub/api/users/{ALICE_P}/tokens"),
    ("POST", "/hub/api/users/alice/tokens"),
    ("POST", f"/hub/api/share-codes/{ALICE_P}/{P}"),
    ("POST", f"/hub/api/shares/{ALICE_P}/{P}"),
    ("POST", f"/hub/api/users/alice/servers/{Q}"),
])
def test_the_workspace_token_acts_on_nothing_else(world, method, path):
    hub, _, _, server_token = world
    answer = requests.request(method, hub.url + path, headers=_as_token(server_token), json={"user": "bob"},
                              allow_redirects=False, timeout=30)
    assert answer.status_code in (403, 404), (answer.status_code, answer.text[:200])
    assert _servers(hub, ALICE_Q) == {Q} and _servers(hub, ALICE_P) == {P}


def test_the_workspace_token_does_not_open_her_other_workspace(world):
    _, _, addresses, server_token = world
    for path in ("api/contents/", "api/kernels"):
        answer = requests.get(f"{addresses[Q]}/{path}", headers=_as_token(server_token), allow_redirects=False, timeout=30)
        assert answer.status_code in (302, 403), (path, answer.status_code)


# ---- 5. her role on her workspace user --------------------------------------------------------------
@pytest.mark.parametrize("method,path,body", [
    ("GET", f"/hub/api/users/{ALICE_P}/tokens", None),
    ("POST", f"/hub/api/share-codes/{ALICE_P}/{P}", None),
    ("PATCH", f"/hub/api/users/{ALICE_P}", {"admin": True}),
    ("POST", f"/hub/api/users/{ALICE_P}/activity", {"last_activity": "2030-01-01T00:00:00Z"}),
    ("DELETE", f"/hub/api/users/{ALICE_P}", None),
    ("POST", f"/hub/api/users/{ALICE_P}/server", None),
    ("POST", f"/hub/api/users/{ALICE_P}/servers/", None),
    ("POST", f"/hub/api/users/{ALICE_P}/servers/{P.upper()}", None),
    ("POST", f"/hub/api/users/{ALICE_P}/servers/{P}-2", None),
    ("POST", f"/hub/api/users/{ALICE_P}/servers/{P}%2F", None),
])
def test_her_role_gives_nothing_beyond_her_one_server(world, method, path, body):
    hub, people, _, _ = world
    answer = people["alice"].api(method, path, json=body, allow_redirects=False)
    assert answer.status_code in (403, 404), (answer.status_code, answer.text[:200])
    assert _servers(hub, ALICE_P) == {P}
    assert ALICE_P in _hub_users(hub)


# ---- 6. names: hosts and roles ---------------------------------------------------------------------
PEOPLE = ["alice", "a", "ab", "a-b", "w-a", "w-a--bcd", "w-alice--diabetes-t2", "a--b", "xn--80ak6aa92e",
          "u-alice--1234", "al.ice", "al_ice", "alice-", "alice.", "x" * 50]
PROJECTS = ["bcd", "b-cd", "b--cd", "cde", "bcd-e", P, Q, "p" + "-q" * 19]


def _pairs():
    for person in PEOPLE:
        for project in PROJECTS:
            try:
                yield workspace(person, project)
            except InvalidInput:
                continue


def test_no_two_names_share_a_host():
    """Every workspace, every person and the platform's services: one host each (``--`` in a person
    or a project, people named like a workspace's label or JupyterHub's hashed and IDNA labels,
    labels past 63 characters)."""
    hosts: dict[str, str] = {}
    names = [(found.user, "user") for found in _pairs()] + [(person, "user") for person in PEOPLE] + \
        [(service, "service") for service in ("airlock", "pds-sync", "dask-gateway", "pds-watcher")]
    subdomain_hook = workspace_host_hook(bytes(range(32)))
    for name, kind in names:
        host = subdomain_hook(name, "pds.example.org", kind)
        label = host.removesuffix(".pds.example.org")
        assert "." not in label and 0 < len(label) <= 63, host
        assert hosts.setdefault(host, name) == name, f"{name} and {hosts[host]} share {host}"
    assert hosts[subdomain_hook(ALICE_P, "pds.example.org", "user")] == ALICE_P
    assert all(WORKSPACE_LABEL.fullmatch(host.split(".")[0]) for host, name in hosts.items()
               if parse_workspace_user(name) is not None)


def test_no_two_pairs_share_a_role_and_none_is_a_hub_or_platform_role():
    builtin = {role["name"] for role in get_default_roles()} | {
        ADMIN_ROLE, "researcher", "output-checker", "pds-sync", "airlock-service", "pds-gateway", "pds-watcher"}
    seen: dict[str, tuple] = {}
    for found in _pairs():
        _validate_role_name(found.role)  # JupyterHub creates it (a legacy name must not fail the grant)
        _check_scopes_exist(found.role_definition()["scopes"])
        assert found.role not in builtin
        assert seen.setdefault(found.role, (found.person, found.project)) == (found.person, found.project)
    for name in ("alice@diabetes-t2@x", "alice@@x", f"@{P}", "alice@", f"alice%40{P}", f"Alice@{P}", f"alice@{P.upper()}"):
        assert parse_workspace_user(name) is None, name


# ---- 7. a revoked hub account ---------------------------------------------------------------------
@pytest.fixture(name="carol_revoked", scope="module")
def carol_revoked_fixture(world):
    """An administrator revokes carol's hub account (``pds hub account revoke carol``)."""
    hub = world[0]
    set_account_approval(hub.settings, hub.registry, "carol", False, actor="root")
    return world


def test_a_revoked_persons_workspace_does_not_start(carol_revoked):
    """carol's account is revoked; an administrator starts her workspace, by her path and by her
    workspace user's (got through before the fix: it started and ran until the watcher's pass)."""
    hub, people, _, _ = carol_revoked
    for path in (f"/hub/api/users/carol/servers/{P}", f"/hub/api/users/{hub_user('carol', P)}/servers/{P}"):
        answer = people["root"].api("POST", path, allow_redirects=False)
        assert answer.status_code == 403 and "revoked" in answer.text, (path, answer.status_code, answer.text[:200])
    assert _servers(hub, hub_user("carol", P)) == set()
    refused = [e for e in hub.actions("workspace.refused") if e.target == "user:carol"]
    assert refused and refused[-1].actor == "root" and refused[-1].details["stage"] == "admission"


def test_a_revoked_persons_workspace_token_is_refused_at_its_refresh(carol_revoked):
    """The local authenticator's refresh of a workspace user (its server's token, every
    ``auth_refresh_age``; a spawn) on the hub's database: carol's account is revoked (above), alice's
    is not (got through before the fix: both were valid, the registry alone was asked)."""
    hub, _, _, _ = carol_revoked
    context = HubContext(settings=hub.settings, runtime=hub.runtime, registry=hub.registry)
    with hub_session(hub.settings) as session:
        auth = PdsNativeAuthenticator(context=context, db=session, membership_check_interval=0)
        for person, valid in (("alice", True), ("carol", False)):
            user = session.query(orm.User).filter(orm.User.name == hub_user(person, P)).one()
            assert asyncio.run(auth.refresh_user(user)) is valid, person


# ---- 8. withdrawn while the hub is down (last: it restarts the hub) -----------------------------------
def test_a_membership_withdrawn_while_the_hub_is_down_leaves_no_role_after_the_restart(world):
    """alice leaves mi-outcomes while the hub is stopped; her session outlives the restart. Her very
    first request after it (a start of that workspace by its workspace user's path) is refused, and
    her role on it is gone; the other one is kept (managed by the hub across restarts)."""
    hub, people, _, _ = world
    alice = people["alice"]
    assert f"workspace.alice.{Q}" in _roles(hub, "alice")
    hub.stop()
    hub.registry.remove_member("root", Q, "alice")
    hub.start()
    answer = alice.api("POST", f"/hub/api/users/{ALICE_Q}/servers/{Q}", allow_redirects=False)
    assert answer.status_code in (403, 404), answer.text[:200]
    roles = _roles(hub, "alice")
    assert f"workspace.alice.{Q}" not in roles and f"workspace.alice.{P}" in roles, roles
    assert _servers(hub, ALICE_Q) == set()
    withdrawn = [e for e in hub.actions("hub.workspace.withdraw") if e.project == Q and e.target == "user:alice"]
    assert withdrawn and withdrawn[-1].details["checked_at"] == "refresh"
