"""The gate inside a real hub: export from a workspace, two checkers approve in the browser, download.

A real JupyterHub (subprocess) runs WITH the airlock as a managed service. A researcher's kernel,
inside the bubblewrap sandbox, writes an aggregate table and calls
``pds_kernel.workspace.request_export``: the request goes out through ``/run/pds/gate.sock`` and
is authenticated by the workspace's own hub token. Two output checkers log in with their second
factor and approve through the gate's HTML pages (HubOAuth, chromium driven by Playwright); the
request is released to the outbox; the researcher downloads the released bytes. (The guides'
screenshots come from tests/journeys.)

The second test runs ``pds hub sync`` against a running hub after registry changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from chromium import CHROMIUM
from chromium import browser as chromium_browser
from hub_kernel import execute
from hubfixtures import OTHER_PROJECT, PASSWORD, PROJECT, Hub, browser_sign_in
from sqlalchemy import select
from test_hub import wait_ready, wait_stopped

from pds_kernel.airlock.models import ExportRequest
from pds_kernel.audit import Outcome
from pds_kernel.hub.local import provision_account

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]

GATE = "/services/airlock/"
CHECKERS = ("carol", "erin")
#: An aggregate table as a researcher would export it: every count is at least 10.
TABLE = "atc,persons,dispensings\nA10BA02,37,133\nA10BB09,25,67\n"

EXPORT_CODE = f"""
import json, os
from pathlib import Path
from pds_kernel import workspace
results = Path.home() / "results"
results.mkdir(exist_ok=True)
table = results / "dispensings_by_atc.csv"
table.write_text({TABLE!r})
answer = workspace.request_export([str(table)], "Table 1: dispensings by ATC code",
                                  "notebook analysis.ipynb, counts of distinct persons")
refused = {{}}
from pds_kernel.airlock.client import AirlockClient, submit
gate = AirlockClient()
for what, call in {{
    "other project": lambda: submit([str(table)], "elsewhere", project={OTHER_PROJECT!r}),
    "review": lambda: gate.request("POST", f"api/requests/{{answer['id']}}/reviews",
        json.dumps({{"verdicts": {{"0": {{"decision": "approve",
                                        "sha256": answer["files"][0]["sha256"]}}}}}}).encode()),
    "release": lambda: gate.request("POST", f"api/requests/{{answer['id']}}/release", b"{{}}"),
    "page": lambda: gate.request("GET", "requests"),
}}.items():
    try:
        call()
        refused[what] = None
    except Exception as exc:
        refused[what] = type(exc).__name__ + ": " + str(exc)
print(json.dumps({{"id": answer["id"], "state": answer["state"], "refused": refused,
                  "followed": gate.get(answer["id"])["state"],
                  "gate": os.environ.get("PDS_AIRLOCK_URL"), "home": str(Path.home())}}))
"""

#: After release: the released file does not go back into a workspace.
DOWNLOAD_CODE = """
import sys
from pds_kernel.airlock.client import AirlockClient
try:
    AirlockClient().request("GET", "api/requests/%s/download/0")
    print("downloaded")
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc))
"""


@pytest.fixture
def gate_hub(hub_world: Hub, monkeypatch) -> Hub:
    """The hub world with two output checkers of the project and the airlock service on."""
    monkeypatch.setenv("PDS_HUB_AIRLOCK", "on")
    expiry = date.today() + timedelta(days=100)
    # alice also works on another project: her workspace of PROJECT must not act for it
    hub_world.registry.add_member("root", OTHER_PROJECT, "alice", "researcher", expiry)
    for name in CHECKERS:
        hub_world.registry.upsert_user("root", name)
        hub_world.registry.add_member("root", PROJECT, name, "output-checker", expiry)
    return hub_world


def provision(hub: Hub, user: str) -> str:
    return provision_account(hub.settings, hub.registry, user, PASSWORD, actor="root")


def gate_api(hub: Hub, token: str, method: str, path: str, **kwargs) -> requests.Response:
    """The gate's JSON API through the public proxy, authenticated by a hub API token."""
    headers = {"Authorization": f"token {token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{hub.gate}api/{path}", timeout=60, headers=headers, **kwargs)


