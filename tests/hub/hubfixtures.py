"""Helpers of the hub tests: a real JupyterHub (subprocess), on free loopback ports, in a temp directory.

The hub runs ``hub_config/jupyterhub_config.py`` in local mode exactly as ``pds hub run`` does;
the test talks to it over HTTP like a browser or a REST client. The state directory sits under a
short ``/tmp`` path because Unix socket paths are limited to 107 bytes.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urljoin

import onetimepass
import polars as pl
import pytest
import requests
import yaml
from ports import free_port_block
from published import publish_by_hand

from pds_kernel.cli.hub_cmd import hub_command, hub_environment
from pds_kernel.hub.local import gate_public_url, public_host
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Paths, load_settings
from pds_kernel.workspace_names import parse_workspace_user, workspace
from tests.conftest import TEST_PASSWORD_COST

PROJECT = "diabetes-t2"
OTHER_PROJECT = "mi-outcomes"
PASSWORD = "correct-horse-battery-9"


def hub_user(user: str, project: str) -> str:
    """The hub user that runs ``user``'s workspace of ``project`` (``alice@diabetes-t2``: ADR 17)."""
    return workspace(user, project).user


#: Where browser tests write their screenshots: a build folder, never the tracked docs/img on an
#: ordinary run. ``make screenshots`` sets PDS_SCREENSHOTS_DIR=docs/img to refresh the guides' images.
def screenshot_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "build" / "screenshots"
    path = Path(os.environ.get("PDS_SCREENSHOTS_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_claims_extract(directory: Path, persons: int = 60) -> None:
    """An ER_PRS_F shaped like the demo's (PERSON_ID, EXE_SOI_DTD, PRS_PAI_MNT), 2023, every month
    with at least 10 persons: what the example notebook reads."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = [(f"P{p:04d}", date(2023, 1 + (p + k) % 12, 1 + k % 27), float(10 + (p * 7 + k) % 90))
            for p in range(persons) for k in range(6)]
    pl.DataFrame(rows, schema=["PERSON_ID", "EXE_SOI_DTD", "PRS_PAI_MNT"], orient="row") \
        .write_parquet(directory / "ER_PRS_F.parquet")


def write_extract(directory: Path, rows: int = 200) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({
        "person": [f"p{i % 37}" for i in range(rows)],
        "atc": ["A10BA02" if i % 3 else "A10BB09" for i in range(rows)],
        "amount": [float(i % 50) for i in range(rows)],
    }).write_parquet(directory / "ER_PRS_F.parquet")


@dataclass
class Hub:
    root: Path
    config: Path
    port: int
    settings: object
    runtime: Runtime
    registry: Registry
    proc: subprocess.Popen | None = None
    log: Path | None = None
    sessions: list = field(default_factory=list)

    @property
    def url(self) -> str:
        """The hub's public address (``http://localhost:<port>``; pds_kernel.hub.origins)."""
        return public_host(self.settings)

    @property
    def gate(self) -> str:
        """The gate's pages, on their own host (``http://airlock--service.localhost:<port>/services/airlock/``)."""
        return gate_public_url(self.settings)

    def server(self, state: dict) -> str:
        """The absolute address of a server from its hub model (``url`` is on the user's own host)."""
        return urljoin(self.url, state["url"]).rstrip("/")

    def start(self, timeout: float = 60) -> None:
        env = hub_environment(self.config, None)
        env.setdefault("PDS_HUB_AIRLOCK", "off")
        self.log = self.root / "hub.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(hub_command(), env=env, cwd=self.root, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hub exited:\n" + self.log.read_text()[-3000:])
            try:
                if requests.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
                pass
            time.sleep(0.3)
        raise RuntimeError("hub did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def client(self) -> HubClient:
        return HubClient(self)

    def admin_api(self, method: str, path: str, **kwargs) -> requests.Response:
        """The hub REST API with the pds-sync service token (admin of users/servers/groups)."""
        from pds_kernel.hub.local import sync_token

        headers = {"Authorization": f"token {sync_token(self.settings)}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs)

    def workspaces(self, person: str) -> dict:
        """Project -> server model of each of ``person``'s workspaces the hub lists (their workspace
        users' servers, ADR 17), seen by the pds-sync service."""
        found = {}
        for model in self.admin_api("GET", "/users").json():
            owner = parse_workspace_user(model["name"])
            if owner is not None and owner.person == person:
                found.update({name: state for name, state in (model.get("servers") or {}).items()
                              if name == owner.project})
        return found

    def actions(self, action: str) -> list:
        return self.runtime.audit.entries(action=action)


class HubClient:
    """A browser-like session: forms with the _xsrf token, cookies, then a REST token."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.http = requests.Session()
        self.token: str | None = None

    def _xsrf(self, page: str) -> str:
        response = self.http.get(self.hub.url + page, timeout=30)
        match = re.search(r'name="_xsrf"\s+value="([^"]+)"', response.text)
        return match.group(1) if match else self.http.cookies.get("_xsrf", "")

    def signup(self, username: str, password: str = PASSWORD) -> tuple[str, str]:
        """Sign up with a second factor; returns (page text, OTP secret shown to the user)."""
        xsrf = self._xsrf("/hub/signup")
        response = self.http.post(self.hub.url + "/hub/signup", timeout=30, data={
            "_xsrf": xsrf, "username": username, "signup_password": password,
            "signup_password_confirmation": password, "2fa": "on"})
        match = re.search(r"\b([A-Z2-7]{16})\b", response.text)
        return response.text, (match.group(1) if match else "")

    def login(self, username: str, secret: str, password: str = PASSWORD, code: str | None = None) -> bool:
        xsrf = self._xsrf("/hub/login")
        step = None
        if code is None:
            code, step = fresh_totp(secret)
        response = self.http.post(self.hub.url + "/hub/login?next=/hub/home", timeout=30, data={
            "_xsrf": xsrf, "username": username, "password": password, "2fa": code},
            allow_redirects=False)
        signed_in = response.status_code == 302 and "jupyterhub-hub-login" in self.http.cookies
        if signed_in and step is not None:
            _USED_STEPS[secret] = step  # the hub claimed this window for the account
        return signed_in

    def logout(self) -> None:
        self.http.get(self.hub.url + "/hub/logout", timeout=30)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(urljoin(self.hub.url, path), timeout=30, **kwargs)

    def make_token(self, username: str) -> str:
        xsrf = self.http.cookies.get("_xsrf", "")
        response = self.http.post(self.hub.url + f"/hub/api/users/{username}/tokens",
                                  headers={"X-XSRFToken": xsrf}, json={"note": "test"}, timeout=30)
        response.raise_for_status()
        self.token = response.json()["token"]
        return self.token

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, urljoin(self.hub.url, path), headers=headers, timeout=60, **kwargs)


def browser_sign_in(page, hub: Hub, user: str, secret: str) -> None:
    """Sign ``user`` in on ``page`` (a Playwright page) through the hub's login form: password and
    a second-factor code not used before; returns on the hub's home page."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.fill("input[name='2fa']", current_totp(secret))
    page.click("#login_submit")
    page.wait_for_url("**/hub/home", timeout=60_000)


def make_world(root: Path, port: int) -> Hub:
    """Registry: root (admin), alice (diabetes-t2), bob (mi-outcomes), dave (no project)."""
    paths = {f.name: str(root / f.name) for f in fields(Paths)}
    config = root / "pds.yaml"
    # the OS user running the tests acts as root, the world's administrator, on the command line
    # The hub at pds.localhost rather than the default localhost: it sets its session-id cookie for
    # its domain and the names below it, and Python's cookie jar (unlike a browser) never sends a
    # cookie of the domain ".localhost" back to the bare name "localhost".
    public_url = f"http://pds.localhost:{port}"
    hub = {"port": port, "ip": "127.0.0.1", "public_url": public_url,
           "password_cost": TEST_PASSWORD_COST}
    config.write_text(yaml.safe_dump({"paths": paths, "hub": hub, "cli": {"identities": {getpass.getuser(): "root"}}}))
    settings = load_settings(config, environ={})
    for f in fields(Paths):
        getattr(settings.paths, f.name).mkdir(parents=True, exist_ok=True)
    runtime = Runtime(settings)
    registry = Registry.from_runtime(runtime)
    today = date.today()
    registry.upsert_user("root", "root", is_admin=True)
    for name in ("alice", "bob", "dave"):
        registry.upsert_user("root", name)
    for project in (PROJECT, OTHER_PROJECT):
        registry.upsert_project("root", project, title=project, start_date=today - timedelta(days=30),
                                end_date=today + timedelta(days=365), cpu_limit=1.0, mem_limit_mb=4096,
                                dask_workers=1)
        write_extract(settings.paths.projects / project / "extract")
        publish_by_hand(runtime, project, actor="root")
    registry.add_member("root", PROJECT, "alice", "researcher", today + timedelta(days=100))
    registry.add_member("root", OTHER_PROJECT, "bob", "researcher", today + timedelta(days=100))
    return Hub(root=root, config=config, port=port, settings=settings, runtime=runtime, registry=registry)


@contextlib.contextmanager
def module_hub(prefix: str, *, airlock: bool = False):
    """A world (:func:`make_world`) in a fresh folder of /tmp for a module's fixture, not started:
    the fixture sets it up, then ``hub.start()``. ``airlock``: the hub runs its gate. Skips without
    bubblewrap; stopped and removed afterwards."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    hub = make_world(root, free_port_block())
    patch = pytest.MonkeyPatch()
    if airlock:
        patch.setenv("PDS_HUB_AIRLOCK", "on")
    try:
        yield hub
    finally:
        patch.undo()
        hub.stop()
        hub.runtime.close()
        shutil.rmtree(root, ignore_errors=True)


def signed_in(hub: Hub, secrets: dict[str, str]) -> dict[str, HubClient]:
    """A client per person of ``secrets`` (name: second-factor secret), signed in, with a token."""
    people = {}
    for name, secret in secrets.items():
        client = hub.client()
        assert client.login(name, secret), name
        client.make_token(name)
        people[name] = client
    return people


def workspace_ready(client: HubClient, person: str, project: str, timeout: float = 90) -> dict:
    """The server model of ``person``'s workspace of ``project`` once ready (asked with ``client``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.api("GET", f"/hub/api/users/{hub_user(person, project)}").json().get("servers", {}).get(project)
        if state and state["ready"]:
            return state
        time.sleep(0.3)
    raise TimeoutError(f"the workspace of {person} in {project} did not start")


#: secret -> last 30-second step whose code was handed out (the hub accepts each code once).
_USED_STEPS: dict[str, int] = {}


def fresh_totp(secret: str, margin: float = 8.0) -> tuple[str, int]:
    """The second-factor code of ``secret`` and its step, taken early enough in its 30-second window
    that it is still valid when the form reaches the hub (a code read just before the window turns
    is not), and never in a window a sign-in of this secret already used (the hub refuses a code
    twice; it claims a window only for a sign-in it lets through: ``PdsNativeAuthenticator.authenticate``)."""
    while True:
        now = time.time()
        left = 30 - now % 30
        if left < margin or _USED_STEPS.get(secret) == int(now) // 30:
            time.sleep(left + 0.2)
            continue
        return onetimepass.get_totp(secret, as_string=True, clock=int(now)).decode(), int(now) // 30


def current_totp(secret: str, margin: float = 8.0) -> str:
    """:func:`fresh_totp`'s code, its window counted as used (a browser's sign-in, expected to pass)."""
    code, step = fresh_totp(secret, margin)
    _USED_STEPS[secret] = step
    return code
