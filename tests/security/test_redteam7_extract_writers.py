"""Red team 7 of the checks of a published extract that read no content: a workspace start's check
(re-hash of a small extract, fingerprint of a large one), the hub's watcher of a running workspace,
the gate's read after its check (:mod:`pds_kernel.extract.checked_read`), and a publication's record.

They see a change by the files' ``stat`` (size, inode, modification and change times). An attacker
who can write the project's directory on the host (root, or the account that owns the builds)
maps a file shared and writable and writes one byte of it, the same byte: the page is now dirty and
writable in his page tables, and his next writes to it are plain stores, which set no change time.

* a small extract: the page dirtied before a start's check, rewritten after it: the check re-hashed
  the right bytes, then the file changed with its ``stat`` unchanged; the gate read the changed
  bytes as checked, and the watcher saw nothing: it GOT THROUGH;
* a large extract (never re-hashed at a start): the page dirtied before its publication, rewritten
  after: every start accepted the changed file as the published one: it GOT THROUGH.

Now every fingerprint that is trusted later is taken when no process holds a file of the extract
open for writing or mapped writable (:mod:`pds_kernel.extract.writers`): the start, the gate's
check and the publication are refused, saying why. The other attempts below failed already (the
change time moves on every other change) and stay as regression tests.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import replace

import pytest
from model_export_support import PROJECT, people, publish_cohort
from published import publish_by_hand

from pds_kernel.errors import IntegrityError
from pds_kernel.extract.checked_read import ExtractChangedWhileRead, read_checked
from pds_kernel.extract.mount_check import ExtractRefused, check_for_workspace
from pds_kernel.extract.mount_watch import MountedExtract, changed_mounts, mounted_extract_change

COHORT = "COHORT.parquet"
WRITER = "open for writing or mapped writable"


def _published(settings) -> bytes:
    publish_cohort(settings, PROJECT, people(PROJECT, 400, seed=7))
    return (_extract(settings) / COHORT).read_bytes()


def _extract(settings, project: str = PROJECT):
    return settings.paths.projects / project / "extract"


def _dirty_mapping(path) -> mmap.mmap:
    """The attacker's shared, writable mapping of ``path``, its last page written once with the
    bytes it holds (nothing changes, but the page is dirty and writable from now on)."""
    fd = os.open(path, os.O_RDWR)
    try:
        mapping = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    mapping[-1:] = mapping[-1:]
    return mapping


def _rewrite(mapping: mmap.mmap) -> None:
    """A plain store into the dirty page: no system call, no new change time."""
    mapping[-2:] = bytes(reversed(mapping[-2:])) if mapping[-2] != mapping[-1] else b"\0\1"


def _after_the_check(runtime, mapping, original: bytes) -> None:
    """What the attacker did next, once a check had passed: rewrite the page, then see whether the
    gate's read after its check and the watcher noticed (that was the attack getting through)."""
    settings = runtime.settings
    checked = check_for_workspace(settings, runtime.audit, PROJECT)
    _rewrite(mapping)
    read = read_checked(settings.paths.projects, checked, lambda open_file: open_file(COHORT).read())
    seen = mounted_extract_change(settings, MountedExtract.of(checked))
    pytest.fail(f"got through: the gate read {'other' if read != original else 'the checked'} bytes as "
                f"checked, the watcher said {seen!r}")


def test_a_page_rewritten_after_the_start_check_of_a_small_extract(runtime):
    original = _published(runtime.settings)
    mapping = _dirty_mapping(_extract(runtime.settings) / COHORT)
    try:
        with pytest.raises(ExtractRefused, match=WRITER):
            _after_the_check(runtime, mapping, original)
    finally:
        mapping.close()


def test_a_page_rewritten_after_the_publication_of_a_large_extract(runtime, tmp_path):
    """Large: over ``hub.extract_hash_max_bytes`` (0 here), checked by its fingerprint only. The
    attacker has his mapping before the extract is published."""
    settings = replace(runtime.settings, hub=replace(runtime.settings.hub, extract_hash_max_bytes=0))
    extract = _extract(settings)
    extract.mkdir(parents=True)
    people(PROJECT, 400, seed=7)[["PERSON_ID"]].to_parquet(extract / COHORT)
    mapping = _dirty_mapping(extract / COHORT)
    try:
        with pytest.raises(IntegrityError, match=WRITER):
            publish_by_hand(runtime, PROJECT)
            _rewrite(mapping)
            check_for_workspace(settings, runtime.audit, PROJECT)
            pytest.fail("got through: a start accepted the large extract rewritten after its publication")
    finally:
        mapping.close()


def test_a_descriptor_held_open_for_writing_through_the_check(runtime):
    """No mapping: a descriptor opened for writing before the check, written after it (a write in
    the same clock tick as the last change could keep its change time on a coarse clock)."""
    _published(runtime.settings)
    fd = os.open(_extract(runtime.settings) / COHORT, os.O_WRONLY)
    try:
        with pytest.raises(ExtractRefused, match=WRITER):
            check_for_workspace(runtime.settings, runtime.audit, PROJECT)
    finally:
        os.close(fd)