def approve_in_browser(browser, hub: Hub, user: str, secret: str, request_id: str,
                       screenshot: Path | None = None) -> str:
    """Log in, open the request page (HubOAuth redirects through the hub), approve every file;
    returns the state shown afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        browser_sign_in(page, hub, user, secret)
        page.goto(f"{hub.gate}requests/{request_id}")
        page.wait_for_selector("#review-form", timeout=30_000)
        assert page.locator(".verdict").count() == 1
        page.check("input[name='decision_0'][value='approve']")
        page.fill("textarea[name='comment_0']", "Counts of distinct persons, all at least 10.")
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        page.click("#submit-review")
        page.wait_for_selector("#state", timeout=30_000)
        return page.inner_text("#state").strip()
    finally:
        context.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")
def test_export_from_workspace_two_checkers_approve_in_browser_then_download(gate_hub: Hub):
    hub = gate_hub
    secrets = {name: provision(hub, name) for name in ("alice", *CHECKERS)}
    hub.start()

    # -- the researcher exports from a kernel inside the sandbox --------------------------------
    alice = hub.client()
    assert alice.login("alice", secrets["alice"])
    token = alice.make_token("alice")
    assert alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (201, 202)
    state = wait_ready(alice, "alice", PROJECT)
    result = execute(hub.server(state), token, EXPORT_CODE)
    assert result["error"] is None, result["error"]
    answer = json.loads(result["stdout"].strip().splitlines()[-1])
    assert answer["state"] == answer["followed"] == "submitted"
    assert answer["gate"] == "http://127.0.0.1:8082"  # the forwarded gate socket, nothing else
    request_id = answer["id"]
    # the workspace's own token acts only for its project, and never reviews or releases
    assert all(why and why.startswith("PermissionDenied") for why in answer["refused"].values()), answer
    assert "can only submit and follow" in answer["refused"]["other project"]
    table = TABLE.encode()

    # the request as the gate's JSON API shows it to its author, and as the database holds it
    shown = gate_api(hub, token, "GET", f"requests/{request_id}")
    assert shown.status_code == 200, shown.text
    shown = shown.json()
    assert (shown["author"], shown["project"], shown["state"]) == ("alice", PROJECT, "submitted")
    assert [f["name"] for f in shown["files"]] == ["dispensings_by_atc.csv"]
    assert shown["files"][0]["sha256"] == ""  # no hash before release: it confirms a guess (red team 20B)
    with hub.runtime.sessions() as s:
        row = s.scalars(select(ExportRequest).where(ExportRequest.id == request_id)).one()
        assert (row.author, row.project_id, row.state, row.reviews_required) == ("alice", PROJECT, "submitted", 2)
        assert [(f.name, f.sha256, f.size) for f in row.files] == [
            ("dispensings_by_atc.csv", hashlib.sha256(table).hexdigest(), len(table))]
    # the author never gets the contents of an unreleased file back (the gate is outside the workspace)
    staged = gate_api(hub, token, "GET", f"requests/{request_id}/files/0")
    assert staged.status_code == 403 and b"A10BA02" not in staged.content, staged.text
    assert gate_api(hub, "not-a-token", "GET", f"requests/{request_id}").status_code == 401

    # the author never reviews their own request
    own = gate_api(hub, token, "POST", f"requests/{request_id}/reviews",
                   json={"verdicts": {"0": {"decision": "approve", "comment": "",
                                             "sha256": hashlib.sha256(table).hexdigest()}}})
    assert own.status_code == 403, own.text
    assert gate_api(hub, token, "GET", f"requests/{request_id}").json()["state"] == "submitted"
    # a 120 MB body through the hub's proxy: 413 from the gate (it was 503), and the gate still serves
    huge = gate_api(hub, token, "POST", f"requests/{request_id}/withdraw", data=b" " * (120 * 1024 * 1024),
                    headers={"Content-Type": "application/json"})
    assert huge.status_code == 413, (huge.status_code, huge.text[:200])
    assert gate_api(hub, token, "GET", f"requests/{request_id}").json()["state"] == "submitted"

    # -- two output checkers approve through the gate's pages ---------------------------------
    with chromium_browser() as browser:
        first = approve_in_browser(browser, hub, "carol", secrets["carol"], request_id)
        assert first == "under_review"
        second = approve_in_browser(browser, hub, "erin", secrets["erin"], request_id)
        assert second == "released"

        # the researcher's view: released, with the download link
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        browser_sign_in(page, hub, "alice", secrets["alice"])
        page.goto(f"{hub.gate}requests/{request_id}")
        page.wait_for_selector("#download-0", timeout=30_000)
        assert page.inner_text("#state").strip() == "released"
        assert page.locator("#review-form").count() == 0
        with page.expect_download(timeout=30_000) as download_info:
            page.click("#download-0")
        browser_download = Path(download_info.value.path()).read_bytes()
        context.close()

    # -- released exactly the reviewed bytes, downloaded through the gate ------------------------
    released = hub.settings.paths.outbox / PROJECT / request_id / "dispensings_by_atc.csv"
    assert released.read_bytes() == table
    download = gate_api(hub, token, "GET", f"requests/{request_id}/download/0")
    assert download.status_code == 200, download.text
    assert download.content == table
    assert browser_download == table
    inside = execute(hub.server(state), token, DOWNLOAD_CODE % request_id)
    assert inside["error"] is None and inside["stdout"].startswith("PermissionDenied"), inside
    carol = hub.client()  # a checker cannot download: only the author, after release
    assert carol.login("carol", secrets["carol"])
    carol_token = carol.make_token("carol")
    assert gate_api(hub, carol_token, "GET", f"requests/{request_id}/download/0").status_code == 403

    # -- the audit trail: who did what, and it verifies -----------------------------------------
    target = f"request:{request_id}"
    entries = [e for e in hub.runtime.audit.entries() if e.target == target]
    by_action = {}
    for e in entries:
        by_action.setdefault(e.action, []).append(e)
    assert [e.actor for e in by_action["airlock.request.create"]] == ["alice"]
    assert [e.actor for e in by_action["airlock.request.submit"]] == ["alice"]
    votes = [e for e in by_action["airlock.review.submit"] if e.outcome == Outcome.OK]
    assert sorted(e.actor for e in votes) == sorted(CHECKERS)
    assert all(e.details["verdicts"]["dispensings_by_atc.csv"]["decision"] == "approve" for e in votes)
    refused = [e for e in by_action["airlock.review.submit"] if e.outcome == Outcome.DENIED]
    assert [e.actor for e in refused] == ["alice"]
    assert [e.outcome for e in by_action["airlock.request.approve"]] == [Outcome.OK]
    releases = [e for e in by_action["airlock.request.release"] if e.outcome == Outcome.OK]
    assert releases and releases[-1].project == PROJECT
    downloads = [e for e in by_action["airlock.file.download"] if e.outcome == Outcome.OK]
    assert [e.actor for e in downloads] == ["alice", "alice"]  # the browser, then the API
    confined = hub.actions("airlock.access.workspace")
    assert len(confined) == len(answer["refused"]) + 1  # + the download from inside
    assert all((e.actor, e.project, e.outcome) == ("alice", PROJECT, Outcome.DENIED) for e in confined)
    assert hub.runtime.audit.verify().ok


def pds(hub: Hub, *args: str) -> subprocess.CompletedProcess:
    """The ``pds`` command in a subprocess, with this hub's configuration."""
    env = {k: v for k, v in os.environ.items() if k != "PDS_ACTOR"}  # acts as root (cli.identities)
    return subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()",
                           "--config", str(hub.config), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_pds_hub_sync_follows_the_registry(hub_world: Hub, monkeypatch):
    hub = hub_world
    monkeypatch.setenv("PDS_HUB__MEMBERSHIP_CHECK_SECONDS", "0")  # sync, not the watcher, stops it
    secrets = {name: provision(hub, name) for name in ("alice", "dave")}
    hub.start()
    for name in ("alice", "dave"):
        assert hub.client().login(name, secrets[name])
    alice = hub.client()
    assert alice.login("alice", secrets["alice"])
    alice.make_token("alice")
    assert alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (201, 202)
    wait_ready(alice, "alice", PROJECT)

    def group(project: str) -> list[str]:
        return sorted(hub.admin_api("GET", f"/groups/{project}").json()["users"])

    assert group(PROJECT) == ["alice"]
    # the registry changes while the hub runs: dave joins, alice's membership has ended
    hub.registry.add_member("root", OTHER_PROJECT, "dave", "researcher", date.today() + timedelta(days=30))
    hub.registry.add_member("root", PROJECT, "alice", "researcher", date.today() - timedelta(days=1))
    done = pds(hub, "hub", "sync")
    assert done.returncode == 0, done.stderr
    assert "servers stopped: 1" in done.stdout
    assert group(PROJECT) == []
    assert group(OTHER_PROJECT) == ["bob", "dave"]  # bob: a hub user from the start (load_roles)
    wait_stopped(hub, "alice", PROJECT)

    again = pds(hub, "hub", "sync")  # idempotent
    assert again.returncode == 0 and "members added: 0, removed: 0, servers stopped: 0" in again.stdout

    stops = [e for e in hub.actions("workspace.stop") if e.details.get("checked_at") == "sync"]
    assert [(e.actor, e.project, e.target) for e in stops] == [("root", PROJECT, "user:alice")]
    assert "expired" in stops[0].details["reason"]
    syncs = hub.actions("hub.sync")
    assert [e.actor for e in syncs] == ["root", "root"]
    assert syncs[0].details["servers_stopped"] == 1 and syncs[0].details["removed"] == 1
    assert syncs[0].details["added"] == 2 and syncs[1].details["added"] == 0
    assert hub.runtime.audit.verify().ok


