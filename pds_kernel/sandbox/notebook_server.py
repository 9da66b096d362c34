"""The one way a workspace's notebook server is started, locally and on Kubernetes.

``python -I -m pds_kernel.sandbox.notebook_server [singleuser|server] [ARGS...]``

Both spawners run exactly :func:`server_command` (the local :class:`~.spawner.SandboxSpawner`
inside bubblewrap, the KubeSpawner through :func:`pds_kernel.k8s.pods.apply_workspace_invariants`,
and the notebook image's ``CMD``), so the lockdown and its settings come from this module only.
Before jupyter is imported it:

* runs in Python's isolated mode (``-I``: no ``PYTHON*`` variables, no user site-packages, no
  ``.pth`` or ``usercustomize`` in the home, the current directory not on ``sys.path``), and
  starts itself again that way when it was not;
* drops every ``JUPYTER*`` variable but the runtime directory and JupyterHub's own
  (``JUPYTERHUB_*``, set by the hub) and points ``JUPYTER_CONFIG_DIR`` and ``JUPYTER_CONFIG_PATH``
  at :data:`PLATFORM_CONFIG_DIR`, which ships with the package (read-only in the sandbox and in
  the image). Jupyter's configuration search path is then: that directory, the environment's
  ``etc/jupyter`` and ``/usr/local/etc/jupyter``, ``/etc/jupyter``; never ``~/.jupyter``,
  ``~/.local/etc/jupyter``, a ``jupyter_*_config.py`` in the home or the working directory, or
  ``$JUPYTER_PREFER_ENV_PATH`` tricks;
* puts the platform's arguments (:func:`platform_args`: the lockdown extension and its limits,
  JupyterLab's paths) *after* the caller's, so they win over anything else on the command line;
* imports JupyterLab without ``node`` on ``PATH`` (:func:`preload_jupyterlab`), so it does not
  ask yarn for an npm registry at every start;
* makes the server process non-dumpable (:func:`make_undumpable`): its kernels run as the same
  user, and could otherwise attach to it with ``ptrace`` or write ``/proc/<pid>/mem`` to switch
  the lockdown off in memory. Kernels are separate programs (``execve`` makes them dumpable again),
  so debugging one's own code still works.

The lockdown checks all of this again when it loads (:func:`check_platform_config`) and stops
the server when a path or an extension is not the platform's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..extract.tree import refuse_unless_checked

#: The platform's Jupyter configuration directory (read-only wherever the package is installed).
PLATFORM_CONFIG_DIR = Path(__file__).resolve().parent / "jupyter_config"
LOCKDOWN_EXTENSION = "pds_kernel.sandbox.lockdown"
#: Server extensions a workspace may load (the environment's ``jupyter_server_config.d`` enables
#: the installed ones); any other stops the server.
ALLOWED_SERVER_EXTENSIONS = frozenset({
    LOCKDOWN_EXTENSION, "jupyterlab", "jupyter_server_terminals", "jupyter_server_proxy",
    "jupyter_lsp", "notebook_shim", "jupyterhub", "jupyterhub.singleuser.extension",
})
#: Environment variables kept from the caller among those starting with ``JUPYTER``.
KEPT_JUPYTER_VARIABLES = frozenset({"JUPYTER_RUNTIME_DIR"})
#: What the server runs: JupyterHub's single-user server, or a plain jupyter_server (tests, and
#: the chart parity test that has no hub).
MODES = {"singleuser": "jupyterhub.singleuser", "server": "jupyter_server"}
#: The shell of JupyterLab's terminals (locally from the host's /usr, in the image from Debian).
TERMINAL_SHELL = "/bin/bash"


def server_command(python: str = "python", mode: str = "singleuser") -> list[str]:
    """The argv prefix both spawners run; their own arguments (socket, port) follow it."""
    if mode not in MODES:
        raise ValueError(f"unknown notebook server mode {mode!r} (known: {', '.join(MODES)})")
    return [python, "-I", "-m", __name__, mode]


def platform_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` without the variables a user could use to move Jupyter's configuration, with
    the platform's configuration directory."""
    env = {k: v for k, v in environ.items()
           if not (k.startswith("JUPYTER") and not k.startswith("JUPYTERHUB_")
                   and k not in KEPT_JUPYTER_VARIABLES)}
    env["JUPYTER_CONFIG_DIR"] = str(PLATFORM_CONFIG_DIR)
    env["JUPYTER_CONFIG_PATH"] = str(PLATFORM_CONFIG_DIR)
    return env


def lab_labextensions_dir() -> Path:
    """JupyterLab's prebuilt extensions of this environment (read-only, the platform's)."""
    return Path(sys.prefix) / "share" / "jupyter" / "labextensions"


def lab_app_name(project: str) -> str:
    """JupyterLab's application name, which it puts in every page title ("notebook.ipynb -
    NAME"): the project, so that a researcher with two workspaces open knows which is which."""
    project = "".join(c for c in project if c.isalnum() or c in "-_.")[:64]
    return f"{project} · PDS Workspace" if project else "PDS Workspace"


