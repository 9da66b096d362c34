"""Red team 22: the watch over a running workspace's build when a newer publication supersedes it, and the
records that say what is published.

The attacker can write the project's directory on the host (root, or the account that owns the
builds) but cannot change the clock. For a few hours of session 22 the hub's watcher let a
superseded build lose entries and its folders change times (it took that for the publication's
removal of the build), to fix a false stop CI had caught. Three attempts below GOT THROUGH that
exception: a file of the superseded build replaced, read and removed between two passes; a file
the researcher holds open linked out of the build, unlinked from it, and written; a forged file
moved out of the walk's way by a process following the walk with inotify. Two more used the
audit trail's word that the build was superseded (a row planted without the audit key, a signed
record of a build that does not exist) to open that exception on the current build.
Following those records showed a worse gap: a workspace's start read the latest publication and
verification from the database as found, so a row planted without the audit key chose what was
mounted (two attempts below got through); both are now read authenticated
(:meth:`~pds_kernel.audit.AuditTrail.newest_entry`).

Now no partial tree is tolerated: a superseded build stops the workspaces that mount it at the
watcher's next pass (``cause: extract republished``; their next start mounts the new build), and
any change to a current build stops them as changed (:mod:`pds_kernel.extract.mount_watch`). Each
test runs the watcher's own pass (:func:`~pds_kernel.extract.mount_watch.changed_mounts`) for one
workspace, with what its start took (:func:`~pds_kernel.extract.mount_watch.open_watched`). The
other attempts (inode numbers reused, contents changed with the file's times put back, names
exchanged, entries of other kinds) failed against the fingerprint already and stay as regression
tests, on the current build.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import mmap
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from published import record_publication, write_manifest
from sqlalchemy import insert
from superseded_support import PROJECT, files, publish_newer, started, watcher_pass, writable

from pds_kernel.audit import AuditRow
from pds_kernel.extract.build import published_state, remove_superseded
from pds_kernel.extract.mount_check import ExtractRefused, check_for_workspace
from pds_kernel.extract.mount_watch import (
    CHANGED_CAUSE,
    REPUBLISHED_CAUSE,
    MountedExtract,
)

CHANGED = f"{CHANGED_CAUSE}: the extract it mounts"
REPUBLISHED = f"{REPUBLISHED_CAUSE}: a newer extract"
RENAME_EXCHANGE = 2
AT_FDCWD = -100


# ---- the world: a published build and what a workspace's start took of it ----------------------
@pytest.fixture(name="world")
def world_fixture(runtime):
    with started(runtime) as (build, mounted):
        yield runtime, build, mounted


def _verdict(runtime, mounted: MountedExtract) -> str | None:
    """``cause: reason`` of the watcher's pass for a workspace mounting ``mounted``, or ``None``
    (it runs on)."""
    found = watcher_pass(runtime, mounted)
    return None if found is None else f"{found[0]}: {found[1]}"


def _exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS):
            pytest.skip("renameat2(RENAME_EXCHANGE) not supported here")
        raise OSError(err, os.strerror(err))


def _reuse_inode(path: Path, inode: int, make, tries: int = 300) -> bool:
    """Create ``path`` with ``make`` until it gets inode ``inode`` (ext4 hands freed inodes out
    again); whether it did. ``path`` exists afterwards either way."""
    for _ in range(tries):
        make(path)
        if os.lstat(path).st_ino == inode:
            return True
        (os.rmdir if path.is_dir() else os.unlink)(path)
    make(path)
    return False


# ---- inode reuse -----------------------------------------------------------------------------
def test_a_removed_file_recreated_with_its_inode_size_and_mtime(world):
    """A file removed, then a forged one of the same size created under its name until
    the filesystem hands out the same inode number again, its mtime set back with os.utime.
    Fails: its ctime (set by the kernel at creation, later than the start's) differs."""
    runtime, build, mounted = world
    writable(build)
    target = files(build)[-1]
    before = os.lstat(target)
    data = target.read_bytes()
    target.unlink()
    assert CHANGED in _verdict(runtime, mounted)  # a file gone from a current build

    def make(path: Path) -> None:
        path.write_bytes(bytes(reversed(data)))

    reused = _reuse_inode(target, before.st_ino, make)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.chmod(target, 0o444)
    assert CHANGED in _verdict(runtime, mounted), f"inode reused: {reused}"


def test_a_folder_recreated_with_its_inode_holding_a_forged_file(world):
    """A partition folder emptied and removed, recreated until it gets its old inode
    number (folders are compared by inode only) with a forged file under an old name. Fails:
    the forged file is an entry with another ctime (and usually another inode) than at the start."""
    runtime, build, mounted = world
    writable(build)
    folder = next(p for p in build.iterdir() if p.is_dir())
    inode = os.lstat(folder).st_ino
    names = sorted(p.name for p in folder.iterdir())
    for name in names:
        (folder / name).unlink()
    folder.rmdir()
    assert CHANGED in _verdict(runtime, mounted)
    reused = _reuse_inode(folder, inode, lambda p: p.mkdir())
    (folder / names[0]).write_bytes(b"forged rows")
    assert CHANGED in _verdict(runtime, mounted), f"inode reused: {reused}"


def test_a_folder_emptied_and_another_renamed_into_its_place(world):
    """Folder A emptied and removed, folder B (with its files) renamed to A. Fails: A is another
    inode, and B's files have new ctimes (rename sets the moved inode's ctime) and other inodes."""
    runtime, build, mounted = world
    writable(build)
    first, second = sorted(p for p in build.iterdir() if p.is_dir())[:2]
    for path in first.iterdir():
        path.unlink()
    first.rmdir()
    os.rename(second, first)
    assert CHANGED in _verdict(runtime, mounted)


# ---- content changed with the file's state kept ------------------------------------------------
def test_a_file_truncated_rewritten_and_its_mtime_restored(world):
    """Truncated to zero, rewritten with other bytes of the same size, mtime put back with utime
    (same inode, size, mtime). Fails: the ctime moved."""
    runtime, build, mounted = world
    target = files(build)[-1]
    before = os.lstat(target)
    data = target.read_bytes()
    with open(target, "r+b") as out:  # root: no chmod needed (a chmod would move the ctime too)
        out.truncate(0)
        out.write(bytes(reversed(data)))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.lstat(target)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert CHANGED in _verdict(runtime, mounted)


def test_a_hole_punched_in_a_file(world):
    """fallocate(PUNCH_HOLE|KEEP_SIZE): bytes zeroed with no write(2), same size and inode.
    Fails: the filesystem sets mtime and ctime."""
    runtime, build, mounted = world
    target = files(build)[-1]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    fd = os.open(target, os.O_RDWR)
    try:
        if libc.fallocate(fd, 0x01 | 0x02, 0, 4096) != 0:  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
            pytest.skip(f"fallocate: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
    assert set(target.read_bytes()) == {0}
    assert CHANGED in _verdict(runtime, mounted)


# ---- names swapped, replaced, or made to look vanished -----------------------------------------
def test_two_files_of_the_same_size_exchanged_with_renameat2(world):
    """RENAME_EXCHANGE swaps two names atomically: neither ever vanishes from the walk, both keep
    their inodes but are at each other's names. Fails: the inodes are at the wrong names, and the
    exchange sets both files' ctimes."""
    runtime, build, mounted = world
    a, b = [p for p in files(build) if p.parent != build][:2]
    assert a.stat().st_size == b.stat().st_size
    _exchange(a, b)
    assert CHANGED in _verdict(runtime, mounted)


def test_a_file_exchanged_with_a_forged_folder(world):
    """A top-level file exchanged with a folder holding forged files: the name is still there (no
    vanish) but a folder now. Fails: the entry is a folder where a file was, of another inode."""
    runtime, build, mounted = world
    writable(build)
    cohort = build / "COHORT.parquet"
    forged = build / ".forged"
    forged.mkdir()
    (forged / "part-00000.parquet").write_bytes(b"forged")
    _exchange(cohort, forged)
    os.rename(forged, build.parent / ".kept")  # the old file taken out of the build
    assert _verdict(runtime, mounted) is not None


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_a_file_replaced_by_another_kind_of_entry(world, kind):
    """A file replaced (rename over it) by a symlink to forged data, a directory, or a FIFO.
    Fails: another inode at the name (and a FIFO is only stat'ed by the walk: no hang)."""
    runtime, build, mounted = world
    writable(build)
    target = files(build)[-1]
    outside = build.parent / ".forged.parquet"
    outside.write_bytes(b"forged rows")
    tmp = target.with_name(".tmp")
    if kind == "symlink":
        os.symlink(outside, tmp)
    elif kind == "directory":
        tmp.mkdir()
    else:
        os.mkfifo(tmp)
    if kind == "directory":
        target.unlink()
    os.rename(tmp, target)
    assert _verdict(runtime, mounted) is not None


@pytest.mark.parametrize("where", ["top", "folder"])
@pytest.mark.parametrize("kind", ["symlink", "fifo", "deep folder", "socket"])
def test_an_entry_of_another_kind_added(world, kind, where, monkeypatch):
    """A symlink, FIFO, socket or folder (with a folder inside: deeper than any walk goes)
    added to the build. Fails: an entry not there at the start."""
    runtime, build, mounted = world
    writable(build)
    parent = build if where == "top" else next(p for p in build.iterdir() if p.is_dir())
    new = parent / "zz-added"
    if kind == "symlink":
        os.symlink("/etc/passwd", new)
    elif kind == "fifo":
        os.mkfifo(new)
    elif kind == "socket":
        import socket
        monkeypatch.chdir(parent)  # a relative name: the full path is too long for sun_path
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(new.name)
        finally:
            sock.close()
    else:
        deep = new
        for _ in range(50):
            deep = deep / "d"
        deep.mkdir(parents=True)
        (deep / "forged.parquet").write_bytes(b"x")
    assert CHANGED in _verdict(runtime, mounted)


# ---- the removal's exception used as cover (got through it; a superseded build now stops) ------
def test_a_file_replaced_read_then_removed_between_two_passes(world):
    """GOT THROUGH the removal exception: between two passes, a file of the superseded build
    replaced by a forged one (the researcher reads it), then removed; the next pass saw only an
    entry gone and a folder's times changed, what the removal does. Now the first pass after the
    publication's record stops the workspace (``extract republished``), before and after the
    attack."""
    runtime, build, mounted = world
    publish_newer(runtime)
    assert REPUBLISHED in _verdict(runtime, mounted)
    writable(build)
    target = files(build)[-1]
    forged = target.with_name(".forged")
    forged.write_bytes(b"forged rows " * 10)
    os.rename(forged, target)
    assert target.read_bytes().startswith(b"forged rows")
    target.unlink()
    assert REPUBLISHED in _verdict(runtime, mounted)


def test_control_the_same_on_a_current_build_is_seen_after_the_fact(world):
    """The same steps on a build no publication superseded: the forged file's trace (its folder's
    times) stops the workspace at the next pass, as changed."""
    runtime, build, mounted = world
    assert _verdict(runtime, mounted) is None
    writable(build)
    target = files(build)[-1]
    forged = target.with_name(".forged")
    forged.write_bytes(b"forged rows " * 10)
    os.rename(forged, target)
    target.unlink()
    assert CHANGED in _verdict(runtime, mounted)


def test_a_file_linked_out_then_removed_and_written_under_an_open_descriptor(world):
    """GOT THROUGH the removal exception: the researcher's kernel holds a file of the build open
    and mapped (polars maps Parquet); the attacker hard-links it outside the build, removes its
    name from the build (taken for the removal), then writes it through the outside link: the
    researcher reads the forged bytes. On a current build the name gone stops the workspace at
    once; on a superseded one the publication does (previous test)."""
    runtime, build, mounted = world
    target = files(build)[-1]
    original = target.read_bytes()
    researcher = os.open(target, os.O_RDONLY)  # opened through the mount, before the attack
    mapped = mmap.mmap(researcher, 0, prot=mmap.PROT_READ)
    try:
        writable(build)
        outside = build.parent.parent / ".kept-part"
        os.link(target, outside)
        target.unlink()
        assert CHANGED in _verdict(runtime, mounted)
        os.chmod(outside, 0o644)
        with open(outside, "r+b") as out:
            out.write(b"FORGED" + original[6:])
        assert os.pread(researcher, 6, 0) == b"FORGED" and mapped[:6] == b"FORGED"
        assert CHANGED in _verdict(runtime, mounted)
    finally:
        mapped.close()
        os.close(researcher)


_SHUTTLE = textwrap.dedent("""
    import ctypes, os, struct, sys
    first, last, name = sys.argv[1:4]
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    IN_CLOSE_NOWRITE = 0x10
    watches = {libc.inotify_add_watch(fd, first.encode(), IN_CLOSE_NOWRITE): "first",
               libc.inotify_add_watch(fd, last.encode(), IN_CLOSE_NOWRITE): "last"}
    print("ready", flush=True)
    while True:
        data = os.read(fd, 65536)
        i = 0
        while i < len(data):
            wd, mask, cookie, size = struct.unpack_from("iIII", data, i)
            i += 16 + size
            # the walk is done with `first`: move the file there before it reaches `last`;
            # done with `last`: move it back to `last`, where the researcher reads it
            src, dst = (last, first) if watches.get(wd) == "first" else (first, last)
            try:
                os.rename(os.path.join(src, name), os.path.join(dst, name))
            except FileNotFoundError:
                pass
""")


def _forged_in_the_build(*places: Path, seconds: float = 10.0) -> bool:
    """Whether the forged file is at one of ``places`` (the attacker moves it between them while
    this looks: each look that finds it moved away looks again, for ``seconds`` at most)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for place in places:
            try:
                if place.read_bytes().startswith(b"forged rows"):
                    return True
            except FileNotFoundError:
                continue
        time.sleep(0.005)
    return False


def test_a_forged_file_moved_out_of_the_walks_way(runtime):
    """GOT THROUGH the removal exception: a forged file replaces one of the build's last partition
    folder and is always in the build, yet no pass saw it: a process following the walk with
    inotify (IN_CLOSE_NOWRITE: the walk closes a folder once it has listed it) renames the file
    into the first folder once the walk is done with it, and back into the last once the walk is
    done with that one. The folders' times changed, which the exception ignored. Without it (a
    current build; a superseded one stops as republished), every rename changes the folders'
    times, and every pass sees it."""
    with started(runtime, folders=6, per_folder=400) as (build, mounted):
        writable(build)
        folders = sorted(p for p in build.iterdir() if p.is_dir())
        target = folders[-1] / "part-00000.parquet"
        forged = target.with_name(".forged")
        forged.write_bytes(b"forged rows " * 10)
        os.rename(forged, target)
        assert CHANGED in _verdict(runtime, mounted)  # the control: a pass sees it where it lies
        attacker = subprocess.Popen([sys.executable, "-c", _SHUTTLE, str(folders[0]), str(folders[-1]),
                                     target.name], stdout=subprocess.PIPE, text=True)
        try:
            assert attacker.stdout.readline().strip() == "ready"
            verdicts = []
            for _ in range(10):
                verdicts.append(_verdict(runtime, mounted))
                assert _forged_in_the_build(target, folders[0] / target.name)
        finally:
            attacker.kill()
            attacker.wait()
        missed = sum(v is None for v in verdicts)
        assert missed == 0, f"{missed} of {len(verdicts)} passes missed a forged file that was always in the build"


# ---- the full removal ------------------------------------------------------------------------
def test_nothing_can_be_added_to_a_removed_build_directory(world):
    """Once the build directory has no link left, try to create a file, a folder or a FIFO in it
    through the very descriptor the workspace mounts. Fails: the kernel refuses new entries in a
    deleted directory (ENOENT); and the workspace is stopped as republished."""
    runtime, build, mounted = world
    publish_newer(runtime)
    remove_superseded(build)
    assert os.fstat(mounted.directory).st_nlink == 0
    with pytest.raises(FileNotFoundError):
        os.open("forged.parquet", os.O_WRONLY | os.O_CREAT, 0o444, dir_fd=mounted.directory)
    with pytest.raises(FileNotFoundError):
        os.mkdir("ER_PRS_F_00", dir_fd=mounted.directory)
    assert os.listdir(mounted.directory) == []
    assert REPUBLISHED in _verdict(runtime, mounted)


# ---- the audit trail's word that the build is superseded ---------------------------------------
def _plant(runtime, action: str, details: dict) -> None:
    """A row written straight into the audit table, as someone who can write the database but
    does not hold the audit key writes it (the append-only guards refuse UPDATE and DELETE, not
    INSERT)."""
    with runtime.audit._sessions() as session:
        session.execute(insert(AuditRow).values(
            time="2100-01-01T00:00:00+00:00", schema_version=1, actor="admin", action=action,
            target=f"project:{PROJECT}", project=PROJECT, outcome="ok", details=json.dumps(details),
            prev_hash="0" * 64, hash="f" * 64, chain_version=2))
        session.commit()


def test_a_publication_row_planted_in_the_database_without_the_key(world):
    """GOT THROUGH the removal exception: a planted ``extract.build`` row naming another build made
    the current build count as superseded, and its files could be removed (and forged, read,
    removed) unseen. Now the watcher and the start read the latest publication authenticated
    (``AuditTrail.newest_entry``): the planted row is no publication, the build is watched as
    before (a file removed stops the workspace as changed), and a start is refused until an
    administrator runs ``pds audit verify``."""
    runtime, build, mounted = world
    _plant(runtime, "extract.build", {"build_id": "20000101T000000Z-abcdef", "manifest_sha256": "0" * 64,
                                      "files_fingerprint": "1" * 64})
    assert _verdict(runtime, mounted) is None
    with pytest.raises(ExtractRefused, match="cannot be relied on"):
        check_for_workspace(runtime.settings, runtime.audit, PROJECT)
    writable(build)
    for path in files(build)[::2]:
        path.unlink()
    assert CHANGED in _verdict(runtime, mounted)


def test_a_forged_build_published_by_a_row_planted_without_the_key(world):
    """GOT THROUGH before: someone who can write the projects' storage and the database, but
    holds no audit key, puts a forged build beside the real one, points ``extract`` at it and
    plants the ``extract.build`` row that describes it (its manifest's SHA-256, its fingerprint):
    every start mounted the forged rows, checked against the planted record. Now the row does not
    authenticate, and the start is refused."""
    runtime, build, _mounted = world
    pdir = runtime.settings.paths.projects / PROJECT
    forged = pdir / "builds" / "20991231T000000Z-f0f0f0"
    forged.mkdir()
    (forged / "COHORT.parquet").write_bytes(b"forged cohort rows" * 30)
    data = write_manifest(forged, PROJECT, forged.name)
    for path in [*forged.rglob("*"), forged]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    link = pdir / "extract"
    tmp = pdir / ".extract.forged"
    os.symlink(f"builds/{forged.name}", tmp)
    os.replace(tmp, link)
    state = published_state(forged)
    _plant(runtime, "extract.build", {"build_id": forged.name, "manifest_sha256": hashlib.sha256(data).hexdigest(),
                                      "files_fingerprint": state.fingerprint, "bytes": state.total_bytes})
    with pytest.raises(ExtractRefused, match="cannot be relied on"):
        check_for_workspace(runtime.settings, runtime.audit, PROJECT)


def test_a_verification_row_planted_without_the_key(world):
    """The fingerprint of a passed ``pds extract verify`` becomes what later starts of a large
    extract compare the files with: a planted ``extract.verify`` row naming a fingerprint of the
    attacker's choosing must not set it. Now that row is read authenticated too: the start is
    refused."""
    runtime, build, _mounted = world
    _plant(runtime, "extract.verify", {"build_id": build.name, "files_fingerprint": "2" * 64, "bytes": 1})
    with pytest.raises(ExtractRefused, match="cannot be relied on"):
        check_for_workspace(runtime.settings, runtime.audit, PROJECT)


def test_a_signed_publication_of_a_build_that_does_not_exist(world):
    """A real (signed) ``extract.build`` entry naming a build that is nowhere on disk (the builder's
    account holds the key), then half the current build removed: it opened the removal exception
    on the current build. Now: the workspace stopped, its next start refused."""
    runtime, build, mounted = world
    record_publication(runtime.audit, PROJECT)
    writable(build)
    for path in files(build)[::2]:
        path.unlink()
    assert REPUBLISHED in _verdict(runtime, mounted)
    with pytest.raises(ExtractRefused):
        check_for_workspace(runtime.settings, runtime.audit, PROJECT)
