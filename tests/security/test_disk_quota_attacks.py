"""Attacks on the disks the platform shares: a file that takes over the gate's rebuild child (or a
researcher in her workspace) writes without bound, to fill the disk that holds every project's
staging area, the outbox, the lake and the audit trail. Each runs through the real sandbox
(bubblewrap, the sandbox account, the launcher) and asserts the bound held. Each docstring says
whether the attack got through before the fix (pds_kernel/sandbox/scratch.py, the sandbox's memory
file systems and file-size limit in pds_kernel/sandbox/bwrap.py)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace

import pytest
from disk_quota_support import (
    FILL,
    PROJECT,
    SCRATCH_FILES,
    SCRATCH_MB,
    child_said,
    disk_bytes,
    hostile_rebuild,
    mounts_under,
    run_in_workspace,
    table_bytes,
)
from rebuild_job_support import CFG, bwrap_available, run_in_pod
from sandbox_support import sandbox_world

from pds_kernel.airlock.rebuild_job import IN_DIR, ITEMS
from pds_kernel.sandbox.identity import runs_as_root

MIB = 1 << 20

needs_root = pytest.mark.skipif(not runs_as_root(), reason="the gate bounds its children's folders as root "
                                                           "(make run); as a user only the size of a file is")


def _nothing_left(tmp_path) -> None:
    work = tmp_path / "state" / "rebuilds"
    assert not mounts_under(tmp_path), "a bounded folder is still mounted"
    assert not [p for p in work.iterdir()], "the rebuild's work folder is still there"


# ---- the rebuild's child (airlock.rebuild_runner: sandbox) ----------------------------------------
@needs_root
def test_one_huge_file_in_out_fills_only_the_bounded_home(tmp_path, monkeypatch):
    """The child writes 256 MiB into one file of out/. Before: it landed on the gate's disk
    (state/rebuilds/.../home/out), as much as the disk held (got through). Now: out/ is a memory
    file system of airlock.rebuild_scratch_mb; the write stops there, the gate refuses the file
    saying why, and leaves nothing behind."""
    reasons, _ = hostile_rebuild(tmp_path, monkeypatch, "fill(os.path.join(out, 'big'), 256 << 20)\nreport('done')")
    assert f"more than the {SCRATCH_MB} MiB or {SCRATCH_FILES} files it may write" in reasons["t.parquet"]
    assert "airlock.rebuild_scratch_mb" in reasons["t.parquet"]
    _nothing_left(tmp_path)


@needs_root
def test_many_empty_files_exhaust_only_the_bounded_homes_inodes(tmp_path, monkeypatch):
    """The child creates 20,000 empty files in out/ (no byte: a size quota alone would not see
    them). Before: every one was an inode of the gate's disk (got through). Now: the home has
    airlock.rebuild_scratch_files inodes; the rest fail with ENOSPC and the gate refuses."""
    body = """
made = 0
try:
    for i in range(20000):
        open(os.path.join(out, f"f{i}"), "w").close()
        made += 1
except OSError as exc:
    pass
report({"made": made})
"""
    reasons, _ = hostile_rebuild(tmp_path, monkeypatch, body)
    assert child_said(reasons) is None, reasons  # the gate's own reason, not the child's
    assert f"{SCRATCH_FILES} files it may write" in reasons["t.parquet"]
    _nothing_left(tmp_path)


def test_a_sparse_file_cannot_have_a_huge_apparent_size(tmp_path, monkeypatch):
    """The child makes a sparse file of 1 TiB apparent size in out/ (a hole, no block written),
    then writes its last byte. Before: both succeeded on the gate's disk (got through: a 1 TiB
    file that a size-based quota, a backup or a copy reads as 1 TiB). Now: no file of the sandbox
    may be larger than the copies the gate takes back (RLIMIT_FSIZE): EFBIG."""
    body = """
path = os.path.join(out, "sparse")
said = {}
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
try:
    os.ftruncate(fd, 1 << 40)
    said["truncate"] = "ok"
except OSError as exc:
    said["truncate"] = errno.errorcode[exc.errno]
try:
    os.pwrite(fd, b"x", (1 << 40) - 1)
    said["last byte"] = "ok"
except OSError as exc:
    said["last byte"] = errno.errorcode[exc.errno]
