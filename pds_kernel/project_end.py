"""The end of a project: halt and resume, the retention clock, the two-administrator purge, and the
size limit of workspace homes.

- ``halt`` marks the project halted (``halted_at``) in the transaction of its audit entry. A halted
  project grants nothing (:meth:`Registry.check_access` refuses, ``ProjectInfo.is_open`` is false),
  so at once: no workspace or Dask cluster starts (every admission goes through
  :func:`pds_kernel.permissions.check_admit_workspace`), no extract builds, no review, release or
  download goes through the airlock; running workspaces are stopped by the hub's watcher
  (:mod:`pds_kernel.hub.expiry`) within ``hub.membership_check_seconds``, their Dask clusters with
  them; clusters of the dask-gateway (Kubernetes) are stopped by the gateway's own watcher
  (:mod:`pds_kernel.k8s.cluster_watch`) in the same time. ``resume`` lifts it.
- ``close`` (:meth:`Registry.close_project`) starts the retention clock (``closed_on``).
- The home quota (``project_end.home_quota_mb``): a workspace whose home is over it does not start
  (:func:`check_home_quota`), and a running one is stopped by the hub's watcher within
  ``hub.membership_check_seconds`` (:func:`homes_over_quota`).
- ``purge`` needs two different platform administrators, after ``project_end.retention_days``: the
  first approval is recorded, the second runs it. It deletes the extract and its builds, the
  imports, the homes, the airlock staging and the outbox of the project, destroys the
  pseudonymisation key and its backups (``<keys>/backups/<project>/``), then writes a deletion
  certificate to the audit trail (``project.purge``: every area with its files, bytes and the
  SHA-256 of its listing, each file's SHA-256, when, who approved) in the transaction that marks
  the project purged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from . import permissions, trees
from .audit import AuditEvent, Outcome
from .db import transaction
from .errors import InvalidInput, NotFound, PermissionDenied
from .hashing import sha256_at
from .registry import Registry
from .registry.models import Project
from .registry.names import check_project_id
from .registry.views import ProjectInfo, _project_info
from .sandbox.held_files import TooManyToMeasure, unlinked_bytes
from .workspace_names import person_of

log = logging.getLogger(__name__)

#: Files listed one by one in a deletion certificate, per area (the listing hash covers them all).
CERTIFICATE_FILES = 200


@dataclass(frozen=True)
class PurgeResult:
    project: str
    done: bool  #: false: the first approval was recorded, a second administrator must run it
    certificate: dict


def _utcnow() -> datetime:
    return datetime.now(UTC)


def purge_areas(settings, project: str) -> dict[str, Path]:
    """What a purge deletes, by name (the imports before the project directory that holds them)."""
    paths = settings.paths
    return {
        "imports": paths.projects / project / "imports",
        "extract": paths.projects / project,
        "homes": paths.homes / project,
        "staging": paths.staging / project,
        "outbox": paths.outbox / project,
        "key backups": paths.keys / "backups" / project,
    }


def describe_area(root: Path) -> dict:
    """Files, bytes, each file's SHA-256 (the first :data:`CERTIFICATE_FILES`), and the SHA-256 of
    the whole sorted listing (``path<TAB>size<TAB>sha256`` lines, each path as its bytes on disk).

    A researcher names the files of a home: a name that is not UTF-8 (``\\xff`` in it) is shown
    with a backslash escape in the certificate, which the audit trail (JSON, PostgreSQL) must
    store; it made the purge stop halfway before."""
    listing = sorted((entry.path, entry.info.st_size, sha256_at(entry.directory, entry.name))
                     for entry in trees.walk(root) if stat.S_ISREG(entry.info.st_mode))
    digest = hashlib.sha256(b"".join(b"%s\t%d\t%s\n" % (n, s, h.encode()) for n, s, h in listing)).hexdigest()
    return {"path": str(root), "files": len(listing), "bytes": sum(s for _, s, _ in listing),
            "listing_sha256": digest,
            "sha256": {n.decode("utf-8", "backslashreplace"): h for n, _, h in listing[:CERTIFICATE_FILES]}}


#: What one entry of a home (file, directory or link) counts at least, in bytes: a block of the file
#: system. An empty file takes no block but an inode, and a file system has a fixed number of them.
ENTRY_BYTES = 4096


def directory_bytes(root: Path) -> int:
    """What the entries under ``root`` take of the disk (symbolic links not followed): for each
    file, directory and link, the larger of its size and its allocated blocks, and at least
    :data:`ENTRY_BYTES`. Counting regular files' sizes alone left links (a long target takes a
    block), directories and empty files (inodes) free: a home could fill the shared disk."""
    return sum(max(e.info.st_size, e.info.st_blocks * 512, ENTRY_BYTES) for e in trees.walk(root))


MIB = 1024 * 1024


def outside_home_bytes(home: Path, pid: int, log: Path | None) -> int:
    """What a running local workspace takes of the disk besides the files of its home: its notebook
    server's log of this start (the sandbox writes it, on the hub's disk) and the files its
    processes hold open or mapped on the home's file system after removing their last name.
    Raises :class:`~pds_kernel.sandbox.held_files.TooManyToMeasure` when they hold too many files
    to read them all."""
    total = 0
    if log is not None:
        with contextlib.suppress(OSError):
            info = log.stat()
            total += max(info.st_size, info.st_blocks * 512)
    with contextlib.suppress(OSError):
        device = os.stat(home).st_dev
        total += unlinked_bytes(pid, device)  # TooManyToMeasure goes to the caller
    return total


def home_quota_refusal(settings, home: Path, outside: int = 0) -> str | None:
    """Why ``home`` may not be used now (over ``project_end.home_quota_mb``), else ``None``.
    ``outside``: what its running workspace takes besides (:func:`outside_home_bytes`)."""
    limit_mb = settings.project_end.home_quota_mb
    try:
        used = directory_bytes(home) if limit_mb and home.is_dir() else 0
    except OSError as exc:  # deny: what cannot be measured may be over the quota
        # (a path longer than the system's limit, made by nesting folders: it ended the hub
        # watcher's every pass before, for every workspace; red team 7)
        return (f"the home cannot be measured ({exc.strerror or exc}: folders nested deeper than the "
                "system can name, or unreadable), so it may be over its limit")
    if limit_mb and used + outside > limit_mb * MIB:
        if outside:
            return (f"the home holds {used // MIB} MB and the running workspace {outside // MIB} MB more "
                    f"(its log, files removed but held open), over its limit of {limit_mb} MB")
        return f"the home holds {used // MIB} MB, over its limit of {limit_mb} MB"
    return None


def check_home_quota(settings, home: Path) -> None:
    """Refuse a workspace whose home is over ``project_end.home_quota_mb``."""
    why = home_quota_refusal(settings, home)
    if why:
        raise PermissionDenied(f"your home in this project: {why}. Ask an administrator to free space "
                               "(or raise project_end.home_quota_mb) before starting it")


#: (user, project) -> what the running workspace takes besides its home's files (bytes)
OutsideHome = Callable[[str, str, Path], int]


def homes_over_quota(settings, running: dict[str, list[str]],
                     outside: OutsideHome | None = None) -> list[tuple[str, str, str]]:
    """``(user, project, reason)`` for every running local workspace (``running``: hub user name ->
    project servers; a workspace user's home is its person's) whose home, with what ``outside(user, project, home)`` says the workspace
    takes besides, is over the quota. Reads the file sizes of each home (no root-only filesystem
    quota is needed): call it off the event loop."""
    over = []
    for user, projects in running.items():
        for project in projects:
            home = settings.paths.homes / project / person_of(user)
            try:
                why = home_quota_refusal(settings, home, outside(user, project, home) if outside else 0)
            except TooManyToMeasure as exc:  # deny: what cannot be measured may be over the quota
                why = f"the running workspace cannot be measured: {exc}"
            if why:
                over.append((user, project, why))
    return over


class ProjectEnd:
    """Halt, resume and purge (close is :meth:`Registry.close_project`)."""

    def __init__(self, runtime, registry: Registry | None = None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.registry = registry or Registry.from_runtime(runtime)
        self._sessions = runtime.sessions
        self._audit = runtime.audit

    def _refuse(self, actor: str, action: str, project: str, exc: PermissionDenied) -> None:
        self._audit.record(AuditEvent(actor=actor, action=action, target=f"project:{project}",
                                      project=project, outcome=Outcome.DENIED, details={"reason": str(exc)}))

    def _load(self, s: Session, project: str) -> Project:
        row = s.get(Project, check_project_id(project))
        if row is None:
            raise NotFound(f"no project {project!r}")
        return row

    def halt(self, actor: str, project: str, reason: str) -> ProjectInfo:
        """Stop everything of ``project`` at once and block new starts until :meth:`resume`."""
        return self._set_halt(actor, project, reason, halted=True)

    def resume(self, actor: str, project: str, reason: str) -> ProjectInfo:
        return self._set_halt(actor, project, reason, halted=False)

    def _set_halt(self, actor: str, project: str, reason: str, *, halted: bool) -> ProjectInfo:
        action = "project.halt" if halted else "project.resume"
        if not reason.strip():
            raise InvalidInput(f"say why the project is {'halted' if halted else 'resumed'} (--reason)")
        try:
            permissions.check_halt(self.registry, actor, "halt" if halted else "resume")
        except PermissionDenied as exc:
            self._refuse(actor, action, project, exc)
            raise
        with transaction(self._sessions) as s:
            row = self._load(s, project)
            if (row.halted_at is not None) == halted:
                raise InvalidInput(f"project {project} is already {'halted' if halted else 'running'}")
            row.halted_at = _utcnow() if halted else None
            row.halt_reason = reason.strip() if halted else None
            s.flush()
            self._audit.record(AuditEvent(actor=actor, action=action, target=f"project:{project}",
                                          project=project, details={"reason": reason.strip()}), session=s)
            return _project_info(row)

    def purge(self, actor: str, project: str, *, confirm: bool = False, today: date | None = None) -> PurgeResult:
        """Approve the purge of a closed project past its retention period; the second approval (by a
        different administrator) deletes everything and writes the deletion certificate."""
        info = self.registry.get_project(project)
        if info.purged:
            raise InvalidInput(f"project {project} was already purged: see its deletion certificate "
                               "(pds audit show --action project.purge)")
        try:
            permissions.check_purge(self.registry, actor, info, self.settings.project_end.retention_days, today)
        except PermissionDenied as exc:
            self._refuse(actor, "project.purge", project, exc)
            raise
        if not confirm:
            raise InvalidInput(f"a purge of {project} deletes its data and key for good: confirm it (--yes)")
        if info.purge_requested_by is None:
            with transaction(self._sessions) as s:
                row = self._load(s, project)
                row.purge_requested_by = str(actor)
                s.flush()
                self._audit.record(AuditEvent(actor=actor, action="project.purge.approve",
                                              target=f"project:{project}", project=project,
                                              details={"approval": 1}), session=s)
            return PurgeResult(project, False, {})
        return PurgeResult(project, True, self._run_purge(actor, info))

    def _run_purge(self, actor: str, info: ProjectInfo) -> dict:
        from .pseudo import KeyStore

        project = info.id
        areas = {}
        for name, root in purge_areas(self.settings, project).items():
            areas[name] = describe_area(root)
            if root.is_dir():
                trees.remove(root)
        keys = KeyStore.from_runtime(self.runtime)
        key = {"existed": keys.exists(project), "destroyed_before": keys.destroyed(project)}
        if key["existed"]:
            keys.destroy(project, actor, confirm=True, reason="project purged")
        certificate = {
            "project": project, "title": info.title, "approval_ref": info.approval_ref,
            "closed_on": info.closed_on.isoformat() if info.closed_on else None,
            "retention_days": self.settings.project_end.retention_days,
            "approved_by": [info.purge_requested_by, str(actor)],
            "purged_at": _utcnow().isoformat(), "areas": areas, "key": key,
        }
        with transaction(self._sessions) as s:
            row = self._load(s, project)
            row.purged_at = _utcnow()
            s.flush()
            self._audit.record(AuditEvent(actor=actor, action="project.purge", target=f"project:{project}",
                                          project=project, details={"certificate": certificate}), session=s)
        log.info("purged project %s", project)
        return certificate
