"""Whether the extract a running workspace mounts is still what was checked when it started.

A workspace's start checks its extract against the audit trail (:mod:`.mount_check`) and mounts the
very directory it checked. Files changed afterwards, while the workspace runs, were seen by the
researcher unchecked until the next start or the next ``pds extract verify``. The hub's watcher
(:class:`pds_kernel.hub.expiry.MembershipWatcher`) now compares, at each pass, the fingerprint of
every running workspace's build (:func:`.tree.fingerprint`: every entry's name, size, inode,
modification and change times, and the directory's own) with the one taken at its start, and stops
the workspaces whose build changed: a file written, replaced, added, removed or renamed, or the
build directory itself replaced. The comparison reads no file's content: a pass costs one ``stat``
per file of each running project's extract.

The hub holds a descriptor of the directory each workspace's start checked (:func:`open_watched`)
and takes the fingerprint through it, so it watches what the sandbox mounts wherever it is moved: a
build renamed out of ``builds/`` is still seen, and its rename changes the directory's change time.
A build removed because a newer one was published (:func:`.build.remove_superseded`, once the
publication is in the audit trail) is no tampering: the workspace keeps running, and its next start
mounts the new one. That holds while the removal is under way too: the watcher remembers the state
of every entry at the start, and a superseded build whose change is only entries gone and its
folders' permissions and times (what the removal does, file by file) is being removed; a file
written, replaced or added in it still stops the workspace. A build removed otherwise stops it.
Before red team 7 the watcher looked the build up by its path: a build moved away just as a new one
was published was taken for removed, and its files, still mounted, could be changed unwatched.
Before session 22 a pass landing during the removal took the half-removed build for a changed one
and stopped the workspace (and the removal came before the publication's record).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import InvalidInput
from ..registry.names import check_project_id
from ..trees import DIRECTORY
from .mount_check import WHO_FIXES, CheckedMount, ExtractRefused, latest_publication
from .tree import BUILD_ID, TreeRefused, fingerprint, open_published

log = logging.getLogger(__name__)

#: The audit cause (``workspace.stop``) of a workspace stopped because its extract changed while it
#: ran: by the local hub's watcher, and by the Kubernetes hub's spawner (pds_kernel.hub.kube_spawner).
CHANGED_CAUSE = "extract changed"


class Entry(NamedTuple):
    """One entry of a build as the fingerprint saw it (:func:`.tree.fingerprint`)."""

    folder: bool
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> Entry:
        folder = stat.S_ISDIR(info.st_mode)
        return cls(folder, info.st_ino, 0 if folder else info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass(frozen=True)
class MountedExtract:
    """What a running workspace mounts: the project's build and its fingerprint at the start, and
    (in the process that started it) a descriptor of the build's directory and the state of each of
    its entries (``"."`` the directory itself) at the start (:func:`open_watched`; never saved,
    never compared)."""

    project: str
    build_id: str
    fingerprint: str
    directory: int | None = field(default=None, compare=False, hash=False, repr=False)
    entries: Mapping[str, Entry] | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, checked: CheckedMount, directory: int | None = None,
           entries: Mapping[str, Entry] | None = None) -> MountedExtract:
        return cls(checked.expected.project, checked.expected.build_id, checked.fingerprint, directory, entries)

    def as_state(self) -> dict:
        return {"project": self.project, "build_id": self.build_id, "fingerprint": self.fingerprint}

    @classmethod
    def from_state(cls, state: object) -> MountedExtract | None:
        """From the spawner's saved state (the hub's database: checked, never trusted as a path)."""
        if not isinstance(state, dict):
            return None
        project, build_id, value = state.get("project"), state.get("build_id"), state.get("fingerprint")
        if not all(isinstance(v, str) for v in (project, build_id, value)) or not BUILD_ID.fullmatch(build_id):
            return None
        try:
            check_project_id(project)
        except InvalidInput:
            return None
        return cls(project, build_id, value)


def open_watched(settings, checked: CheckedMount) -> MountedExtract:
    """What the watcher compares a starting workspace's extract with: a descriptor of the build
    ``checked`` found, opened again through the project's ``extract`` link and still in the state
    the check found (the same directory, unchanged), and the state of its entries. The caller closes
    the descriptor. :class:`ExtractRefused` when it changed in between."""
    project = checked.expected.project
    try:
        fd = open_published(str(settings.paths.projects / project), checked.expected.build_id)
    except (TreeRefused, OSError) as exc:
        raise ExtractRefused(f"the extract of project {project} changed while the workspace was starting "
                             f"({exc}); {WHO_FIXES}") from None
    try:
        now = _held_state(fd)
        same = now is not None and now[0] == checked.fingerprint
    except (TreeRefused, OSError):
        same = False
    if not same:
        os.close(fd)
        raise ExtractRefused(f"the extract of project {project} changed while the workspace was starting; {WHO_FIXES}")
    return MountedExtract.of(checked, fd, now[1])


def _held_state(fd: int) -> tuple[str, dict[str, Entry]] | None:
    """The fingerprint of the directory held open, wherever it is now, and its entries; ``None``
    when it was removed (no link left: :func:`.build.remove_superseded` removed it, files first)."""
    root = os.fstat(fd)
    if root.st_nlink == 0:
        return None
    states: dict[str, os.stat_result] = {}
    value = fingerprint(fd, states, skip_vanished=True)
    entries = {rel: Entry.of(info) for rel, info in states.items()}
    entries["."] = Entry.of(root)
    return value, entries


def being_removed(start: Mapping[str, Entry], now: Mapping[str, Entry]) -> bool:
    """Whether ``now`` is ``start`` with entries gone, and its folders' permissions and times
    changed, and nothing else: what removing a build does (:func:`.build.remove_superseded` makes
    its folders writable, then unlinks it file by file). A file written, replaced, renamed or added,
    or a folder replaced, is not."""
    for rel, entry in now.items():
        was = start.get(rel)
        if was is None or was.folder != entry.folder or was.inode != entry.inode:
            return False
        if not entry.folder and was != entry:
            return False
    return True


def _superseded(audit, mounted: MountedExtract) -> bool:
    """Whether the audit trail's latest publication of the project is another build than ``mounted``."""
    try:
        latest = latest_publication(audit, mounted.project).details["build_id"]
    except ExtractRefused:
        return False
    return latest != mounted.build_id