def test_readers_of_the_extract_are_no_writers(runtime):
    """The control: a descriptor open for reading and a read-only shared mapping (a kernel reading
    the extract, the gate's own reads) refuse nothing."""
    _published(runtime.settings)
    fd = os.open(_extract(runtime.settings) / COHORT, os.O_RDONLY)
    mapping = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
    try:
        checked = check_for_workspace(runtime.settings, runtime.audit, PROJECT)
        assert checked.hashed
    finally:
        mapping.close()
        os.close(fd)


# ---- changes the stat does see (failed already) -------------------------------------------------------
def _restored_times(path) -> None:
    """Rewritten with other bytes of the same length, modification time put back."""
    before = os.stat(path)
    data = path.read_bytes()
    with open(path, "r+b") as out:
        out.write(bytes(reversed(data[:64])))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _reverted(path) -> None:
    """Changed, then put back exactly (bytes and modification time) before the watcher's next pass."""
    before = os.stat(path)
    data = path.read_bytes()
    path.write_bytes(b"\0" * len(data))
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _through_a_hard_link(path) -> None:
    """Written through a hard link made outside the build, the link removed again."""
    link = path.parents[3] / "elsewhere.parquet"
    os.link(path, link)
    with open(link, "r+b") as out:
        out.write(b"PAR1")
    link.unlink()


def _extended_attribute(path) -> None:
    os.setxattr(path, "user.pds.note", b"changed")


def _new_file_in_a_folder(path) -> None:
    folder = path.parent / "ER_PRS_F"
    os.chmod(path.parent, 0o755)
    folder.mkdir()
    (folder / "0.parquet").write_bytes(b"PAR1")
    os.chmod(path.parent, 0o555)


@pytest.mark.parametrize("change", [_restored_times, _reverted, _through_a_hard_link, _extended_attribute,
                                    _new_file_in_a_folder], ids=lambda f: f.__name__.strip("_"))
def test_the_watcher_sees_a_change_the_size_and_times_hide(runtime, change):
    _published(runtime.settings)
    checked = check_for_workspace(runtime.settings, runtime.audit, PROJECT)
    change(_extract(runtime.settings) / COHORT)
    seen = mounted_extract_change(runtime.settings, MountedExtract.of(checked))
    assert seen is not None and "changed after the workspace started" in seen


# ---- names and depths the fingerprint did not expect (got through) -----------------------------------
def _undecodable_name(path) -> None:
    """A file named with a byte that is not UTF-8 (the host writer's ``touch $'\\xff'``)."""
    os.chmod(path.parent, 0o755)
    fd = os.open(os.fsencode(path.parent) + b"/\xff", os.O_WRONLY | os.O_CREAT, 0o444)
    os.close(fd)
    os.chmod(path.parent, 0o555)


def _deep_folders(path) -> None:
    """Folders nested deeper than Python's recursion limit."""
    os.chmod(path.parent, 0o755)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    os.chmod(path.parent, 0o555)


@pytest.mark.parametrize("change", [_undecodable_name, _deep_folders], ids=lambda f: f.__name__.strip("_"))
def test_one_strange_build_does_not_blind_the_watcher(runtime, change):
    """GOT THROUGH before: the fingerprint raised (``UnicodeEncodeError`` on a name that is not
    UTF-8, ``RecursionError`` on deep folders) instead of differing, and the error ended the
    watcher's whole pass: no running workspace's extract was compared while that build stayed so,
    the changed one included. Now both builds' workspaces are reported, and the gate's read after
    its check refuses the changed extract as changed."""
    from model_export_support import OTHER

    settings = runtime.settings
    _published(settings)
    publish_cohort(settings, OTHER, people(OTHER, 300, seed=8))
    strange = check_for_workspace(settings, runtime.audit, PROJECT)
    other = check_for_workspace(settings, runtime.audit, OTHER)
    change(_extract(settings) / COHORT)
    _restored_times(_extract(settings, OTHER) / COHORT)
    mounts = {("alice", PROJECT): MountedExtract.of(strange), ("bob", OTHER): MountedExtract.of(other)}
    try:
        changed = changed_mounts(settings, runtime.audit, mounts)
        assert [(user, server, cause) for user, server, cause, _ in changed] == [
            ("alice", PROJECT, "extract changed"), ("bob", OTHER, "extract changed")]
        with pytest.raises(ExtractChangedWhileRead):
            read_checked(settings.paths.projects, strange, lambda open_file: open_file(COHORT).read())
    finally:
        _remove_deep(_extract(settings))


def _remove_deep(folder) -> None:
    """Remove the chain of ``d`` folders below ``folder`` from the bottom up (shutil.rmtree, which
    the test's clean-up uses, recurses once per level)."""
    os.chmod(folder, 0o755)
    chain = [os.open(folder, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while True:
            try:
                chain.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=chain[-1]))
            except FileNotFoundError:
                break
        for parent in reversed(chain[:-1]):
            os.rmdir("d", dir_fd=parent)
    finally:
        for fd in chain:
            os.close(fd)
