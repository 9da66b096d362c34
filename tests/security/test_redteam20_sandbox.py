"""Red team 20A: the embedded workspace sandbox, its seccomp filter, its notebook server's log and the local Dask cluster, attacked from inside.

Each test is one real attempt, asserted to fail, from inside a real sandbox started the way the
platform starts it (the access check, spec and command line of ``pds sandbox exec``: alice in
proj-a, bob in proj-b beside her), or from a kernel of a workspace a real hub started.

Tried, beyond the earlier rounds (``test_sandbox_escape.py``, ``test_sandbox_redteam.py``,
``test_lockdown_escape.py``, ``test_redteam7_sockets.py``, ``test_socket_rate_attacks.py``,
``test_disk_quota_attacks.py``):

* socket families no network namespace confines: ``AF_VSOCK`` (a listener the hypervisor reaches,
  stream and datagram), the same family with high bits set in the system call's argument (both
  got through before the fix; a control: the families a workspace needs still open);
* kernel interfaces: ``kcmp`` and ``process_madvise`` on a sibling process, ``memfd_secret`` (``kcmp``
  and ``memfd_secret`` got through before the fix, though on the sandbox's own processes only),
  ``TIOCLINUX``, ``fsmount``, ``move_mount``, ``fspick``, ``mount_setattr``, a cgroup v1 mount for its
  ``release_agent``, bubblewrap run again inside as "root";
* what the host later handles in the home: immutable and append-only flags (a file the purge
  cannot remove), file capabilities and ``trusted.``/``security.`` attributes, an extract file hard
  linked into the home, a write lease held against the gate's reader of a model's inputs;
* denying service: exemption from the OOM killer, real-time scheduling and I/O priority, hard
  limits raised, System V shared memory held outside any address space past the memory limit,
  the CPU affinity of a sandbox without control groups widened to every CPU (got through before
  the fix);
* the descriptors a sandbox process is started with (one of a host directory would lead out);
* the local Dask cluster: its worker's filter and privileges, and a Dask scheduler and an abstract
  socket of one project's workspace reached from another project's;
* from a kernel of a workspace the hub started: the environments and command lines of every
  process it sees, searched for the hub's secrets; the notebook server's log, a host file the
  kernel inherited through its output, rewritten and truncated, and held by processes whose
  memory a kernel may write (``/proc/<pid>/mem`` of bubblewrap and of the ``inside`` launcher):
  both got through before the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import sandbox_support
from hub_identity_support import started_world
from project_end_support import PROJECT, execute, make_quota_world, start_workspace
from redteam20_support import (
    ATTEMPTS,
    DASK_WORKER,
    DUMP_PROCESSES,
    LEASE_HOLDER,
    LOG_HOLDERS,
    LOG_TAMPER,
    REACHER,
    attempt,
    hub_secrets,
    listening_workspace,
    log_path,
)
from sandbox_attempts_support import attempt_results
from sandbox_redteam_support import set_memory_limit

from pds_kernel.errors import InvalidInput
from pds_kernel.modelcheck.inputs import open_beneath
from pds_kernel.sandbox import cgroup
from pds_kernel.sandbox.exec import finish_sandbox, prepare_sandbox, run_in_sandbox

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
              pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attempts use x86-64 system call numbers")]

#: the sandbox tests' registry, extracts and secrets (fixture)
world = sandbox_support.world
#: what the filter answers: EPERM, EAFNOSUPPORT
EPERM, EAFNOSUPPORT = "errno 1", "errno 97"


def _vsock_on_the_host() -> bool:
    try:
        socket.socket(40, socket.SOCK_STREAM).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _vsock_on_the_host(), reason="no AF_VSOCK on this host: nothing to confine")
def test_a_vsock_listener_beside_the_network_namespace(world, capfd):
    """Got through before the fix: ``AF_VSOCK`` is not confined by a network namespace. On this host
    (a virtual machine) a sandbox bound a listening vsock port, which the hypervisor reaches, and
    could connect to it (CID 2) or to other guests: a network beside the loopback-only one. Now the
    filter refuses every socket family but Unix, IPv4, IPv6 and netlink (``EAFNOSUPPORT``)."""
    results = attempt(world, ["vsock_listen", "vsock_datagram"], capfd)
    assert results == {"vsock_listen": EAFNOSUPPORT, "vsock_datagram": EAFNOSUPPORT}, results


def test_a_refused_family_with_high_bits_in_the_argument(world, capfd):
    """The kernel reads a socket's family as 32 bits, the filter sees 64: ``0x1_0000_0028`` is
    ``AF_VSOCK`` to the kernel. Refused (any value above the highest allowed family is)."""
    assert attempt(world, ["family_with_high_bits"], capfd)["family_with_high_bits"] == EAFNOSUPPORT


def test_the_families_a_workspace_needs_still_open(world, capfd):
    """Control of the two above: Unix sockets (the hub, the gate), IPv4 and IPv6 (kernels, Dask on
    the loopback) and netlink (the C library's address lookup) still open."""
    assert attempt(world, ["allowed_families"], capfd)["allowed_families"] == "ok AF_UNIX,AF_INET,AF_INET6,AF_NETLINK"


@pytest.mark.parametrize("name", ["kcmp_sibling", "process_madvise_sibling", "memfd_secret", "tioclinux",
                                  "fsmount", "move_mount", "fspick", "mount_setattr"])
def test_kernel_interfaces_the_filter_left_open(world, capfd, name):
    """``kcmp`` compares the kernel objects of two processes (which files they share, ordered by
    kernel address), ``process_madvise`` pages out another process's memory, ``memfd_secret`` takes
    memory out of the kernel's own map (``kcmp`` and ``memfd_secret`` succeeded before the fix, on
    the sandbox's own processes only; ``process_madvise`` was refused by the kernel): now all
    three are denied by the filter. ``TIOCLINUX`` on a terminal and the rest of the new mount API
    (``fsmount``, ``move_mount``, ``fspick``, ``mount_setattr``; round 2 tried ``fsopen`` and
    ``open_tree``) were denied already."""
    assert attempt(world, [name], capfd)[name] == EPERM


@pytest.mark.parametrize("name", ["immutable", "file_capabilities"])
def test_marks_the_host_would_honour_on_a_home_file(world, capfd, name):
    """An immutable or append-only file in the home (the purge, run as root, would fail on it), file
    capabilities (``cap_setuid``) on a script, attributes of the ``trusted.`` and ``security.``
    name spaces: each needs a capability of the host's user namespace. Refused."""
    result = attempt(world, [name], capfd)[name]
    assert not result.startswith("ok"), result


@pytest.mark.parametrize("name", ["oom_exempt", "realtime"])
def test_taking_priority_over_other_workspaces(world, capfd, name):
    """A process exempt from the OOM killer (``oom_score_adj`` -1000: the host's kernel would kill
    another researcher's kernel or the hub instead), real-time scheduling (a spinning process then
    starves every other one of its CPU), a negative niceness, the real-time I/O class. Refused."""
    result = attempt(world, [name], capfd)[name]
    assert not result.startswith("ok"), result


def test_a_cgroup_file_system_for_its_release_agent(world, capfd):
    """The classic container escape: mount a cgroup v1 hierarchy and set its ``release_agent``, a
    program the host's kernel runs as root. ``/sys`` is not in the sandbox and ``mount`` is denied."""
    assert attempt(world, ["cgroup_mount"], capfd)["cgroup_mount"] == EPERM


def test_an_extract_file_hard_linked_into_the_home(world, capfd):
    """A hard link of an extract file in the home would hand the extract's own inode to whatever
    reads or removes the home (the quota, the purge, the gate's model inputs). The extract is a
    mount of its own, read-only: ``link`` across mounts is refused (``EXDEV``)."""
    assert attempt(world, ["extract_linked_into_home"], capfd)["extract_linked_into_home"] == "errno 18"


@pytest.mark.skipif(cgroup.detect() is None, reason="no control group here: memory held outside any address "
                    "space is bounded by nothing (docs/isolation.md, residual risks)")
def test_system_v_shared_memory_past_the_memory_limit(world, capfd):
    """System V segments of the sandbox's IPC namespace, each touched and detached at once (no
    process's address space holds them, so ``RLIMIT_AS`` never sees them): 768 MiB tried under a
    256 MiB limit. The pages are charged to the sandbox's control group: it stops at the limit."""
    set_memory_limit(world, 256)
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", ATTEMPTS, "shm_past_the_limit"],
                   actor="red-team", timeout=120)
    out = capfd.readouterr().out
    held = [int(line.split()[1]) for line in out.splitlines() if line.startswith("SHM ")]
    assert held, out[-500:]  # the attempt ran
    assert "ok 768" not in out and max(held) <= 256, out[-500:]


