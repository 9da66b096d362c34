"""The rebuild's child confined in a fresh sandbox of the project (docs/adr/0010-release-rebuilt-copies.md).

The child parses what researchers submit with PDFium, Pillow, openpyxl and pyarrow: a file that
exploits a flaw of one of them runs code as the child. Run as a plain process it would be the
gate (its files: every project's staging area and outbox). With ``airlock.rebuild_runner:
sandbox`` (the default on one machine) the gate runs it as the model check runs (:mod:`pds_kernel.modelcheck.sandbox`),
in a sandbox built by the same :func:`~pds_kernel.sandbox.bwrap.sandbox_command` as every
workspace: own user, mount, PID and network namespaces (loopback only), no capability, the
unprivileged sandbox account, a control group of the project's ``0rebuild`` user with the
rebuild's memory limit. It sees the platform's Python read-only, copies of the files to rebuild
(``/pds-rebuild-in``, read-only) and an empty home where it writes the copies; never the staging
area, the outbox, the extract or a socket. What it may write is bounded: its home is a memory file
system of ``airlock.rebuild_scratch_mb`` MiB and ``airlock.rebuild_scratch_files`` inodes when the
gate is root (:mod:`pds_kernel.sandbox.scratch`), its ``/tmp`` and ``/dev/shm`` are as large, and
no file it writes may be larger than a copy the gate takes back (``RLIMIT_FSIZE``); a child that
fills its home refuses the batch (:class:`OverBound`). The gate reads back what it wrote (regular files only,
bounded: :mod:`.rebuild_collect`) into the staging area. On Kubernetes (``rebuild_runner: job``,
set by the chart) the child runs as a Job of the project instead (:mod:`.rebuild_job`);
``rebuild_runner: process`` makes it a plain child process of the gate (no confinement but its
limits: only where the gate's own pod or machine is the boundary).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from ..sandbox.bwrap import host_facts, launch_env, prepare_runtime_dir, sandbox_command
from ..sandbox.cgroup import group_name, release
from ..sandbox.identity import ensure_sandbox_account, hand_over
from ..sandbox.scratch import is_full, mount_scratch, owner_prefix, unmount_scratch, unmount_stale
from ..sandbox.spec import HOME_MOUNT, Mount, WorkspaceSpec
from .rebuild_collect import MAX_COPY_BYTES, collect_copies
from .rebuild_job import RebuildJob

#: the user part of the rebuild sandbox's control group (not a valid user name: never a workspace's)
REBUILD_USER = "0rebuild"
#: where the files to rebuild are mounted, read-only (a path no installation uses)
IN_MOUNT = "/pds-rebuild-in"
OUT_DIR = f"{HOME_MOUNT}/out"
#: the folder of a work folder the child may write (its home and its runtime folder), bounded
SCRATCH = "scratch"
RUNNERS = ("sandbox", "process", "job")

__all__ = ["IN_MOUNT", "MAX_COPY_BYTES", "OUT_DIR", "REBUILD_USER", "RUNNERS", "OverBound", "Prepared",
           "RebuildSandbox", "rebuild_sandbox"]


def rebuild_sandbox(settings, project: str) -> RebuildSandbox | RebuildJob | None:
    """Where the rebuilds of ``project``'s submissions run (``airlock.rebuild_runner``): a sandbox
    of this machine, a Job of the project on Kubernetes (``job``), or None for a plain child
    process (``process``)."""
    runner = settings.airlock.rebuild_runner
    if runner not in RUNNERS:
        raise InvalidInput(f"setting airlock.rebuild_runner is {runner!r}: use sandbox, job or process")
    if runner == "job":
        return RebuildJob(project, settings.paths.staging, out_mb=settings.airlock.rebuild_scratch_mb)
    if runner == "process":
        return None
    return RebuildSandbox(project, settings.paths.state / "rebuilds", settings.airlock.rebuild_scratch_mb,
                          settings.airlock.rebuild_scratch_files)


@dataclass
class Prepared:
    """A sandbox ready to run: its argv and environment, the items as the child sees them, and the
    work folder (the copies to rebuild, the home it writes, its runtime directory)."""

    argv: list[str]
    env: dict[str, str]
    inside: list[tuple[Path, Path, str]]
    work: Path
    #: whether the work folder's ``scratch`` (the home and ``/run/pds``) is a bounded file system of
    #: its own (:mod:`pds_kernel.sandbox.scratch`)
    bounded: bool = False

    @property
    def home(self) -> Path:
        """The sandbox's home as the gate sees it (its ``out`` folder holds the copies)."""
        return self.work / SCRATCH / "home"


