"""Kubernetes parity of the lockdown: the notebook server a Kubernetes workspace runs, started here
from exactly what the chart and the hub give the pod, refuses the same downloads as the local one.

The pod comes from the real chart (rendered by ``helm``: the ``pds-config`` ConfigMap and the
``jupyterhub.singleuser`` values z2jh hands to KubeSpawner: ``cmd``, ``defaultUrl``, ``extraEnv``),
the PDS hub configuration (:func:`pds_kernel.hub.kubernetes.configure`) and KubeSpawner's own
manifest generation with the PDS hooks. Its container command and environment are then run on
this machine as the kubelet would, with three substitutions only: the Service addresses
(``$(HUB_SERVICE_HOST)``...) point at a local ledger on loopback, ``HOME`` is a temporary home
(``/home/jovyan`` is the claim's mount point), and the launcher's mode is ``server`` instead of
``singleuser`` with a token on the command line, since there is no hub to log in with. Everything
the lockdown depends on (launcher, isolated Python, configuration directory, extension, limits,
budget URL from the hub variables) is the pod's.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from pds_kernel.k8s.config import parse_k8s_config
from pds_kernel.k8s.pods import NOTEBOOK_COMMAND
from pds_kernel.sandbox.notebook_server import server_command

from .conftest import REPO, chart_without_dependencies, helm_available
from .test_chart import merged_values, render
from .test_spawner import FakeHub, FakeOrmSpawner, FakeUser, hub_db, spawn_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sandbox"))
from lockdown_server import LedgerHost, start_server

pytestmark = [pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`"),
              pytest.mark.functional, pytest.mark.slow]


def z2jh_spawner_config(values: dict) -> Config:
    """What z2jh's jupyterhub_config.py sets on KubeSpawner from the ``singleuser`` values we use,
    and the hub's host name it loads from ``hub.config``, with the auth-state key the chart makes
    (``hub.config.CryptKeeper.keys``: it keys the workspaces' host names)."""
    single = values["jupyterhub"]["singleuser"]
    c = Config()
    c.JupyterHub.subdomain_host = values["jupyterhub"]["hub"]["config"]["JupyterHub"]["subdomain_host"]
    c.CryptKeeper["keys"] = [secrets.token_hex(32)]  # (a Config's attribute ``keys`` is the dict's method)
    c.KubeSpawner.cmd = single["cmd"]
    c.KubeSpawner.default_url = single["defaultUrl"]
    c.KubeSpawner.uid = single["uid"]
    c.KubeSpawner.environment = dict(single.get("extraEnv") or {})
    return c


async def chart_pod(tmp_path, settings) -> dict:
    chart = chart_without_dependencies(tmp_path / "chart")
    docs = render(chart, [])
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pds-config")
    k8s = parse_k8s_config(json.loads(cm["data"]["k8s.json"]))
    from kubespawner import KubeSpawner

    from pds_kernel.hub.kubernetes import configure

    c = z2jh_spawner_config(merged_values())
    configure(c, settings=settings, k8s=k8s)  # z2jh's hub.extraConfig runs after its own values
    spawner = KubeSpawner(_mock=True, config=c, user=FakeUser("alice@alpha-study", [], hub_db({"alice": ["alpha-study"]})), hub=FakeHub(),
                          orm_spawner=FakeOrmSpawner("alpha-study"))
    spawner.user_options = {}
    return await spawn_manifest(spawner)


def kubelet_env(container: dict, services: dict[str, str]) -> dict[str, str]:
    """The container's environment with ``$(VAR)`` references expanded as the kubelet does."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" not in item:
            continue
        env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                   lambda m: env.get(m[1], services.get(m[1], m[0])), str(item["value"]))
    return env


@pytest.mark.asyncio
async def test_chart_workspace_runs_the_lockdown_launcher(tmp_path, settings, registry, kubeconfig):
    values = merged_values()
    assert values["jupyterhub"]["singleuser"]["cmd"] == server_command("python") == NOTEBOOK_COMMAND
    pod = await chart_pod(tmp_path, settings)
    container = pod["spec"]["containers"][0]
    assert container["command"] == NOTEBOOK_COMMAND and not container.get("args")
    assert not any(e["name"].startswith(("JUPYTER_", "PYTHON")) for e in container["env"])
    image_cmd = (REPO / "images" / "notebook" / "Dockerfile").read_text()
    assert "CMD " + json.dumps(NOTEBOOK_COMMAND) in image_cmd


@pytest.mark.asyncio
async def test_chart_workspace_refuses_the_same_downloads(tmp_path, settings, registry, kubeconfig):
    pod = await chart_pod(tmp_path, settings)
    container = pod["spec"]["containers"][0]
    home = tmp_path / "home"
    home.mkdir()
    (home / "big.csv").write_text("a;b\n" + "1;2\n" * 40_000)
    (home / "notes.txt").write_text("hello\n")
    (home / ".jupyter").mkdir()
    (home / ".jupyter" / "jupyter_server_config.json").write_text(json.dumps(
        {"Lockdown": {"max_data_read_bytes": 10**10}, "ServerApp": {"jpserver_extensions": {
            "pds_kernel.sandbox.lockdown": False}}}))
    for n in range(4):
        (home / f"part{n}.txt").write_text(secrets.token_hex(400_000))
    ledger = LedgerHost(tmp_path / "ledger.db", capacity=2 * 1024 * 1024, token=secrets.token_hex(8))
    host, port = ledger.httpd.server_address
    env = kubelet_env(container, {"HUB_SERVICE_HOST": host, "HUB_SERVICE_PORT": str(port)})
    assert env["JUPYTERHUB_API_URL"] == f"http://{host}:{port}/hub/api"
    env.update(HOME=str(home), JUPYTERHUB_API_TOKEN=ledger.token)
    # no /data here, nor its init container's record: that check is tests/security/test_extract_check_k8s.py
    assert env.pop("PDS_EXTRACT_CHECKED") == "/srv/pds/extract-check/fingerprint"
    command = [sys.executable, *container["command"][1:-1], "server"]
    server = start_server(home, tmp_path, ledger=None, command=command, env=env)
    try:
        assert "PDS lockdown active" in server.log() and "served-bytes/alice@alpha-study/alpha-study" in server.log()  # its workspace user (ADR 17)
        for path in ("/files/notes.txt", "/files/big.csv?download=1", "/view/notes.txt",
                     "/nbconvert/html/x.ipynb?download=true", "/api/contents/big.csv", "/proxy/9/etc"):
            assert server.request(path)[0] == 403, path
        assert server.request("/api/contents/notes.txt")[0] == 200
        statuses = [server.request(f"/api/contents/part{n}.txt")[0] for n in range(4)]
        assert statuses[0] == 200 and 403 in statuses
        status, page, _ = server.request("/lab")
        config = json.loads(re.search(rb'id="jupyter-config-data" type="application/json">(.*?)</script>',
                                      page, re.S)[1])
        assert {"@jupyterlab/filebrowser-extension:download",
                "@jupyterlab/docmanager-extension:download"} <= set(config["disabledExtensions"])
    finally:
        server.stop()
        ledger.close()


def test_chart_values_document_the_lockdown(tmp_path):
    """The chart's values carry no Jupyter configuration a release could use to weaken it."""
    values = yaml.safe_load((REPO / "helm" / "pds-workspace" / "values.yaml").read_text())
    single = values["jupyterhub"]["singleuser"]
    assert not any(str(k).startswith(("JUPYTER_", "PYTHON")) for k in (single.get("extraEnv") or {}))
    assert "extraFiles" not in single and "args" not in single
