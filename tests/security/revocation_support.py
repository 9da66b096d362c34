"""Support of tests/security/test_revocation_attacks.py: one real hub (local mode, as ``pds hub run``
starts it) with the airlock gate as its managed service and real sandboxes, and people who each
lose their access in one way at the same moment (:func:`revoke_everyone`).

People (project ``diabetes-t2`` unless said):

* ``alice``: researcher, removed from the project (``pds project remove-member``);
* ``eve``: researcher whose membership ended yesterday (``expires_on`` shortened: midnight passed);
* ``hal``: researcher of ``mi-outcomes``, which an administrator halts (``pds project halt``);
* ``dan``: researcher whose registry account is deactivated (his hub account stays approved);
* ``rick``: researcher whose hub account is revoked (``pds hub account revoke``; registry untouched);
* ``pete``: researcher removed, then granted again under the two-person rule (pending);
* ``olga``: output checker, removed; ``omar`` and ``oscar`` stay checkers; ``carl`` stays researcher.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubfixtures import OTHER_PROJECT, PASSWORD, PROJECT, Hub, free_port_block, make_world

from pds_kernel.airlock.limits import load_limits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.hub.local import provision_account, set_account_approval
from pds_kernel.project_end import ProjectEnd
from pds_kernel.registry import Registry

GATE = "/services/airlock/"
TABLE = b"month,persons\n2023-01,31\n2023-02,28\n"
RESEARCHERS = ("alice", "eve", "dan", "rick", "pete", "carl")
CHECKERS = ("olga", "omar", "oscar")
#: every account that signs in (hal works on the other project)
PEOPLE = ("root", "root2", "hal", *RESEARCHERS, *CHECKERS)
#: the workspaces running when access ends
WORKSPACES = {"alice": PROJECT, "hal": OTHER_PROJECT, "rick": PROJECT}
#: a kernel of alice's workspace starts this, detached from everything (its own session), writing a
#: line to ~/beat.txt every 0.2 s: what a researcher leaves running before being removed
DAEMON = """
import os, subprocess, sys
code = "import time, pathlib\\np = pathlib.Path.home() / 'beat.txt'\\nwhile True:\\n    with p.open('a') as f: f.write('x\\\\n')\\n    time.sleep(0.2)\\n"
subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
print("started")
"""


@dataclass
class Person:
    name: str
    secret: str
    client: object = None  # hubfixtures.HubClient, signed in, with a REST token

    @property
    def token(self) -> str:
        return self.client.token


@dataclass
class Scene:
    hub: Hub
    people: dict[str, Person]
    requests: dict[str, str] = field(default_factory=dict)  #: label -> request id
    servers: dict[str, dict] = field(default_factory=dict)  #: user -> server state at start
    revoked_at: float = 0.0

    def gate(self, user: str, method: str, path: str, **kwargs) -> requests.Response:
        """The gate's JSON API through the public proxy, with ``user``'s own hub API token."""
        headers = {"Authorization": f"token {self.people[user].token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.hub.gate}api/{path}", timeout=60, headers=headers,
                                **kwargs)

    def hub_api(self, user: str, method: str, path: str, **kwargs) -> requests.Response:
        return self.people[user].client.api(method, f"/hub/api{path}", **kwargs)

    def denied(self, action: str, actor: str, since: int = 0) -> list:
        return [e for e in self.hub.actions(action)[since:] if e.actor == actor and e.outcome == "denied"]

    def home(self, user: str, project: str = PROJECT) -> Path:
        return self.hub.settings.paths.homes / project / user


def build(root: Path) -> tuple[Hub, dict[str, str]]:
    hub = make_world(root, free_port_block())
    registry, far = hub.registry, date.today() + timedelta(days=100)
    registry.upsert_user("root", "root2", is_admin=True)
    for name in ("hal", "eve", "dan", "rick", "pete", "carl", *CHECKERS):
        registry.upsert_user("root", name)
    for name in RESEARCHERS:
        registry.add_member("root", PROJECT, name, "researcher", far)
    registry.add_member("root", OTHER_PROJECT, "hal", "researcher", far)
    for name in CHECKERS:
        registry.add_member("root", PROJECT, name, "output-checker", far)
    secrets = {name: provision_account(hub.settings, registry, name, PASSWORD, actor="root") for name in PEOPLE}
    return hub, secrets


def wait_for_gate(hub: Hub, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{hub.gate}api/openapi.json", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError("the gate did not start:\n" + hub.log.read_text()[-3000:])


def wait_ready(scene: Scene, user: str, project: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = scene.hub.workspaces(user).get(project)
        if state and state["ready"]:
            return state
        time.sleep(0.3)
    raise TimeoutError(f"{user}/{project} not ready")


def running(scene: Scene, user: str) -> dict:
    return scene.hub.workspaces(user)


def wait_stopped(scene: Scene, user: str, project: str, limit: float = 30) -> float:
    """Seconds from the revocation until ``user``'s ``project`` server is gone (``limit`` at most)."""
    while time.monotonic() < scene.revoked_at + limit:
        if project not in running(scene, user):
            break
        time.sleep(0.3)
    return time.monotonic() - scene.revoked_at


