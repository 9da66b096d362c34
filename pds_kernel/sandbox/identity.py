"""The unprivileged host account every workspace sandbox runs as when the hub is root.

A sandbox maps its inside user (uid 1000) to exactly one host uid: the uid that starts
bubblewrap. When the hub (or ``pds sandbox exec``) runs as root, that must not be root: a sandbox
mapped to host uid 0 can write ``/proc/sys`` and escapes through ``core_pattern``, and the
kernel does not enforce ``RLIMIT_NPROC`` on root. So the launcher (:mod:`.launch`) drops to the
dedicated system account :data:`SANDBOX_ACCOUNT` (created when missing: no home, no shell, no
password, its own group) before it starts bubblewrap. All sandboxes share this one account;
each has its own user, PID, mount and network namespaces, so they cannot see or signal each
other (see docs/isolation.md for why one account rather than one per workspace).

When the caller is not root (a developer running the tests), nothing changes: the sandbox maps
to the caller's own uid, which is unprivileged already.

The directories a sandbox writes (its home and its runtime directory) and the sockets it
connects to are handed over to the account; the extract stays the platform's (read-only, 0444).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import PermissionDenied

log = logging.getLogger(__name__)

#: The system account of sandboxes started by root.
SANDBOX_ACCOUNT = "pds-sandbox"


@dataclass(frozen=True)
class SandboxAccount:
    """The host uid/gid a sandbox runs as (never 0)."""

    name: str
    uid: int
    gid: int

    def __post_init__(self):
        if self.uid == 0 or self.gid == 0:
            raise PermissionDenied(f"the sandbox account {self.name} is privileged (uid {self.uid}, "
                                   f"gid {self.gid}): give it an unprivileged uid and group")


def runs_as_root() -> bool:
    return os.geteuid() == 0


def lookup_sandbox_account(name: str = SANDBOX_ACCOUNT) -> SandboxAccount | None:
    """The account sandboxes run as: None when this process is not root (they run as the caller).

    Raises PermissionDenied when root but the account does not exist (see
    :func:`ensure_sandbox_account`): no sandbox may then start."""
    if not runs_as_root():
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PermissionDenied(f"the sandbox account {name} does not exist: start a workspace or run "
                               f"`pds sandbox exec` once as root (it is created), or create it: "
                               f"useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {name}") from None
    return SandboxAccount(name, entry.pw_uid, entry.pw_gid)


def ensure_sandbox_account(name: str = SANDBOX_ACCOUNT) -> SandboxAccount | None:
    """As :func:`lookup_sandbox_account`, creating the system account first when it is missing."""
    if not runs_as_root():
        return None
    try:
        pwd.getpwnam(name)
        missing = False
    except KeyError:
        missing = True
    if missing:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        completed = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--comment", "PDS workspace sandboxes", name],
            capture_output=True, text=True, check=False)
        if completed.returncode not in (0, 9):  # 9: created meanwhile by a concurrent start
            raise PermissionDenied(f"cannot create the sandbox account {name}: "
                                   f"{completed.stderr.strip() or completed.returncode}")
        log.info("created the sandbox system account %s", name)
    return lookup_sandbox_account(name)


def hand_over(path: Path, account: SandboxAccount | None) -> None:
    """Make ``path`` (a directory the sandbox writes, or a socket it connects to) the account's.

    A directory not owned by the account yet (a home written by an earlier version, when
    sandboxes still ran as root) is handed over with everything in it. The walk never follows a
    symbolic link (``os.fwalk`` works on directory descriptors), so a link planted in the home
    cannot make root change the owner of a file outside it.
    """
    if account is None:
        return
    info = os.lstat(path)
    if (info.st_uid, info.st_gid) == (account.uid, account.gid):
        return
    os.chown(path, account.uid, account.gid, follow_symlinks=False)
    if not os.path.isdir(path) or os.path.islink(path):
        return
    for _root, dirs, files, root_fd in os.fwalk(path, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, account.uid, account.gid, dir_fd=root_fd, follow_symlinks=False)
