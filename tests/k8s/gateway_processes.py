"""The real ``dask-gateway-server`` behind the real JupyterHub, with clusters that run.

* :class:`HubThread`: JupyterHub 5.5 in Kubernetes mode (:mod:`k8s_hub`) on its own event loop in
  a thread, so tests can be plain functions and the gateway process can call the hub's API;
* :class:`GatewayProcess`: the ``dask-gateway-server`` command, configured as the chart's config
  file then ``gateway.extraConfig`` do (JupyterHub authentication with the service token,
  :func:`pds_kernel.k8s.gateway.configure_gateway`), except the backend: dask-gateway's local
  process backend (``UnsafeLocalBackend``: schedulers and workers are real processes started by
  the gateway, under its user) instead of ``KubeBackend``. Clients go through the gateway's own
  proxy (``dask-gateway-proxy``: HTTP API and SNI-routed TLS to the schedulers), as in the chart.

The cluster options are the production ones: the cluster config class is ``KubeClusterConfig``
(what :func:`pds_kernel.k8s.pods.build_cluster_overrides` fills), which the local backend accepts
because it only reads the base ``ClusterConfig`` fields (commands, cores, memory, environment);
the pod fields (image, volumes, labels, security contexts) are not exercised here (see
tests/k8s/test_netpol.py and test_spawner.py for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import requests
import yaml
from dask_gateway import Gateway, JupyterHubAuth
from jupyterhub import orm
from ports import free_port

from pds_kernel.settings import Settings

from .k8s_hub import GATEWAY, Hub, start_hub, start_notebook_stand_in

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CONFIG = '''
from pds_kernel.k8s.gateway import configure_gateway

# what the dask-gateway chart's dask_gateway_config.py sets for gateway.auth.type=jupyterhub
# (the token comes from the Deployment's environment: JUPYTERHUB_API_TOKEN) ...
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = {hub_api!r}
c.JupyterHubAuthenticator.jupyterhub_service_name = {service!r}
# ... then gateway.extraConfig (values.yaml): settings from $PDS_CONFIG here, $PDS_* in the pod
configure_gateway(c)
# the local process backend instead of KubeBackend
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.UnsafeLocalBackend.cluster_config_class = (
    "dask_gateway_server.backends.kubernetes.backend.KubeClusterConfig")
c.UnsafeLocalBackend.clusters_directory = {clusters!r}
c.UnsafeLocalBackend.db_url = {db_url!r}
c.UnsafeLocalBackend.db_encrypt_keys = [{encrypt_key!r}]
c.UnsafeLocalBackend.inherited_environment = ["PATH", "VIRTUAL_ENV", "LANG", "LC_ALL"]
c.UnsafeLocalBackend.sigint_timeout = 3
c.UnsafeLocalBackend.sigterm_timeout = 2
c.DaskGateway.address = {api!r}
c.Proxy.address = {proxy!r}
c.Proxy.tcp_address = {proxy_tcp!r}
c.DaskGateway.log_level = "INFO"
'''


def write_settings_file(settings: Settings, path: Path) -> Path:
    """``settings`` as a ``$PDS_CONFIG`` file (paths and database), for another process."""
    data = {"paths": {f.name: str(getattr(settings.paths, f.name)) for f in fields(settings.paths)},
            "database": {"url": settings.database.url}}
    path.write_text(yaml.safe_dump(data))
    return path


class _ClosedOnce(Gateway):
    """dask_gateway's client, closed once. Its ``__del__`` closes it again, and closing takes
    distributed's class-wide ``LoopRunner`` lock: when a garbage collection ran a client's
    ``__del__`` while a ``distributed.Client`` was starting its own loop (the lock held), the test
    process hung (seen in a full run, in tests/security/test_gateway_isolation.py). Every test
    closes its client with ``with``; the collector's second close is then a no-op. Clients made
    inside dask_gateway (a cluster's own) are collected at safe points: after each test of the
    isolation attacks, and when a world stops."""

    def close(self):
        if getattr(self, "_closed_once", False):
            return None
        self._closed_once = True
        return super().close()


@contextlib.contextmanager
def collected_here():
    """Run a test with the automatic garbage collection off, then collect in this (the test's) thread.

    A dask_gateway client (``Gateway``) closes itself in ``__del__`` by waiting on its event loop. The
    automatic collector runs in whichever thread allocates: when it ran a client's ``__del__`` on
    that client's own loop thread (a client made inside dask_gateway by ``connect`` or
    ``new_cluster`` and refused with 401, left to the collector), the loop waited on itself and the
    whole run hung, pytest's timeout included (seen in a full run, in
    tests/security/test_revocation_attacks_dask.py). Clients left to the collector are finalised
    here, in the test's thread, between tests."""
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.enable()


