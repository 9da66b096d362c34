"""``SandboxSpawner``: one bubblewrap sandbox per JupyterHub named server (server name = project).

It overrides the five methods JupyterHub documents for a spawner (``start``, ``stop``, ``poll``,
``get_state``, ``load_state``) and nothing else. Decisions are not made here:

* who may start what: :func:`~pds_kernel.sandbox.spec.authorised_workspace_spec` asks the registry
  (audited) and builds the :class:`~pds_kernel.sandbox.spec.WorkspaceSpec`;
* what the sandbox contains: :func:`~pds_kernel.sandbox.bwrap.sandbox_command` translates the spec.

The spawner only does the I/O: directories, the process, and the socket bridges. The notebook
server listens on ``/run/pds/server.sock`` inside; the hub reaches it through a loopback TCP port
(:class:`~.bridge.TcpToUnix`, because configurable-http-proxy cannot target a Unix socket) and the
server reaches the hub API through ``/run/pds/hub.sock`` (:class:`~.bridge.UnixToTcp` here, a TCP
forwarder inside, because JupyterHub's API client speaks TCP only). The platform's package index
(:class:`~pds_kernel.packages.index.IndexServer`, read-only, approved wheels only) is served on
``/run/pds/packages.sock``, forwarded inside to ``127.0.0.1:8083`` where ``/etc/pip.conf`` points.
Each socket served to the sandbox (hub, gate, package index) takes new connections and requests
at the rate of the settings ``hub.socket_*`` (:mod:`.rate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Any, Bool, Float, Integer, List, Unicode, default

from ..audit import AuditEvent, Outcome
from ..errors import PdsError, PermissionDenied
from ..extract.mount_check import WHO_FIXES, CheckedMount, ExtractRefused, check_for_workspace
from ..extract.mount_watch import MountedExtract, open_watched
from ..packages.index import IndexServer
from ..project_end import check_home_quota
from ..workspace_names import SEPARATOR, person_of, workspace_of_server
from . import cgroup
from .bridge import SANDBOX_CONNECTIONS, TcpToUnix, UnixToTcp, socket_identity
from .bwrap import launch_env, prepare_runtime_dir, sandbox_command
from .exec import prepare_imports_mount
from .http_bridge import GateBridge
from .hub_bridge import HubApiBridge
from .hub_policy import HubApiPolicy
from .identity import ensure_sandbox_account, hand_over
from .inside import BRIDGE_PORTS, RUN_DIR
from .launch import EXTRACT_REFUSED
from .log_relay import start_log_relay, wait_for_relay
from .notebook_server import server_command
from .rate import SocketThrottle, ThrottleReport
from .scratch import bound_runtime_dir, pid_alive, unmount_scratch
from .spec import authorised_workspace_spec, home_volume_name, imports_volume_name

#: Where the example notebooks copied into every new home come from.
NOTEBOOKS = Path(__file__).resolve().parent.parent / "hub" / "notebooks"
#: Unix socket paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 100
#: Port the notebook server believes it has (it listens on a Unix socket; jupyter_server refuses an
#: explicit port other than its default together with ``--sock``).
NOMINAL_PORT = 8888


class SandboxSpawner(Spawner):
    """Start each project server in a bubblewrap sandbox (network: loopback only)."""

    context = Any(
        None, allow_none=True, config=True,
        help="The HubContext (settings, runtime, registry) of this hub, set by "
             "pds_kernel.hub.local.configure. Required.",
    )
    singleuser_command = List(
        Unicode(), config=True,
        help="Command of the notebook server inside the sandbox (default: "
             "pds_kernel.sandbox.notebook_server with the venv's Python, which adds the lockdown and "
             "its settings, as on Kubernetes). Arguments for the socket are appended.",
    )
    server_args = List(
        Unicode(), config=True,
        help="Extra arguments of the notebook server (default: JupyterLab at /lab). The platform's "
             "own arguments (the lockdown) come after these and win.",
    )
    gate_port = Integer(
        0, config=True,
        help="Loopback TCP port of the airlock gate on the hub side; when non-zero the sandbox gets "
             "it as /run/pds/gate.sock (127.0.0.1:8082 inside). Default 0: no gate.",
    )
    gate_pages = Unicode(
        "", config=True,
        help="The gate's pages as a browser reaches them (its own host: pds_kernel.hub.origins), "
             "given to the workspace as $PDS_AIRLOCK_PAGES for the links it shows. Default '': none.",
    )
    package_index = Bool(
        True, config=True,
        help="Serve the platform's package index (settings.paths.packages, approved wheels only) to "
             "each sandbox as /run/pds/packages.sock (127.0.0.1:8083 inside, where /etc/pip.conf "
             "points). Default True.",
    )
    stop_grace = Float(
        5.0, config=True,
        help="Seconds between SIGTERM and SIGKILL when a server is stopped. Default 5.",
    )
    ready_poll_interval = Float(
        0.1, config=True,
        help="Seconds between checks for the server's socket while starting. Default 0.1.",
    )

    # ---- runtime state (persisted in get_state: pid and port) ---------------------------------
    pid = Integer(0)
    port = Integer(0)
    _proc = Any(None, allow_none=True)
    #: the process appending the sandbox's output to its log (:mod:`.log_relay`), started here
    _log_relay = Any(None, allow_none=True)
    _bridges = List()
    _token_sha256 = Unicode("")
    #: (device, inode) of the notebook server's socket, recorded when it opened it
    _server_socket = List()
    #: the extract build mounted, and its fingerprint at the start (MountedExtract)
    _mounted = Any(None, allow_none=True)
    #: the refusals of this workspace's sockets over their rate, audited once a minute
    _throttle_report = Any(None, allow_none=True)

    @default("singleuser_command")
    def _default_singleuser_command(self) -> list[str]:
        return server_command(str(Path(sys.prefix) / "bin" / "python"))

    @default("server_args")
    def _default_server_args(self) -> list[str]:
        return ["--ServerApp.default_url=/lab"]

    # ---- paths -------------------------------------------------------------------------------
    @property
    def _settings(self):
        if self.context is None:
            raise RuntimeError("SandboxSpawner.context is not set: use pds_kernel.hub.local.configure")
        return self.context.settings

    @property
    def person(self) -> str:
        """The person whose workspace this is (the hub runs it as her workspace user,
        :mod:`pds_kernel.workspace_names`)."""
        return person_of(self.user.name)

    def _key(self) -> str:
        """Short per (person, project) directory name: socket paths must stay under 107 bytes."""
        return hashlib.sha256(f"{self.person}/{self.name}".encode()).hexdigest()[:16]

    def _run_root(self) -> Path:
        return self._settings.paths.state / "run"

    def _runtime_dir(self) -> Path:
        return self._run_root() / self._key()

    def _socket_path(self, name: str) -> Path:
        path = self._run_root() / f"{self._key()}.{name}.sock"
        if len(str(path)) > MAX_SOCKET_PATH:
            raise PermissionDenied(f"the hub state directory {self._settings.paths.state} is too deep "
                                   "for Unix sockets: use a shorter paths.state")
        return path

    def _log_path(self) -> Path:
        return self._settings.paths.state / "logs" / f"{self.person}.{self.name or 'default'}.log"

    def _new_log(self) -> Path:
        """The log of this start, empty; the previous start's is kept as ``.log.1`` (one only). The
        sandbox writes its log on the hub's disk: the home quota counts this start's log
        (:meth:`outside_home`), and the files of earlier starts do not pile up."""
        log_path = self._log_path()
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
        return log_path

    def mounted_extract(self) -> MountedExtract | None:
        """The build this running workspace mounts, and its fingerprint at the start (the hub's
        watcher stops the workspace when it changes: :mod:`pds_kernel.extract.mount_watch`)."""
        return self._mounted if self.pid else None

    def outside_home(self) -> tuple[int, Path]:
        """(launcher pid, log of this start) of the running sandbox: what the hub's watcher counts
        with the home against its quota (:func:`pds_kernel.project_end.outside_home_bytes`)."""
        return self.pid, self._log_path()

    # ---- environment ---------------------------------------------------------------------------
    def _sandbox_env(self) -> dict[str, str]:
        """The notebook server's environment: JupyterHub's, with URLs rewritten for the sandbox."""
        env = {k: v for k, v in self.get_env().items() if k not in {"PATH", "PYTHONPATH", "HOME"}}
        inside_api = "http://127.0.0.1:{}/hub/api".format(BRIDGE_PORTS["hub"])
        hub_api = self.hub.api_url.rstrip("/")
        for name, value in list(env.items()):
            if isinstance(value, str) and value.startswith(hub_api):
                env[name] = inside_api + value[len(hub_api):]
        env["JUPYTERHUB_API_URL"] = inside_api
        prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{NOMINAL_PORT}{prefix}"
        env["DASK_DISTRIBUTED__DASHBOARD__LINK"] = prefix + "proxy/{port}/status"
        env["PDS_PROJECT"] = self.name
        if self.gate_pages:
            env["PDS_AIRLOCK_PAGES"] = self.gate_pages
        return {k: str(v) for k, v in env.items()}

    def _server_argv(self) -> list[str]:
        return [*self.singleuser_command,
                f"--ServerApp.sock={RUN_DIR}/server.sock", "--ServerApp.sock_mode=0600",
                f"--ServerApp.port={NOMINAL_PORT}", "--ServerApp.root_dir=/home/jovyan",
                *self.server_args, *self.args]

    def _audit(self, action: str, outcome: str = Outcome.OK, **details) -> None:
        self.context.record(AuditEvent(
            actor=self.person, action=action, target=f"user:{self.person}",
            project=self.name, outcome=outcome, details={"server": self.name, **details},
        ))

    # ---- JupyterHub's five methods -------------------------------------------------------------
    async def start(self) -> str:
        """Check access, prepare the directories, start the sandbox and its bridges."""
        settings = self._settings
        try:
            if not self.name:
                raise PermissionDenied("start a project server: the server name must be a project id")
            if workspace_of_server(self.user.name, self.name) is None:
                raise PermissionDenied(f"a workspace runs as its own hub user ({self.person}{SEPARATOR}{self.name}): "
                                       "start it from your home page")
            spec = authorised_workspace_spec(settings, self.context.registry, self.person,
                                             self.name, action="workspace.authorise")
            check_home_quota(settings, spec.mount(home_volume_name(spec.project, spec.user)).host_path)
        except PdsError as exc:
            self._audit("workspace.refused", Outcome.DENIED, reason=str(exc))
            raise web.HTTPError(403, str(exc), reason=str(exc)) from None

        # Root hub: the sandbox runs as the unprivileged sandbox account, which owns what it writes.
        account = ensure_sandbox_account()
        self._prepare_home(spec.mount(home_volume_name(spec.project, spec.user)).host_path)
        hand_over(spec.mount(home_volume_name(spec.project, spec.user)).host_path, account)
        extract, self._mounted = await self._checked_extract(spec)  # what the hub's watcher compares it with
        prepare_imports_mount(spec.mount(imports_volume_name(spec.project)))

        runtime_dir = prepare_runtime_dir(self._runtime_dir())
        bound_runtime_dir(runtime_dir, account)  # unmounted at stop
        hand_over(runtime_dir, account)
        sockets = {"hub": self._socket_path("hub")}
        self._token_sha256 = HubApiPolicy.for_token(self.user.name, self.api_token).token_sha256
        bridges: list = [self._hub_bridge()]
        if self.gate_port:
            sockets["gate"] = self._socket_path("gate")
            bridges.append(self._gate_bridge())
        if self.package_index:
            sockets["packages"] = self._socket_path("packages")
            bridges.append(self._package_index())
        for bridge in bridges:
            await bridge.start()
        self._bridges = bridges
        for path in sockets.values():
            hand_over(path, account)

        env = self._sandbox_env()
        cmd = sandbox_command(spec, self._server_argv(), env=env, sockets=sockets, runtime_dir=runtime_dir,
                              extract=extract)
        log_path = self._new_log()
        started = time.monotonic()
        # the sandbox writes its log through a pipe: no process of it holds the file (log_relay)
        self._log_relay, log_pipe = await start_log_relay(log_path, spec.max_file_mb)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *cmd, env=launch_env(env), stdin=asyncio.subprocess.DEVNULL,
                stdout=log_pipe, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
        finally:
            os.close(log_pipe)
        self.pid = self._proc.pid
        try:
            await self._wait_for_socket(runtime_dir / "server.sock", log_path)
            # The first socket there is the server's (no kernel runs yet): only it is ever reached.
            self._server_socket = list(socket_identity(runtime_dir / "server.sock"))
            web_bridge = self._web_bridge(0)
            await web_bridge.start()
        except BaseException:
            await self._terminate()
            await self._stop_bridges()
            if self._proc.returncode == EXTRACT_REFUSED:  # swapped between the check and the mount
                reason = (f"the extract of project {spec.project} changed while the workspace was starting; "
                          f"{WHO_FIXES}")
                self._audit("workspace.refused", Outcome.DENIED, reason=reason, stage="extract mount")
                raise web.HTTPError(403, reason, reason=reason) from None
            self._audit("workspace.start", Outcome.FAILED, reason="server did not start",
                        log=str(log_path))
            raise
        self._bridges = [*self._bridges, web_bridge]
        self.port = web_bridge.port
        self._audit("workspace.start", pid=self.pid, port=self.port, cpu_limit=spec.cpu_limit,
                    mem_limit_mb=spec.mem_limit_mb, dask_workers=spec.dask_workers,
                    seconds=round(time.monotonic() - started, 3))
        return f"http://127.0.0.1:{self.port}"

    async def poll(self) -> int | None:
        """``None`` while the sandbox runs, else its exit status (0 when unknown)."""
        if self._proc is not None:
            return self._proc.returncode
        if not self.pid:
            return 0
        if not pid_alive(self.pid):
            self.clear_state()
            return 0
        await self._reattach()
        return None

    async def stop(self, now: bool = False) -> None:
        """Terminate the sandbox (its PID namespace dies with it) and close the bridges."""
        was_running = bool(self.pid) and (self._proc is None or self._proc.returncode is None)
        await self._terminate(grace=0 if now else self.stop_grace)
        await self._stop_bridges()
        if self.name:
            unmount_scratch(self._runtime_dir())
            try:  # the sandbox's control group is empty now: remove it (a busy group stays)
                cgroup.release(cgroup.group_name(self.name, self.person))
            except ValueError:
                pass
        if was_running:
            self._audit("workspace.stop", cause="stopped")
        self.clear_state()

    def get_state(self) -> dict:
        state = super().get_state()
        if self.pid:
            state.update(pid=self.pid, port=self.port, token_sha256=self._token_sha256,
                         server_socket=list(self._server_socket))
            if self._mounted is not None:
                state["extract"] = self._mounted.as_state()
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.pid = int(state.get("pid", 0) or 0)
        self.port = int(state.get("port", 0) or 0)
        self._token_sha256 = str(state.get("token_sha256", "") or "")
        self._server_socket = [int(x) for x in state.get("server_socket") or []][:2]
        self._mounted = MountedExtract.from_state(state.get("extract"))

    def clear_state(self) -> None:
        super().clear_state()
        self.pid = 0
        self.port = 0
        self._token_sha256 = ""
        self._server_socket = []
        if self._mounted is not None and self._mounted.directory is not None:
            os.close(self._mounted.directory)
        self._mounted = None
        self._proc = None

    # ---- helpers -------------------------------------------------------------------------------
    async def _checked_extract(self, spec) -> tuple[CheckedMount, MountedExtract]:
        """The project's extract, checked against the audit trail (:mod:`pds_kernel.extract.mount_check`:
        re-hashed when small, compared with its recorded state when large), in a thread: hashing
        a few GiB must not stop the hub; and what the hub's watcher compares the build with while
        the workspace runs: a descriptor of it and its entries' state
        (:func:`~pds_kernel.extract.mount_watch.open_watched`).
        A refusal is audited and shown to the researcher."""

        def check() -> tuple[CheckedMount, MountedExtract]:
            checked = check_for_workspace(self._settings, self.context.runtime.audit, spec.project)
            return checked, open_watched(self._settings, checked)

        try:
            return await asyncio.to_thread(check)
        except ExtractRefused as exc:
            self._audit("workspace.refused", Outcome.DENIED, reason=str(exc), stage="extract")
            raise web.HTTPError(403, str(exc), reason=str(exc)) from None

    def _prepare_home(self, home: Path) -> None:
        """Create the private home (0700) and copy the example notebooks into a new one."""
        new = not home.exists()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(home, 0o700)
        if new and NOTEBOOKS.is_dir():
            target = home / "examples"
            target.mkdir(exist_ok=True)
            os.chmod(target, 0o700)
            for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
                shutil.copyfile(notebook, target / notebook.name)

    async def _wait_for_socket(self, path: Path, log_path: Path) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not path.is_socket():
            if self._proc.returncode is not None:
                await wait_for_relay(self._log_relay)
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                self.log.error("sandbox of %s/%s exited:\n%s", self.person, self.name, "\n".join(tail))
                raise web.HTTPError(500, f"the workspace exited during start (code {self._proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workspace did not open its socket in {self.start_timeout} s")
            await asyncio.sleep(self.ready_poll_interval)

    async def _reattach(self) -> None:
        """After a hub restart with the sandbox still alive: re-open the bridges on the same port."""
        if self._bridges:
            return
        runtime_dir = self._runtime_dir()
        if len(self._server_socket) != 2:  # a state of an earlier version: the socket there now
            try:
                self._server_socket = list(socket_identity(runtime_dir / "server.sock"))
            except OSError:
                self._server_socket = [0, 0]  # no socket: no identity matches, nothing is reached
        bridges = [self._hub_bridge(), self._web_bridge(self.port)]
        if self.gate_port:
            bridges.append(self._gate_bridge())
        if self.package_index:
            bridges.append(self._package_index())
        for bridge in bridges:
            await bridge.start()
        self._bridges = bridges
        account = ensure_sandbox_account()
        for bridge in bridges:
            if isinstance(bridge, UnixToTcp):
                hand_over(bridge.unix_path, account)
            elif isinstance(bridge, IndexServer):
                hand_over(bridge.unix_socket, account)

    def _web_bridge(self, port: int) -> TcpToUnix:
        """The hub's way to the notebook server: its socket only, a replacement refused and audited."""
        return TcpToUnix(port, self._runtime_dir() / "server.sock", identity=tuple(self._server_socket),
                         on_replaced=lambda: self._audit("workspace.socket.replaced", Outcome.DENIED,
                                                         socket="server.sock"))

    def _package_index(self) -> IndexServer:
        """The package index of this workspace; every wheel it hands out is in the audit trail."""

        def served(method: str, path: str, status: int) -> None:
            if path.startswith("/files/") and status == 200:
                self._audit("packages.download", file=path.removeprefix("/files/"), method=method)

        return IndexServer(self._settings.paths.packages, unix_socket=self._socket_path("packages"),
                           on_request=served, max_connections=SANDBOX_CONNECTIONS,
                           throttle=self._throttle("packages.sock"))

    def _throttle(self, socket_name: str) -> SocketThrottle:
        """The rate limit of one socket served to this workspace (settings ``hub.socket_*``); the
        refusals of all its sockets are audited together, once a minute."""
        if self._throttle_report is None:
            self._throttle_report = ThrottleReport(
                lambda details: self._audit("workspace.socket.throttled", Outcome.DENIED, **details))
        hub = self._settings.hub
        return SocketThrottle(socket_name, hub.socket_requests_per_second, hub.socket_request_burst,
                              self._throttle_report)

    def _gate_bridge(self) -> GateBridge:
        """The gate socket: requests framed plainly, at the socket's rate (the gate checks them)."""
        return GateBridge(self._socket_path("gate"), "127.0.0.1", self.gate_port, throttle=self._throttle("gate.sock"))

    def _hub_bridge(self) -> HubApiBridge:
        """The hub socket: only the hub API requests this server needs, refusals audited."""
        api = urlparse(self.hub.api_url)

        def refused(method: str, path: str, reason: str, suppressed: int) -> None:
            self._audit("hub.socket.refused", Outcome.DENIED, method=method, path=path, reason=reason,
                        earlier_refusals_not_recorded=suppressed)

        policy = HubApiPolicy(user=self.user.name, token_sha256=self._token_sha256, server=self.name)
        return HubApiBridge(self._socket_path("hub"), api.hostname or "127.0.0.1", api.port or 80,
                            policy, on_refusal=refused, throttle=self._throttle("hub.sock"))

    async def _terminate(self, grace: float | None = None) -> None:
        grace = self.stop_grace if grace is None else grace
        pid = self._proc.pid if self._proc is not None else self.pid
        if not pid or not pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.returncode is not None:
                break
            if self._proc is None and not pid_alive(pid):
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if self._proc is not None:
            await self._proc.wait()

    async def _stop_bridges(self) -> None:
        bridges, self._bridges = self._bridges, []
        for bridge in bridges:
            with contextlib.suppress(OSError):
                await bridge.stop()
