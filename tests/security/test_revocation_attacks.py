"""Red team, revocation: when someone loses access, every channel they had must close, at once or
within the watcher's interval, and each decision must be audited.

One real JupyterHub (local mode, as ``pds hub run`` starts it) with the airlock gate as its managed
service and real bubblewrap sandboxes (:mod:`revocation_support`). Everyone signs in, saves a hub
API token and uses the gate once; three workspaces run (alice's, with a detached process of hers
writing to her home; hal's; rick's). Then, at one moment, alice is removed from the project, eve's
membership ends yesterday, hal's project is halted, dan's registry account is deactivated, rick's
hub account is revoked, the output checker olga is removed, and pete is removed then granted again
under the two-person rule (pending). Each test is one thing they then try with what they kept.
The gate tests come first: they run within seconds of the revocation.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from hub_identity_support import pds_cli, started_world
from hubfixtures import OTHER_PROJECT, PROJECT
from revocation_support import (
    PEOPLE,
    TABLE,
    Person,
    Scene,
    build,
    prepare_requests,
    released_bytes_in_outbox,
    revoke_everyone,
    running,
    start_workspaces,
    wait_for_gate,
    wait_stopped,
)

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.timeout(300)]

#: The watcher's interval in this hub (settings.hub.membership_check_seconds, default 10 s).
INTERVAL = 10
#: How long a running workspace may outlive its user's access (twice the interval, plus a stop).
STOP_LIMIT = 2 * INTERVAL + 10


@pytest.fixture(scope="module")
def scene():
    import shutil

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PDS_HUB_AIRLOCK", "on")
        with started_world(build) as (hub, secrets):
            wait_for_gate(hub)
            people = {}
            for name in PEOPLE:
                client = hub.client()
                assert client.login(name, secrets[name]), name
                client.make_token(name)
                people[name] = Person(name, secrets[name], client)
            scene = Scene(hub, people)
            prepare_requests(scene)
            start_workspaces(scene)
            for name in PEOPLE:  # each uses the gate once: its answer may be remembered
                assert scene.gate(name, "GET", "me").status_code == 200, name
            revoke_everyone(scene)
            yield scene
            for user, project in (("alice", PROJECT), ("hal", OTHER_PROJECT), ("rick", PROJECT)):
                hub.admin_api("DELETE", f"/users/{user}/servers/{project}")


def upload(scene: Scene, user: str, project: str = PROJECT):
    return scene.gate(user, "POST", "requests", data={"project": project, "justification": "Table 2"},
                      files={"files": ("table2.csv", TABLE, "text/csv")})


def refused(response, *words: str) -> bool:
    text = response.text.lower()
    return response.status_code in (401, 403) and all(w.lower() in text for w in words)


# ---- the gate, right after the revocation ------------------------------------------------------------
def test_revoked_hub_account_keeps_using_its_token_at_the_gate(scene):
    """rick's hub account is revoked (his registry membership is intact): the hub deleted his token,
    but the gate had asked the hub about it a moment before. Right away, he submits and reads his
    request with the same token."""
    assert time.monotonic() - scene.revoked_at < 50, "this attack must run within the gate's former cache"
    me = scene.gate("rick", "GET", "me")
    mine = scene.gate("rick", "GET", f"requests/{scene.requests['rick']}")
    before = len(scene.hub.actions("airlock.request.create"))
    sent = upload(scene, "rick")
    assert me.status_code == 401 and mine.status_code == 401 and sent.status_code == 401, \
        (me.status_code, mine.status_code, sent.status_code)
    assert len(scene.hub.actions("airlock.request.create")) == before
    assert any(e.target == "user:rick" for e in scene.hub.actions("hub.account.revoke"))


def test_removed_researcher_submits_an_export_with_a_saved_token(scene):
    since = len(scene.hub.actions("airlock.access.submit"))
    response = upload(scene, "alice")
    assert refused(response, "not a researcher"), response.text
    assert scene.denied("airlock.access.submit", "alice", since)


def test_removed_researcher_downloads_a_released_file_of_the_project(scene):
    since = len(scene.hub.actions("airlock.access.download"))
    response = scene.gate("alice", "GET", f"requests/{scene.requests['released']}/download/0")
    assert refused(response), response.status_code
    assert released_bytes_in_outbox(scene) not in response.content
    assert scene.denied("airlock.access.download", "alice", since)


def test_removed_researcher_reads_her_requests(scene):
    listed = scene.gate("alice", "GET", "requests?scope=mine")
    assert listed.status_code == 200 and listed.json()["total"] == 0, listed.text
    since = len(scene.hub.actions("airlock.request.view"))
    one = scene.gate("alice", "GET", f"requests/{scene.requests['submitted']}")
    assert refused(one), one.text
    assert scene.denied("airlock.request.view", "alice", since)


def test_removed_researcher_withdraws_her_submitted_request(scene):
    response = scene.gate("alice", "POST", f"requests/{scene.requests['submitted']}/withdraw",
                          json={"reason": "never mind"})
    assert refused(response), response.text
    assert _state(scene, "submitted") == "submitted"
    assert scene.denied("airlock.request.withdraw", "alice")


def test_removed_researcher_resubmits_a_request_for_changes(scene):
    response = scene.gate("alice", "POST", f"requests/{scene.requests['changes']}/resubmit",
                          files={"files": ("monthly.csv", TABLE, "text/csv")})
    assert refused(response), response.text
    assert _state(scene, "changes") == "changes_requested"
    assert scene.denied("airlock.request.resubmit", "alice")


def test_member_expired_at_midnight_submits(scene):
    response = upload(scene, "eve")
    assert refused(response, "expired"), response.text
    assert scene.denied("airlock.access.submit", "eve")


def test_researcher_of_a_halted_project_submits(scene):
    response = upload(scene, "hal", OTHER_PROJECT)
    assert refused(response, "halted"), response.text
    assert scene.denied("airlock.access.submit", "hal")


def test_deactivated_registry_user_with_a_valid_hub_account_submits(scene):
    response = upload(scene, "dan")
    assert refused(response, "no active account"), response.text
    assert scene.denied("airlock.access.submit", "dan")


def test_removed_checker_reviews(scene):
    response = scene.gate("olga", "POST", f"requests/{scene.requests['to_review']}/reviews",
                          json={"verdicts": {"0": {"decision": "approve", "sha256": hashlib.sha256(TABLE).hexdigest()}}})
    assert refused(response), response.text
    assert _state(scene, "to_review") == "submitted"
    assert scene.denied("airlock.review.submit", "olga")


def test_removed_checker_opens_a_staged_file(scene):
    response = scene.gate("olga", "GET", f"requests/{scene.requests['to_review']}/files/0")
    assert refused(response), response.status_code
    assert TABLE not in response.content
    assert scene.denied("airlock.file.view", "olga")


def test_removed_checker_releases_an_approved_request(scene):
    response = scene.gate("olga", "POST", f"requests/{scene.requests['approved']}/release", json={})
    assert refused(response), response.text
    assert _state(scene, "approved") == "approved"
    assert scene.denied("airlock.request.release", "olga")


def test_removed_checker_revokes_an_approval(scene):
    response = scene.gate("olga", "POST", f"requests/{scene.requests['approved']}/revoke",
                          json={"reason": "on my way out"})
    assert refused(response), response.text
    assert _state(scene, "approved") == "approved"
    assert scene.denied("airlock.request.revoke", "olga")


def test_removed_researcher_asks_for_a_package(scene):
    response = scene.gate("alice", "POST", "packages/requests",
                          json={"project": PROJECT, "package": "tabulate==0.9.0", "justification": "tables"})
    assert refused(response), response.text
    assert scene.denied("packages.access.request", "alice")


def test_removed_researcher_imports_files(scene):
    response = scene.gate("alice", "POST", "imports", data={"project": PROJECT, "justification": "codes",
                                                             "kind": "files"},
                          files={"files": ("codes.csv", b"code\nA10\n", "text/csv")})
    assert refused(response), response.text
    assert scene.denied("airlock.access.import", "alice")


def test_regranted_member_pending_approval_uses_the_gate(scene):
    """pete was removed, then granted again by one administrator under the two-person rule: his
    saved token submits, asks for a package; nothing works until a second administrator approves."""
    sent = upload(scene, "pete")
    package = scene.gate("pete", "POST", "packages/requests",
                         json={"project": PROJECT, "package": "tabulate==0.9.0", "justification": "x"})
    assert refused(sent, "pending") and refused(package, "pending"), (sent.text, package.text)
    assert scene.denied("airlock.access.submit", "pete")


# ---- the CLI ---------------------------------------------------------------------------------------
def test_administrator_acts_as_a_removed_researcher_on_the_command_line(scene, tmp_path):
    table = tmp_path / "t.csv"
    table.write_bytes(TABLE)
    since = len(scene.hub.actions("airlock.access.submit"))
    done = pds_cli(scene.hub, "--as", "alice", "airlock", "submit", "--project", PROJECT, str(table),
                   "--why", "on her behalf")
    assert done.returncode != 0 and "not a researcher" in done.stdout + done.stderr, done.stdout + done.stderr
    for_her = pds_cli(scene.hub, "airlock", "submit", "--project", PROJECT, "--author", "alice", str(table),
                      "--why", "for her")
    assert for_her.returncode != 0, for_her.stdout
    assert len(scene.denied("airlock.access.submit", "root acting as alice", since)) == 1
    assert scene.denied("airlock.access.submit", "root", since)


def test_operator_runs_a_command_in_a_removed_researchers_sandbox(scene):
    done = pds_cli(scene.hub, "sandbox", "exec", PROJECT, "--user", "alice", "--", "ls", "/data")
    assert done.returncode != 0 and "ER_PRS_F" not in done.stdout, done.stdout
    refusals = [e for e in scene.hub.actions("workspace.authorise") + scene.hub.actions("sandbox.exec")
                if e.target == "user:alice" and e.outcome == "denied"]
    assert refusals, [(e.action, e.actor, e.outcome) for e in scene.hub.runtime.audit.entries(newest=True, limit=5)]


# ---- running workspaces: the watcher ---------------------------------------------------------------
def test_removed_researchers_running_workspace_and_detached_process(scene):
    """alice's workspace runs a process she detached (its own session) before her removal; after
    the stop her kernel API is gone and the process writes nothing more."""
    took = wait_stopped(scene, "alice", PROJECT, STOP_LIMIT)
    assert PROJECT not in running(scene, "alice"), f"still running {took:.0f} s after the removal"
    beat = scene.home("alice") / "beat.txt"
    size = beat.stat().st_size
    time.sleep(1.5)
    assert beat.stat().st_size == size, "a process of the removed researcher still runs"
    url = f"{scene.hub.server(scene.servers['alice'])}/api/kernels"
    import requests

    answer = requests.get(url, headers={"Authorization": f"token {scene.people['alice'].token}"}, timeout=30,
                          allow_redirects=False)
    assert answer.status_code != 200, answer.text[:200]
    stops = _watcher_stops(scene, "alice")
    assert stops and "not a researcher" in stops[0].details["reason"]


def test_halted_projects_running_workspace(scene):
    took = wait_stopped(scene, "hal", OTHER_PROJECT, STOP_LIMIT)
    assert OTHER_PROJECT not in running(scene, "hal"), f"still running {took:.0f} s after the halt"
    stops = _watcher_stops(scene, "hal")
    assert stops and "halted" in stops[0].details["reason"]


def test_revoked_hub_accounts_running_workspace(scene):
    took = wait_stopped(scene, "rick", PROJECT, STOP_LIMIT)
    assert PROJECT not in running(scene, "rick"), f"still running {took:.0f} s after the revocation"
    stops = _watcher_stops(scene, "rick")
    assert stops and "revoked" in stops[0].details["reason"]


# ---- new servers -----------------------------------------------------------------------------------
def _spawn_refused(scene: Scene, user: str, project: str, *words: str) -> None:
    wait_stopped(scene, user, project, STOP_LIMIT)
    since = len(scene.hub.actions("workspace.refused"))
    started = scene.hub_api(user, "POST", f"/users/{user}/servers/{project}")
    deadline = time.monotonic() + 10
    while started.status_code in (201, 202) and time.monotonic() < deadline:
        if project not in running(scene, user):
            break
        time.sleep(0.3)
    assert project not in running(scene, user) or not running(scene, user)[project]["ready"], \
        f"{user} got a new {project} server"
    refusals = [e for e in scene.hub.actions("workspace.refused")[since:] if e.target == f"user:{user}"]
    assert started.status_code in (401, 403) or refusals, started.text
    for word in words:
        assert word in (started.text + " ".join(e.details.get("reason", "") for e in refusals)), started.text


def test_removed_researcher_spawns_a_new_server(scene):
    _spawn_refused(scene, "alice", PROJECT, "not a researcher")


def test_researcher_of_a_halted_project_spawns_a_new_server(scene):
    _spawn_refused(scene, "hal", OTHER_PROJECT, "halted")


def test_member_expired_at_midnight_spawns_a_new_server(scene):
    _spawn_refused(scene, "eve", PROJECT, "expired")


def test_deactivated_registry_user_spawns_with_a_saved_token(scene):
    _spawn_refused(scene, "dan", PROJECT)


def test_regranted_member_pending_approval_spawns(scene):
    _spawn_refused(scene, "pete", PROJECT, "pending")


def test_revoked_hub_account_spawns_with_its_saved_token(scene):
    started = scene.hub_api("rick", "POST", f"/users/rick/servers/{PROJECT}")
    assert started.status_code == 403, started.text
    assert PROJECT not in running(scene, "rick")


# ---- last: the second administrator approves pete, and only then does anything work -----------------
def test_regranted_member_works_only_once_approved(scene):
    assert refused(upload(scene, "pete"), "pending")
    scene.hub.registry.approve_member("root2", PROJECT, "pete", "researcher")
    assert upload(scene, "pete").status_code == 201


def _watcher_stops(scene: Scene, user: str) -> list:
    return [e for e in scene.hub.actions("workspace.stop")
            if e.target == f"user:{user}" and e.details.get("checked_at") == "watcher"]


def _state(scene: Scene, label: str) -> str:
    from pds_kernel.airlock.service import AirlockService

    return AirlockService(scene.hub.runtime).get_request("root", scene.requests[label]).state
