"""The local hub's configuration of the airlock gate, without starting a hub.

JupyterHub stops when a managed service exits and passes a service only a few environment
variables, so the gate must get everything it needs from ``configure``: the hub's own ``PDS_*``
settings (same database, staging and outbox) and a persistent cookie secret.
"""

from __future__ import annotations

import stat
from pathlib import Path

from traitlets.config import Config

from pds_kernel.cli.hub_cmd import hub_environment
from pds_kernel.hub.local import AIRLOCK_SERVICE, airlock_port, configure


def airlock_service(c: Config) -> dict | None:
    return next((s for s in c.JupyterHub.services if s["name"] == AIRLOCK_SERVICE), None)


def test_gate_gets_the_hub_settings_and_a_persistent_cookie_secret(settings, monkeypatch):
    monkeypatch.setenv("PDS_HUB_AIRLOCK", "on")
    monkeypatch.setenv("PDS_CONFIG", "/srv/pds/pds.yaml")
    monkeypatch.setenv("PDS_DATABASE__URL", "postgresql+psycopg://pds@db/pds")
    monkeypatch.setenv("PDS_PATHS__OUTBOX", "/srv/outbox")
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "not-for-the-gate")
    c = Config()
    context = configure(c, settings)
    try:
        service = airlock_service(c)
        assert service is not None
        assert service["url"] == f"http://127.0.0.1:{airlock_port(settings)}"
        assert c.SandboxSpawner.gate_port == airlock_port(settings)
        env = service["environment"]
        assert env["PDS_CONFIG"] == "/srv/pds/pds.yaml"
        assert env["PDS_DATABASE__URL"] == "postgresql+psycopg://pds@db/pds"
        assert env["PDS_PATHS__OUTBOX"] == "/srv/outbox"
        assert "JUPYTERHUB_CRYPT_KEY" not in env and "PDS_HUB_AIRLOCK" not in env
        secret = env["PDS_AIRLOCK_COOKIE_SECRET"]
        assert len(bytes.fromhex(secret)) == 32
        secret_file = settings.paths.state / "hub" / "airlock_cookie_secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

        again = Config()
        configure(again, settings).runtime.close()
        assert airlock_service(again)["environment"]["PDS_AIRLOCK_COOKIE_SECRET"] == secret
    finally:
        context.runtime.close()


def test_airlock_off_leaves_the_gate_out(settings, monkeypatch):
    monkeypatch.setenv("PDS_HUB_AIRLOCK", "off")
    c = Config()
    configure(c, settings).runtime.close()
    assert airlock_service(c) is None
    assert not c.SandboxSpawner.get("gate_port")


def test_hub_environment_names_the_config_file_read_from_the_current_directory(tmp_path: Path, monkeypatch):
    """The hub runs in its state directory: a ./pds.yaml found here must be passed on by name."""
    monkeypatch.delenv("PDS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert "PDS_CONFIG" not in hub_environment(None, None)
    (tmp_path / "pds.yaml").write_text("paths: {}\n")
    assert hub_environment(None, None)["PDS_CONFIG"] == str(tmp_path / "pds.yaml")
    monkeypatch.setenv("PDS_CONFIG", "/elsewhere/pds.yaml")
    assert hub_environment(None, None)["PDS_CONFIG"] == "/elsewhere/pds.yaml"


def test_workspace_admission_asks_the_registry_and_on_kubernetes_the_hub_group(runtime):
    """The hub's door (pds_kernel.hub.admission): the registry decides (audited as
    workspace.admit); with the identity provider's groups (Kubernetes) the project's group too."""
    from datetime import date, timedelta

    import pytest

    from pds_kernel.errors import PermissionDenied
    from pds_kernel.hub.admission import check_workspace_admission
    from pds_kernel.registry import Registry

    registry = Registry.from_runtime(runtime)
    today = date.today()
    registry.upsert_user("test", "alice")
    registry.upsert_user("test", "dave")
    registry.upsert_project("test", "proj-a", title="A", start_date=today - timedelta(days=1), end_date=today + timedelta(days=30))
    registry.add_member("test", "proj-a", "alice", "researcher", today + timedelta(days=10))
    check_workspace_admission(registry, "alice", "proj-a")
    check_workspace_admission(registry, "alice", "proj-a", {"proj-a"})
    with pytest.raises(PermissionDenied, match="dave is not a researcher of project proj-a"):
        check_workspace_admission(registry, "dave", "proj-a")
    with pytest.raises(PermissionDenied, match="not in the hub group of project proj-a"):
        check_workspace_admission(registry, "alice", "proj-a", set())
    with pytest.raises(PermissionDenied, match="a workspace is a project"):
        check_workspace_admission(registry, "alice", "")
    decisions = runtime.audit.entries(action="workspace.admit")
    assert [(e.actor, e.outcome) for e in decisions] == [
        ("alice", "ok"), ("alice", "ok"), ("dave", "denied"), ("alice", "ok")]
