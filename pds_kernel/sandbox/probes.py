"""Escape probes that run INSIDE a workspace sandbox (``pds sandbox probe``; the red-team tests).

The host passes this file's source to the sandbox's Python (``python -I -c SOURCE``), so it uses
the standard library only and imports nothing of ``pds_kernel``. Protocol on standard streams:

1. the host writes one line of JSON config on stdin (never on the command line: the sandbox's
   ``/proc/1/cmdline`` must not carry the host paths it lists);
2. the probe prints ``PDS-PROBE-READY`` and waits for a line on stdin, while the host checks the
   sandbox's processes from outside (their host uid, their uid map);
3. each probe runs; the probe prints ``PDS-PROBE-RESULT <json>`` per probe, then ``PDS-PROBE-END``.

Each probe is one escape attempt, a small function returning ``(name, succeeded, detail)``:
``succeeded`` is True when the attack got through. An attempt that fails with an ``OSError`` has
failed; any other exception marks the attempt as succeeded (the probe could not show it failed).
Config keys: ``forbidden_paths`` (label -> host path that must be unreachable),
``forbidden_strings`` (host paths that must not appear in ``/proc``), ``max_processes``, and
``only`` (run only these probes, by function name; the tests make one attempt each).
"""

import ctypes
import errno
import json
import os
import platform
import socket
import stat
import subprocess
import sys

READY = "PDS-PROBE-READY"
RESULT = "PDS-PROBE-RESULT "
END = "PDS-PROBE-END"

#: system call numbers of the calls libc has no wrapper for
SYSCALLS = {
    "x86_64": {"clone": 56, "keyctl": 250, "add_key": 248, "bpf": 321, "perf_event_open": 298,
               "userfaultfd": 323, "io_uring_setup": 425, "finit_module": 313},
    "aarch64": {"clone": 220, "keyctl": 219, "add_key": 217, "bpf": 280, "perf_event_open": 241,
                "userfaultfd": 282, "io_uring_setup": 425, "finit_module": 273},
}
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17

libc = ctypes.CDLL(None, use_errno=True)