def _gate_processes(hub: Hub) -> set[int]:
    """The gate's processes among the hub's descendants (it runs in a session of its own)."""
    table = [line.split(None, 2) for line in subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout.splitlines()]
    family, grew = {hub.proc.pid}, True
    while grew:
        children = {int(pid) for pid, ppid, *_ in table if int(ppid) in family}
        grew = not children <= family
        family |= children
    return {int(row[0]) for row in table if int(row[0]) in family and len(row) == 3
            and "pds_kernel.airlock.web" in row[2]}


def test_gate_that_dies_is_started_again_and_the_hub_keeps_serving(gate_hub: Hub):
    """A crashed gate is a pause in exports, not an outage: JupyterHub notices at its next poll
    (every 30 s) and starts it again; meanwhile the hub answers and the gate's URL says 503."""
    import signal
    import time

    gate_hub.start()
    openapi = f"{gate_hub.gate}api/openapi.json"
    assert requests.get(openapi, timeout=30).status_code == 200
    before = _gate_processes(gate_hub)
    assert before
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    seen_down, back = False, None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert gate_hub.proc.poll() is None, gate_hub.log.read_text()[-2000:]
        assert requests.get(f"{gate_hub.url}/hub/api/", timeout=10).status_code == 200
        status = requests.get(openapi, timeout=10).status_code
        if status == 200 and seen_down:
            back = _gate_processes(gate_hub)
            break
        seen_down = seen_down or status == 503
        time.sleep(1)
    assert seen_down and back, "the gate did not come back within 90 s"
    assert not back & before
    assert "Service airlock exited" in gate_hub.log.read_text()
