"""Red team of the workspace sandbox, second round: each test is one real attack from inside a
real bubblewrap sandbox (alice in proj-a), asserted to fail.

They go past ``test_sandbox_escape.py`` (the probes, host secrets, issue #11): what the host shares
with a sandbox without meaning to (RAM through the sandbox's own file systems in memory, the disk
through the home, host services that read the home) and kernel interfaces the probes do not call.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sandbox_support
from hub_identity_support import started_world
from hub_kernel import delete_kernel
from project_end_support import PROJECT, QUOTA_MB, execute, make_quota_world, running, start_workspace
from sandbox_redteam_support import (
    CONNECTION_FLOOD,
    DEEP_HOME,
    DESCRIPTOR_PILE,
    GATE_ANSWER_SECONDS,
    LOG_FILL,
    MEMFD,
    ROGUE_MARK,
    ROGUE_SERVER,
    SYSCALL_ATTEMPTS,
    UNLINKED_FILL,
    disk_use,
    fill,
    model_submission_over_a_fifo,
    models,
    nested_home,
    open_descriptors,
    purge_now,
    quota_refusal,
    quota_settings,
    release_fifo_reader,
    set_memory_limit,
    submit_in_a_thread,
    syscall_attempt,
)
from websocket import WebSocketConnectionClosedException

from pds_kernel import trees
from pds_kernel.sandbox import cgroup
from pds_kernel.sandbox.exec import run_in_sandbox, workspace_runtime_dir

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

#: the sandbox tests' registry, extracts and secrets (fixture)
world = sandbox_support.world

#: the project's memory limit in these attacks (MB), and what they try to hold in RAM beyond it
LIMIT_MB, ATTEMPT_MB = 256, 512


@pytest.mark.parametrize("directory", ["/tmp", "/dev/shm", "/dev", "/run"])
def test_filling_a_file_system_in_memory_past_the_memory_limit(world, monkeypatch, capfd, directory):
    """Got through before the fix (all four): every file system in RAM of the sandbox (``/tmp``, and
    ``/dev``, its ``shm`` and ``/run``, which bubblewrap creates) was a tmpfs of half the host's RAM,
    writable. On a host without control groups (the fallback: ``RLIMIT_AS`` bounds a process's
    address space, not the page cache of a tmpfs), one process held 512 MB there under a 256 MB
    limit, and four such file systems could hold twice the host's RAM: the host's OOM killer then
    ends the hub, the database or other researchers' kernels, and killing the sandbox's processes
    frees nothing while it runs. Now ``/tmp`` and ``/dev/shm`` are tmpfs of the memory limit,
    ``/dev`` and ``/run`` (except ``/run/pds``) read-only."""
    from pds_kernel.sandbox import bwrap

    monkeypatch.setattr(bwrap.cgroup, "detect", lambda: None)  # the fallback: no control group
    set_memory_limit(world, LIMIT_MB)
    written, reason = fill(world, directory, ATTEMPT_MB, capfd)
    assert written <= LIMIT_MB, f"{written} MB held in {directory} under a {LIMIT_MB} MB limit ({reason})"


@pytest.mark.skipif(cgroup.detect() is None, reason="no control group here: a memfd is bounded by nothing "
                    "(docs/isolation.md, residual risks)")
def test_holding_memory_in_a_memfd_past_the_memory_limit(world, capfd):
    """A memfd written without being mapped is memory no ``RLIMIT_AS`` sees (the fallback's limit,
    a residual risk). Where the sandbox has its control group (cgroup v1 here), its pages are
    charged to the group: the writer is killed at the limit (it held 256 MB at most of the 768 MB
    it tried; it did not get through)."""
    set_memory_limit(world, LIMIT_MB)
    code = run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", MEMFD, str(3 * LIMIT_MB)],
                          actor="red-team", timeout=180)
    held = [int(line.split()[1]) for line in capfd.readouterr().out.splitlines() if line.startswith("MEMFD ")]
    assert code != 0 and held and max(held) <= LIMIT_MB, (code, held)


def test_home_quota_dodged_with_long_symbolic_links(world, capfd):
    """Got through before the fix: the home quota counted the sizes of regular files only, so the
    disk blocks of symbolic links (a target over 60 bytes takes a block of its own), directories
    and empty files were free: 1,000 links of 4,000-byte targets took 4 MB of the shared disk under
    a 1 MB quota, and the hub's check saw 0 bytes (nothing bounded the disk a home could fill)."""
    script = ("import os\nos.mkdir('/home/jovyan/links')\n"
              "for i in range(1000):\n    os.symlink('x' * 4000, f'/home/jovyan/links/{i}')\n")
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", script], actor="red-team", timeout=60)
    home = world.runtime.settings.paths.homes / "proj-a" / "alice"
    assert disk_use(home) > 3 * 1024 * 1024  # the attempt really used the disk
    assert quota_refusal(world, home, 1) is not None, "a home over its quota passes the check"


