"""``ws.request_package`` in a notebook -> the gate's ``api/packages/requests`` -> the package
service: the real gate application on a real HTTP server (the test identity reads the token)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))  # the gate's test helpers
from airlock_web import FakeIdentity, live_server

from pds_kernel import workspace as ws
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.web import make_app, server_options
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.packages.service import PackageService

PREFIX = "/services/airlock/"


@pytest.fixture
def gate(world, monkeypatch):
    app = make_app(world.runtime, FakeIdentity(), prefix=PREFIX, service=AirlockService(world.runtime))
    with live_server(app, **server_options()) as url:
        monkeypatch.setenv("PDS_AIRLOCK_URL", url + PREFIX)
        monkeypatch.setenv("PDS_PROJECT", "proj-a")
        yield url


def test_request_package_from_a_notebook_is_recorded_for_the_workspace_user(world, gate, monkeypatch, capsys):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "fake-alice")
    answer = ws.request_package("TextTable==1.7.0", "pretty tables in the log")
    assert (answer["name"], answer["version"], answer["project"], answer["requested_by"], answer["state"]) == (
        "texttable", "1.7.0", "proj-a", "alice", "requested")
    assert "an admin approves it" in capsys.readouterr().out
    (request,) = PackageService(world.runtime).requests("alice")
    assert request.id == answer["id"] and request.justification == "pretty tables in the log"
    (entry,) = world.runtime.audit.entries(action="packages.request")
    assert entry.actor == "alice" and entry.project == "proj-a"


def test_request_package_refuses_what_the_service_refuses(world, gate, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "fake-bob")  # bob is a member of proj-b only
    with pytest.raises(PermissionDenied):
        ws.request_package("texttable")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "fake-alice")
    with pytest.raises(InvalidInput):
        ws.request_package("https://example.org/evil.whl")
    assert PackageService(world.runtime).requests("alice") == []
