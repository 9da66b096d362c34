"""pip in a workspace spawned by the real hub: the sandbox spawner serves the package index on the
workspace's packages socket; an approved wheel installs and imports, and the hub audits the
download with the workspace's identity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hub_kernel import execute
from hubfixtures import PROJECT, Hub
from test_hub import provision, wait_ready, wait_stopped

from pds_kernel.packages.wheelhouse import Wheelhouse, read_wheel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages"))  # the package test helpers
from packagefixtures import build_wheel

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]

#: pip in the workspace's kernel, then the package imported by a new interpreter (a kernel imports
#: a package installed while it ran after a restart)
PIP_CODE = """
import json, subprocess, sys
pip = subprocess.run([sys.executable, "-m", "pip", "install", "pds-hello"], capture_output=True, text=True)
refused = subprocess.run([sys.executable, "-m", "pip", "install", "not-approved-x"], capture_output=True, text=True)
imported = subprocess.run([sys.executable, "-c", "import pds_hello; print(pds_hello.VALUE)"],
                          capture_output=True, text=True)
print(json.dumps({"pip": pip.returncode, "out": pip.stdout[-300:] + pip.stderr[-300:],
                  "value": imported.stdout.strip(), "refused": refused.returncode,
                  "refusal": refused.stdout + refused.stderr}))
"""


def test_pip_installs_an_approved_wheel_in_a_hub_spawned_workspace(hub: Hub):
    source = hub.settings.paths.state / "test-wheels"  # approvals are tested in tests/packages
    Wheelhouse(hub.settings.paths.packages).add([read_wheel(build_wheel(source, "pds-hello", "1.0"))], source)
    alice = hub.client()
    secret = provision(hub, "alice")
    assert alice.login("alice", secret)
    alice.make_token("alice")
    assert alice.api("POST", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (201, 202)
    state = wait_ready(alice, "alice", PROJECT)
    try:
        result = execute(hub.server(state), alice.token, PIP_CODE)
        assert result["error"] is None, result["error"]
        out = json.loads(result["stdout"].strip().splitlines()[-1])
        assert out["pip"] == 0 and out["value"] == "pds-hello 1.0", out["out"]
        assert out["refused"] != 0 and "pds packages request not-approved-x" in out["refusal"]
    finally:
        assert alice.api("DELETE", f"/hub/api/users/alice/servers/{PROJECT}").status_code in (202, 204)
        wait_stopped(hub, "alice", PROJECT)
    downloads = hub.actions("packages.download")
    assert [(e.actor, e.project, e.details["file"]) for e in downloads] == [
        ("alice", PROJECT, "pds_hello-1.0-py3-none-any.whl")]