def test_home_quota_dodged_with_empty_files(world):
    """Got through before the fix: empty files counted 0 bytes, so a home under any quota could take
    every inode of the shared file system (15 million free here: a database, the audit trail and
    every other home then cannot create a file). 5,000 empty files under a 1 MB quota passed the
    check; now every entry of a home counts at least one 4 KiB block."""
    script = ("import os\nos.mkdir('/home/jovyan/many')\n"
              "for i in range(5000):\n    open(f'/home/jovyan/many/{i}', 'w').close()\n")
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", script], actor="red-team", timeout=60)
    home = world.runtime.settings.paths.homes / "proj-a" / "alice"
    assert len(os.listdir(home / "many")) == 5000
    assert quota_refusal(world, home, 1) is not None, "5,000 empty files pass a 1 MB quota"


def test_a_fifo_declared_as_a_models_data_holds_the_gate(runtime):
    """Got through before the fix. A host service that reads the home: the gate copies a model's declared files from its
    author's home before the check. alice replaces her declared data table by a FIFO from inside
    her sandbox and submits the model: the gate's ``open`` waited for a writer that only her
    sandbox controls (forever, or a trickle of bytes at her pace), holding a gate worker per
    submission (a few of them and the airlock stops for every project). Now the gate opens the
    declared file non-blocking and refuses it at once (not a regular file)."""
    service = models.make_service(runtime)
    fifo, declaration, model = model_submission_over_a_fifo(runtime)
    thread, outcome = submit_in_a_thread(service, "model.skops", model, declaration)
    thread.join(GATE_ANSWER_SECONDS)
    held = thread.is_alive()
    if held:
        release_fifo_reader(fifo)
        thread.join(120)
    assert not held, f"the gate still waited on the FIFO after {GATE_ANSWER_SECONDS} s"
    assert "not a regular file" in str(outcome.get("error")), outcome


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attempts use x86-64 system call numbers")
@pytest.mark.parametrize("name", SYSCALL_ATTEMPTS)
def test_kernel_interface_the_probes_do_not_call(world, capfd, name):
    """Kernel interfaces called directly (no library wrapper to fail first): the file-handle escape
    of containers (a forged handle of the disk's root directory), the new mount API, a private mount
    namespace, ``clone3`` into a new user namespace (its flags live in memory a filter cannot read),
    reading another process's memory, taking another process's file descriptor, and typing into a
    terminal. Each must be refused by the seccomp filter (``EPERM``; ``ENOSYS`` for ``clone3``).
    As root on the host, outside any sandbox, every one of them succeeds."""
    result = syscall_attempt(world, name, capfd)
    assert result in {"errno 1", "errno 38"}, f"{name}: {result}"


@pytest.fixture(scope="module")
def hub_world():
    """A real hub with an 8 MB home quota and its watcher every second (project_end_support)."""
    with started_world(make_quota_world) as started:
        yield started


