"""The launcher of every workspace sandbox: the host-side step between the caller and bubblewrap.

``python -I -m pds_kernel.sandbox.launch [--cgroup NAME --memory-mb M --cpus C --pids N]
[--run-as UID:GID] [--verified-extract TARGET:BUILD:FINGERPRINT] -- /usr/bin/bwrap OPTIONS... -- COMMAND...``

In this order, then ``exec`` of bubblewrap (the launcher leaves no process behind):

0. ``--verified-extract``: the extract the caller checked (:mod:`pds_kernel.extract.mount_check`)
   is opened again through its ``extract`` link without following any other link
   (:func:`pds_kernel.extract.tree.open_published`); the tree under that descriptor must have the
   fingerprint the caller found when it checked it, else nothing starts (exit
   :data:`EXTRACT_REFUSED`). The descriptor itself is what is mounted at ``TARGET``
   (``/proc/self/fd/N`` staged below, or ``bwrap --ro-bind-fd``, which closes it), so a path
   swapped after the check is never mounted.

1. ``--cgroup``: create or reuse the control group of (project, user), set its memory, CPU and
   process limits and move into it (:mod:`.cgroup`), so everything the sandbox starts is in it.
2. ``--run-as`` (the caller is root): in a private mount namespace of the launcher, bind every
   host path bubblewrap will mount (the Python installation, the extract, the home...) onto
   neutral names below :data:`STAGING`, so that the unprivileged account can reach them even
   when a parent directory is closed to it (``/root``, a 0700 state directory), then drop to that
   account (no supplementary groups) for good. Bubblewrap then maps the sandbox's uid to this
   unprivileged uid, never to root.
3. The seccomp program (:mod:`.seccomp`) goes to ``bwrap --seccomp FD``.
4. Bubblewrap's options go to ``bwrap --args FD`` (a memory file), not its command line: the
   sandbox's PID 1 is bubblewrap, and ``/proc/1/cmdline`` then reads ``bwrap --args N -- COMMAND``
   without a single host path of the mounts.

Standard library plus the seccomp bindings; fails closed (exit 125, nothing started) when any
step fails.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from dataclasses import dataclass

#: Mount point of the staged sources in the launcher's private mount namespace (an empty host
#: directory; the tmpfs on it exists only in that namespace).
STAGING = "/run/pds-sandbox"

#: bubblewrap options the builder emits -> number of values they take.
BWRAP_ARITY = {
    "--unshare-all": 0, "--unshare-user": 0, "--unshare-ipc": 0, "--unshare-pid": 0,
    "--unshare-net": 0, "--unshare-uts": 0, "--unshare-cgroup": 0, "--unshare-cgroup-try": 0,
    "--disable-userns": 0, "--assert-userns-disabled": 0, "--die-with-parent": 0,
    "--new-session": 0, "--as-pid-1": 0, "--clearenv": 0,
    "--uid": 1, "--gid": 1, "--hostname": 1, "--cap-drop": 1, "--dir": 1, "--proc": 1,
    "--dev": 1, "--tmpfs": 1, "--remount-ro": 1, "--chdir": 1, "--perms": 1, "--size": 1,
    "--bind": 2, "--ro-bind": 2, "--bind-try": 2, "--ro-bind-try": 2, "--dev-bind": 2,
    "--symlink": 2, "--chmod": 2,
}
#: the options whose first value is a host path to mount
BIND_OPTIONS = {"--bind", "--ro-bind", "--bind-try", "--ro-bind-try", "--dev-bind"}

_CLONE_NEWNS = 0x00020000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8


#: Exit code when the extract to mount is not the one the caller checked (nothing was started).
EXTRACT_REFUSED = 121


class LaunchError(Exception):
    pass


class ExtractChanged(LaunchError):
    pass


@dataclass(frozen=True)
class BwrapCommand:
    """A bubblewrap command line split into its parts."""

    bwrap: str
    options: list[list[str]]  # each option with its values
    command: list[str]

    def flat_options(self) -> list[str]:
        return [word for option in self.options for word in option]


def split_bwrap(argv: list[str]) -> BwrapCommand:
    """Pure: ``[bwrap, options..., --, command...]`` -> its parts. Unknown options are refused."""
    if not argv:
        raise LaunchError("no bubblewrap command given")
    options: list[list[str]] = []
    i = 1
    while i < len(argv) and argv[i] != "--":
        name = argv[i]
        if name not in BWRAP_ARITY:
            raise LaunchError(f"unexpected bubblewrap option {name!r}")
        arity = BWRAP_ARITY[name]
        if i + arity >= len(argv):
            raise LaunchError(f"bubblewrap option {name} lacks its values")
        options.append(argv[i:i + 1 + arity])
        i += 1 + arity
    command = argv[i + 1:]
    if not command:
        raise LaunchError("no command to run in the sandbox after --")
    return BwrapCommand(argv[0], options, command)


def staged_options(options: list[list[str]], staging: str = STAGING) -> tuple[list[list[str]], list[str]]:
    """Pure: the options with each bind source replaced by ``staging/N``, and the sources (N-th).

    A ``-try`` bind whose source is missing is dropped (bubblewrap would skip it too)."""
    out: list[list[str]] = []
    sources: list[str] = []
    for option in options:
        if option[0] in BIND_OPTIONS:
            source = option[1]
            if option[0].endswith("-try") and not os.path.lexists(source):
                continue
            out.append([option[0], f"{staging}/{len(sources)}", option[2]])
            sources.append(source)
        else:
            out.append(option)
    return out, sources


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"{what}: {os.strerror(err)}")


def private_mounts() -> None:
    """Root only: move the launcher into a private mount namespace (before anything it mounts is
    opened: a bind mount's source must be in the caller's namespace)."""
    libc = _libc()
    _check(libc.unshare(_CLONE_NEWNS), "unshare the launcher's mount namespace")
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make the mounts private")


def stage_sources(sources: list[str], staging: str = STAGING) -> None:
    """Root only, in :func:`private_mounts`: ``staging/N`` is bound to ``sources[N]``."""
    libc = _libc()
    os.makedirs(staging, mode=0o755, exist_ok=True)
    # Open every source before the tmpfs covers the staging directory (a source may lie below it).
    fds = []
    try:
        for source in sources:
            fds.append(os.open(source, os.O_PATH | os.O_CLOEXEC))
        _check(libc.mount(b"tmpfs", staging.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                          b"mode=0755,size=1m"), f"mount the staging directory {staging}")
        for index, fd in enumerate(fds):
            target = f"{staging}/{index}"
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.mkdir(target, 0o755)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            _check(libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, _MS_BIND | _MS_REC, None),
                   f"stage {sources[index]}")
    finally:
        for fd in fds:
            os.close(fd)
    _check(libc.mount(None, staging.encode(), None, _MS_REC | _MS_PRIVATE, None), "make the staging private")


def bind_verified_extract(options: list[list[str]], value: str, *, staged: bool) -> tuple[list[list[str]], int]:
    """Open the extract bound at ``TARGET`` as the caller checked it (see the module docstring) and
    mount that descriptor instead of the path; returns the options and the descriptor."""
    from ..extract.tree import TreeRefused, fingerprint, open_published

    target, build_id, expected = (value.split(":") + ["", ""])[:3]
    found = [i for i, option in enumerate(options) if option[0] == "--ro-bind" and option[2] == target]
    if len(found) != 1 or os.path.basename(options[found[0]][1]) != "extract":
        raise LaunchError(f"--verified-extract: no read-only extract mount at {target}")
    index = found[0]
    try:
        fd = open_published(os.path.dirname(options[index][1]), build_id)
    except (TreeRefused, OSError) as exc:
        raise ExtractChanged(f"the extract is not the one checked before the start: {exc}") from None
    try:
        same = fingerprint(fd) == expected
    except (TreeRefused, OSError) as exc:
        same = False
        found_instead = f": {exc}"
    else:
        found_instead = ""
    if not same:
        os.close(fd)
        raise ExtractChanged(f"the extract changed between its check and its mount{found_instead}")
    out = list(options)
    if staged:
        out[index] = ["--ro-bind", f"/proc/self/fd/{fd}", target]
    else:
        os.set_inheritable(fd, True)
        out[index] = ["--ro-bind-fd", str(fd), target]
    return out, fd


def drop_privileges(uid: int, gid: int) -> None:
    """For good: no supplementary groups, then gid, then uid (real, effective and saved)."""
    if uid == 0 or gid == 0:
        raise LaunchError("refusing to run a sandbox as root")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise LaunchError("could not drop the root privileges")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise LaunchError("root privileges could be regained after dropping them")


def _memory_file(name: str, data: bytes) -> int:
    """A file descriptor (inherited by bubblewrap) that reads ``data`` from its start."""
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pds_kernel.sandbox.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--cgroup", default=None, help="control group name (project--user)")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--cpus", type=float, default=1.0)
    parser.add_argument("--pids", type=int, default=None)
    parser.add_argument("--cpu-list", default=None,
                        help="CPUs (0,1,...) to pin the sandbox to when it has no control group")
    parser.add_argument("--run-as", default=None, help="UID:GID to drop to (the caller is root)")
    parser.add_argument("--verified-extract", default=None,
                        help="TARGET:BUILD_ID:FINGERPRINT of the extract the caller checked")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args


def prepare(argv: list[str]) -> list[str]:
    """Every step but the final exec; returns bubblewrap's argv."""
    from . import cgroup, seccomp

    args = _parse(argv)
    bwrap = split_bwrap(args.command)
    run_as = _check_run_as(args.run_as)
    if args.cgroup:
        cgroup.apply(args.cgroup, args.memory_mb, args.cpus, pids=args.pids)
    if args.cpu_list:  # inherited by bubblewrap and everything it starts; fixed there (seccomp)
        os.sched_setaffinity(0, [int(cpu) for cpu in args.cpu_list.split(",")])
    options = bwrap.options
    extract_fd = None
    if run_as is not None:
        private_mounts()
    if args.verified_extract:
        options, extract_fd = bind_verified_extract(options, args.verified_extract, staged=run_as is not None)
    if run_as is not None:
        options, sources = staged_options(options)
        stage_sources(sources)
        if extract_fd is not None:  # staged: the sandbox must not inherit it
            os.close(extract_fd)
    seccomp_fd = _memory_file("pds-seccomp", seccomp.build_bpf())
    words = [word for option in options for word in option] + ["--seccomp", str(seccomp_fd)]
    args_fd = _memory_file("pds-bwrap-args", b"".join(w.encode() + b"\0" for w in words))
    if run_as is not None:
        drop_privileges(*run_as)
    return [bwrap.bwrap, "--args", str(args_fd), "--", *bwrap.command]


def _check_run_as(value: str | None) -> tuple[int, int] | None:
    """``UID:GID`` -> the pair; refused before anything is done when it would leave root."""
    if value is None:
        if os.geteuid() == 0:
            raise LaunchError("the launcher runs as root without --run-as: refusing to map a sandbox to root")
        return None
    uid, gid = (int(part) for part in value.split(":"))
    if uid == 0 or gid == 0:
        raise LaunchError("refusing to run a sandbox as root")
    return uid, gid


def main(argv: list[str] | None = None) -> int:
    try:
        final = prepare(sys.argv[1:] if argv is None else argv)
    except ExtractChanged as exc:
        print(f"pds sandbox: cannot start the sandbox: {exc}", file=sys.stderr)
        return EXTRACT_REFUSED
    except Exception as exc:  # fail closed: nothing was started
        print(f"pds sandbox: cannot start the sandbox: {exc}", file=sys.stderr)
        return 125
    os.execv(final[0], final)
    return 127  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())