def project_page_config(previous=None):
    """JupyterLab's ``page_config_hook`` (installed with the lockdown): the page title names the
    workspace's project (``$PDS_PROJECT``), after the ``previous`` hook (JupyterHub's, which tells
    JupyterLab where the hub is: without it, File → Hub Control Panel and the hub's Log Out were
    hidden, and JupyterLab had no way back to the hub).

    The page carries no token: JupyterLab's static page config holds the *server's* hub API token
    (``$JUPYTERHUB_API_TOKEN``), which JupyterHub's hook replaced with the user's; with the hook
    replaced, every JupyterLab page showed the server's token to any script of the page. The
    browser authenticates with its cookie (JupyterLab's own choice under JupyterHub)."""
    def hook(handler, page_config: dict) -> dict:
        if previous is not None:
            page_config = previous(handler, page_config)
        page_config["token"] = ""
        page_config["appName"] = lab_app_name(os.environ.get("PDS_PROJECT")
                                              or os.environ.get("JUPYTERHUB_SERVER_NAME", ""))
        return page_config
    return hook


#: How long the server trusts the hub's answer about a token (the hub's membership watcher runs
#: every 10 s by default: ``settings.hub.membership_check_seconds``).
TOKEN_CACHE_SECONDS = 10


def platform_args(home: str) -> list[str]:
    """The server's arguments that the platform owns (last on the command line: they win)."""
    lab_state = Path(home) / ".jupyter" / "lab"
    return [
        "--ServerApp.jpserver_extensions=" + repr({LOCKDOWN_EXTENSION: True}),
        # The user's JupyterLab settings and workspaces stay in the home (they are read through
        # the server, so their bytes count toward the budget like any other response).
        f"--LabApp.user_settings_dir={lab_state / 'user-settings'}",
        f"--LabApp.workspaces_dir={lab_state / 'workspaces'}",
        # Prebuilt frontend extensions only from the environment: a directory in the home would be
        # served as static files outside the budget.
        f"--LabApp.labextensions_path={lab_labextensions_dir()}",
        "--LabApp.extra_labextensions_path=[]",
        # No plugin can be enabled again from the UI (page_config.json disables the downloads).
        "--LabApp.lock_all_plugins=True",
        "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        # Terminals run bash (less, grep and git are installed; there is no network client and no
        # network), whatever $SHELL says.
        "--ServerApp.terminado_settings=" + repr({"shell_command": [TERMINAL_SHELL]}),
        # The server asks the hub about a token again after this many seconds (JupyterHub's default
        # is 300): a token deleted at the hub stops opening the workspace as soon as the watcher
        # would stop it for a revoked member.
        f"--HubOAuth.cache_max_age={TOKEN_CACHE_SECONDS}",
    ]


PR_SET_DUMPABLE, PR_GET_DUMPABLE = 4, 3


def _prctl(option: int, arg: int = 0) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, arg, 0, 0, 0)


def make_undumpable() -> None:
    """No same-user process may ptrace this one or open its ``/proc/<pid>/mem``."""
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")


def is_undumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE) == 0


#: ``PATH`` while JupyterLab's server application is imported: a directory that does not exist (an
#: empty ``PATH`` would fall back to ``os.defpath``, which has ``/usr/bin``).
NO_NODE_PATH = "/nonexistent"


def preload_jupyterlab() -> None:
    """Import ``jupyterlab.labapp`` with no ``node`` on ``PATH``.

    At import it computes its version through ``jupyterlab.commands._AppHandler``, which runs
    ``node yarn.js config --json`` to learn the npm registry whenever ``node`` is on ``PATH``: 0.5 to
    1.5 s of every start, only useful to build extensions, which a workspace never does (the
    extension manager is read-only and only the environment's prebuilt extensions load)."""
    saved = os.environ.get("PATH")
    os.environ["PATH"] = NO_NODE_PATH
    try:
        import jupyterlab.labapp  # noqa: F401
    except ImportError:  # an environment without JupyterLab: plain jupyter_server
        pass
    finally:
        if saved is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = saved


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = argv.pop(0) if argv and argv[0] in MODES else "singleuser"
    if not sys.flags.isolated:
        os.execv(sys.executable, [sys.executable, "-I", "-m", __name__, mode, *argv])
    make_undumpable()
    refuse_unless_checked(os.environ)  # Kubernetes: /data is the tree the pod's verify-extract checked
    env = platform_env(dict(os.environ))
    os.environ.clear()
    os.environ.update(env)
    args = [*argv, *platform_args(os.environ.get("HOME") or str(Path.home()))]
    preload_jupyterlab()
    if mode == "singleuser":
        from jupyterhub.singleuser import main as run
    else:
        from jupyter_server.serverapp import main as run
    sys.argv = [MODES[mode], *args]
    sys.exit(run(argv=args))


if __name__ == "__main__":
    main()
