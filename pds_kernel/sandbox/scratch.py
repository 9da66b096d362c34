"""A bounded folder on the host for a sandbox to write in: the rebuild's and the model check's home
(whose ``out/`` the gate reads back when the sandbox has ended), a workspace's runtime folder.

A plain folder of the host would let the sandbox write without bound on the disk the gate shares
with every project's staging area, the outbox, the lake and the audit trail: one huge file, a
sparse file of any apparent size, millions of empty files. When this process is root (the local
gate: ``make run`` runs the hub as root) the folder is a memory file system of its own
(:func:`mount_scratch`): ``size`` bounds its bytes (a sparse file's apparent size too: a write
past the size fails with ``ENOSPC`` whatever the holes), ``nr_inodes`` its files and folders,
``nosuid,nodev,noexec``; what is written there also counts in the sandbox's memory limit (its
control group is charged for the pages it writes). It is unmounted (lazily, so a process still
holding a file cannot keep it) and removed when the sandbox has ended (:func:`unmount_scratch`),
and a folder left mounted by a process that died is unmounted by the next one
(:func:`unmount_stale`).

When this process is not root (a developer's own gate) no file system can be mounted: the folder
is a plain one, and only the size of each file is bounded (the sandbox's ``RLIMIT_FSIZE``,
:attr:`~pds_kernel.sandbox.spec.WorkspaceSpec.max_file_mb`). :func:`mount_scratch` says which.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
from pathlib import Path

from .identity import SandboxAccount, runs_as_root

log = logging.getLogger(__name__)

#: a workspace's runtime folder holds sockets: a few inodes, no data
RUNTIME_MB = 16
RUNTIME_FILES = 1024
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MNT_DETACH = 2
#: the marker of a bounded folder's name: its owner's process id follows (``<prefix>-p<pid>-...``)
_OWNER = re.compile(r"-p(?P<pid>[0-9]{1,10})-")


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def owner_prefix(prefix: str) -> str:
    """A folder-name prefix that names this process (for :func:`unmount_stale`)."""
    return f"{prefix}-p{os.getpid()}-"


def mount_scratch(path: Path, size_mb: int, files: int, account: SandboxAccount | None) -> bool:
    """Make the empty folder ``path`` a memory file system of ``size_mb`` MiB and ``files`` inodes,
    owned by ``account`` (0700): True. False when this process is not root (``path`` stays a plain
    folder). ``OSError`` when root cannot mount it (the caller refuses to run the sandbox)."""
    if int(size_mb) < 1 or int(files) < 2:
        raise ValueError(f"a scratch folder needs at least 1 MiB and 2 files, got {size_mb} MiB, {files}")
    if not runs_as_root():
        return False
    owner = f",uid={account.uid},gid={account.gid}" if account is not None else ""
    options = f"size={int(size_mb)}m,nr_inodes={int(files)},mode=0700{owner}".encode()
    if _libc().mount(b"pds-scratch", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                     options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount the sandbox's bounded folder {path}: {os.strerror(err)} (the gate "
                           "mounts it as root with the right to mount, as make run runs it; nothing runs unbounded)")
    return True


def bound_runtime_dir(path: Path, account: SandboxAccount | None) -> bool:
    """Make a workspace's runtime folder (``/run/pds`` inside: its server's socket, nothing else)
    a bounded file system of :data:`RUNTIME_MB` MiB and :data:`RUNTIME_FILES` inodes, unless it is
    one already (a workspace started before); True when it is bounded."""
    if os.path.ismount(path):
        return True
    return mount_scratch(path, RUNTIME_MB, RUNTIME_FILES, account)


def is_full(path: Path) -> bool:
    """Whether the bounded folder ``path`` has no byte or no inode left (what its sandbox wrote hit
    the bound); False when it cannot be told."""
    try:
        info = os.statvfs(path)
    except OSError:
        return False
    return info.f_bavail == 0 or info.f_favail == 0


def unmount_scratch(path: Path) -> None:
    """Unmount the bounded folder ``path`` (lazily) if it is mounted; nothing otherwise."""
    if os.path.ismount(path) and _libc().umount2(str(path).encode(), _MNT_DETACH) != 0:
        log.warning("the sandbox's bounded folder %s could not be unmounted: %s", path,
                    os.strerror(ctypes.get_errno()))


def unmount_stale(root: Path, name: str) -> None:
    """Unmount the bounded folders ``root/*/name`` whose owner process (named in the folder's name,
    :func:`owner_prefix`) is gone: a gate that died between mount and unmount leaves no memory
    file system behind for long; the folders are removed with them."""
    if not runs_as_root():
        return
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        match = _OWNER.search(entry.name)
        if match is None or pid_alive(int(match["pid"])):
            continue
        unmount_scratch(Path(entry.path) / name)
        shutil.rmtree(entry.path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists and has not ended (one of another user counts; a zombie, ended
    and not yet reaped, as a sandbox whose hub was killed is until init reaps it, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]  # after the command's name, which may hold ")"
    except (OSError, IndexError):
        return True  # no /proc to read: kill's answer stands
    return state not in (b"Z", b"X")
