"""Sandbox escapes: each test is one real attempt from inside a real workspace sandbox.

The attempts are the probes of ``pds_kernel.sandbox.probes`` (what ``pds sandbox probe`` runs on a
live system), one per test, in alice's sandbox of proj-a, plus the attack of issue #11 as it was
made (``core_pattern`` piped to a script of the home, then a crash) and attacks on the way root
hands the home over to the sandbox account.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sandbox_support
from sandbox_support import PDS, attempt, host_checks, write_config

from pds_kernel.sandbox.exec import run_in_sandbox
from pds_kernel.sandbox.identity import SANDBOX_ACCOUNT

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

#: the sandbox tests' registry, extracts and secrets (fixture)
world = sandbox_support.world
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the hub runs as root only in this case")

PROBES = [
    "probe_root_inside", "probe_uid_map", "probe_unshare_user", "probe_unshare_command",
    "probe_clone_newuser", "probe_setns", "probe_ptrace", "probe_keyctl", "probe_add_key", "probe_bpf",
    "probe_perf_event_open", "probe_userfaultfd", "probe_io_uring", "probe_personality", "probe_mount",
    "probe_module", "probe_core_pattern", "probe_proc_sys_writable", "probe_sysrq", "probe_kernel_memory",
    "probe_devices", "probe_mknod", "probe_host_processes", "probe_mountinfo", "probe_cmdlines",
    "probe_fork_bomb", "probe_egress", "probe_raw_socket", "probe_write_extract", "probe_chown_root",
    "probe_setuid_home", "probe_setuid_binaries", "probe_write_system",
]
FORBIDDEN_READS = ["read the key store", "read key file proj-a.key", "read project proj-b's extract",
                   "read the lake", "read hub file jupyterhub_cookie_secret", "read hub file pds-sync.token",
                   "read the database", "read project proj-b's homes", "read the airlock staging",
                   "read the outbox", "read raw deliveries"]


@pytest.mark.parametrize("probe", PROBES)
def test_escape_probe_fails(world, probe):
    result = attempt(world, probe)
    assert not result.succeeded, f"{result.name}: {result.detail}"


@pytest.mark.parametrize("label", FORBIDDEN_READS)
def test_reading_a_host_secret_fails(world, label):
    result = attempt(world, label)
    assert not result.succeeded, f"{result.name}: {result.detail}"


CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
CRASH = r"""
import os, resource, sys, time
home_on_host = sys.argv[1]
script = "/home/jovyan/x.sh"
with open(script, "w") as f:
    f.write("#!/bin/sh\ntouch " + home_on_host + "/pwned\n")
os.chmod(script, 0o755)
try:
    with open("/proc/sys/kernel/core_pattern", "w") as f:
        f.write("|" + home_on_host + "/x.sh")
    print("core_pattern written")
except OSError as exc:
    print("core_pattern refused:", exc)
soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
pid = os.fork()
if pid == 0:
    os.abort()
os.waitpid(pid, 0)
time.sleep(1)
"""


def test_core_pattern_pipe_to_a_home_script_then_crash(world, capfd):
    """Issue #11's attack as made: point core_pattern at a script of the home, crash a process."""
    home = world.runtime.settings.paths.homes / "proj-a" / "alice"
    before = CORE_PATTERN.read_text()
    try:
        run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", CRASH, str(home)], actor="red-team",
                       timeout=60)
        time.sleep(1)  # the kernel would run the helper asynchronously
        assert CORE_PATTERN.read_text() == before, "the sandbox rewrote the host's core_pattern"
        assert not (home / "pwned").exists(), "the core_pattern helper ran on the host"
        assert "core_pattern refused" in capfd.readouterr().out
    finally:
        if CORE_PATTERN.read_text() != before and os.geteuid() == 0:
            CORE_PATTERN.write_text(before)  # undo the attack on this machine


@root_only
def test_sandbox_of_a_root_hub_maps_to_the_unprivileged_account(world):
    """uid map and uids of the sandbox's processes, read from the host while the sandbox runs."""
    checks = host_checks(world)
    account = pwd.getpwnam(SANDBOX_ACCOUNT).pw_uid
    uids = checks["sandbox processes run as host root"]
    mapped = checks["sandbox uid maps to host root (uid_map seen from the host)"]
    assert not uids.succeeded and not mapped.succeeded, (uids, mapped)
    assert uids.detail == f"host uids [{account}]"
    assert mapped.detail == f"host uids mapped [{account}]"


@root_only
def test_handing_the_home_over_does_not_follow_a_planted_link(world, tmp_path):
    """A home left owned by root (earlier versions) holds a link to a root-only host file: handing
    the home to the sandbox account must not change that file's owner."""
    settings = world.runtime.settings
    home = settings.paths.homes / "proj-a" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, 0, 0)
    victim = tmp_path / "victim-secret"
    victim.write_text("root only\n")
    os.chmod(victim, 0o600)
    (home / "link-to-victim").symlink_to(victim)
    (home / "sub").mkdir(exist_ok=True)
    (home / "sub" / "dir-link").symlink_to(tmp_path)
    code = run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", "open('/home/jovyan/w','w')"],
                          actor="red-team", timeout=60)
    assert code == 0  # the home is the account's now: the sandbox writes it
    assert victim.stat().st_uid == 0 and tmp_path.stat().st_uid == 0
    assert (home / "link-to-victim").lstat().st_uid == pwd.getpwnam(SANDBOX_ACCOUNT).pw_uid


