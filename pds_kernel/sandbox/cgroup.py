"""Memory and CPU limits of a sandbox through a control group, when this host lets us make one.

The sandbox launcher (:mod:`.launch`) calls :func:`apply`: it creates (or reuses) the control group
``pds-N`` below the caller's own, sets its limits and moves the launcher into it before it execs
bubblewrap, so every process of the sandbox, Dask workers included, shares one memory limit (the
kernel's OOM killer ends the largest one beyond it), one CPU quota and one process limit.

Both hierarchies are handled: cgroup v2 (``memory.max``, ``cpu.max``, ``pids.max``) when the
``memory`` and ``cpu`` controllers can be enabled below our cgroup (a delegated subtree), else
cgroup v1 (``memory.limit_in_bytes`` + ``memory.memsw.limit_in_bytes``, ``cpu.cfs_quota_us``,
``pids.max``) when those directories are writable. The process limit (``--pids N``: processes
and threads of the whole sandbox) is set wherever the ``pids`` controller is available; the
sandbox also gets ``RLIMIT_NPROC`` inside (see :mod:`.bwrap`), so it holds without it. :func:`detect` says which one applies; with neither, the builder falls
back to resource limits (see :mod:`.bwrap`). Standard library only: it runs before bubblewrap.

A group is named after (project, user), so ``pds sandbox exec`` and the running workspace of the
same person in the same project share one limit; an empty group is reused by the next start.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,100}$")


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller (or "" for v2) -> path of this process's cgroup, from /proc/self/cgroup."""
    paths = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in (controllers.split(",") if controllers else [""]):
            paths[controller] = path
    return paths


def _v2_base() -> Path | None:
    own = _own_paths(Path("/proc/self/cgroup").read_text()).get("")
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if own is None or not controllers.is_file():
        return None
    base = CGROUP_ROOT / own.lstrip("/")
    available = (base / "cgroup.controllers").read_text().split() if (base / "cgroup.controllers").is_file() else []
    if not {"memory", "cpu"} <= set(available):
        return None
    enabled = (base / "cgroup.subtree_control").read_text().split()
    if not {"memory", "cpu"} <= set(enabled):
        try:
            (base / "cgroup.subtree_control").write_text("+memory +cpu")
        except OSError:
            return None
    if "pids" in available and "pids" not in enabled:
        with contextlib.suppress(OSError):  # optional: RLIMIT_NPROC still bounds the sandbox
            (base / "cgroup.subtree_control").write_text("+pids")
    return base if os.access(base, os.W_OK) else None


def _v1_bases() -> dict[str, Path] | None:
    own = _own_paths(Path("/proc/self/cgroup").read_text())
    bases = {}
    for controller in ("memory", "cpu"):
        mount = CGROUP_ROOT / controller
        if controller not in own or not (mount / "cgroup.procs").is_file():
            return None
        base = mount / own[controller].lstrip("/")
        if not os.access(base, os.W_OK):
            return None
        bases[controller] = base
    own_pids = own.get("pids")
    pids_base = CGROUP_ROOT / "pids" / (own_pids or "").lstrip("/")
    if own_pids is not None and (CGROUP_ROOT / "pids" / "cgroup.procs").is_file() and os.access(pids_base, os.W_OK):
        bases["pids"] = pids_base
    return bases


def detect() -> str | None:
    """``"v2"``, ``"v1"`` or None: which control groups this process can create for a sandbox."""
    try:
        if _v2_base() is not None:
            return "v2"
        if _v1_bases() is not None:
            return "v1"
    except (OSError, ValueError):
        return None
    return None


def apply(name: str, memory_mb: int, cpus: float, pid: int | None = None, pids: int | None = None) -> Path:
    """Create or reuse group ``pds-<name>``, set its limits, move ``pid`` (default: self) into it.

    ``pids``: the most processes and threads the group may hold (``pids.max``), when the ``pids``
    controller is available here (see :func:`can_limit_pids`)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid control group name {name!r}")
    pid = os.getpid() if pid is None else pid
    memory = str(memory_mb * 1024 * 1024)
    quota = str(max(1000, int(cpus * CFS_PERIOD_US)))
    base = _v2_base()
    if base is not None:
        group = base / f"pds-{name}"
        group.mkdir(exist_ok=True)
        (group / "memory.max").write_text(memory)
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")
        (group / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
        if pids is not None and (group / "pids.max").exists():
            (group / "pids.max").write_text(str(pids))
        (group / "cgroup.procs").write_text(str(pid))
        return group
    bases = _v1_bases()
    if bases is None:
        raise OSError("no writable cgroup v1 or v2 hierarchy for memory and cpu")
    mem = bases["memory"] / f"pds-{name}"
    mem.mkdir(exist_ok=True)
    swap = mem / "memory.memsw.limit_in_bytes"
    # memsw must stay >= the memory limit: lower the pair in the right order.
    if swap.exists():
        current = int((mem / "memory.limit_in_bytes").read_text())
        if int(memory) > current:
            swap.write_text(memory)
            (mem / "memory.limit_in_bytes").write_text(memory)
        else:
            (mem / "memory.limit_in_bytes").write_text(memory)
            swap.write_text(memory)
    else:
        (mem / "memory.limit_in_bytes").write_text(memory)
    cpu = bases["cpu"] / f"pds-{name}"
    cpu.mkdir(exist_ok=True)
    (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
    (cpu / "cpu.cfs_quota_us").write_text(quota)
    if pids is not None and "pids" in bases:
        tasks = bases["pids"] / f"pds-{name}"
        tasks.mkdir(exist_ok=True)
        (tasks / "pids.max").write_text(str(pids))
        (tasks / "cgroup.procs").write_text(str(pid))
    (mem / "cgroup.procs").write_text(str(pid))
    (cpu / "cgroup.procs").write_text(str(pid))
    return mem


def can_limit_pids() -> bool:
    """Whether :func:`apply` can set ``pids.max`` here (the ``pids`` controller is ours)."""
    try:
        base = _v2_base()
        if base is not None:
            return "pids" in (base / "cgroup.subtree_control").read_text().split()
        return "pids" in (_v1_bases() or {})
    except (OSError, ValueError):
        return False


def release(name: str) -> None:
    """Remove the (empty) group ``pds-<name>`` after its sandbox ended; a busy group stays."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid control group name {name!r}")
    candidates: list[Path] = []
    try:
        base = _v2_base()
        if base is not None:
            candidates.append(base / f"pds-{name}")
        else:
            candidates += [b / f"pds-{name}" for b in (_v1_bases() or {}).values()]
    except (OSError, ValueError):
        return
    for group in candidates:
        try:
            group.rmdir()
        except OSError:
            pass  # absent, or processes still inside


def group_name(project: str, user: str) -> str:
    """The group of one (project, user): shared by the workspace and ``pds sandbox exec``."""
    return f"{project}--{user}"
