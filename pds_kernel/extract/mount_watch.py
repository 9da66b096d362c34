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
A build superseded by a newer publication stops the workspaces that mount it too, audited with
:data:`REPUBLISHED_CAUSE` (their next start mounts the new build), as on Kubernetes: the
publication removes the superseded build file by file (:func:`.build.remove_superseded`), and no
check of its files tells that removal from someone replacing a file, letting it be read and
removing it, or unlinking a file the researcher holds open and writing it through another link
(red team 22 did all three while a removal was taken for no change). Before that, a workspace
kept running on a removed build, and a pass landing during the removal stopped it as changed
(a fresh-clone CI run caught it). Before red team 7 the watcher looked the build up by its path: a
build moved away just as a new one was published was taken for removed, and its files, still
mounted, could be changed unwatched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ..errors import InvalidInput
from ..registry.names import check_project_id
from ..trees import DIRECTORY
from .mount_check import WHO_FIXES, CheckedMount, ExtractRefused, latest_publication
from .tree import BUILD_ID, TreeRefused, fingerprint, open_published

log = logging.getLogger(__name__)

#: The audit cause (``workspace.stop``) of a workspace stopped because its extract changed while it
#: ran: by the local hub's watcher, and by the Kubernetes hub's spawner (pds_kernel.hub.kube_spawner).
CHANGED_CAUSE = "extract changed"
#: The audit cause of a running workspace stopped because a newer publication superseded the build
#: it mounts (and removes it): by the local hub's watcher, and on Kubernetes
#: (pds_kernel.k8s.pod_status), where the pod finds its ``/data`` emptied.
REPUBLISHED_CAUSE = "extract republished"


@dataclass(frozen=True)
class MountedExtract:
    """What a running workspace mounts: the project's build and its fingerprint at the start, and
    (in the process that started it) a descriptor of the build's directory (:func:`open_watched`;
    never saved, never compared)."""

    project: str
    build_id: str
    fingerprint: str
    directory: int | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, checked: CheckedMount, directory: int | None = None) -> MountedExtract:
        return cls(checked.expected.project, checked.expected.build_id, checked.fingerprint, directory)

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
    the check found (the same directory, unchanged). The caller closes the descriptor.
    :class:`ExtractRefused` when it changed in between."""
    project = checked.expected.project
    try:
        fd = open_published(str(settings.paths.projects / project), checked.expected.build_id)
    except (TreeRefused, OSError) as exc:
        raise ExtractRefused(f"the extract of project {project} changed while the workspace was starting "
                             f"({exc}); {WHO_FIXES}") from None
    try:
        same = fingerprint(fd) == checked.fingerprint
    except (TreeRefused, OSError):
        same = False
    if not same:
        os.close(fd)
        raise ExtractRefused(f"the extract of project {project} changed while the workspace was starting; {WHO_FIXES}")
    return MountedExtract.of(checked, fd)


def _held_fingerprint(fd: int) -> str | None:
    """The fingerprint of the directory held open, wherever it is now; ``None`` when it was removed
    (no link left)."""
    if os.fstat(fd).st_nlink == 0:
        return None
    return fingerprint(fd)


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


def mounted_extract_change(settings, mounted: MountedExtract) -> str | None:
    """Why the build ``mounted`` is no longer what its workspace's start checked, or ``None``
    (unchanged). A build removed is changed, whatever removed it (see :func:`superseded`)."""
    try:
        if mounted.directory is not None:
            now = _held_fingerprint(mounted.directory)
        else:  # a state saved by a process that no longer runs (never a live sandbox here: see the spawner)
            now = _current_fingerprint(str(settings.paths.projects), mounted)
    except (TreeRefused, OSError) as exc:
        return f"the extract it mounts (build {mounted.build_id}) cannot be read any more ({exc})"
    except Exception as exc:  # deny by default: one strange build must not end the pass for all
        log.exception("the extract %s of project %s could not be compared", mounted.build_id, mounted.project)
        return (f"the extract it mounts (build {mounted.build_id}) cannot be compared with its start "
                f"({type(exc).__name__})")
    if now is None:
        return f"the extract it mounts (build {mounted.build_id}) was removed"
    if now != mounted.fingerprint:
        return (f"the extract it mounts (build {mounted.build_id}) changed after the workspace started "
                "(a file written, replaced, added or removed, or the build moved)")
    return None


def superseded(audit, mounted: MountedExtract) -> str | None:
    """Why the build ``mounted`` is no longer the project's extract: the audit trail's latest
    publication names another build (a newer publication, which removes this one); ``None`` while
    it is the latest, or when the trail has none to read."""
    try:
        latest = latest_publication(audit, mounted.project).details["build_id"]
    except ExtractRefused:
        return None  # the extract check of a next start refuses it; the files are still watched
    if latest == mounted.build_id:
        return None
    return (f"a newer extract of project {mounted.project} was published (build {latest}); the one it "
            f"mounts (build {mounted.build_id}) is being removed")


def changed_mounts(settings, audit, mounts: dict[tuple[str, str], MountedExtract]) -> list[tuple[str, str, str, str]]:
    """``(user, server, cause, reason)`` of each running workspace whose extract was superseded
    (:data:`REPUBLISHED_CAUSE`) or changed (:data:`CHANGED_CAUSE`); each build is looked at once per
    pass, whatever the number of workspaces mounting it."""
    verdicts: dict[MountedExtract, tuple[str, str] | None] = {}
    changed = []
    for (user, server), mounted in sorted(mounts.items()):
        if mounted not in verdicts:
            verdicts[mounted] = _verdict(settings, audit, mounted)
        if verdicts[mounted] is not None:
            changed.append((user, server, *verdicts[mounted]))
    return changed


def _verdict(settings, audit, mounted: MountedExtract) -> tuple[str, str] | None:
    """A superseded build first: the publication removes it, which changes its files too. When the
    audit trail cannot be read, the files are compared all the same (a removal is then taken for a
    change: a false alarm, never a change let through)."""
    try:
        reason = superseded(audit, mounted)
    except Exception:
        log.exception("the latest publication of project %s could not be read", mounted.project)
        reason = None
    if reason is not None:
        return REPUBLISHED_CAUSE, reason
    reason = mounted_extract_change(settings, mounted)
    return (CHANGED_CAUSE, reason) if reason is not None else None
