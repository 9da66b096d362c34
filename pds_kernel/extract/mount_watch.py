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

A build removed because a newer one was published (:func:`.build.publish` removes the previous
build) is no tampering: the workspace keeps running, and its next start mounts the new one. A build
removed otherwise stops it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InvalidInput
from ..registry.names import check_project_id
from .mount_check import CheckedMount, ExtractRefused, latest_publication
from .tree import BUILD_ID, TreeRefused, fingerprint

#: The audit cause (``workspace.stop``) of a workspace stopped because its extract changed while it
#: ran: by the local hub's watcher, and by the Kubernetes hub's spawner (pds_kernel.hub.kube_spawner).
CHANGED_CAUSE = "extract changed"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class MountedExtract:
    """What a running workspace mounts: the project's build and its fingerprint at the start."""

    project: str
    build_id: str
    fingerprint: str

    @classmethod
    def of(cls, checked: CheckedMount) -> MountedExtract:
        return cls(checked.expected.project, checked.expected.build_id, checked.fingerprint)

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


def _current_fingerprint(projects_root: str, mounted: MountedExtract) -> str | None:
    """The build's fingerprint now, reached without following any link (a link or a file in the
    way raises :class:`OSError`); ``None`` when it is gone."""
    opened = [os.open(projects_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for name in (mounted.project, "builds", mounted.build_id):
            try:
                opened.append(os.open(name, _DIRECTORY, dir_fd=opened[-1]))
            except FileNotFoundError:
                return None
        return fingerprint(opened[-1])
    finally:
        for fd in reversed(opened):
            os.close(fd)


def mounted_extract_change(settings, audit, mounted: MountedExtract) -> str | None:
    """Why the build ``mounted`` is no longer what its workspace's start checked, or ``None``
    (unchanged, or removed by a newer publication)."""
    try:
        now = _current_fingerprint(str(settings.paths.projects), mounted)
    except (TreeRefused, OSError) as exc:
        return f"the extract it mounts (build {mounted.build_id}) cannot be read any more ({exc})"
    if now is None:
        try:
            latest = latest_publication(audit, mounted.project).details["build_id"]
        except ExtractRefused:
            latest = None
        if latest is not None and latest != mounted.build_id:
            return None  # superseded by a newer publication, which removed it
        return f"the extract it mounts (build {mounted.build_id}) was removed"
    if now != mounted.fingerprint:
        return (f"the extract it mounts (build {mounted.build_id}) changed after the workspace started "
                "(a file written, replaced, added or removed)")
    return None


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
