"""Translate a :class:`WorkspaceSpec` into a bubblewrap command line (pure: no process started).

The command has three layers, outermost first::

    python -I -m pds_kernel.sandbox.launch [--cgroup N --memory-mb M --cpus C --pids P | --cpu-list L]
        [--run-as UID:GID] --
    bwrap <namespaces, mounts>  --  prlimit <processes[, memory]>  nice
        python -I -m pds_kernel.sandbox.inside --keep-env K1,K2 --socket hub  --  <argv>

* ``launch`` (see :mod:`.launch`) sets the control group's limits, and when the caller is root
  drops to the unprivileged sandbox account (:mod:`.identity`) before it starts bubblewrap: the
  sandbox's uid never maps to a privileged host uid. It hands bubblewrap the seccomp filter
  (:mod:`.seccomp`) and passes bubblewrap's options through a file descriptor, so the sandbox's
  PID 1 (bubblewrap) shows no host path in ``/proc/1/cmdline``.
* ``bwrap`` gives the workspace its own user, mount, network (loopback only), PID, IPC, UTS and
  cgroup namespaces, forbids further user namespaces (``--disable-userns``), drops every
  capability, sets no-new-privileges and dies with its parent. The new root holds only what
  Python needs (read-only), the project's extract (read-only, ``/data``), the private home
  (read-write, ``/home/jovyan``), an empty ``/tmp`` and ``/dev/shm`` (memory file systems of
  ``spec.tmp_mb`` each), ``/proc`` (with ``/proc/sys`` and the
  other kernel-tuning entries read-only, and the kernel-memory and keyring entries masked),
  ``/dev`` (null, zero, random, tty and ``shm`` only; read-only) and the runtime directory
  (``/run/pds``) through which the sockets pass; the rest of ``/run`` is read-only.
* The limits come from the registry (via the spec). When this host lets us create control
  groups (cgroup v2 with a delegated subtree, or writable cgroup v1 ``memory`` and ``cpu``
  hierarchies, see :mod:`.cgroup`), the whole sandbox shares one memory limit, one CPU quota and
  one process limit (``pids.max``, where the ``pids`` controller is available).
  Otherwise (fallback) the limits are per process: ``RLIMIT_AS`` (the memory limit plus
  :data:`ADDRESS_SPACE_HEADROOM_MB`, because Python's numeric stack reserves about 2 GB of address
  space it never touches) and CPU affinity to ``ceil(cpu_limit)`` cores, set by the launcher
  before bubblewrap starts (the seccomp filter denies ``sched_setaffinity`` inside: a process may
  otherwise widen its own affinity to every CPU, red team 20A). Always:
  ``RLIMIT_NPROC`` (counted per user namespace and host uid, so per sandbox; never enforced on
  host root, which is one more reason a sandbox never maps to it), ``RLIMIT_FSIZE`` when the spec
  bounds the size of one file (``spec.max_file_mb``) and a lower priority.
* ``inside`` runs first in the sandbox: it filters the environment, starts the loopback TCP
  forwarders to the mounted sockets, then runs ``argv`` and exits with its code.

Environment values never appear in the returned argv (``ps`` on the host would show them; the hub
API token is one of them): only the *names* are passed. The caller starts the command with
``env=launch_env(env)`` and ``inside`` keeps exactly those names.
"""

from __future__ import annotations

import functools
import math
import os
import re
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import trees
from ..errors import InvalidInput, PermissionDenied
from . import cgroup
from .identity import SandboxAccount, lookup_sandbox_account, runs_as_root
from .inside import BRIDGE_PORTS, PIP_CONFIG, RUN_DIR, SANDBOX_HOME
from .spec import DATA_MOUNT, WorkspaceSpec

BWRAP = "/usr/bin/bwrap"
PRLIMIT = "/usr/bin/prlimit"
NICE = "/usr/bin/nice"

#: uid/gid of the researcher inside the sandbox (the Jupyter docker-stacks convention). Outside it
#: is the uid that started the sandbox; no other host uid is mapped, so their files appear as nobody.
SANDBOX_UID = 1000
SANDBOX_GID = 100
#: Processes and threads the sandbox may hold at once (polars and Dask start one thread per core):
#: ``pids.max`` of its control group and ``RLIMIT_NPROC`` inside.
MAX_PROCESSES = 1024
#: ``/proc`` entries made read-only inside (bubblewrap itself covers ``bus`` and ``irq``): kernel
#: tuning, file system tuning, the magic SysRq key. Only those that exist on this kernel.
PROC_READ_ONLY = ("sys", "fs", "sysrq-trigger")
#: ``/proc`` entries hidden (``/dev/null`` bound over them, unreadable on a nodev mount): kernel
#: memory, kernel messages and symbols, the keyring lists, timer and scheduler internals.
PROC_MASKED = ("kcore", "kmsg", "kallsyms", "keys", "key-users", "timer_list", "sched_debug",
               "latency_stats", "kpagecount", "kpageflags", "kpagecgroup", "iomem", "ioports",
               "vmallocinfo", "slabinfo", "config.gz")