def _syscall(name, *args):
    number = SYSCALLS[platform.machine()][name]
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _libc_call(func, *args):
    result = func(*args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def labelled(name):
    """The name a probe is reported under when it ends in an exception (the attack was refused)."""
    def mark(func):
        func.label = name
        return func
    return mark


# ---- privileges and namespaces ---------------------------------------------------------------
def probe_root_inside(config):
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    caps = int(status["CapEff"].strip(), 16)
    nnp = status.get("NoNewPrivs", "0").strip()
    ok = os.getuid() != 0 and os.geteuid() != 0 and caps == 0 and nnp == "1"
    return ("root or capabilities inside", not ok, f"uid {os.getuid()}, CapEff {caps:#x}, NoNewPrivs {nnp}")


def probe_uid_map(config):
    lines = [line.split() for line in open("/proc/self/uid_map")]
    mapped = sum(int(count) for _, _, count in lines)
    # One uid only; which host uid it is, the host checks from outside (a nested namespace shows
    # the map relative to its parent, not to the host).
    return ("uid map holds more than one uid", mapped != 1,
            "map relative to the parent namespace: " + " | ".join(" ".join(line) for line in lines))


@labelled('unshare(CLONE_NEWUSER)')
def probe_unshare_user(config):
    # In a child: a success must not move this process (and the later probes) into the namespace.
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(CLONE_NEWUSER) == 0 else 100 + ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(code - 100, os.strerror(code - 100))
    return ("unshare(CLONE_NEWUSER)", True, "a new user namespace was created")


@labelled("unshare -U -r (nested user namespace as 'root')")
def probe_unshare_command(config):
    tool = "/usr/bin/unshare"
    if not os.path.exists(tool):
        raise OSError(errno.ENOENT, "no unshare binary")
    done = subprocess.run([tool, "-U", "-r", "id", "-u"], capture_output=True, text=True, timeout=10)
    return ("unshare -U -r (nested user namespace as 'root')", done.returncode == 0,
            (done.stdout + done.stderr).strip()[:160])


@labelled('clone(CLONE_NEWUSER)')
def probe_clone_newuser(config):
    pid = _syscall("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return ("clone(CLONE_NEWUSER)", True, f"child {pid} in a new user namespace")


@labelled("setns into PID 1's namespace")
def probe_setns(config):
    fd = os.open("/proc/1/ns/net", os.O_RDONLY)
    try:
        _libc_call(libc.setns, fd, 0)
    finally:
        os.close(fd)
    return ("setns into PID 1's namespace", True, "joined")


@labelled('ptrace another process')
def probe_ptrace(config):
    pid = os.fork()
    if pid == 0:
        import time
        time.sleep(5)
        os._exit(0)
    try:
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        _libc_call(libc.ptrace, 16, pid, None, None)  # PTRACE_ATTACH
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        return ("ptrace another process", True, f"attached to {pid}")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@labelled('keyctl (kernel keyring)')
def probe_keyctl(config):
    key = _syscall("keyctl", 0, -3, 1)  # KEYCTL_GET_KEYRING_ID of the session keyring, create
    return ("keyctl (kernel keyring)", True, f"session keyring {key}")


@labelled('add_key (kernel keyring)')
def probe_add_key(config):
    key = _syscall("add_key", ctypes.c_char_p(b"user"), ctypes.c_char_p(b"pds-probe"),
                   ctypes.c_char_p(b"x"), 1, -2)
    return ("add_key (kernel keyring)", True, f"key {key}")


@labelled('bpf map creation')
def probe_bpf(config):
    attr = ctypes.create_string_buffer(48)
    ctypes.memmove(attr, (ctypes.c_uint32 * 4)(2, 4, 4, 1), 16)  # BPF_MAP_TYPE_ARRAY, 4, 4, 1 entry
    fd = _syscall("bpf", 0, attr, 48)  # BPF_MAP_CREATE
    os.close(fd)
    return ("bpf map creation", True, f"fd {fd}")


@labelled('perf_event_open')
def probe_perf_event_open(config):
    attr = ctypes.create_string_buffer(128)
    ctypes.memmove(attr, (ctypes.c_uint32 * 2)(1, 128), 8)  # PERF_TYPE_SOFTWARE, size
    ctypes.memmove(ctypes.byref(attr, 40), (ctypes.c_uint64 * 1)(1 | 32 | 64), 8)  # disabled, user only
    fd = _syscall("perf_event_open", attr, 0, -1, -1, 0)
    os.close(fd)
    return ("perf_event_open", True, f"fd {fd}")


@labelled('userfaultfd')
def probe_userfaultfd(config):
    fd = _syscall("userfaultfd", os.O_CLOEXEC | 1)  # UFFD_USER_MODE_ONLY
    os.close(fd)
    return ("userfaultfd", True, f"fd {fd}")


@labelled('io_uring_setup')
def probe_io_uring(config):
    params = ctypes.create_string_buffer(120)
    fd = _syscall("io_uring_setup", 1, params)
    os.close(fd)
    return ("io_uring_setup", True, f"fd {fd}")


@labelled('personality(ADDR_NO_RANDOMIZE)')
def probe_personality(config):
    libc.personality.argtypes = [ctypes.c_ulong]
    libc.personality.restype = ctypes.c_int
    previous = _libc_call(libc.personality, 0x0040000)  # ADDR_NO_RANDOMIZE
    libc.personality(previous)
    return ("personality(ADDR_NO_RANDOMIZE)", True, "address space randomisation switched off")


@labelled('mount a tmpfs')
def probe_mount(config):
    target = "/tmp/pds-probe-mount"
    os.makedirs(target, exist_ok=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    _libc_call(libc.mount, b"none", target.encode(), b"tmpfs", 0, None)
    return ("mount a tmpfs", True, target)


@labelled('load a kernel module')
def probe_module(config):
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        _syscall("finit_module", fd, ctypes.c_char_p(b""), 0)
    finally:
        os.close(fd)
    return ("load a kernel module", True, "finit_module accepted")


# ---- /proc and /dev ------------------------------------------------------------------------------
@labelled('write /proc/sys/kernel/core_pattern')
def probe_core_pattern(config):
    # Non-destructive: write back the current value (a live system is not changed even if it works).
    path = "/proc/sys/kernel/core_pattern"
    with open(path) as f:
        current = f.read()
    with open(path, "w") as f:
        f.write(current)
    return ("write /proc/sys/kernel/core_pattern", True, f"rewrote {current.strip()!r}")


def probe_proc_sys_writable(config):
    writable = []
    checked = 0
    for root, _dirs, files in os.walk("/proc/sys"):
        for name in files:
            path = os.path.join(root, name)
            checked += 1
            try:
                os.close(os.open(path, os.O_WRONLY))  # opened, never written
                writable.append(path)
            except OSError:
                pass
    return ("any writable file in /proc/sys", bool(writable),
            f"{len(writable)} of {checked} writable {writable[:3]}")


@labelled('open /proc/sysrq-trigger for writing')
def probe_sysrq(config):
    os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY))
    return ("open /proc/sysrq-trigger for writing", True, "opened")


def probe_kernel_memory(config):
    opened = []
    for path in ("/proc/kcore", "/proc/kmsg", "/proc/keys", "/proc/kallsyms", "/proc/timer_list"):
        try:
            with open(path, "rb") as f:
                if f.read(64):
                    opened.append(path)
        except OSError:
            pass
    return ("read kernel memory, messages, symbols or keys in /proc", bool(opened), f"readable: {opened}")


def probe_devices(config):
    opened = []
    for path in ("/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/kvm", "/dev/sda", "/dev/vda",
                 "/dev/nvme0n1", "/dev/fuse", "/dev/net/tun", "/dev/console"):
        try:
            os.close(os.open(path, os.O_RDONLY))
            opened.append(path)
        except OSError:
            pass
    return ("open host devices (/dev/mem, /dev/kmsg, disks...)", bool(opened), f"opened: {opened}")


@labelled('mknod a /dev/mem node')
def probe_mknod(config):
    path = "/tmp/pds-probe-mem"
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 1))
    os.unlink(path)
    return ("mknod a /dev/mem node", True, path)


