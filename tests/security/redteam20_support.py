"""Support of tests/security/test_redteam20_sandbox.py: the attempts, each a small program run in a
real workspace sandbox (``pds sandbox exec``'s path, or a kernel of a workspace a real hub
started), printing one line ``ATTEMPT <name> <result>``."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from sandbox_attempts_support import SIBLING, run_attempts

from pds_kernel.sandbox.exec import finish_sandbox, prepare_sandbox

#: One attempt per name (x86-64 system call numbers); prints ``ATTEMPT <name> <result>``, where the
#: result is ``ok ...`` when the kernel did it and ``errno N`` (or an exception) otherwise.
ATTEMPTS = r"""
import ctypes, errno, fcntl, os, signal, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
HOME = "/home/jovyan"

def call(number, *args):
    result = libc.syscall(ctypes.c_long(number), *args)
    return "ok %d" % result if result >= 0 else "errno %d" % ctypes.get_errno()
""" + SIBLING + r"""
def vsock_listen():
    # AF_VSOCK is not confined by a network namespace: a listener there is reached from the
    # hypervisor, a connection goes to it (CID 2) or to other guests (nothing is sent here)
    s = socket.socket(40, socket.SOCK_STREAM)  # AF_VSOCK
    s.bind((0xFFFFFFFF, 52020))  # VMADDR_CID_ANY
    s.listen()
    return "ok listening on vsock port 52020"

def vsock_datagram():
    socket.socket(40, socket.SOCK_DGRAM).close()
    return "ok"

def family_with_high_bits():
    # the kernel reads the family as 32 bits: 0x1_0000_0028 is AF_VSOCK to it
    return call(41, 0x100000028, socket.SOCK_STREAM, 0)

def allowed_families():
    opened = []
    for family, kind in ((socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_STREAM),
                         (socket.AF_INET6, socket.SOCK_DGRAM), (socket.AF_NETLINK, socket.SOCK_RAW)):
        socket.socket(family, kind).close()
        opened.append(family.name)
    return "ok " + ",".join(opened)

def kcmp_sibling():
    pid = sibling()
    try:
        return call(312, os.getpid(), pid, 0, 0, 0)  # KCMP_FILE of descriptor 0 in both
    finally:
        os.kill(pid, signal.SIGKILL)

def process_madvise_sibling():
    pid = sibling()
    try:
        pidfd = libc.syscall(ctypes.c_long(434), pid, 0)
        buf = ctypes.create_string_buffer(4096)
        iov = struct.pack("QQ", ctypes.addressof(buf), 4096)
        return call(440, pidfd, ctypes.c_char_p(iov), 1, 21, 0)  # MADV_PAGEOUT
    finally:
        os.kill(pid, signal.SIGKILL)

def memfd_secret():
    return call(447, 0)

def tioclinux():
    import pty
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, 0x541C, bytes([6]))  # TIOCLINUX, TIOCL_SETSEL's neighbour: read a selection
        return "ok"
    except OSError as exc:
        return "errno %d" % exc.errno

def immutable():
    # a file the project's purge could not remove (FS_IOC_SETFLAGS: immutable, then append-only)
    done = []
    for flag in (0x10, 0x20):
        path = f"{HOME}/flagged-{flag}"
        open(path, "w").close()
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, 0x40086602, struct.pack("l", flag))
            done.append(hex(flag))
        except OSError as exc:
            last = exc.errno
        finally:
            os.close(fd)
    return "ok " + ",".join(done) if done else "errno %d" % last

def file_capabilities():
    # cap_setuid+ep planted on a home file, as version 2 (no namespace) and 3 (root uid 0)
    path = f"{HOME}/with-caps"
    open(path, "w").write("#!/bin/sh\nid\n")
    results = []
    for value in (struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0),
                  struct.pack("<IIIIII", 0x03000001, 1 << 7, 0, 0, 0, 0)):
        try:
            os.setxattr(path, "security.capability", value)
            results.append("ok")
        except OSError as exc:
            results.append("errno %d" % exc.errno)
    for name in ("trusted.pds", "security.pds"):
        try:
            os.setxattr(path, name, b"1")
            results.append("ok " + name)
        except OSError as exc:
            results.append("errno %d" % exc.errno)
    return "ok " + " ".join(results) if any(r.startswith("ok") for r in results) else " ".join(results)