said["apparent"] = os.fstat(fd).st_size
report(said)
"""
    said = child_said(hostile_rebuild(tmp_path, monkeypatch, body)[0])
    assert said == {"truncate": "EFBIG", "last byte": "EFBIG", "apparent": 0}


@needs_root
@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/dev", "/run", "/run/pds"])
def test_writing_elsewhere_than_out_is_bounded_too(tmp_path, monkeypatch, where):
    """The child writes 256 MiB to another writable place of its sandbox. Before: /tmp, /dev/shm,
    /dev and /run were memory file systems without a size (half the host's memory; /tmp within
    the child's 3 GiB only where control groups exist) and /run/pds a folder of the gate's disk
    (got through, each). Now: /tmp and /dev/shm are memory file systems of
    airlock.rebuild_scratch_mb, /dev and /run are read-only, /run/pds is a folder of the bounded
    home."""
    body = f"report(fill(os.path.join({where!r}, 'big'), 256 << 20))"
    reasons, _ = hostile_rebuild(tmp_path, monkeypatch, body)
    said = child_said(reasons)
    if said is None:  # the child filled its bounded home (/run/pds is in it): the gate said so
        assert where == "/run/pds" and f"more than the {SCRATCH_MB} MiB" in reasons["t.parquet"]
    else:
        written, error = said
        assert written <= SCRATCH_MB * MIB and error in {"ENOSPC", "EFBIG", "EROFS"}, said
        assert where not in {"/dev", "/run"} or (written, error) == (0, "EROFS")
    _nothing_left(tmp_path)


@needs_root
def test_hard_links_do_not_multiply_what_the_child_may_write(tmp_path, monkeypatch):
    """The child links one file of out/ 20,000 times (a link takes no byte). Before: each was a
    directory entry of the gate's disk, without bound, and a link to a file of its input would
    have been taken back by a gate following names (got through: the entries). Now: each link
    takes an inode of the bounded home (the memory file system counts them), and its input is on
    another file system (EXDEV)."""
    body = """
first = os.path.join(out, "a")
open(first, "wb").write(b"x")
made, error = 0, None
try:
    for i in range(20000):
        os.link(first, os.path.join(out, f"l{i}"))
        made += 1
except OSError as exc:
    error = errno.errorcode[exc.errno]
try:
    os.link(items[0][0], os.path.join(out, "input"))
    linked_input = "ok"
except OSError as exc:
    linked_input = errno.errorcode[exc.errno]
report({"made": made, "error": error, "input": linked_input})
"""
    reasons, _ = hostile_rebuild(tmp_path, monkeypatch, body)
    assert child_said(reasons) is None and f"{SCRATCH_FILES} files it may write" in reasons["t.parquet"]
    _nothing_left(tmp_path)


@needs_root
def test_fallocate_cannot_reserve_more_than_the_bound(tmp_path, monkeypatch):
    """The child reserves 4 GiB with fallocate (blocks taken without a write). Before: the gate's
    disk gave them (got through). Now: the file may not exceed the file-size limit (EFBIG) and the
    home its size (ENOSPC): nothing beyond the bound is reserved."""
    body = """
said = {}
fd = os.open(os.path.join(out, "reserved"), os.O_CREAT | os.O_WRONLY, 0o600)
for size in (4 << 30, 64 << 20):
    try:
        os.posix_fallocate(fd, 0, size)
        said[str(size)] = "ok"
    except OSError as exc:
        said[str(size)] = errno.errorcode[exc.errno]
said["blocks"] = os.fstat(fd).st_blocks * 512
report(said)
"""
    reasons, _ = hostile_rebuild(tmp_path, monkeypatch, body)
    said = child_said(reasons)
    if said is not None:
        assert said[str(4 << 30)] in {"EFBIG", "ENOSPC"} and said[str(64 << 20)] in {"EFBIG", "ENOSPC"}
        assert said["blocks"] <= SCRATCH_MB * MIB
    _nothing_left(tmp_path)


@needs_root
def test_a_copy_growing_after_the_gates_check_is_bounded(tmp_path, monkeypatch):
    """The child writes a copy, claims it rebuilt, and leaves a process behind that keeps appending
    to it while the gate checks and reads it back. Before: the grower was killed with the sandbox
    (its PID namespace) but wrote on the gate's disk until then. Now: it dies with the sandbox
    before the gate reads anything; what it wrote stayed in the bounded home, and the gate's
    read-back is bounded. No copy is taken that the child could still change, nothing remains."""
    body = """
copy = items[0][1]
open(copy, "wb").write(b"PAR1" + b"x" * 1024)
if os.fork() == 0:
    os.setsid()
    with open(copy, "ab") as fh:
        while True:
            try:
                fh.write(b"y" * 65536)
                fh.flush()
            except OSError:
                time.sleep(0.01)
sys.stdout.write(json.dumps({name: None for _, _, name in items}))
sys.stdout.flush()
time.sleep(0.5)
os._exit(0)
"""
    started = time.monotonic()
    reasons, staging = hostile_rebuild(tmp_path, monkeypatch, body)
    assert time.monotonic() - started < 60
    assert reasons["t.parquet"]  # refused: the bound was hit, or the copy is no table
    before = disk_bytes(tmp_path)
    time.sleep(1)
    assert disk_bytes(tmp_path) == before, "something still writes on the gate's disk"
    _nothing_left(tmp_path)


# ---- a researcher's workspace -----------------------------------------------------------------------
world = sandbox_world.world
TMP_MB, HOME_MB = 16, 24


@pytest.fixture
def settings(tmp_path):
    from tests.conftest import make_settings

    base = make_settings(tmp_path / "pds")
    return replace(base, project_end=replace(base.project_end, tmp_quota_mb=TMP_MB, home_quota_mb=HOME_MB))


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm"])
def test_a_researcher_filling_tmp_stops_at_its_size(world, where):
    """A researcher writes 512 MiB into /tmp or /dev/shm. Before: memory file systems without a
    size, up to half the host's memory, shared by every workspace (got through, up to the
    project's memory limit where control groups exist). Now: project_end.tmp_quota_mb each."""
    written, error = run_in_workspace(world, FILL + f"print(json.dumps(fill({where + '/big'!r}, 512 << 20)))")
    assert written <= TMP_MB * MIB and error in {"ENOSPC", "EFBIG"}, (written, error)


def test_one_file_larger_than_the_home_quota_stops_at_it(world):
    """A researcher writes one 256 MiB file into her home. Before: the home is a folder of the
    host's disk, checked by the hub's watcher every hub.membership_check_seconds: in between, one
    file could grow as fast as the disk writes (got through). Now: no file of the workspace may be
    larger than project_end.home_quota_mb (RLIMIT_FSIZE): EFBIG at once; the watcher still stops a
    workspace whose home holds more in many files."""
    said = run_in_workspace(world, FILL + "print(json.dumps(fill('/home/jovyan/big', 256 << 20)))")
    written, error = said
    assert written == HOME_MB * MIB and error == "EFBIG", said
    assert disk_bytes(world.runtime.settings.paths.homes) <= (HOME_MB + 1) * MIB


@needs_root
def test_a_researcher_cannot_fill_the_hosts_disk_through_her_runtime_folder(world):
    """A researcher writes 256 MiB into /run/pds (the folder her server's socket is in). Before: a
    folder of the host's disk (state/run/...), seen by no quota (got through). Now: a memory file
    system of 16 MiB and 1024 inodes."""
    said = run_in_workspace(world, FILL + "print(json.dumps(fill('/run/pds/big', 256 << 20)))")
    written, error = said
    assert written <= 16 * MIB and error == "ENOSPC", said
    state = world.runtime.settings.paths.state
    assert disk_bytes(state / "run") < MIB
    assert not mounts_under(state / "run")  # unmounted after the run


# ---- the rebuild's child as a Kubernetes Job (airlock.rebuild_runner: job) --------------------------
_JOB_CHILDREN = {
    "one huge copy": "fill(items[0][1], 64 << 20)",
    "20,000 files beside the copy": ("open(items[0][1], 'wb').write(b'PAR1' * 1024)\n"
                                     "for i in range(20000):\n    open(os.path.join(out, f'f{i}'), 'w').close()"),
    "a copy growing past the bound with a sparse tail": ("fd = os.open(items[0][1], os.O_CREAT | os.O_WRONLY)\n"
                                                         "os.pwrite(fd, b'x', (1 << 30) - 1)"),
}


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (user namespaces) emulates the pod")
@pytest.mark.parametrize("attack", sorted(_JOB_CHILDREN))
def test_a_rebuild_jobs_child_writes_nothing_on_the_staging_claim(tmp_path, attack):
    """The Job's child (a crafted file took it over) writes into its out/. Before: out/ was a
    sub-path of the staging claim, the volume of every project's staging area: the child wrote
    there without bound (got through, each). Now: out/ is a pod-local emptyDir (its size and the
    pod's ephemeral-storage bound it on the node); the gate's own second container takes to the
    claim only the copies asked for, regular files, each and all within out/'s size."""
    from pds_kernel.airlock.rebuild_job import RebuildJob

    staging = tmp_path / "claims" / "pds-staging"
    source = staging / PROJECT / "r1" / "0-r1-t.parquet"
    source.parent.mkdir(parents=True)
    source.write_bytes(table_bytes())
    items = [(source, source.parent / ".rebuilt-0-r1-t.parquet", "t.parquet")]
    runner = RebuildJob(PROJECT, staging, CFG, out_mb=SCRATCH_MB)
    prepared = runner.prepare(items, 1 << 30, 120)
    child = ("import errno, json, os, sys\n" + FILL.split("\n", 2)[2] +
             f"items = json.load(open({str(IN_DIR / ITEMS)!r}))\nout = os.path.dirname(items[0][1])\n" +
             _JOB_CHILDREN[attack] + "\nprint('PDS-REBUILD-RESULT ' + json.dumps({items[0][2]: None}))\n")
    try:
        done = run_in_pod(staging, prepared.manifest, tmp_path / "pod", ["-c", child])
        assert done.returncode == 0, done.stderr[-2000:]
        taken = {p.name: p.stat().st_size for p in (prepared.work / "out").iterdir()}
        assert sum(taken.values()) <= SCRATCH_MB * MIB and set(taken) <= set(prepared.copies), taken
        assert disk_bytes(staging) <= disk_bytes(staging / PROJECT) + 2 * len(items) * MIB + SCRATCH_MB * MIB
    finally:
        runner.finish(prepared)
    assert not list((staging / ".rebuilds").iterdir())


# ---- the model check's sandbox (model_check.runner: sandbox) ----------------------------------------
@needs_root
@pytest.mark.parametrize("where", ["/home/jovyan/out/roc.png", "/run/pds/big", "/tmp/big"])
def test_a_subverted_model_check_writes_within_its_bounds(tmp_path, where):
    """The check's process, taken over by a crafted model (a loader's flaw), writes 256 MiB into its
    home, its runtime folder or its /tmp. Before: the home and /run/pds were folders of the gate's
    disk, /tmp a memory file system without a size (got through, each). Now: model_check.scratch_mb
    for all of them (its home and /run/pds one bounded file system, mounted by the gate); the gate
    sees the home filled and sends the model to review."""
    from types import SimpleNamespace

    from published import publish_by_hand

    from pds_kernel.extract.mount_check import check_for_workspace
    from pds_kernel.modelcheck.sandbox import SCRATCH, build_check_command, check_python, finish_check
    from pds_kernel.runtime import Runtime
    from pds_kernel.sandbox.cgroup import group_name, release
    from pds_kernel.sandbox.scratch import is_full
    from tests.conftest import make_settings

    base = make_settings(tmp_path / "pds")
    settings = replace(base, model_check=replace(base.model_check, scratch_mb=SCRATCH_MB))
    if not check_python(settings).exists():
        pytest.skip("the check environment is not installed (make venv-modelcheck)")
    (settings.paths.projects / PROJECT / "extract").mkdir(parents=True)
    runtime = Runtime(settings)
    publish_by_hand(runtime, PROJECT)
    extract = check_for_workspace(settings, runtime.audit, PROJECT)
    check_dir = tmp_path / "check"
    check_dir.mkdir(mode=0o755)
    info = SimpleNamespace(id=PROJECT, cpu_limit=1.0, mem_limit_mb=2048)
    script = (FILL + "os.makedirs('/home/jovyan/out', exist_ok=True)\n"
              f"print(json.dumps(fill({where!r}, 256 << 20)))")
    work = tmp_path / "work"
    argv, env = build_check_command(settings, info, check_dir, work, [str(check_python(settings)), "-I", "-c", script],
                                    extract=extract)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd="/")
        full = is_full(work / SCRATCH)
    finally:
        release(group_name(PROJECT, "0model-check"))
        finish_check(work)
    assert done.returncode == 0, done.stderr[-2000:]
    written, error = json.loads(done.stdout.strip().splitlines()[-1])
    assert written <= SCRATCH_MB * MIB and error in {"ENOSPC", "EFBIG"}, (written, error)
    assert full or where == "/tmp/big"
    assert not mounts_under(tmp_path) and disk_bytes(work) < MIB