def probe_host_processes(config):
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    return ("see host processes", len(pids) > 50, f"{len(pids)} processes visible")


def _leaks(text, config):
    return sorted({s for s in config.get("forbidden_strings", []) if s and s in text})


def probe_mountinfo(config):
    with open("/proc/self/mountinfo") as f:
        found = _leaks(f.read(), config)
    return ("host paths of secrets in /proc/self/mountinfo", bool(found), f"found {found}")


def probe_cmdlines(config):
    found = set()
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    found.update(_leaks(f.read().replace(b"\0", b" ").decode(errors="replace"), config))
            except OSError:
                pass
    return ("host paths of secrets in /proc/*/cmdline or environ (PID 1 included)", bool(found), f"found {sorted(found)}")


# ---- processes -------------------------------------------------------------------------------
def probe_fork_bomb(config):
    """Fork up to max_processes + 64 children that wait on a pipe; every child is reaped."""
    limit = int(config.get("max_processes", 1024))
    read_end, write_end = os.pipe()
    children = []
    error = "none"
    try:
        for _ in range(limit + 64):
            try:
                pid = os.fork()
            except OSError as exc:
                error = exc.strerror
                break
            if pid == 0:
                os.close(write_end)
                try:
                    os.read(read_end, 1)
                finally:
                    os._exit(0)
            children.append(pid)
    finally:
        os.close(write_end)
        os.close(read_end)
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return (f"fork beyond the process limit ({limit})", len(children) >= limit,
            f"{len(children)} processes started, then: {error}")


# ---- network -----------------------------------------------------------------------------------
@labelled('TCP to 192.0.2.1 (egress)')
def probe_egress(config):
    with socket.create_connection(("192.0.2.1", 80), timeout=2):
        pass
    return ("TCP to 192.0.2.1 (egress)", True, "connected")


def probe_raw_socket(config):
    opened = []
    for family, kind, proto in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                (socket.AF_PACKET, socket.SOCK_RAW, 0)):
        try:
            socket.socket(family, kind, proto).close()
            opened.append(f"{family.name}/{kind.name}")
        except OSError:
            pass
    return ("raw or packet socket", bool(opened), f"opened: {opened}")


# ---- files ---------------------------------------------------------------------------------------
def _data_file():
    for root, _dirs, files in os.walk("/data"):
        for name in files:
            return os.path.join(root, name)
    raise FileNotFoundError("no file in /data")


def probe_write_extract(config):
    done = []
    target = _data_file()
    for label, action in (("create", lambda: open("/data/pds-probe.txt", "wb").close()),
                          ("overwrite", lambda: open(target, "r+b").close()),
                          ("chmod", lambda: os.chmod(target, 0o666)),
                          ("rename", lambda: os.rename(target, target + ".x"))):
        try:
            action()
            done.append(label)
        except OSError:
            pass
    return ("write, chmod or rename in the extract (/data)", bool(done), f"done: {done}")