# ---- the hub on its own loop -------------------------------------------------------------------
class HubThread:
    """A real JupyterHub (Kubernetes mode, no Kubernetes) served from a background thread."""

    def __init__(self, settings: Settings, root: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="hub")
        self.thread.start()
        self.hub: Hub = self.call(self._start(settings, root))

    async def _start(self, settings, root):
        self._notebook, notebook_url = start_notebook_stand_in()
        app, self._server, api_url = await start_hub(settings, f"sqlite:///{root}/hub.sqlite", root,
                                                     notebook_url)
        return Hub(app, api_url, app.services)

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def workspace_token(self, user: str, groups: list[str], project: str) -> str:
        """Sign ``user`` in (hub groups = ``groups``) and start their ``project`` server: its token."""
        async def go():
            return await self.hub.start_server(self.hub.sign_in(user, groups), project)
        return self.call(go())

    def personal_token(self, user: str) -> str:
        """A token ``user`` makes on the hub's token page, her groups as they are (signed in first,
        with none, when she never was: a sign-in with none would take her out of her projects, and
        the gateway's watcher then stops her clusters)."""
        async def go():
            found = orm.User.find(self.hub.app.db, user)
            person = self.hub.app.users[found] if found is not None else self.hub.sign_in(user, [])
            return person.new_api_token(note="made on the token page")
        return self.call(go())

    def stop(self) -> None:
        async def go():
            self._server.stop()
            self._notebook.stop()
            self.hub.app.db.close()
        self.call(go())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# ---- the gateway process ----------------------------------------------------------------------
