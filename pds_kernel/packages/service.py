"""The package service: the only writer of package requests, approvals and the wheelhouse.

* :meth:`PackageService.request`: a researcher asks for ``NAME[==VERSION]`` for a project
  (``pds packages request``, ``ws.request_package`` through the gate). Recorded and audited.
* :meth:`PackageService.approve`: an admin approves ``NAME==VERSION``; the platform downloads it
  and its dependency closure as wheels (:mod:`.download`), reads each one's hash and licence,
  adds them to the wheelhouse the index serves (:mod:`.wheelhouse`), records the files and marks
  the matching open requests approved, with one audit entry listing every file, hash and licence.
* :meth:`PackageService.refuse`: an admin refuses a request, with a reason.
* :meth:`PackageService.revoke`: an admin (or the package-approval Job) withdraws an approved
  release ``NAME==VERSION``: its wheels leave the index at once (a new ``pip install`` gets the
  one-line "not an approved package" answer), the approved requests for it become ``revoked``,
  and one audit entry lists the files withdrawn with their hashes. The wheels its approval brought
  as dependencies stay served (other approved packages may need them): revoke them by their own
  ``NAME==VERSION``. Copies already installed in homes stay there (``pip uninstall`` in the
  workspace, or a purge of the home).

Every decision goes through :mod:`.permissions`.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from ..audit import AuditEvent, Outcome
from ..audit_newest import Selector
from ..db import transaction
from ..errors import IntegrityError, InvalidInput, InvalidTransition, NotFound, PermissionDenied
from ..registry import Registry
from ..registry.names import check_project_id
from . import permissions
from .download import Target, download_closure
from .models import PackageFile, PackageRequest, utcnow
from .names import parse_requirement
from .scan import WheelRefusal, scan_limits, scan_wheels
from .wheelcheck import startup_hooks, wheel_refusal
from .wheelhouse import Wheelhouse, WheelInfo, read_wheel, sha256_of

REQUESTED, APPROVED, REFUSED, REVOKED = "requested", "approved", "refused", "revoked"


class PackageRefused(PermissionDenied):
    """An approval the malware scan refused (:mod:`.scan`): nothing of it is served."""
MAX_JUSTIFICATION = 2000


@dataclass(frozen=True)
class RequestView:
    id: str
    name: str
    version: str
    project: str
    requested_by: str
    justification: str
    state: str
    created_at: datetime
    decided_by: str | None
    decision: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name


@dataclass(frozen=True)
class FileView:
    file: str
    name: str
    version: str
    sha256: str
    size: int
    licence: str
    approved_for: str
    approved_by: str


def _request_view(r: PackageRequest) -> RequestView:
    return RequestView(r.id, r.name, r.version, r.project_id, r.requested_by, r.justification, r.state,
                       r.created_at, r.decided_by, r.decision)


def _file_view(f: PackageFile) -> FileView:
    return FileView(f.file, f.name, f.version, f.sha256, f.size, f.licence, f.approved_for, f.approved_by)


class PackageService:
    def __init__(self, runtime, *, registry: Registry | None = None, downloader=download_closure):
        self.runtime = runtime
        self.settings = runtime.settings
        self.registry = registry or Registry.from_runtime(runtime)
        self.wheelhouse = Wheelhouse(self.settings.paths.packages)
        self.downloader = downloader

    @property
    def target(self) -> Target:
        conf = self.settings.packages
        python = conf.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return Target(python_version=python, platform=conf.platform, index_url=conf.upstream_index)

    # ---- researchers ----------------------------------------------------------------------------
    def request(self, actor: str, project: str, requirement: str, justification: str = "") -> RequestView:
        """Record ``actor``'s request for ``requirement`` in ``project`` (an active researcher)."""
        req = parse_requirement(requirement)
        project = check_project_id(project)
        justification = (justification or "").strip()
        if len(justification) > MAX_JUSTIFICATION:
            raise InvalidInput(f"the justification is limited to {MAX_JUSTIFICATION} characters")
        permissions.check_request(self.registry, actor, project)
        if self.is_approved(req.name, req.version):
            raise InvalidTransition(f"{req} is already approved: install it with pip install {req}")
        with transaction(self.runtime.sessions) as s:
            row = PackageRequest(id=uuid.uuid4().hex, name=req.name, version=req.version, project_id=project,
                                 requested_by=actor, justification=justification, state=REQUESTED,
                                 created_at=utcnow())
            s.add(row)
            self.runtime.audit.record(AuditEvent(
                actor=actor, action="packages.request", target=f"package:{req}", project=project,
                details={"request": row.id, "name": req.name, "version": req.version,
                         "justification": justification[:200]}), session=s)
            return _request_view(row)

    # ---- admins ---------------------------------------------------------------------------------
    def approve(self, actor: str, requirement: str) -> list[FileView]:
        """Download ``NAME==VERSION`` and its closure, serve them, close the matching requests."""
        permissions.check_approve(self.registry, actor)
        req = parse_requirement(requirement, pinned=True)
        target = self.target
        with tempfile.TemporaryDirectory(prefix="pds-packages-") as tmp:
            dest = Path(tmp) / "wheels"
            try:  # a failed download is audited too (a source-only project, an upstream refusal, a timeout)
                paths = [Path(p) for p in self.downloader(req, dest, target)]
            except Exception as exc:
                self._deny(actor, req, WheelRefusal("", str(exc) or type(exc).__name__), [])
                raise
            for path in paths:  # the archive first: pip must unpack what the scan read
                reason = wheel_refusal(path, scan_limits(self.settings).max_unpacked_bytes)
                if reason is None:
                    try:
                        read_wheel(path)
                    except InvalidInput as exc:
                        reason = str(exc)
                if reason is not None:
                    self._deny(actor, req, WheelRefusal(path.name, reason), paths)
                    raise PackageRefused(f"{req} is not approved: its wheel {path.name} was refused ({reason}); "
                                         "nothing was added to the package index: approve another release, "
                                         "or ask its maintainers for a standard wheel")
            wheels = [read_wheel(p) for p in paths]
            hooks = {w.file: startup_hooks(p) for w, p in zip(wheels, paths, strict=True)}
            if not any(w.project == req.name and w.version == req.version for w in wheels):
                missing = f"the download of {req} did not hold {req.name} {req.version} itself"
                self._deny(actor, req, WheelRefusal("", missing), paths)
                raise NotFound(missing)
            revoked = self._revoked_dependency(req, wheels)
            if revoked is not None:
                self._deny(actor, req, revoked, paths)
                raise PackageRefused(f"{req} is not approved: {revoked.reason}; nothing was added to the package index")
            refused = scan_wheels(paths, self.settings)
            if refused is not None:
                self._deny(actor, req, refused, paths)
                raise PackageRefused(f"{req} is not approved: its wheel {refused.file} failed the malware scan "
                                     f"({refused.reason}); nothing was added to the package index")
            try:
                self.wheelhouse.add(wheels, dest)
            except IntegrityError as exc:  # the upstream answered other bytes under an approved name
                self._deny(actor, req, WheelRefusal(str(exc).split(" ")[0], str(exc)), paths)
                raise PackageRefused(f"{req} is not approved: {exc}") from None
        return self._record_approval(actor, str(req), req.name, req.version, wheels, target, hooks)

    def _revoked_dependency(self, req, wheels: list[WheelInfo]) -> WheelRefusal | None:
        """A wheel of the closure, other than the release asked, whose release was revoked and not
        approved by name since (the audit trail's newest authentic ``packages.revoke`` or
        ``packages.approve`` of it): a revoked release came back, unannounced, as a dependency of
        the next approval that needed it (red team 13). An administrator who judges it fine again
        approves it by name first."""
        for w in wheels:
            if (w.project, w.version) == (req.name, req.version):
                continue
            found = self.runtime.audit.newest([Selector(("packages.revoke", "packages.approve"),
                                                        f"package:{w.project}=={w.version}")])
            if found.problem is not None or (found.row is not None and found.row.action == "packages.revoke"):
                why = found.problem or "it was revoked (pds packages revoke)"
                return WheelRefusal(w.file, f"{w.project}=={w.version}, a dependency, cannot be approved: {why}; "
                                            f"approve {w.project}=={w.version} by name first if it is fine again")
        return None

    def _deny(self, actor: str, req, refused: WheelRefusal, paths: list[Path]) -> None:
        """Audit a refused approval (``packages.approve``, denied): one of its wheels (``file``), or its
        download (``file`` empty: red team 13 found those refusals unaudited)."""
        self.runtime.audit.record(AuditEvent(
            actor=actor, action="packages.approve", target=f"package:{req}", outcome=Outcome.DENIED,
            details={"file": refused.file, "reason": refused.reason[:300],
                     "files": [{"file": p.name, "sha256": sha256_of(p)} for p in paths]}))

    def _record_approval(self, actor: str, requirement: str, name: str, version: str,
                         wheels: list[WheelInfo], target: Target, hooks: dict[str, list[str]]) -> list[FileView]:
        now = utcnow()
        with transaction(self.runtime.sessions) as s:
            files = []
            for w in wheels:
                row = s.get(PackageFile, w.file)
                if row is None:
                    row = PackageFile(file=w.file, name=w.project, version=w.version, sha256=w.sha256,
                                      size=w.size, licence=w.licence[:300],
                                      requires_python=w.requires_python[:100], approved_for=requirement,
                                      approved_by=actor, approved_at=now)
                    s.add(row)
                files.append(row)
            open_requests = s.scalars(select(PackageRequest).where(
                PackageRequest.name == name, PackageRequest.state == REQUESTED)).all()
            closed = []
            for r in open_requests:
                if r.version in ("", version):
                    r.state, r.decided_by, r.decided_at, r.decision = APPROVED, actor, now, requirement
                    closed.append(r.id)
            self.runtime.audit.record(AuditEvent(
                actor=actor, action="packages.approve", target=f"package:{requirement}",
                details={"requests": closed, "python": target.python_version, "platform": target.platform,
                         "index": target.index_url,
                         "files": [{"file": w.file, "sha256": w.sha256, "licence": w.licence[:100],
                                    **({"runs_without_import": hooks[w.file][:20]} if hooks.get(w.file) else {})}
                                   for w in wheels]}), session=s)
            return [_file_view(f) for f in files]

    def refuse(self, actor: str, request_id: str, reason: str) -> RequestView:
        permissions.check_approve(self.registry, actor)
        if not reason or not reason.strip():
            raise InvalidInput("say why the package is refused (the researcher reads it)")
        with transaction(self.runtime.sessions) as s:
            row = s.get(PackageRequest, request_id)
            if row is None:
                raise NotFound(f"no package request {request_id}")
            if row.state != REQUESTED:
                raise InvalidTransition(f"request {request_id} is already {row.state}")
            row.state, row.decided_by, row.decided_at, row.decision = REFUSED, actor, utcnow(), reason.strip()
            self.runtime.audit.record(AuditEvent(
                actor=actor, action="packages.refuse", target=f"package:{row.name}", project=row.project_id,
                details={"request": row.id, "reason": reason.strip()[:200]}), session=s)
            return _request_view(row)

    def revoke(self, actor: str, requirement: str, reason: str) -> list[FileView]:
        """Withdraw the approved release ``requirement`` (``NAME==VERSION``); return its files."""
        permissions.check_approve(self.registry, actor)
        req = parse_requirement(requirement, pinned=True)
        if not reason or not reason.strip():
            raise InvalidInput("say why the package is revoked (it is kept in the audit trail)")
        if not self.is_approved(req.name, req.version):
            raise NotFound(f"{req} is not an approved package: nothing to revoke (pds packages list)")
        served = self.wheelhouse.remove(req.name, req.version)  # first: the index stops serving it
        now = utcnow()
        with transaction(self.runtime.sessions) as s:
            rows = s.scalars(select(PackageFile).where(PackageFile.name == req.name,
                                                       PackageFile.version == req.version)).all()
            files = [_file_view(f) for f in rows]
            for row in rows:
                s.delete(row)
            requests = s.scalars(select(PackageRequest).where(
                PackageRequest.name == req.name, PackageRequest.state == APPROVED,
                PackageRequest.decision == str(req))).all()
            for r in requests:
                r.state, r.decided_by, r.decided_at = REVOKED, actor, now
            self.runtime.audit.record(AuditEvent(
                actor=actor, action="packages.revoke", target=f"package:{req}",
                details={"reason": reason.strip()[:200], "requests": [r.id for r in requests],
                         "files": [{"file": f.file, "sha256": f.sha256} for f in files],
                         "served": len(served)}), session=s)
            return files

    # ---- reading --------------------------------------------------------------------------------
    def is_approved(self, name: str, version: str = "") -> bool:
        with transaction(self.runtime.sessions) as s:
            query = select(PackageFile.file).where(PackageFile.name == name)
            if version:
                query = query.where(PackageFile.version == version)
            return s.scalars(query.limit(1)).first() is not None

    def requests(self, actor: str) -> list[RequestView]:
        """The requests ``actor`` may see (all for admins; else those of their projects)."""
        with transaction(self.runtime.sessions) as s:
            rows = s.scalars(select(PackageRequest).order_by(PackageRequest.created_at)).all()
            views = [_request_view(r) for r in rows]
        allowed: dict[str, bool] = {}
        for v in views:
            if v.project not in allowed:
                allowed[v.project] = permissions.can_see_requests_of(self.registry, actor, v.project)
        return [v for v in views if allowed[v.project]]

    def approved_files(self) -> list[FileView]:
        with transaction(self.runtime.sessions) as s:
            return [_file_view(f) for f in s.scalars(select(PackageFile).order_by(PackageFile.name,
                                                                                  PackageFile.file))]