def test_a_write_lease_held_against_the_gates_reader(world):
    """alice holds a write lease on a file of her home (her own file: allowed) while the gate reads
    it as a model's declared input (``modelcheck.inputs.open_beneath``, the gate's own reader): a
    blocking ``open`` waits up to the kernel's lease-break time (45 s) for her to let go, once per
    file and submission. The gate's non-blocking open is refused at once instead."""
    home = world.runtime.settings.paths.homes / "proj-a" / "alice"
    prepared = prepare_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", LEASE_HOLDER], actor="red-team")
    holder = subprocess.Popen(prepared.argv, env=prepared.env, cwd="/", stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "leased", "the lease was not taken"
        started = time.monotonic()
        with pytest.raises(InvalidInput, match="temporarily unavailable"):  # the lease, not a missing file
            os.close(open_beneath(home, "results/leased.csv"))
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait(30)
        finish_sandbox(prepared)


def test_the_local_dask_workers_run_in_the_same_sandbox(world, capfd):
    """The local Dask cluster of a workspace (``dask_client``, a ``LocalCluster`` started by the
    kernel) is made of the kernel's own children: a task on its worker runs under the same filter,
    with no privilege, no vsock and no view of another project's extract."""
    other = str(world.secret_files["other project's extract"])
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", DASK_WORKER, other], actor="red-team",
                   timeout=120)
    out = capfd.readouterr().out
    line = next((x for x in out.splitlines() if x.startswith("WORKER ")), None)
    assert line is not None, out[-2000:]
    found = json.loads(line.removeprefix("WORKER "))
    assert found["status"] == {"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0000000000000000"}, found
    assert found["vsock"] == EAFNOSUPPORT and found["other extract"] is False, found