MIB = 1024 * 1024
#: Scheduling niceness of everything in the sandbox, so the hub stays responsive under load.
NICENESS = 5
#: Without control groups, RLIMIT_AS = memory limit + this (MB): importing polars, pyarrow and
#: Dask maps about 2 GB of address space for a resident size of about 200 MB.
ADDRESS_SPACE_HEADROOM_MB = 4096

#: Host files of ``/etc`` that the sandbox sees (read-only). Nothing else of ``/etc``: no passwd,
#: no host's hosts, no resolv.conf (there is no DNS inside anyway).
ETC_FILES = ("ld.so.cache", "localtime", "nsswitch.conf")
#: Host directories of ``/etc`` the sandbox sees (read-only), when they exist: R's configuration
#: (Debian links ``/usr/lib/R/etc`` there: library paths, ``Renviron``, ``Makeconf``) and the
#: alternatives links through which R finds its BLAS and LAPACK (``libblas.so.3``).
ETC_DIRS = ("R", "alternatives")
#: The sandbox's own ``/etc/hosts``: ``localhost`` only (jupyter-server-proxy reaches the Dask
#: dashboard by that name).
SANDBOX_HOSTS = Path(__file__).resolve().parent / "etc" / "hosts"
#: The sandbox's own ``/etc/pip.conf`` (platform-owned, read-only): the package index only.
SANDBOX_PIP_CONF = Path(__file__).resolve().parent / "etc" / "pip.conf"
#: Top-level system directories bound read-only (those that exist on the host).
SYSTEM_DIRS = ("/usr",)
#: Network clients of the host's ``/usr/bin`` masked in the sandbox (``/dev/null`` bound over them:
#: they cannot run). There is no network to use them on anyway; the terminal has none to offer.
NETWORK_CLIENTS = ("curl", "wget", "ssh", "scp", "sftp", "rsync", "nc", "ncat", "netcat", "telnet", "ftp",
                   "socat")
#: Environment variable names a caller may pass (values may be secrets: they never enter argv).
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class HostFacts:
    """What the builder needs to know about the host: where Python lives, which CPUs exist.

    Read once by :func:`host_facts`; tests may pass their own. Paths are absolute and resolved.
    """

    #: the interpreter to run inside (same path inside and outside)
    python: str
    #: directories bound read-only at the same path: the base interpreter prefix and the venv
    python_roots: tuple[str, ...]
    #: the ``pds_kernel`` package directory when it is not inside ``python_roots`` (editable install)
    package_dir: str | None
    #: CPUs this process may run on
    cpus: tuple[int, ...]
    #: "v2", "v1" or None: which control groups the sandbox's limits can use (see :mod:`.cgroup`)
    cgroup: str | None = None
    #: whether this process is root (then ``account`` is required)
    root: bool = False
    #: the unprivileged account sandboxes run as when this process is root (see :mod:`.identity`)
    account: SandboxAccount | None = None
    #: whether the installed bubblewrap has ``--disable-userns`` (0.8 and later)
    disable_userns: bool = False
    #: the entries of the host's ``/proc`` among :data:`PROC_READ_ONLY` and :data:`PROC_MASKED`
    proc_entries: frozenset[str] = frozenset()
    #: the interpreter of the launcher outside, when it differs from ``python`` (the model check
    #: runs the check environment inside: :mod:`pds_kernel.modelcheck.sandbox`)
    launcher: str | None = None


def host_facts() -> HostFacts:
    """Inspect the running interpreter: the sandbox runs the same Python with the same packages."""
    import pds_kernel

    roots: list[str] = []
    for prefix in (sys.base_prefix, sys.prefix):
        resolved = str(Path(prefix).resolve())
        if resolved not in roots:
            roots.append(resolved)
    package = Path(pds_kernel.__file__).resolve().parent
    inside_roots = any(package.is_relative_to(r) for r in roots)
    return HostFacts(
        python=str(Path(sys.prefix) / "bin" / "python"),
        python_roots=tuple(roots),
        package_dir=None if inside_roots else str(package),
        cpus=tuple(sorted(os.sched_getaffinity(0))),
        cgroup=cgroup.detect(),
        root=runs_as_root(),
        account=lookup_sandbox_account(),
        disable_userns=bwrap_can_disable_userns(),
        proc_entries=frozenset(name for name in (*PROC_READ_ONLY, *PROC_MASKED) if Path("/proc", name).exists()),
    )