def oom_exempt():
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    try:
        os.write(fd, b"-1000")
    except OSError as exc:
        return "errno %d" % exc.errno
    finally:
        os.close(fd)
    return "ok " + open("/proc/self/oom_score_adj").read().strip()

def realtime():
    done = []
    for label, action in (("SCHED_FIFO", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))),
                          ("SCHED_RR", lambda: os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))),
                          ("nice -10", lambda: os.setpriority(os.PRIO_PROCESS, 0, -10))):
        try:
            action()
            done.append(label)
        except OSError:
            pass
    if libc.syscall(ctypes.c_long(251), 1, 0, (1 << 13) | 0) >= 0:  # ioprio_set: IOPRIO_CLASS_RT
        done.append("ioprio RT")
    return "ok " + ",".join(done) if done else "errno 1"

def bwrap_inside():
    import subprocess
    run = subprocess.run(["/usr/bin/bwrap", "--ro-bind", "/", "/", "--unshare-user", "--uid", "0", "id", "-u"],
                         capture_output=True, text=True, timeout=20)
    return ("ok " + run.stdout.strip()) if run.returncode == 0 else "refused: " + run.stderr.strip()[:120]

def descriptors():
    # every descriptor a fresh sandbox process holds: one of a host directory would be a way out
    # (openat(fd, "..")), one of a host file a way to rewrite it
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            info = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue
        import stat as st
        if st.S_ISDIR(info.st_mode) or (st.S_ISREG(info.st_mode) and not target.startswith(("/home/jovyan", "/tmp"))):
            found.append(f"{name}->{target}")
    return "ok " + ",".join(found) if found else "none"

def mount_call(number, *args):
    return lambda: call(number, *args)