def test_widening_the_cpus_of_a_sandbox_without_control_groups(world, monkeypatch, capfd):
    """Got through before the fix. Without control groups (the fallback) a sandbox's CPU limit is the
    set of CPUs it is pinned to (``taskset`` inside the sandbox): a process widened its own
    affinity from CPU 0 to every CPU of the host (``sched_setaffinity``), taking them from the hub
    and other workspaces. Now the launcher pins the sandbox before bubblewrap starts and the
    filter denies ``sched_setaffinity`` inside."""
    from pds_kernel.sandbox import bwrap

    monkeypatch.setattr(bwrap.cgroup, "detect", lambda: None)  # the fallback: no control group
    result = attempt(world, ["widen_affinity"], capfd)["widen_affinity"]
    assert result == "errno 1, pinned to 1 CPU", result  # the project's 1.0 CPU, and no more


def test_raising_the_hard_limits_set_for_the_sandbox(world, capfd):
    """``setrlimit`` past a hard limit (processes, file size, descriptors, niceness, real-time
    priority, locked memory) needs ``CAP_SYS_RESOURCE`` of the host's user namespace. Refused."""
    assert attempt(world, ["raise_limits"], capfd)["raise_limits"] == EPERM


def test_bubblewrap_again_inside_the_sandbox(world, capfd):
    """``/usr/bin/bwrap`` is visible inside (``/usr`` is): run as a nested sandbox mapping uid 0, it
    needs a new user namespace, which the sandbox cannot create. Refused."""
    result = attempt(world, ["bwrap_inside"], capfd)["bwrap_inside"]
    assert not result.startswith("ok"), result


