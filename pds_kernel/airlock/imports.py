"""Import requests: files brought into a project's workspaces through the gate (the airlock, inward).

An import is an :class:`.models.ExportRequest` with ``direction="import"``: the same states, the
same transition table (:mod:`.states`), the same reviews by the project's output checkers (never
the author), the same audit trail, release and revocation (:class:`.service.AirlockService`). What
differs is how it starts and where it ends:

* **start**: a researcher of the project uploads files from their browser to the gate (the web page
  or ``POST api/imports``; the CLI ``pds airlock import``), with a justification; never from a
  workspace (:func:`.permissions.check_import`);
* **scan**: every file is staged (immutable, hashed) and scanned (:mod:`.imports_scan`: type by
  content, size, archive listing, ClamAV). A file that fails is refused with its reason, the request
  is not created, and the refusal is audited: it never reaches a checker;
* **external cohort lists** (``kind="cohort"``): the raw list is staged under ``raw/`` (and only
  there), linked (:mod:`.cohort_intake`: NIR -> SNDS key -> the project's ``PERSON_ID``; by the gate
  itself or, on Kubernetes, by a Job that holds the key: :mod:`.cohort_link`), and the
  request's files are the linked cohort (``PERSON_ID`` + the study's columns) and the match report
  (counts): what checkers review and what the workspace gets;
* **end**: release copies the reviewed bytes to ``imports/<project>/<request>/``, mounted read-only
  at ``/imports/<request>/`` in the project's workspaces, and rewrites ``/imports/MANIFEST.json``
  (:mod:`.imports_mount`).
"""

from __future__ import annotations

import io
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from ..audit import AuditEvent
from ..db import transaction
from ..errors import InvalidInput, PdsError
from ..k8s.pod_status import ExtractMismatch
from ..registry.names import check_project_id, check_user_name
from . import cohort_intake, cohort_link, import_quota, permissions
from .imports_scan import ImportLimits, import_refusal, scan_import
from .inputs import check_text
from .scan_slots import SLOTS
from .service import MAX_TEXT, AirlockService, RequestView
from .staging import RefusedFiles, StagedFile, check_names, request_dir, stage_file
from .states import Action
from .submission import add_request_rows

KINDS = ("files", "cohort")
RAW_DIR = cohort_link.RAW_DIR  #: staging/<project>/<request>/raw/: what was uploaded when it is not what is reviewed