@functools.lru_cache(maxsize=1)
def bwrap_can_disable_userns() -> bool:
    """Whether the installed bubblewrap forbids nested user namespaces (``--disable-userns``)."""
    try:
        completed = subprocess.run([BWRAP, "--help"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--disable-userns" in completed.stdout + completed.stderr


def launch_env(env: Mapping[str, str]) -> dict[str, str]:
    """The process environment to start :func:`sandbox_command`'s argv with: exactly ``env``.

    Nothing of the caller's own environment is added; ``inside`` then keeps only these names."""
    for name in env:
        check_env_name(name)
    return {str(k): str(v) for k, v in env.items()}


def check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise InvalidInput(f"invalid environment variable name {name!r}")
    return name


def check_socket_name(name: str) -> str:
    if name not in BRIDGE_PORTS:
        raise InvalidInput(f"unknown sandbox socket {name!r} (known: {', '.join(BRIDGE_PORTS)})")
    return name


def cpu_list(cpu_limit: float, cpus: tuple[int, ...]) -> str:
    """The CPUs to pin the sandbox to: ``ceil(cpu_limit)`` of the available ones, at least one."""
    if cpu_limit <= 0:
        raise InvalidInput(f"cpu limit must be positive, got {cpu_limit}")
    count = max(1, min(len(cpus), math.ceil(cpu_limit)))
    return ",".join(str(c) for c in cpus[:count])


def _ro_bind(path: str) -> list[str]:
    return ["--ro-bind", path, path]


def _system_binds() -> list[str]:
    """``/usr`` read-only, and ``/bin``, ``/lib*``, ``/sbin`` as on the host (symlinks on merged-usr
    systems, read-only binds otherwise)."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        args += _ro_bind(path)
    for name in NETWORK_CLIENTS:
        client = Path("/usr/bin", name)
        if client.exists() and not client.is_symlink():
            args += ["--ro-bind", "/dev/null", str(client)]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += _ro_bind(str(host))
    args += ["--dir", "/etc"]
    for name in ETC_FILES:
        if Path("/etc", name).exists():
            args += _ro_bind(f"/etc/{name}")
    for name in ETC_DIRS:
        if Path("/etc", name).is_dir():
            args += _ro_bind(f"/etc/{name}")
    args += ["--ro-bind", str(SANDBOX_HOSTS), "/etc/hosts"]
    args += ["--ro-bind", str(SANDBOX_PIP_CONF), PIP_CONFIG]
    return args


def _proc_hardening(host: HostFacts) -> list[str]:
    """Read-only kernel tuning (``/proc/sys``...) and masked kernel internals in the new ``/proc``."""
    args: list[str] = []
    for name in PROC_READ_ONLY:
        if name in host.proc_entries:
            args += ["--ro-bind", f"/proc/{name}", f"/proc/{name}"]
    for name in PROC_MASKED:
        if name in host.proc_entries:
            args += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    return args


def _memory_file_systems(spec: WorkspaceSpec) -> list[str]:
    """``/tmp`` and ``/dev/shm`` as memory file systems of ``spec.tmp_mb`` MiB each, at most the
    sandbox's memory limit, and ``/dev`` read-only (bubblewrap's ``/dev`` is a writable memory file
    system without a size: a second, unbounded ``/tmp``). Without the size, a memory file system
    may take half the host's memory; what is written there counts in the sandbox's memory limit
    only where control groups exist, hence the second bound."""
    if int(spec.tmp_mb) < 1:
        raise InvalidInput(f"the sandbox's /tmp size must be at least 1 MiB, got {spec.tmp_mb}")
    size = str(min(int(spec.tmp_mb), int(spec.mem_limit_mb)) * MIB)
    return ["--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev", "--size", size, "--tmpfs", "/tmp"]


def sandbox_command(spec: WorkspaceSpec, argv: list[str], *, env: dict[str, str],
                    sockets: dict[str, Path] | None = None, runtime_dir: Path,
                    host: HostFacts | None = None, extract=None) -> list[str]:
    """The full argv that runs ``argv`` in the workspace sandbox of ``spec``.

    ``sockets`` maps a bridge name (``hub``, ``gate``) to a host Unix socket, mounted at
    ``/run/pds/<name>.sock`` and forwarded inside to ``127.0.0.1:<port>`` (see
    :data:`~pds_kernel.sandbox.inside.BRIDGE_PORTS`). ``runtime_dir`` (see
    :func:`prepare_runtime_dir`) is mounted read-write at ``/run/pds``; the notebook server puts
    its own socket there (``/run/pds/server.sock``). Start the result with ``env=launch_env(env)``.
    ``extract``: the :class:`~pds_kernel.extract.mount_check.CheckedMount` of the project's extract;
    the launcher mounts exactly the tree that was checked, or starts nothing (``--verified-extract``).
    """
    if not argv:
        raise InvalidInput("nothing to run in the sandbox: give a command")
    host = host or host_facts()
    for name in env:
        check_env_name(name)
    runtime_dir = Path(runtime_dir)
    if not runtime_dir.is_absolute():
        raise InvalidInput(f"runtime directory must be an absolute path, got {runtime_dir}")

    args: list[str] = [host.launcher or host.python, "-I", "-m", "pds_kernel.sandbox.launch"]
    if host.cgroup:
        args += ["--cgroup", cgroup.group_name(spec.project, spec.user), "--memory-mb", str(spec.mem_limit_mb),
                 "--cpus", str(spec.cpu_limit), "--pids", str(MAX_PROCESSES)]
    else:  # the fallback: CPU affinity, set by the launcher (the filter denies it inside)
        args += ["--cpu-list", cpu_list(spec.cpu_limit, host.cpus)]
    if host.account is not None:
        args += ["--run-as", f"{host.account.uid}:{host.account.gid}"]
    elif host.root:
        raise PermissionDenied("refusing to start a sandbox as root: it would map to host root; "
                               "the sandbox account is missing (see pds_kernel.sandbox.identity)")
    if extract is not None:
        args += ["--verified-extract", f"{DATA_MOUNT}:{extract.expected.build_id}:{extract.fingerprint}"]
    args += [
        "--",
        BWRAP,
        "--unshare-all",  # user, ipc, pid, net (loopback only), uts, cgroup
        "--unshare-user",  # required, not "try": the sandbox must have its own user namespace
        *(["--disable-userns", "--assert-userns-disabled"] if host.disable_userns else []),
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--hostname", "workspace",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
    ]
    # No --clearenv: it would drop the values we need and bwrap can only re-add them through
    # argv. ``inside`` keeps exactly the names of ``env`` instead (see the module docstring).

    args += _system_binds()
    # The empty /tmp comes before the Python binds: an installation that lives under /tmp (a CI
    # checkout, say) must stay visible, mounted over the empty /tmp rather than hidden by it.
    args += ["--proc", "/proc"] + _proc_hardening(host) + ["--dev", "/dev"] + _memory_file_systems(spec)
    for root in host.python_roots:
        args += _ro_bind(root)
    if host.package_dir:
        args += _ro_bind(host.package_dir)
    # /run: only our runtime directory, with the bridged sockets mounted into it.
    # /run itself is read-only once its mount points are made (a writable /run would be one more
    # memory file system to fill).
    args += ["--size", str(MIB), "--tmpfs", "/run", "--bind", str(runtime_dir), RUN_DIR]
    sockets = sockets or {}
    for name, path in sorted(sockets.items()):
        check_socket_name(name)
        args += ["--bind", str(Path(path)), f"{RUN_DIR}/{name}.sock"]
    args += ["--remount-ro", "/run"]  # /run/pds, a mount of its own, stays writable
    for mount in spec.mounts:
        args += ["--ro-bind" if mount.read_only else "--bind", str(mount.host_path), mount.target]
    args += ["--chdir", SANDBOX_HOME]
    # The new root is a tmpfs: make it read-only, so only the home, /tmp and /run/pds are writable.
    args += ["--remount-ro", "/"]

    keep = sorted(set(env))
    args += ["--", PRLIMIT, f"--nproc={MAX_PROCESSES}"]
    if spec.max_file_mb:
        args += [f"--fsize={int(spec.max_file_mb) * MIB}"]
    if not host.cgroup:
        address_space = (spec.mem_limit_mb + ADDRESS_SPACE_HEADROOM_MB) * 1024 * 1024
        args += [f"--as={address_space}"]
    args += ["--"]
    args += [NICE, "-n", str(NICENESS),
             host.python, "-I", "-m", "pds_kernel.sandbox.inside",
             "--keep-env", ",".join(keep),
             "--dask-workers", str(spec.dask_workers),
             "--mem-limit-mb", str(spec.mem_limit_mb)]
    for name in sorted(sockets):
        args += ["--socket", name]
    args += ["--", *argv]
    return args


def prepare_runtime_dir(runtime_dir: Path) -> Path:
    """Create the per (user, project) runtime directory (mode 0700) and empty it.

    The sandbox can write there, so whatever a previous run left (a symlink planted where a socket
    or mount point will be) is removed without being followed before the next start.
    """
    runtime_dir = Path(runtime_dir)
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(runtime_dir)
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"runtime directory {runtime_dir} is not a directory")
    os.chmod(runtime_dir, 0o700)
    for entry in os.scandir(runtime_dir):
        if entry.is_dir(follow_symlinks=False):
            trees.remove(Path(entry.path))  # its own stack: the sandbox may have nested thousands
        else:
            os.unlink(entry.path)
    return runtime_dir