def test_descriptors_a_sandbox_process_starts_with(world, capfd):
    """A descriptor of a host directory inherited by the sandbox would lead out of it (``openat(fd,
    "..")``), one of a host file would let it be rewritten. A command run in the sandbox holds none
    (the hub's kernels: see the log test below)."""
    assert attempt(world, ["descriptors"], capfd)["descriptors"] == "none"


def test_a_dask_scheduler_and_an_abstract_socket_of_another_project(world, capfd):
    """alice's workspace of proj-a runs a real Dask scheduler on 127.0.0.1:8786 (where a local cluster
    listens) and an abstract Unix socket; bob's workspace of proj-b, at the same time, tries both
    as bare sockets and as a Dask client. Abstract sockets and the loopback belong to a network
    namespace, and each sandbox has its own: nothing reached."""
    with listening_workspace(world, "alice", "proj-a"):
        run_in_sandbox(world.runtime, "bob", "proj-b", ["python", "-c", REACHER], actor="red-team", timeout=60)
    out = capfd.readouterr().out
    results = attempt_results(out)
    assert set(results) == {"tcp", "abstract", "dask"}, out
    assert not any(r.startswith("ok") for r in results.values()), results


@pytest.fixture(scope="module")
def hub_world():
    """A real hub (project_end_support's world: an 8 MB home quota, the watcher every second)."""
    with started_world(make_quota_world) as started:
        yield started


@pytest.fixture(scope="module")
def kernel(hub_world):
    """alice's workspace, started by the hub: (hub, her client, the server's URL)."""
    hub, secret = hub_world
    alice, url = start_workspace(hub, secret)
    return hub, alice, url


def test_the_hubs_secrets_in_what_a_kernel_sees_of_other_processes(kernel):
    """A kernel reads the environment and command line of every process it sees (the notebook
    server's, bubblewrap's as PID 1): the hub's cookie secret and tokens, the key store, the
    database's URL appear in none."""
    hub, alice, url = kernel
    result = execute(url, alice.token, DUMP_PROCESSES, timeout=60)
    line = next(x for x in result["stdout"].splitlines() if x.startswith("SEEN "))
    seen = json.loads(line.removeprefix("SEEN "))
    assert any(key.endswith("/environ") for key in seen), seen
    secrets = hub_secrets(hub)
    assert "database url" in secrets and len(secrets) > 1, secrets  # there was something to find
    leaked = sorted(label for label, value in secrets.items() if any(value in text for text in seen.values()))
    assert not leaked, leaked


def test_a_kernel_rewrites_the_notebook_servers_log(kernel):
    """Got through before the fix. A kernel inherited the notebook server's output, the log on the
    hub's disk (``paths.state/logs``), opened for appending (ipykernel keeps it on a descriptor of
    its own): it cleared ``O_APPEND``, wrote at the start of the file and truncated it, erasing or
    forging what the server logged there (its lockdown's refusals among them). Now the sandbox's
    output is a pipe that a process outside the sandbox appends to the log."""
    hub, alice, url = kernel
    log = log_path(hub, PROJECT)
    before = log.read_bytes()
    assert before, "the server logged nothing to tamper with"
    result = execute(url, alice.token, LOG_TAMPER, timeout=60)
    assert "TAMPER" in result["stdout"], result
    after = log.read_bytes()
    assert after.startswith(before), f"the log was rewritten from a kernel: {result['stdout']}"


def test_the_log_held_by_a_process_whose_memory_a_kernel_writes(kernel):
    """Got through before the fix (and through its first version, which kept the file in the
    non-dumpable notebook server and gave its kernels a pipe): bubblewrap, PID 1 of the sandbox,
    and the ``inside`` launcher hold the sandbox's output too, and a kernel may open their
    ``/proc/<pid>/mem`` for writing (same user, dumpable; ``ptrace`` is denied, this is not): code
    written there runs with their descriptors, the log's among them. Now none of them holds it."""
    hub, alice, url = kernel
    result = execute(url, alice.token, LOG_HOLDERS, timeout=60)
    line = next(x for x in result["stdout"].splitlines() if x.startswith("HOLDERS "))
    holders = json.loads(line.removeprefix("HOLDERS "))
    assert "1" in holders, holders  # the attempt reached bubblewrap's memory
    assert not any(holders.values()), holders
