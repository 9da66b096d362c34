"""The seccomp filter of every workspace sandbox, built with libseccomp and loaded by bubblewrap.

Default: allow. Denied with ``EPERM`` (the program sees an ordinary permission error):

* every system call of :data:`DENIED` (kernel keyring, ``bpf``, ``perf_event_open``, ``ptrace``
  and cross-process memory access, module and kexec loading, every mount API, swap, reboot,
  ``userfaultfd``, ``io_uring``, clock setting, ``open_by_handle_at``, ``setns``...);
* ``unshare`` and ``clone`` with any namespace flag (:data:`NAMESPACE_FLAGS`): no new user
  namespace, hence no capabilities anywhere inside; ``clone3`` gets ``ENOSYS`` (its flags live in
  memory a filter cannot read; the C library then falls back to ``clone``);
* ``personality`` with a flag that weakens the address space (:data:`PERSONALITY_DENIED_FLAGS`:
  no ASLR, executable data, page zero...); reading it (``0xffffffff``) and the plain Linux
  personalities stay allowed;
* ``ioctl`` ``TIOCSTI`` and ``TIOCLINUX`` (typing into a terminal);
* ``socket`` of any family but :data:`SOCKET_FAMILIES` (``EAFNOSUPPORT``): Unix, IPv4, IPv6 and
  netlink sockets live in the sandbox's own network namespace, but others do not (``AF_VSOCK``
  reaches the hypervisor and every virtual machine beside it whatever the namespace).

System calls of a foreign ABI (32-bit ``int 0x80``, x32 on x86-64) kill the process: libseccomp's
default for an architecture the filter was not built for.

:func:`build_bpf` returns the compiled program; ``python -m pds_kernel.sandbox.launch`` hands it to
``bwrap --seccomp FD``, which loads it last, just before running the command.
"""

from __future__ import annotations

import errno
import logging
import os

from ..errors import PdsError

log = logging.getLogger(__name__)

#: Denied outright (names unknown on this architecture are skipped).
DENIED = (
    # kernel keyring
    "add_key", "keyctl", "request_key",
    # kernel attack surface and instrumentation
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "lookup_dcookie", "syslog",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "setns", "kcmp",
    "process_madvise", "process_mrelease",
    # memory the kernel takes out of its own map (and no inspection of the host sees)
    "memfd_secret",
    # the CPUs of a sandbox without control groups are its limit (set by the launcher)
    "sched_setaffinity",
    # the kernel itself and the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module", "reboot", "swapon", "swapoff", "acct",
    "iopl", "ioperm", "vm86", "vm86old", "uselib", "nfsservctl", "_sysctl", "sysfs", "ustat",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "vhangup", "quotactl", "quotactl_fd",
    # file systems and file handles
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
)
#: ``unshare``/``clone`` flags that create a namespace.
NAMESPACE_FLAGS = {
    "CLONE_NEWTIME": 0x00000080, "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
}
#: ``personality`` flags that weaken memory protections.
PERSONALITY_DENIED_FLAGS = {
    "ADDR_NO_RANDOMIZE": 0x0040000, "MMAP_PAGE_ZERO": 0x0100000, "ADDR_COMPAT_LAYOUT": 0x0200000,
    "READ_IMPLIES_EXEC": 0x0400000, "ADDR_LIMIT_32BIT": 0x0800000, "SHORT_INODE": 0x1000000,
    "WHOLE_SECONDS": 0x2000000, "STICKY_TIMEOUTS": 0x4000000, "ADDR_LIMIT_3GB": 0x8000000,
}
_PERSONALITY_QUERY = 0xFFFFFFFF
_BIT31 = 0x80000000
#: ``ioctl`` requests that inject input into a terminal.
DENIED_IOCTLS = {"TIOCSTI": 0x5412, "TIOCLINUX": 0x541C}
#: The only socket families a sandbox may open: those its network namespace confines.
SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}


class SeccompUnavailable(PdsError):
    """libseccomp (or its Python bindings) is missing: no sandbox may start without the filter."""


def _library():
    try:
        import pyseccomp
    except (ImportError, OSError) as exc:  # OSError: the bindings load libseccomp.so.2 at import
        raise SeccompUnavailable(
            "cannot build the sandbox's seccomp filter: install the 'sandbox' extra (pyseccomp) and "
            f"the Debian package libseccomp2 ({exc})") from None
    return pyseccomp


def _known(lib, name: str) -> bool:
    try:
        return lib.resolve_syscall(lib.system_arch(), name) >= 0
    except (OSError, ValueError, TypeError):
        return False


def build_filter():
    """The libseccomp filter object (not loaded into this process)."""
    lib = _library()
    deny = lib.ERRNO(errno.EPERM)
    f = lib.SyscallFilter(lib.ALLOW)
    for name in DENIED:
        if _known(lib, name):
            f.add_rule(deny, name)
    for flag in NAMESPACE_FLAGS.values():
        f.add_rule(deny, "unshare", lib.Arg(0, lib.MASKED_EQ, flag, flag))
        f.add_rule(deny, "clone", lib.Arg(0, lib.MASKED_EQ, flag, flag))
    if _known(lib, "clone3"):
        f.add_rule(lib.ERRNO(errno.ENOSYS), "clone3")
    # personality: one comparison per rule (libseccomp ANDs a rule's comparisons, ORs its rules).
    # The query value 0xffffffff has every bit set, so each flag is denied when bit 31 is clear,
    # and any value with bit 31 set is denied when one of bits 0..30 is clear (i.e. not the query).
    for flag in PERSONALITY_DENIED_FLAGS.values():
        f.add_rule(deny, "personality", lib.Arg(0, lib.MASKED_EQ, flag | _BIT31, flag))
    for bit in range(31):
        f.add_rule(deny, "personality", lib.Arg(0, lib.MASKED_EQ, _BIT31 | (1 << bit), _BIT31))
    f.add_rule(deny, "personality", lib.Arg(0, lib.GT, _PERSONALITY_QUERY))
    for request in DENIED_IOCTLS.values():
        f.add_rule(deny, "ioctl", lib.Arg(1, lib.MASKED_EQ, 0xFFFFFFFF, request))
    # socket: every family up to the highest allowed one but those allowed, and every value above
    # it (a family with high bits set included: the kernel reads 32 bits, the filter 64)
    no_family = lib.ERRNO(errno.EAFNOSUPPORT)
    highest = max(SOCKET_FAMILIES.values())
    for family in sorted(set(range(highest)) - set(SOCKET_FAMILIES.values())):
        f.add_rule(no_family, "socket", lib.Arg(0, lib.MASKED_EQ, 0xFFFFFFFF, family))
    f.add_rule(no_family, "socket", lib.Arg(0, lib.GT, highest))
    return f


def build_bpf() -> bytes:
    """The compiled BPF program of :func:`build_filter` (what ``bwrap --seccomp`` reads)."""
    f = build_filter()
    fd = os.memfd_create("pds-seccomp", 0)
    try:
        with open(fd, "wb", closefd=False) as out:
            f.export_bpf(out)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise SeccompUnavailable(f"libseccomp produced an invalid program ({len(program)} bytes)")
    return program