class GatewayProcess:
    """``dask-gateway-server -f <config>``, stopped with SIGINT (it then stops its clusters)."""

    def __init__(self, settings: Settings, hub: Hub, root: Path, extra_config: str = ""):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.db_path = root / "gateway.sqlite"
        self.proxy = f"127.0.0.1:{free_port()}"
        self.proxy_tcp = f"127.0.0.1:{free_port()}"
        self.address = f"http://{self.proxy}"  # what clients use (the proxy routes /api to the API)
        self.log_path = root / "gateway.log"
        (root / "clusters").mkdir(exist_ok=True)
        config = root / "dask_gateway_config.py"
        config.write_text(CONFIG.format(
            hub_api=hub.api_url, service=GATEWAY, clusters=str(root / "clusters"),
            db_url=f"sqlite:///{self.db_path}", encrypt_key=_fernet_key(),
            api=f"127.0.0.1:{free_port()}", proxy=self.proxy, proxy_tcp=self.proxy_tcp) + extra_config)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PDS_", "DASK_", "JUPYTERHUB_"))}
        env.update(PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}", VIRTUAL_ENV=str(BIN.parent),
                   PDS_CONFIG=str(write_settings_file(settings, root / "pds.yaml")),
                   JUPYTERHUB_API_TOKEN=hub.service_tokens[GATEWAY])
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([str(BIN / "dask-gateway-server"), "-f", str(config)],
                                        cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dask-gateway-server exited:\n{self.log()}")
            try:
                if requests.get(f"{self.address}/api/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"dask-gateway-server not healthy after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def client(self, token: str) -> Gateway:
        return _ClosedOnce(address=self.address, proxy_address=f"gateway://{self.proxy_tcp}",
                           auth=JupyterHubAuth(api_token=token))

    def cluster_rows(self) -> dict[str, dict]:
        """What the gateway's database says of each cluster (name → username, addresses, state)."""
        with sqlite3.connect(self.db_path) as db:
            db.row_factory = sqlite3.Row
            return {r["name"]: dict(r) for r in db.execute("SELECT * FROM clusters")}

    def live_workers(self, cluster: str) -> list[str]:
        """The cluster's workers the gateway's database holds as not yet stopped (status below
        dask-gateway's ``JobStatus.STOPPED``, 5)."""
        with sqlite3.connect(self.db_path) as db:
            return [name for (name,) in db.execute(
                "SELECT w.name FROM workers w JOIN clusters c ON w.cluster_id = c.id"
                " WHERE c.name = ? AND w.status < 5", (cluster,))]

    def wait_no_live_workers(self, cluster: str, timeout: float = 60) -> None:
        """Until every worker of ``cluster`` has stopped (a test that scaled it waits here before
        the next one reports its workers itself)."""
        deadline = time.monotonic() + timeout
        while (live := self.live_workers(cluster)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not live, f"workers of {cluster} still not stopped after {timeout} s: {live}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def _settings(root: Path) -> Settings:
    """tests/conftest.py's ``make_settings`` (that module cannot be imported by name from
    tests/security, whose own conftest shadows it)."""
    from dataclasses import replace

    from pds_kernel.settings import Paths

    paths = Paths(**{f.name: root / f.name for f in fields(Paths)})
    for f in fields(Paths):
        getattr(paths, f.name).mkdir(parents=True, exist_ok=True)
    return replace(Settings(), paths=paths)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# ---- everything together ----------------------------------------------------------------------
class GatewayWorld:
    """Registry (two projects, :func:`conftest.two_projects`), hub thread, gateway process.

    ``with GatewayWorld(root) as world:`` in a module-scoped fixture; ``world.token(user, project)``
    is the workspace token of that user's server for that project. ``extra_config`` is appended to
    the gateway's config file (as more ``gateway.extraConfig`` would be).
    """

    def __init__(self, root: Path, extra_config: str = ""):
        self.root = root
        self.extra_config = extra_config

    def __enter__(self) -> GatewayWorld:
        from pytest import MonkeyPatch

        from pds_kernel.registry import Registry
        from pds_kernel.runtime import Runtime

        from .conftest import two_projects, use_dummy_kubeconfig

        self._patch = MonkeyPatch()
        use_dummy_kubeconfig(self.root, self._patch)
        self.settings = _settings(self.root / "pds")
        self.runtime = Runtime(self.settings)
        self.registry = two_projects(Registry.from_runtime(self.runtime))
        self._tokens: dict[tuple[str, str], str] = {}
        try:
            self.hub = HubThread(self.settings, self.root)
            self.gateway = GatewayProcess(self.settings, self.hub.hub, self.root / "gateway",
                                          self.extra_config)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def token(self, user: str, project: str) -> str:
        if (user, project) not in self._tokens:
            groups = [p.id for p in self.registry.active_projects(user)]  # as PdsOAuthenticator
            self._tokens[user, project] = self.hub.workspace_token(user, groups, project)
        return self._tokens[user, project]

    def __exit__(self, *exc) -> None:
        for part in ("gateway", "hub"):
            if hasattr(self, part):
                getattr(self, part).stop()
        self.runtime.close()
        self._patch.undo()
        # clients left for the collector are finalised here, not inside another test (_ClosedOnce),
        # nor inside pytest's compile at session end (CPython 3.11: "AST constructor recursion
        # depth mismatch"), where their __del__ used to fail
        gc.collect()