def _current_fingerprint(projects_root: str, mounted: MountedExtract) -> str | None:
    """The build's fingerprint now, reached without following any link (a link or a file in the
    way raises :class:`OSError`); ``None`` when it is gone."""
    opened = [os.open(projects_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for name in (mounted.project, "builds", mounted.build_id):
            try:
                opened.append(os.open(name, DIRECTORY, dir_fd=opened[-1]))
            except FileNotFoundError:
                return None
        return fingerprint(opened[-1])
    finally:
        for fd in reversed(opened):
            os.close(fd)


def mounted_extract_change(settings, audit, mounted: MountedExtract) -> str | None:
    """Why the build ``mounted`` is no longer what its workspace's start checked, or ``None``
    (unchanged, or removed, or being removed, by a newer publication)."""
    entries = None
    try:
        if mounted.directory is not None:
            held = _held_state(mounted.directory)
            now, entries = held if held is not None else (None, None)
        else:  # a state saved by a process that no longer runs (never a live sandbox here: see the spawner)
            now = _current_fingerprint(str(settings.paths.projects), mounted)
    except (TreeRefused, OSError) as exc:
        return f"the extract it mounts (build {mounted.build_id}) cannot be read any more ({exc})"
    except Exception as exc:  # deny by default: one strange build must not end the pass for all
        log.exception("the extract %s of project %s could not be compared", mounted.build_id, mounted.project)
        return (f"the extract it mounts (build {mounted.build_id}) cannot be compared with its start "
                f"({type(exc).__name__})")
    if now == mounted.fingerprint:
        return None
    if now is None:
        if _superseded(audit, mounted):
            return None  # superseded by a newer publication, which removed it
        return f"the extract it mounts (build {mounted.build_id}) was removed"
    if entries is not None and mounted.entries is not None and being_removed(mounted.entries, entries) \
            and _superseded(audit, mounted):
        return None  # a newer publication is removing it
    return (f"the extract it mounts (build {mounted.build_id}) changed after the workspace started "
            "(a file written, replaced, added or removed, or the build moved)")


def changed_mounts(settings, audit, mounts: dict[tuple[str, str], MountedExtract]) -> list[tuple[str, str, str]]:
    """``(user, server, reason)`` of each running workspace whose extract changed; each build is
    looked at once per pass, whatever the number of workspaces mounting it."""
    verdicts: dict[MountedExtract, str | None] = {}
    changed = []
    for (user, server), mounted in sorted(mounts.items()):
        if mounted not in verdicts:
            verdicts[mounted] = mounted_extract_change(settings, audit, mounted)
        if verdicts[mounted] is not None:
            changed.append((user, server, verdicts[mounted]))
    return changed