def _stopped_within(hub, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(hub, "alice") and time.monotonic() < deadline:
        time.sleep(0.3)
    return not running(hub, "alice")


def _quota_stops(hub) -> list:
    return [e for e in hub.actions("workspace.stop") if e.details.get("cause") == "home over quota"]


def _fresh_workspace(hub, secret):
    """alice's workspace started anew (stopped first if an earlier attack left it running), her home
    without the files earlier attacks wrote: a watcher's stop in the middle of a cell leaves them
    (the unlinked files' attack, stopped before it unlinked them), and they put her home over the
    quota, which refused the next attack's start (a race of a loaded machine, 2026-12-06)."""
    if running(hub, "alice"):
        assert hub.admin_api("DELETE", f"/users/alice/servers/{PROJECT}").status_code in (202, 204)
        assert _stopped_within(hub, 60)
    for left in (hub.settings.paths.homes / PROJECT / "alice").glob("*.bin"):
        left.unlink()
    return start_workspace(hub, secret)


def test_filling_the_disk_through_the_notebook_servers_log(hub_world):
    """Got through before the fix. A kernel inherits the notebook server's output, a file on the
    host's disk (``paths.state/logs``), outside the home: 12 MB written there under an 8 MB quota
    went unseen by the quota (now 6 MB there and 3 MB in the home: no single file may pass the
    quota since the sandbox's per-file limit), and the file kept growing across starts (opened for appending), so
    a workspace could fill the disk of the hub's state. Now each start begins a new log (the
    previous one is kept, one only) and the watcher counts the log with the home. Since red team 20A
    the kernel writes into a pipe that the server copies into the log (it holds the file no more):
    the attempt goes on through it."""
    hub, secret = hub_world
    alice, url = _fresh_workspace(hub, secret)
    # 6 MB into the log (one file stays under the sandbox's per-file limit, the quota) and 3 MB in
    # the home: the home alone is under the quota, the two together are not
    result = execute(url, alice.token, LOG_FILL.format(mb=QUOTA_MB - 2, home_mb=3), timeout=120)
    assert "written to" in result["stdout"] and "written to 0 " not in result["stdout"], result
    log = hub.settings.paths.state / "logs" / f"alice.{PROJECT}.log"
    deadline = time.monotonic() + 10  # the server copies its kernels' output into the log (red team 20A)
    while log.stat().st_size <= (QUOTA_MB - 2) * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.stat().st_size > (QUOTA_MB - 2) * 1024 * 1024  # the attempt wrote on the hub's disk
    assert _stopped_within(hub, 30), "the workspace kept running with 12 MB written past an 8 MB quota"


def test_filling_the_disk_with_an_unlinked_file_held_open(hub_world):
    """Got through before the fix. A kernel writes 12 MB into two home files, unlinks them and keeps
    them open: the disk stays used while the workspace runs, and no walk of the home sees it (an 8 MB
    quota held nothing back; repeated, it fills the homes' file system). Now the watcher also
    counts the files the workspace's processes hold open (or mapped) on the home's file system
    and that no name reaches any more."""
    hub, secret = hub_world
    alice, url = _fresh_workspace(hub, secret)
    stops_before = len(_quota_stops(hub))
    try:
        result = execute(url, alice.token, UNLINKED_FILL.format(mb=QUOTA_MB // 2 + 2), timeout=120, keep=True)
        assert "written and unlinked" in result["stdout"], result
    except WebSocketConnectionClosedException:
        pass  # a pass of the watcher stopped it before the cell ended (a loaded machine): checked below
    assert _stopped_within(hub, 30), "the workspace kept running with 12 MB held past an 8 MB quota"
    assert len(_quota_stops(hub)) > stops_before, "stopped, but not for its home over the quota"


def test_a_deeply_nested_home_stops_the_quota_pass_of_every_workspace(world, capfd):
    """Got through before the fix. alice nests 1,200 directories in her home: the hub's quota pass
    (Python 3.11's recursive ``os.walk``) raised ``RecursionError`` on her home, so no running
    workspace's home was measured any more, bob's over its quota included. Now the walk keeps its
    own stack: her home is measured and bob's is found over the quota."""
    from pds_kernel.project_end import homes_over_quota

    bob = world.runtime.settings.paths.homes / "proj-b" / "bob"
    bob.mkdir(parents=True, exist_ok=True)
    (bob / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    with nested_home(world, capfd):
        over = homes_over_quota(quota_settings(world, 1), {"alice": ["proj-a"], "bob": ["proj-b"]})
    assert [(user, project) for user, project, _ in over] == [("alice", "proj-a"), ("bob", "proj-b")]


def test_a_deeply_nested_home_stops_the_projects_purge(world, capfd):
    """Got through before the fix. The same home made the purge of the closed project fail halfway
    (``RecursionError`` in the certificate's listing and in ``shutil.rmtree``): its extract was
    deleted, its homes and its key were kept, and no certificate was written; every retry failed
    the same way. Now the purge deletes the home and certifies it."""
    with nested_home(world, capfd) as home:
        done = purge_now(world, "proj-a")
    assert done.done and not home.exists()
    assert done.certificate["areas"]["homes"]["files"] >= 1  # the file at the bottom is listed


def test_a_deeply_nested_runtime_directory_blocks_the_next_start(world, capfd):
    """Got through before the fix. The sandbox writes its runtime directory (``/run/pds``), which
    the next start empties: 1,010 nested directories there raised ``RecursionError`` in that
    clean-up, so the workspace could not start again until an administrator removed them by hand.
    Now the clean-up keeps its own stack."""
    # 1,010 levels: the runtime directory holds 1,024 entries at most (sandbox/scratch.py), still
    # deeper than Python's recursion limit
    nest = DEEP_HOME.replace('"/home/jovyan"', '"/run/pds"').replace("range(1200)", "range(1010)")
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", nest], actor="red-team", timeout=120)
    assert "nested" in capfd.readouterr().out
    runtime_dir = workspace_runtime_dir(world.runtime.settings, "alice", "proj-a")
    try:
        code = run_in_sandbox(world.runtime, "alice", "proj-a", ["true"], actor="red-team", timeout=60)
        assert code == 0 and not (runtime_dir / "d").exists()
    finally:
        if (runtime_dir / "d").is_dir():
            trees.remove(runtime_dir / "d")


NOT_UTF8 = r"""
with open(b"/home/jovyan/\xff\xfe-rows.csv", "wb") as out:
    out.write(b"person,amount\n1,2\n")
print("named")
"""


def test_a_file_name_that_is_not_utf8_stops_the_projects_purge(world, capfd):
    """Got through before the fix. One file of the home named with bytes that are not UTF-8 (any
    program may, a shell's ``printf`` included) made the purge's certificate fail to encode its
    listing: the purge stopped halfway, as with the nested home above. Now the listing hashes
    the names' bytes and the certificate shows them escaped."""
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", NOT_UTF8], actor="red-team", timeout=60)
    assert "named" in capfd.readouterr().out
    done = purge_now(world, "proj-a")
    home = world.runtime.settings.paths.homes / "proj-a" / "alice"
    assert done.done and not home.exists()
    assert "alice/\\xff\\xfe-rows.csv" in done.certificate["areas"]["homes"]["sha256"]


def test_a_workspace_exhausts_the_hubs_file_descriptors(hub_world):
    """Got through before the fix. The hub serves each workspace's hub and package-index sockets
    itself, and kept every connection a sandbox opened (the hub socket: the accepted connection, its
    upstream connection to the hub API and that one's end in the hub, three descriptors each; no
    limit, idle for two minutes between requests). A kernel holding 2,000 connections per socket
    made the hub hold 8,000 more descriptors: a few more and the hub (every user's sign-in, proxy
    and API) cannot open anything. Now each socket serves at most 64 connections at once and
    closes the others at once."""
    hub, secret = hub_world
    alice, url = _fresh_workspace(hub, secret)
    before = open_descriptors(hub.proc.pid)
    result = execute(url, alice.token, CONNECTION_FLOOD.format(n=2000), timeout=120, keep=True)
    try:
        assert "holding" in result["stdout"], result
        time.sleep(2)
        grown = open_descriptors(hub.proc.pid) - before
    finally:
        delete_kernel(url, alice.token, result["kernel_id"])
    assert grown < 600, f"the hub holds {grown} more descriptors for one workspace ({result['stdout'].strip()})"


def test_a_kernel_replaces_the_notebook_servers_socket(hub_world):
    """Got through before the fix. The notebook server listens on ``/run/pds/server.sock``, in the
    runtime directory the sandbox writes, and the hub connected to that path anew for every browser
    connection. A kernel removed the socket and listened in its place: the browser's next requests
    reached the kernel's own HTTP server, which answered with the extract's bytes, past the lockdown
    and its budget. Now the hub records the socket's inode when the server opens it and refuses
    any other socket at that path (audited once as ``workspace.socket.replaced``)."""
    hub, secret = hub_world
    alice, url = _fresh_workspace(hub, secret)
    result = execute(url, alice.token, ROGUE_SERVER, timeout=60, keep=True)
    try:
        assert "listening in its place" in result["stdout"], result
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: alice.api("GET", f"{url}/api/status"), range(16)))
    finally:
        with contextlib.suppress(Exception):
            delete_kernel(url, alice.token, result["kernel_id"])
    reached = [a for a in answers if ROGUE_MARK in a.text]
    assert not reached, f"{len(reached)} of {len(answers)} browser requests reached the kernel's server"
    assert [e.outcome for e in hub.actions("workspace.socket.replaced")] == ["denied"]  # audited once


def test_a_pile_of_descriptors_to_slow_the_hubs_watcher(hub_world):
    """The watcher reads the descriptors of a sandbox's processes (held files above); ``dup`` makes
    them cheap, and millions would keep the watcher from its other checks (revocations included)
    for as long as the sandbox likes. A sandbox holding more than 65,536 is not read: it is stopped
    as one that cannot be measured (76,000 here)."""
    hub, secret = hub_world
    alice, url = _fresh_workspace(hub, secret)
    result = execute(url, alice.token, DESCRIPTOR_PILE, timeout=120, keep=True)
    assert "holding 76000" in result["stdout"], result
    assert _stopped_within(hub, 30), "a workspace holding 76,000 descriptors kept running, read at every pass"
    stops = [e for e in hub.actions("workspace.stop") if e.details.get("cause") == "home over quota"]
    assert "cannot be measured" in stops[-1].details["reason"]