def cgroup_mount():
    # the classic escape through a cgroup v1 release_agent: /sys is not there, nor may it be mounted
    if os.path.exists("/sys/fs/cgroup"):
        return "ok /sys/fs/cgroup is visible"
    os.makedirs("/tmp/cg", exist_ok=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    return "ok mounted" if libc.mount(b"cgroup", b"/tmp/cg", b"cgroup", 0, b"memory") == 0 else "errno %d" % ctypes.get_errno()

def extract_linked_into_home():
    # a hard link of an extract file in the home: the home's readers (the quota, the purge, the
    # gate's model inputs) would then handle the extract's own inode
    for root, _dirs, files in os.walk("/data"):
        for name in files:
            os.link(os.path.join(root, name), f"{HOME}/linked-extract")
            return "ok"
    return "no extract file"

def shm_past_the_limit():
    # System V shared memory of the sandbox's own IPC namespace, each segment touched then
    # detached (no address space holds it any more): 64 MiB at a time up to 768 MiB
    libc.shmat.restype = ctypes.c_void_p
    held = 0
    while held < 768:
        shmid = libc.shmget(0, 64 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT
        if shmid < 0:
            return "errno %d after %d MiB" % (ctypes.get_errno(), held)
        address = libc.shmat(shmid, None, 0)
        ctypes.memset(address, 0xA5, 64 << 20)
        libc.shmdt(ctypes.c_void_p(address))
        held += 64
        print("SHM", held, flush=True)
    return "ok %d MiB held" % held

def widen_affinity():
    # without control groups the CPU limit is the set of CPUs the sandbox is pinned to
    pinned = sorted(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, range(os.cpu_count()))
    except OSError as exc:
        return "errno %d, pinned to %d CPU" % (exc.errno, len(pinned))
    widened = sorted(os.sched_getaffinity(0))
    return ("ok %s -> %s" % (pinned, widened)) if widened != pinned else "kept %s" % pinned

def raise_limits():
    import resource
    raised = []
    for name in ("RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_MEMLOCK"):
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        if hard == resource.RLIM_INFINITY:
            continue
        try:
            resource.setrlimit(which, (hard + 1, hard + 1))
            raised.append(name)
        except (OSError, ValueError):
            pass
    return "ok " + ",".join(raised) if raised else "errno 1"

ATTEMPTS = {
    "widen_affinity": widen_affinity, "raise_limits": raise_limits,
    "fsmount": mount_call(432, -1, 0, 0), "move_mount": mount_call(429, -1, b"", -100, b"/tmp", 4),
    "fspick": mount_call(433, -100, b"/tmp", 0), "mount_setattr": mount_call(442, -100, b"/tmp", 0, 0, 0),
    "cgroup_mount": cgroup_mount, "extract_linked_into_home": extract_linked_into_home,
    "shm_past_the_limit": shm_past_the_limit,
    "vsock_listen": vsock_listen, "vsock_datagram": vsock_datagram,
    "family_with_high_bits": family_with_high_bits, "allowed_families": allowed_families,
    "kcmp_sibling": kcmp_sibling, "process_madvise_sibling": process_madvise_sibling,
    "memfd_secret": memfd_secret, "tioclinux": tioclinux, "immutable": immutable,
    "file_capabilities": file_capabilities, "oom_exempt": oom_exempt, "realtime": realtime,
    "bwrap_inside": bwrap_inside, "descriptors": descriptors,
}
for name in sys.argv[1:]:
    try:
        result = ATTEMPTS[name]()
    except OSError as exc:
        result = "errno %d" % exc.errno
    print("ATTEMPT", name, result, flush=True)
"""


#: In a workspace: a Dask cluster as a researcher starts it (``pds_kernel.workspace.dask_client``),
#: and on its worker what a task finds: the sandbox's filter and privileges, a vsock socket, the
#: host path of another project's extract (``sys.argv[1]``).
DASK_WORKER = r"""
import json, os, socket, sys
from pds_kernel.workspace import dask_client

def on_the_worker(other):
    status = {line.split(":")[0]: line.split(":")[1].strip() for line in open("/proc/self/status")
              if line.startswith(("Seccomp:", "NoNewPrivs:", "CapEff:"))}
    try:
        socket.socket(40, socket.SOCK_STREAM).close()
        vsock = "ok"
    except OSError as exc:
        vsock = "errno %d" % exc.errno
    return {"status": status, "vsock": vsock, "other extract": os.path.exists(other), "pid": os.getpid(),
            "worker": os.getppid() != 0}

client = dask_client(workers=1, wait=60)
try:
    print("WORKER", json.dumps(client.submit(on_the_worker, sys.argv[1], pure=False).result(timeout=60)), flush=True)
finally:
    client.close()
"""


def attempt(world, names: list[str], capfd, user: str = "alice", project: str = "proj-a") -> dict[str, str]:
    """Run the attempts ``names`` of :data:`ATTEMPTS` in one sandbox of (user, project): name -> result."""
    return run_attempts(world, ATTEMPTS, names, capfd, user, project)


#: In a workspace: a file of the home under a write lease, held (printing ``leased``) until killed.
LEASE_HOLDER = r"""
import fcntl, os, time
os.makedirs("/home/jovyan/results", exist_ok=True)
path = "/home/jovyan/results/leased.csv"
with open(path, "w") as f:
    f.write("person,amount\n1,2\n")
fd = os.open(path, os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print("leased", flush=True)
time.sleep(120)
"""


#: In workspace A: a real Dask scheduler on the sandbox's loopback (the port a local cluster
#: takes), an abstract Unix socket named like a desktop bus, a marker file when both listen.
LISTENER = r"""
import asyncio, os, socket
from distributed import Scheduler

async def main():
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0pds-redteam20-bus")
    abstract.listen()
    async with Scheduler(host="127.0.0.1", port=8786, dashboard=False) as scheduler:
        open("/home/jovyan/listening", "w").write(scheduler.address)
        await asyncio.sleep(40)

asyncio.run(main())
"""
#: In workspace B: reach A's scheduler as a Dask client and as bare TCP, and A's abstract socket.
REACHER = r"""
import socket

def tcp():
    with socket.create_connection(("127.0.0.1", 8786), timeout=2):
        return "ok"

def abstract():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect("\0pds-redteam20-bus")
    return "ok"

def dask():
    from distributed import Client
    with Client("tcp://127.0.0.1:8786", timeout=3) as client:
        return "ok " + str(len(client.scheduler_info()["workers"]))

for name, attempt in (("tcp", tcp), ("abstract", abstract), ("dask", dask)):
    try:
        result = attempt()
    except Exception as exc:
        result = f"{type(exc).__name__}"
    print("ATTEMPT", name, result, flush=True)
"""


@contextlib.contextmanager
def listening_workspace(world, user: str, project: str) -> Iterator[subprocess.Popen]:
    """:data:`LISTENER` running in the sandbox of (user, project) until the block ends."""
    prepared = prepare_sandbox(world.runtime, user, project, ["python", "-c", LISTENER], actor="red-team")
    marker = world.runtime.settings.paths.homes / project / user / "listening"
    process = subprocess.Popen(prepared.argv, env=prepared.env, cwd="/")
    try:
        deadline = time.monotonic() + 40
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"the listener of {project} did not start ({process.poll()})"
        yield process
    finally:
        process.kill()
        process.wait(30)
        finish_sandbox(prepared)


#: From a kernel of a workspace the hub started: what a kernel can do to the notebook server's log,
#: the host file it inherits as its output (``paths.state/logs``): forge a line, clear it, rewrite it.
LOG_TAMPER = r"""
import fcntl, os, stat
done, seen = [], set()
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    try:
        info, where = os.fstat(fd), os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    try:
        named = os.stat(where)  # a file the sandbox reaches by name is its own (home, /tmp)
        inside = (named.st_dev, named.st_ino) == (info.st_dev, info.st_ino)
    except OSError:
        inside = False
    if not stat.S_ISREG(info.st_mode) or inside or info.st_ino in seen:
        continue  # ipykernel keeps the server's output on a descriptor of its own: found here
    seen.add(info.st_ino)
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_APPEND)
        os.pwrite(fd, b"[W lockdown] nothing refused\n", 0)
        done.append(f"{fd}: rewritten at 0")
    except OSError as exc:
        done.append(f"{fd}: rewrite errno {exc.errno}")
    try:
        os.ftruncate(fd, 0)
        done.append(f"{fd}: truncated")
    except OSError as exc:
        done.append(f"{fd}: truncate errno {exc.errno}")
print("TAMPER", done or "no file inherited", flush=True)
"""

#: From a kernel: the processes whose memory it may write (``/proc/<pid>/mem`` opens for writing:
#: same user, dumpable) and the descriptors each holds of the workspace's log on the host.
LOG_HOLDERS = r"""
import json, os
found = {}
for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    try:
        os.close(os.open(f"/proc/{pid}/mem", os.O_RDWR))
    except OSError:
        continue  # the notebook server: non-dumpable
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    found[pid] = [target for target in held if "/logs/" in target]
print("HOLDERS", json.dumps(found), flush=True)
"""

#: From a kernel: every environment and command line it can read of the processes it sees, as JSON.
DUMP_PROCESSES = r"""
import json, os
seen = {}
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for name in ("environ", "cmdline"):
        try:
            seen[f"{pid}/{name}"] = open(f"/proc/{pid}/{name}", "rb").read().decode("latin-1")
        except OSError as exc:
            seen[f"{pid}/{name}"] = f"errno {exc.errno}"
print("SEEN", json.dumps(seen), flush=True)
"""


def hub_secrets(hub) -> dict[str, str]:
    """The hub's secrets as text: its state files (cookie secret, tokens), the key store, the
    database URL (what a kernel must never read in another process's environment)."""
    url = hub.settings.database.url or hub.settings.database_url
    found = {"database url": url} if url else {}
    for folder in (hub.settings.paths.state / "hub", hub.settings.paths.keys):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file() and path.stat().st_size < 4096 and path.suffix not in (".sqlite", ".db", ".log"):
                text = path.read_bytes().decode("latin-1").strip()
                if len(text) >= 16:
                    found[str(path.relative_to(hub.settings.paths.state.parent))] = text
    return found


def log_path(hub, project: str, user: str = "alice") -> Path:
    return hub.settings.paths.state / "logs" / f"{user}.{project}.log"