def check_case(names: list[str]) -> None:
    """No two files of one import whose names differ only by case: released side by side, one
    would replace the other on a case-insensitive imports volume (an SMB share), and the workspace
    would read bytes listed under the other's hash (red team 20G)."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise InvalidInput(f"{other!r} and {name!r} differ only by case: rename one of them")


class ImportService:
    """Import requests, on top of the airlock service (one model, one transition table)."""

    def __init__(self, airlock: AirlockService, limits: ImportLimits | None = None):
        self.airlock = airlock
        self.settings = airlock.settings
        self.limits = limits or ImportLimits.from_settings(airlock.settings)

    def _stage(self, directory: Path, files: list[tuple[str, BinaryIO]]) -> list[StagedFile]:
        staging_limits = replace(self.airlock.limits, max_file_bytes=self.limits.max_file_bytes)
        budget = self.limits.max_file_bytes  # all files of one import together
        staged = []
        for index, (name, stream) in enumerate(files):
            sf = stage_file(directory, index, 1, name, stream, staging_limits, budget)
            budget -= sf.size
            staged.append(sf)
        return staged

    def _scan(self, directory: Path, staged: list[StagedFile]) -> dict[int, dict[str, Any]]:
        results, refused = {}, {}
        for sf in staged:
            result = scan_import(directory / sf.stored_name, sf.name, self.limits)
            if result["status"] == "fail":
                refused[sf.name] = result["findings"][0]["message"]
            results[sf.index] = result
        if refused:
            raise RefusedFiles(refused)
        return results

    def _link(self, actor: str, project: str, request_id: str, directory: Path, raw: StagedFile
              ) -> tuple[list[tuple[str, BinaryIO]], dict[str, Any]]:
        """The files a cohort import puts up for review, and the match report (linked where
        ``cohort_link.runner`` says: :mod:`.cohort_link`). A cohort-link Job whose pod refused the
        project's extract is audited (``extract.mount_refused``) and refuses the import."""
        if not raw.name.lower().endswith(".csv"):
            raise RefusedFiles({raw.name: "a cohort list is one CSV file with a NIR column"})
        try:
            cohort, report_bytes, report = cohort_link.link_staged(self.settings, project, request_id, directory,
                                                                   raw.stored_name, audit=self.airlock.runtime.audit)
        except ExtractMismatch as exc:
            self.airlock._record(exc.audit_event(actor, workload="cohort-link", request=request_id))
            raise
        out = [(cohort_intake.COHORT_OUTPUT, io.BytesIO(cohort)),
               (cohort_intake.REPORT_OUTPUT, io.BytesIO(report_bytes))]
        return out, report

    def create(self, actor: str, project: str, files: list[tuple[str, BinaryIO]], justification: str, *,
               kind: str = "files", from_workspace: bool = False) -> RequestView:
        """Stage and scan ``files`` (name, stream), link a cohort list, and submit the import for review."""
        check_user_name(actor)
        check_project_id(project)
        justification = (justification or "").strip()
        service = self.airlock
        try:
            if kind not in KINDS:
                raise InvalidInput(f"unknown import kind {str(kind)[:20]!r}: use {' or '.join(KINDS)}")
            if not justification:
                raise InvalidInput("say why these files need to come into the workspace (justification)")
            check_text(justification, "the justification", MAX_TEXT)
            check_names([name for name, _ in files], service.limits)
            check_case([name for name, _ in files])
            if kind == "cohort" and len(files) != 1:
                raise InvalidInput("a cohort import is exactly one CSV file")
            permissions.check_import(service.registry, actor, project, from_workspace=from_workspace)
            refused = {name: why for name, _ in files if (why := import_refusal(name)) is not None}
            if refused:
                raise RefusedFiles(refused)
            SLOTS.take(actor, self.settings.airlock.import_concurrent_scans)  # scan_slots.py
        except PdsError as exc:
            service._deny(actor, "airlock.import.create", "", project, exc)
            raise
        with SLOTS.held(actor):
            return self._create(actor, project, files, justification, kind)

    def _create(self, actor: str, project: str, files: list[tuple[str, BinaryIO]], justification: str,
                kind: str) -> RequestView:
        service = self.airlock
        thresholds, reviews_required = service._thresholds(project)
        request_id = uuid.uuid4().hex
        directory = request_dir(self.settings.paths.staging, project, request_id)
        context: dict[str, Any] = {"import": {"kind": kind}}
        used = import_quota.staged_bytes(service.sessions, actor)
        try:
            if kind == "cohort":
                raw = self._stage(directory / RAW_DIR, files)
                import_quota.check_quota(used, sum(sf.size for sf in raw), self.settings.airlock.import_max_bytes_per_day)
                used += sum(sf.size for sf in raw)
                self._scan(directory / RAW_DIR, raw)
                context["import"]["raw"] = [{"name": sf.name, "sha256": sf.sha256, "size": sf.size} for sf in raw]
                files, report = self._link(actor, project, request_id, directory, raw[0])
                context["import"]["report"] = report
            staged = self._stage(directory, files)
            import_quota.check_quota(used, sum(sf.size for sf in staged), self.settings.airlock.import_max_bytes_per_day)
            results = self._scan(directory, staged)
            if kind == "cohort":
                for result in results.values():
                    result.update(kind="cohort", status="review")
                    result["rules"]["cohort"] = "review"
                    result["findings"].append({"rule": "cohort", "status": "review",
                                               "message": "cohort linked at intake: PERSON_ID + study columns"})
        except BaseException as exc:
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, PdsError):
                service._deny(actor, "airlock.import.create", request_id, project, exc)
            elif isinstance(exc, Exception):  # a check that crashed refused the import: audited too
                service._deny(actor, "airlock.import.create", request_id, project,
                              PdsError(f"the import could not be checked ({type(exc).__name__}): refused"))
            raise
        return self._record(actor, project, request_id, justification, context, staged, results,
                            reviews_required, thresholds.min_cell)

    def _record(self, actor, project, request_id, justification, context, staged, results,
                reviews_required, min_cell) -> RequestView:
        service = self.airlock
        contents = permissions.can_read_contents(service.registry, actor, project, actor)
        with transaction(service.sessions) as s:
            req = add_request_rows(s, request_id, project, actor, "import", justification, context,
                                   reviews_required, min_cell, staged, results)
            service._record(AuditEvent(
                actor=actor, action="airlock.import.create", target=f"request:{request_id}", project=project,
                details={"kind": context["import"]["kind"], "raw": context["import"].get("raw", []),
                         "match_report": context["import"].get("report"),
                         "files": [{"name": sf.name, "sha256": sf.sha256, "size": sf.size,
                                    "scan": results[sf.index]["status"]} for sf in staged]},
            ), session=s)
            service._apply(s, req, Action.SUBMIT, actor)
            s.refresh(req)
            view = service._view(req, actor, contents)
        return service._with_actions(view, actor)