class OverBound(Exception):
    """The child filled the bounded home it may write (its bytes or its files)."""


@dataclass(frozen=True)
class RebuildSandbox:
    project: str
    work_root: Path
    #: the bytes (MiB) and files the child may write in its home (``out/``), and the size of its
    #: ``/tmp`` and ``/dev/shm`` (``airlock.rebuild_scratch_mb``, ``airlock.rebuild_scratch_files``)
    scratch_mb: int = 1024
    scratch_files: int = 256

    def prepare(self, items: list[tuple[Path, Path, str]], memory_bytes: int, python_argv: list[str]) -> Prepared:
        """Copy the files of ``items`` into a fresh work folder and build the sandbox that runs
        ``python_argv`` (after the interpreter) over them; ``OSError`` or ``PdsError`` when the
        sandbox cannot be prepared (no bubblewrap, no sandbox account)."""
        self.work_root.mkdir(parents=True, exist_ok=True)
        unmount_stale(self.work_root, SCRATCH)
        work = Path(tempfile.mkdtemp(prefix=owner_prefix("rebuild"), dir=self.work_root))
        try:
            os.chmod(work, 0o755)
            folder, scratch = work / "in", work / SCRATCH
            folder.mkdir(mode=0o755)
            scratch.mkdir(mode=0o700)
            account = ensure_sandbox_account()
            # the child writes only there, its home and its /run/pds (and in its /tmp and /dev/shm):
            # bytes and files bounded, nothing on the host's disk
            bounded = mount_scratch(scratch, self.scratch_mb, self.scratch_files, account)
            home = scratch / "home"
            (home / "out").mkdir(parents=True, mode=0o700)
            inside = []
            for index, (source, _, name) in enumerate(items):
                copy = folder / f"{index}-{name}"
                shutil.copyfile(source, copy)
                copy.chmod(0o644)
                inside.append((Path(IN_MOUNT) / copy.name, Path(OUT_DIR) / copy.name, name))
            hand_over(home, account)
            hand_over(home / "out", account)
            runtime = prepare_runtime_dir(scratch / "run")
            hand_over(runtime, account)
            spec = WorkspaceSpec(
                user=REBUILD_USER, project=self.project,
                mounts=(Mount("rebuild-in", IN_MOUNT, True, folder), Mount("rebuild-home", HOME_MOUNT, False, home)),
                cpu_limit=1, mem_limit_mb=max(1, memory_bytes >> 20), dask_workers=1, gpu=False,
                labels={"pds.project": self.project, "pds.component": "rebuild"},
                tmp_mb=self.scratch_mb, max_file_mb=min(self.scratch_mb, MAX_COPY_BYTES >> 20))
            host = host_facts()
            argv = sandbox_command(spec, [host.python, "-I", *python_argv], env={}, runtime_dir=runtime, host=host)
            return Prepared(argv, launch_env({}), inside, work, bounded)
        except BaseException:
            unmount_scratch(work / SCRATCH)
            shutil.rmtree(work, ignore_errors=True)
            raise

    def check_bound(self, prepared: Prepared) -> None:
        """Raise :class:`OverBound` saying so when the child filled its bounded home: the gate
        then refuses the batch, whatever the child said it wrote."""
        if prepared.bounded and is_full(prepared.work / SCRATCH):
            raise OverBound(f"the rebuild wrote more than the {self.scratch_mb} MiB or {self.scratch_files} "
                            "files it may write (airlock.rebuild_scratch_mb, airlock.rebuild_scratch_files)")

    def collect(self, prepared: Prepared, items: list[tuple[Path, Path, str]], results: object) -> None:
        """Copy each copy the child says it wrote (a regular file of the home's ``out`` folder, no
        link followed, bounded: :func:`.rebuild_collect.collect_copies`) to its target outside;
        what is missing or not a regular file stays missing (the gate then refuses the batch)."""
        collect_copies(prepared.home / "out",
                       [(inner.name, target, name) for (_, inner, name), (_, target, _) in
                        zip(prepared.inside, items, strict=True)], results)

    def finish(self, prepared: Prepared) -> None:
        """Unmount the bounded home, remove the work folder and the sandbox's control group."""
        unmount_scratch(prepared.work / SCRATCH)
        shutil.rmtree(prepared.work, ignore_errors=True)
        release(group_name(self.project, REBUILD_USER))

