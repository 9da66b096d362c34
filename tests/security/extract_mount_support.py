"""Support of the extract-mount attacks (tests/security/test_extract_mount_attacks.py).

One real local hub (JupyterHub, the sandbox spawner, bubblewrap) for the module: the world of the
hub tests (``tests/hub/hubfixtures.py``: alice in diabetes-t2, bob in mi-outcomes, each project's
extract published). Each attack tampers with diabetes-t2's published extract as someone who can
write the projects' storage would, asks the hub to start alice's workspace, and puts a freshly
published extract back afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubfixtures import OTHER_PROJECT, PASSWORD, PROJECT, Hub, free_port_block, make_world, write_extract
from published import publish_by_hand, write_manifest

from pds_kernel.extract.mount_check import check_for_workspace
from pds_kernel.hub.local import provision_account
from pds_kernel.runtime import Runtime
from pds_kernel.sandbox.bwrap import launch_env, prepare_runtime_dir, sandbox_command
from pds_kernel.sandbox.cgroup import group_name, release
from pds_kernel.sandbox.exec import workspace_runtime_dir
from pds_kernel.sandbox.identity import ensure_sandbox_account, hand_over
from pds_kernel.sandbox.spec import build_workspace_spec

__all__ = ["OTHER_PROJECT", "PROJECT", "Hub", "mount_hub", "publish_by_hand", "write_manifest"]

#: what the tampering puts in the extract: a researcher must never read it
TAMPERED = "never-conformity-checked"


@pytest.fixture(scope="module")
def mount_hub():
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = Path(tempfile.mkdtemp(prefix="pdsx", dir="/tmp"))
    hub = make_world(root, free_port_block())
    secret = provision_account(hub.settings, hub.registry, "alice", PASSWORD, actor="root")
    hub.start()
    hub.alice = hub.client()  # alice signed in, with an API token: she asks for her workspace
    assert hub.alice.login("alice", secret)
    hub.alice.make_token("alice")
    yield hub
    hub.stop()
    hub.runtime.close()
    shutil.rmtree(root, ignore_errors=True)


def project_dir(hub: Hub, project: str = PROJECT) -> Path:
    return hub.settings.paths.projects / project


def build_dir(hub: Hub, project: str = PROJECT) -> Path:
    """The published build the ``extract`` link points to."""
    pdir = project_dir(hub, project)
    return pdir / os.readlink(pdir / "extract")


def republish(hub: Hub, project: str = PROJECT) -> Path:
    """Remove whatever the attack left and publish a fresh extract (a new build, audited)."""
    pdir = project_dir(hub, project)
    for path in [pdir / "extract", *pdir.glob("extract.*")]:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    shutil.rmtree(pdir / "builds", ignore_errors=True)
    write_extract(pdir / "extract")
    return publish_by_hand(hub.runtime, project, actor="root")


def tampered_frame(rows: int = 200) -> pl.DataFrame:
    return pl.DataFrame({"person": [TAMPERED] * rows, "atc": ["A10BA02"] * rows, "amount": [1.0] * rows})


def same_size_replacement(path: Path) -> None:
    """Overwrite ``path`` in place with other bytes of the same length (one byte flipped at its
    middle: a Parquet page changed, not its footer)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def last_seq(hub: Hub) -> int:
    entries = hub.runtime.audit.entries(limit=1, newest=True)
    return entries[-1].seq if entries else 0


def spawn(hub: Hub, project: str = PROJECT):
    """alice asks the hub to start her ``project`` server (the REST call the spawn page makes)."""
    return hub.alice.api("POST", f"/hub/api/users/alice/servers/{project}")


def server_state(hub: Hub, user: str = "alice", project: str = PROJECT) -> dict | None:
    return hub.workspaces(user).get(project)


def wait_ready(hub: Hub, user: str = "alice", project: str = PROJECT, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server_state(hub, user, project)
        if state and state["ready"]:
            return state
        time.sleep(0.3)
    raise TimeoutError(f"{user}/{project} not ready:\n" + hub.log.read_text()[-3000:])


def stop(hub: Hub, user: str = "alice", project: str = PROJECT) -> None:
    hub.admin_api("DELETE", f"/users/{user}/servers/{project}")
    deadline = time.monotonic() + 30
    while server_state(hub, user, project) and time.monotonic() < deadline:
        time.sleep(0.3)


def refused(hub: Hub, since: int) -> list:
    """The extract refusals of workspace starts audited after ``since``."""
    return [e for e in hub.runtime.audit.entries(action="workspace.refused")
            if e.seq > since and e.details.get("stage", "").startswith("extract")]


def assert_refused(hub: Hub, words: str, user: str = "alice", project: str = PROJECT) -> None:
    """The start is refused: no server, the researcher told why and whom to ask, audited."""
    since = last_seq(hub)
    response = spawn(hub, project)
    assert response.status_code == 403, (response.status_code, response.text[-500:])
    message = response.json().get("message", "")
    assert words in message and "data manager" in message, message
    assert not (server_state(hub, user, project) or {}).get("ready")
    entries = refused(hub, since)
    assert len(entries) == 1 and entries[0].outcome == "denied" and words in entries[0].details["reason"], entries


def small_bound(hub: Hub, max_bytes: int) -> Runtime:
    """A runtime of the same world whose workspaces re-hash extracts only up to ``max_bytes``."""
    settings = replace(hub.settings, hub=replace(hub.settings.hub, extract_hash_max_bytes=max_bytes))
    return Runtime(settings)


def launch_after_check(hub: Hub, between, command: str) -> tuple[int, str, str]:
    """The spawner's sequence with something done between the extract check and the sandbox's
    start: check, ``between()``, then the real launcher and bubblewrap running ``command`` (a
    shell command) in alice's diabetes-t2 sandbox. Returns (exit code, stdout, stderr)."""
    import subprocess

    settings = hub.settings
    checked = check_for_workspace(settings, hub.runtime.audit, PROJECT)
    between()
    spec = build_workspace_spec(settings, hub.registry.get_project(PROJECT), "alice")
    account = ensure_sandbox_account()
    home = spec.mounts[1].host_path
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    hand_over(home, account)
    runtime_dir = prepare_runtime_dir(workspace_runtime_dir(settings, "alice", PROJECT))
    hand_over(runtime_dir, account)
    argv = sandbox_command(spec, ["/bin/sh", "-c", command], env={}, runtime_dir=runtime_dir, extract=checked)
    try:
        done = subprocess.run(argv, env=launch_env({}), capture_output=True, text=True, timeout=120, check=False,
                              cwd=os.path.sep)
    finally:
        release(group_name(PROJECT, "alice"))
    return done.returncode, done.stdout, done.stderr