@labelled('chown a home file to root')
def probe_chown_root(config):
    path = "/home/jovyan/.pds-probe-chown"
    with open(path, "w") as f:
        f.write("x")
    try:
        os.chown(path, 0, 0)
        return ("chown a home file to root", True, "owner is now 0")
    finally:
        os.unlink(path)


@labelled('setuid file in the home honoured')
def probe_setuid_home(config):
    """Plant a setuid file in the home: harmless unless the home is owned by host root (the host
    checks the owner after the run and removes the file)."""
    path = "/home/jovyan/.pds-probe-setuid"
    with open(path, "w") as f:
        f.write("#!/bin/sh\nid\n")
    os.chmod(path, 0o4755)
    flags = os.statvfs("/home/jovyan").f_flag
    return ("setuid file in the home honoured", not (flags & os.ST_NOSUID), f"home nosuid={bool(flags & os.ST_NOSUID)}")


def probe_setuid_binaries(config):
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    no_new_privs = status.get("NoNewPrivs", "0").strip() == "1"
    usable = []
    for directory in ("/usr/bin", "/usr/sbin", "/usr/lib"):
        for root, _dirs, files in os.walk(directory):
            for name in files:
                path = os.path.join(root, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    if not (os.statvfs(path).f_flag & os.ST_NOSUID) and not no_new_privs:
                        usable.append(path)
    return ("setuid binaries that elevate", bool(usable), f"usable: {usable[:5]}")


def probe_write_system(config):
    done = []
    for path in ("/etc/pds-probe", "/usr/pds-probe", "/pds-probe", os.path.join(sys.prefix, "pds-probe")):
        try:
            open(path, "wb").close()
            done.append(path)
        except OSError:
            pass
    return ("write the system or the Python installation", bool(done), f"written: {done}")


def _forbidden_probe(label, path):
    def probe(config):
        if os.path.isdir(path):
            entries = os.listdir(path)
            return (f"read {label}", True, f"listed {len(entries)} entries")
        with open(path, "rb") as f:
            data = f.read(16)
        return (f"read {label}", True, f"read {len(data)} bytes")
    probe.label = f"read {label}"
    return probe


PROBES = [
    probe_root_inside, probe_uid_map, probe_unshare_user, probe_unshare_command, probe_clone_newuser,
    probe_setns, probe_ptrace, probe_keyctl, probe_add_key, probe_bpf, probe_perf_event_open,
    probe_userfaultfd, probe_io_uring, probe_personality, probe_mount, probe_module,
    probe_core_pattern, probe_proc_sys_writable, probe_sysrq, probe_kernel_memory, probe_devices,
    probe_mknod, probe_host_processes, probe_mountinfo, probe_cmdlines, probe_fork_bomb,
    probe_egress, probe_raw_socket, probe_write_extract, probe_chown_root, probe_setuid_home,
    probe_setuid_binaries, probe_write_system,
]


def _name_of(probe):
    return getattr(probe, "label", probe.__name__.removeprefix("probe_").replace("_", " "))


def run(probe, config):
    """One attempt: (name, succeeded, detail). An OSError means the attack failed."""
    try:
        name, succeeded, detail = probe(config)
    except OSError as exc:
        return (_name_of(probe), False, f"refused: {exc.strerror or exc}")
    except subprocess.TimeoutExpired:
        return (_name_of(probe), False, "refused: timed out")
    except Exception as exc:  # the probe could not show the attack failed: count it as a success
        return (_name_of(probe), True, f"probe error {type(exc).__name__}: {exc}")
    return (name, bool(succeeded), str(detail)[:300])


def probes_for(config):
    """Every probe, or those named in ``config["only"]`` (function names; ``read <label>``)."""
    forbidden = [_forbidden_probe(label, path) for label, path in sorted(config.get("forbidden_paths", {}).items())]
    every = PROBES + forbidden
    only = config.get("only")
    if only is None:
        return every
    chosen = [p for p in every if p.__name__ in only or getattr(p, "label", None) in only]
    if len(chosen) != len(set(only)):
        raise SystemExit(f"unknown probes: {sorted(set(only) - {p.__name__ for p in chosen})}")
    return chosen


def main():
    config = json.loads(sys.stdin.readline() or "{}")
    print(READY, flush=True)
    sys.stdin.readline()  # the host has checked the sandbox's processes from outside
    for probe in probes_for(config):
        name, succeeded, detail = run(probe, config)
        print(RESULT + json.dumps({"name": name, "succeeded": succeeded, "detail": detail}), flush=True)
    print(END, flush=True)


if __name__ == "__main__":
    main()