def prepare_requests(scene: Scene) -> None:
    """Export requests of every state an ex-member might still act on, made through the real service
    (the same database and staging as the hub's gate)."""
    runtime = scene.hub.runtime
    service = AirlockService(runtime, limits=replace(load_limits(runtime.settings), auto_release=False))

    def create(author: str) -> str:
        return service.create(author, PROJECT, [("monthly.csv", io.BytesIO(TABLE))], "monthly persons").id

    def review(request_id: str, decision: str) -> None:
        for checker in ("omar", "oscar"):
            service.review(checker, request_id, {0: {"decision": decision, "comment": "ok"}})

    released = create("alice")
    review(released, "approve")
    service.release("omar", released)
    changes = create("alice")
    review(changes, "request_changes")
    approved = create("carl")
    review(approved, "approve")
    scene.requests.update(released=released, submitted=create("alice"), changes=changes,
                          to_review=create("carl"), approved=approved, rick=create("rick"))


def start_workspaces(scene: Scene) -> None:
    from hub_kernel import execute

    for user, project in WORKSPACES.items():
        started = scene.hub_api(user, "POST", f"/users/{user}/servers/{project}")
        assert started.status_code in (201, 202), started.text
    for user, project in WORKSPACES.items():
        scene.servers[user] = wait_ready(scene, user, project)
    state = scene.servers["alice"]
    result = execute(scene.hub.server(state), scene.people["alice"].token, DAEMON)
    assert result["error"] is None and "started" in result["stdout"], result
    beat = scene.home("alice") / "beat.txt"
    deadline = time.monotonic() + 10
    while not (beat.exists() and beat.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert beat.exists(), "the daemon of alice's workspace did not start"


def revoke_everyone(scene: Scene) -> None:
    """Every way of losing access, at the same moment (what an administrator does)."""
    hub = scene.hub
    registry = hub.registry
    registry.remove_member("root", PROJECT, "alice")
    registry.add_member("root", PROJECT, "eve", "researcher", date.today() - timedelta(days=1))
    ProjectEnd(hub.runtime, registry).halt("root", OTHER_PROJECT, "suspected breach")
    registry.upsert_user("root", "dan", active=False)
    set_account_approval(hub.settings, registry, "rick", False, actor="root")
    registry.remove_member("root", PROJECT, "olga")
    registry.remove_member("root", PROJECT, "pete")
    two_person = Registry(hub.runtime.sessions, hub.runtime.audit, membership_approvals=2)
    two_person.add_member("root", PROJECT, "pete", "researcher", date.today() + timedelta(days=50))
    scene.revoked_at = time.monotonic()


def released_bytes_in_outbox(scene: Scene) -> bytes:
    from pds_kernel.airlock.release import outbox_dir

    return (outbox_dir(scene.hub.settings.paths.outbox, PROJECT, scene.requests["released"]) / "monthly.csv").read_bytes()
