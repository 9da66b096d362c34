"""The launcher that runs first inside a workspace sandbox (standard library only, starts fast).

``python -m pds_kernel.sandbox.inside [--keep-env A,B] [--socket hub] ... -- COMMAND...``

1. Builds the child's environment: the names listed in ``--keep-env`` (values come from the
   process environment, never from argv), plus the workspace's own settings (home, user, data
   directory, Dask workers, bridge URLs), which the caller cannot override.
2. For each ``--socket NAME`` mounted at ``/run/pds/NAME.sock``, listens on
   ``127.0.0.1:BRIDGE_PORTS[NAME]`` and forwards to it (hub -> 8081, gate -> 8082, package
   index -> 8083).
3. Runs COMMAND, passes on SIGTERM/SIGINT/SIGHUP, and exits with its exit code (128+N when it
   died of signal N; 127 when it cannot be started). Without sockets it simply execs COMMAND.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading

#: Runtime directory inside the sandbox (a host directory per user and project, read-write).
RUN_DIR = "/run/pds"
#: The notebook server's socket, reached by the hub through a :class:`~.bridge.TcpToUnix`.
SERVER_SOCKET = f"{RUN_DIR}/server.sock"
SANDBOX_HOME = "/home/jovyan"
SANDBOX_USER = "jovyan"
DATA_DIR = "/data"
#: Mounted socket name -> loopback port it is forwarded to inside the sandbox.
BRIDGE_PORTS = {"hub": 8081, "gate": 8082, "packages": 8083}
#: Environment variable set (inside) to the URL of each bridge.
BRIDGE_URLS = {
    "hub": ("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
    "gate": ("PDS_AIRLOCK_URL", "http://127.0.0.1:8082"),
    "packages": ("PDS_PACKAGE_INDEX_URL", "http://127.0.0.1:8083/simple/"),
}
#: The platform's pip configuration (read-only, bound from ``etc/pip.conf`` of this package):
#: the package index above, nothing else.
PIP_CONFIG = "/etc/pip.conf"
#: Where ``pip install`` puts approved packages (the ``prefix`` of :data:`PIP_CONFIG`): in the
#: home, so they last across restarts; the environment itself is read-only.
PACKAGES_PREFIX = f"{SANDBOX_HOME}/.local/pds-packages"
#: The terminal's shell (JupyterLab's terminals run ``$SHELL``).
SHELL = "/bin/bash"
#: R in workspaces: the platform's site profile attaches the extract helpers (``pds_kernel/r``).
R_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "r")


def packages_site_dir(prefix: str = PACKAGES_PREFIX) -> str:
    """The ``site-packages`` directory of :data:`PACKAGES_PREFIX` for this interpreter."""
    return f"{prefix}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
#: Dask dashboard port inside the sandbox (reached through jupyter-server-proxy).
DASK_DASHBOARD_PORT = 8787


def child_environment(source: dict[str, str], keep: list[str], sockets: list[str], *,
                      dask_workers: int, mem_limit_mb: int) -> dict[str, str]:
    """Pure: the environment COMMAND gets."""
    venv_bin = os.path.join(sys.prefix, "bin")
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin:{PACKAGES_PREFIX}/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "SHELL": SHELL,
    }
    env.update({name: source[name] for name in keep if name in source})
    env.update({
        "HOME": SANDBOX_HOME,
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "PDS_SANDBOX": "1",
        "PDS_DATA_DIR": DATA_DIR,
        "PDS_DASK_WORKERS": str(dask_workers),
        "PDS_MEM_LIMIT_MB": str(mem_limit_mb),
        "PDS_DASK_DASHBOARD_PORT": str(DASK_DASHBOARD_PORT),
        "PDS_SERVER_SOCKET": SERVER_SOCKET,
        # pip: the platform's configuration, and the approved packages installed in the home
        # (kernels and terminals see them; the notebook server runs ``python -I`` and does not).
        "PIP_CONFIG_FILE": PIP_CONFIG,
        "PYTHONPATH": packages_site_dir(),
        "R_PROFILE": os.path.join(R_DIR, "Rprofile.site"),
        "PDS_R_HELPER": os.path.join(R_DIR, "pds.R"),
    })
    for name in sockets:
        variable, url = BRIDGE_URLS[name]
        env[variable] = url
    return env


class _Bridges:
    """The TCP-to-Unix forwarders of the mounted sockets, on an event loop in a daemon thread."""

    def __init__(self, sockets: list[str]):
        self.sockets = sockets
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="pds-bridges", daemon=True)

    def _run(self) -> None:
        from .bridge import TcpToUnix

        asyncio.set_event_loop(self.loop)
        forwarders = [TcpToUnix(BRIDGE_PORTS[name], f"{RUN_DIR}/{name}.sock") for name in self.sockets]
        try:
            for forwarder in forwarders:
                self.loop.run_until_complete(forwarder.start())
        except BaseException as exc:  # reported by start(), which exits with a clear message
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pds_kernel.sandbox.inside", description=__doc__.split("\n")[0])
    parser.add_argument("--keep-env", default="", help="comma-separated names of variables to keep")
    parser.add_argument("--socket", action="append", default=[], choices=sorted(BRIDGE_PORTS),
                        help="a socket mounted at /run/pds/NAME.sock to forward from loopback")
    parser.add_argument("--dask-workers", type=int, default=1)
    parser.add_argument("--mem-limit-mb", type=int, default=0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        parser.error("give the command to run after --")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    keep = [name for name in args.keep_env.split(",") if name]
    env = child_environment(dict(os.environ), keep, args.socket,
                            dask_workers=args.dask_workers, mem_limit_mb=args.mem_limit_mb)
    if not args.socket:
        try:
            os.execvpe(args.command[0], args.command, env)
        except OSError as exc:
            print(f"pds sandbox: cannot run {args.command[0]}: {exc.strerror}", file=sys.stderr)
            return 127
    try:
        _Bridges(args.socket).start()
    except OSError as exc:
        print(f"pds sandbox: cannot start the socket bridges: {exc}", file=sys.stderr)
        return 126
    try:
        child = subprocess.Popen(args.command, env=env)
    except OSError as exc:
        print(f"pds sandbox: cannot run {args.command[0]}: {exc.strerror}", file=sys.stderr)
        return 127

    def forward(signum, _frame):
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