def test_pds_sandbox_probe_on_a_real_project_reports_no_escape(world, tmp_path):
    config = write_config(world.runtime.settings, tmp_path / "pds.yaml")
    done = subprocess.run([PDS, "--config", str(config), "sandbox", "probe", "proj-a", "--user", "alice"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " attempts, 0 succeeded" in done.stdout
    attempts = int(done.stdout.strip().splitlines()[-1].split()[0])
    assert attempts >= len(PROBES) + len(FORBIDDEN_READS), done.stdout


KILL_ALL = r"""
import os, signal, sys
try:
    os.kill(-1, signal.SIGKILL)  # every process this uid may signal; its own namespace hides the others
except OSError as exc:
    print("kill -1:", exc)
try:
    os.kill(int(sys.argv[1]), signal.SIGKILL)  # bob's sandbox, by its host PID
    print("killed by host pid")
except OSError as exc:
    print("host pid refused:", exc)
"""


def test_one_sandbox_cannot_kill_another_of_the_same_account(world, capfd):
    """Every sandbox runs as the same host account: alice's must still not reach bob's processes."""
    from pds_kernel.sandbox.exec import finish_sandbox, prepare_sandbox

    bob = prepare_sandbox(world.runtime, "bob", "proj-b", ["sleep", "60"], actor="red-team")
    victim = subprocess.Popen(bob.argv, env=bob.env, cwd="/")
    try:
        time.sleep(2)
        assert victim.poll() is None, "bob's sandbox did not start"
        run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", KILL_ALL, str(victim.pid)],
                       actor="red-team", timeout=60)
        time.sleep(0.5)
        assert victim.poll() is None, "alice's sandbox killed bob's"
        assert "host pid refused" in capfd.readouterr().out
    finally:
        victim.kill()
        victim.wait()
        finish_sandbox(bob)


def test_fork_bomb_without_control_groups_stops_at_the_process_limit(world, monkeypatch):
    """On a host without usable control groups, RLIMIT_NPROC alone must hold (it is counted per
    user namespace and host uid, and the kernel never applies it to host root)."""
    from pds_kernel.sandbox import bwrap

    monkeypatch.setattr(bwrap.cgroup, "detect", lambda: None)
    assert bwrap.host_facts().cgroup is None
    result = attempt(world, "probe_fork_bomb")
    assert not result.succeeded, f"{result.name}: {result.detail}"
    assert "Resource temporarily unavailable" in result.detail  # EAGAIN: the process limit, not memory


INT80_UNSHARE = r"""
import ctypes, mmap, os
# unshare(CLONE_NEWUSER) through the 32-bit system call gate (int 0x80, i386 number 310): a filter
# that compared x86-64 numbers only would not see it.
code = bytes.fromhex("b836010000" "bb00000010" "cd80" "c3")  # mov eax,310; mov ebx,flag; int 0x80; ret
buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
call = ctypes.CFUNCTYPE(ctypes.c_int)(address)
pid = os.fork()
if pid == 0:
    result = call()
    print("int80 unshare returned", result, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child status", status, "signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the 32-bit gate exists on x86-64 only")
def test_unshare_a_user_namespace_through_the_32_bit_system_call_gate(world, capfd):
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", INT80_UNSHARE], actor="red-team",
                   timeout=60)
    out = capfd.readouterr().out
    assert "child status" in out, out
    assert "int80 unshare returned 0" not in out, out  # 0: a new user namespace was made


CROSS_WRITE = r"""
import os, sys
marker = sys.argv[1]
written = []
for root, dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys", "/data", "/dev")):
        dirs[:] = []
        continue
    if os.access(root, os.W_OK):
        try:
            open(os.path.join(root, marker), "w").write("from another workspace")
            written.append(root)
        except OSError:
            pass
print("WROTE", ",".join(written))
"""
CROSS_READ = r"""
import os, sys
marker = sys.argv[1]
found = [root for root, dirs, files in os.walk("/") if marker in files and not root.startswith("/proc")]
print("FOUND", ",".join(found))
"""


def test_a_file_left_by_one_workspace_is_read_in_another(world, capfd):
    """A shared writable place between two workspaces (one user's diabetes data carried into a
    project where it may be exported, or another user's): alice's sandbox writes a marker in every
    directory it can write, bob's (another project) searches its whole file system for it."""
    import secrets as random_names

    marker = f"pds-cross-{random_names.token_hex(6)}"
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", CROSS_WRITE, marker], actor="red-team",
                   timeout=120)
    run_in_sandbox(world.runtime, "bob", "proj-b", ["python", "-c", CROSS_READ, marker], actor="red-team",
                   timeout=120)
    out = capfd.readouterr().out
    wrote = next(line for line in out.splitlines() if line.startswith("WROTE"))
    found = next(line for line in out.splitlines() if line.startswith("FOUND"))
    assert "/home/jovyan" in wrote  # the attempt could write somewhere
    assert found == "FOUND ", (wrote, found)
