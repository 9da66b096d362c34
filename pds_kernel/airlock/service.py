"""The airlock service: the only writer of export requests, used by the CLI and the web service.

Every call takes the acting identity, checks it (:mod:`.permissions`, backed by the registry),
and writes the change and its audit entry in one transaction. Every state change goes through
:func:`_apply`, which asks :func:`.states.check_transition` first; a refused move is audited and
raised as :class:`InvalidTransition`.

Reviews: one verdict per file, bound to its SHA-256; the quorum and decision rules are in
:mod:`.reviews` (approved requests are released when ``auto_release``). Only output checkers of the
project review, release and read the contents of unreleased files (:func:`.open_staged`); everyone
else who may see a request gets a redacted view (:mod:`.views`, :mod:`.permissions`).

Types: blocked, unknown and not-allowed types are refused before staging, and a staged file whose
content is not its type is refused and removed (:class:`.staging.RefusedFiles`, audited as
``denied`` with the reason per file); such a file never reaches a reviewer. Release checks the type
again (stored result, name, first bytes) and refuses rather than trust the votes.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import permissions as platform_permissions
from ..audit import AuditEvent, Outcome
from ..db import transaction
from ..errors import IntegrityError, InvalidInput, InvalidTransition, NotFound, PdsError
from ..hashing import sha256_file
from ..registry.names import check_project_id, check_user_name
from . import permissions, reviews
from .checks import Thresholds
from .export_quota import stage_export
from .gate import ProjectGate, run_gate
from .imports_mount import hide_revoked, refresh_manifest
from .inputs import check_text
from .listing import DEFAULT_PER_PAGE, ListQuery, RequestPage, read_page
from .models import ExportRequest, RequestFile, Review
from .rebuild import rebuild_sandbox, release_copies
from .release import ReleaseItem, check_not_releasing, copy_release, outbox_dir, type_refusal, withdraw_release
from .request_access import RequestAccess
from .reviews import DECISIONS  # noqa: F401  (re-exported)
from .staging import (
    StagedFile,
    check_names,
    check_staged_types,
    check_types,
    request_dir,
)
from .states import REVIEWABLE_STATES, Action, State, check_transition
from .submission import (
    add_request_rows,
    checked_context,
    discard,
    model_check_summary,
    request_gate,
    resubmission_plan,
    submitted_summary,
)
from .submitters import submitted_by
from .views import (  # noqa: F401  (FileView, RequestSummary, RequestView, ReviewView: re-exported)
    REVIEWABLE,
    FileView,
    RequestSummary,
    RequestView,
    ReviewView,
)
from .views import stored_check as _stored_check

log = logging.getLogger(__name__)

MAX_TEXT = 10_000

#: the states where the verdicts shown are those that count now (:func:`.permissions.checkers_of`)
_OPEN = frozenset({State.SUBMITTED.value, State.UNDER_REVIEW.value, State.APPROVED.value})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AirlockService(RequestAccess):
    """Export requests of every project, backed by the shared database and the staging area (the
    steps every call is made of, loading, authorising, auditing a refusal: :mod:`.request_access`)."""

    # ---- the one state change --------------------------------------------------------------------
    def _apply(self, s: Session, req: ExportRequest, action: Action, actor: str, **details: Any) -> None:
        """The one place a request changes state: check the move, change, audit, same transaction."""
        rule = check_transition(req.state, action)
        before = req.state
        req.state = rule.to.value
        req.updated_at = _utcnow()
        s.flush()
        self._record(AuditEvent(actor=actor, action=rule.event, target=f"request:{req.id}",
                                project=req.project_id,
                                details={"from": before, "to": rule.to.value, **details}), session=s)

    # ---- reads -----------------------------------------------------------------------------------
    def list_requests(self, actor: str, *, project: str | None = None, scope: str = "mine",
                      state: str | None = None, author: str | None = None) -> list[RequestSummary]:
        """The whole list at once (see :meth:`list_page`): ``mine``, ``queue``, ``all`` or ``others``."""
        return self._list(actor, ListQuery(scope, project, state, author), 1, None).items

    def list_page(self, actor: str, *, scope: str = "mine", project: str | None = None,
                  state: str | None = None, author: str | None = None, page: int = 1,
                  per_page: int = DEFAULT_PER_PAGE) -> RequestPage:
        """One page of a list, newest first, filtered by project, state and author (:mod:`.listing`):
        ``mine``: the actor's own requests; ``queue``: requests the actor may review now; ``all``:
        every request the actor may see; ``others``: the same but their own."""
        return self._list(actor, ListQuery(scope, project, state, author), page, per_page)

    def _list(self, actor: str, query: ListQuery, page: int, per_page: int | None) -> RequestPage:
        check_user_name(actor)
        result = read_page(self.sessions, self.registry, actor, query, page=page, per_page=per_page)
        self._record(AuditEvent(actor=actor, action="airlock.request.list", target=f"scope:{query.scope}",
                                project=query.project or "",
                                details={"count": len(result.items), "total": result.total, "page": result.page}))
        return result

    def get_request(self, actor: str, request_id: str) -> RequestView:
        def run():
            project, author, state = self._peek(request_id)
            permissions.check_view(self.registry, actor, project, author)
            contents = permissions.can_read_contents(self.registry, actor, project, author)
            # verdicts count as the quorum counts them until the request is released or closed
            checkers = permissions.checkers_of(self.registry, project) if state in _OPEN else None
            with transaction(self.sessions) as s:
                req = self._load(s, request_id)
                submitters = submitted_by(s, req.id) if checkers or req.state in REVIEWABLE else frozenset()
                view = self._view(req, actor, contents, checkers and checkers - submitters)
                self._record(AuditEvent(actor=actor, action="airlock.request.view", target=f"request:{req.id}",
                                        project=req.project_id, details={"state": req.state}), session=s)
            return self._with_actions(view, actor, submitters)
        return self._guarded(actor, "airlock.request.view", request_id, run)

    def open_staged(self, actor: str, request_id: str, index: int) -> tuple[FileView, Path]:
        """The staged copy of file ``index``, for an output checker of the project only
        (:func:`.permissions.check_read_contents`): never the author, before or after release (the
        author downloads released bytes with :meth:`download`), never an admin as such."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 10**6:
            raise InvalidInput("a file number is a whole number from 0")

        def run():
            project, author, _ = self._peek(request_id)
            permissions.check_view(self.registry, actor, project, author)
            permissions.check_read_contents(self.registry, actor, project, author)
            with transaction(self.sessions) as s:
                req = self._load(s, request_id)
                f = next((f for f in req.files if f.index == index), None)
                if f is None:
                    raise NotFound(f"request {request_id} has no file number {index}")
                path = request_dir(self.settings.paths.staging, req.project_id, req.id) / f.stored_name
                self._record(AuditEvent(actor=actor, action="airlock.file.view", target=f"request:{req.id}",
                                        project=req.project_id, details={"file": f.index, "sha256": f.sha256}),
                             session=s)
                view = FileView(f.index, f.name, f.sha256, f.size, f.kind, f.check_status, _stored_check(f))
                return view, path
        return self._guarded(actor, "airlock.file.view", request_id, run)

    # ---- submission ------------------------------------------------------------------------------
    def _thresholds(self, project: str) -> tuple[Thresholds, int]:
        info = self.registry.get_project(project)
        disclosure = self.settings.disclosure
        thresholds = Thresholds.for_project(disclosure, info.min_cell, info.max_table_rows)
        return thresholds, reviews.quorum(info.reviews_required or disclosure.reviews_required)

    def _gate(self, project: str, thresholds: Thresholds, request_id: str, author: str) -> ProjectGate:
        return request_gate(self.settings, self.sessions, self.registry, self.limits, project, thresholds,
                            request_id, author, self.runtime.audit)

    def create(self, actor: str, project: str, files: list[tuple[str, BinaryIO]], justification: str,
               context: Mapping[str, Any] | None = None, *, author: str | None = None,
               submit: bool = True) -> RequestView:
        """Stage ``files`` (name, readable binary stream), check them, and submit unless ``submit=False``."""
        author = author or actor
        check_user_name(actor)
        check_user_name(author)
        check_project_id(project)
        justification = (justification or "").strip()
        try:
            if not justification:
                raise InvalidInput("say why these outputs need to leave the workspace (justification)")
            check_text(justification, "the justification", MAX_TEXT)
            context = checked_context(context)
            check_names([name for name, _ in files], self.limits)
            permissions.check_submitter(self.registry, actor, project, author)
            check_types([name for name, _ in files], self.limits)
            contents = permissions.can_read_contents(self.registry, actor, project, author)
        except PdsError as exc:
            self._deny(actor, "airlock.request.create", "", project, exc)
            raise
        thresholds, reviews_required = self._thresholds(project)
        request_id = uuid.uuid4().hex
        directory = request_dir(self.settings.paths.staging, project, request_id)
        try:
            staged = stage_export(self, author, directory, 1, [(i, n, st) for i, (n, st) in enumerate(files)])
            check_staged_types(directory, staged, self.limits)
            staged = release_copies(directory, staged, rebuild_sandbox(self.settings, project), actor)
            results = run_gate(self._gate(project, thresholds, request_id, author), directory,
                               [(sf.index, sf.name, sf.stored_name, sf.sha256) for sf in staged], context)
        except BaseException as exc:
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, PdsError):
                self._deny(actor, "airlock.request.create", request_id, project, exc)
            raise
        with transaction(self.sessions) as s:
            req = add_request_rows(s, request_id, project, author, "export", justification, context,
                                   reviews_required, thresholds.min_cell, staged, results)
            self._record(AuditEvent(
                actor=actor, action="airlock.request.create", target=f"request:{request_id}", project=project,
                details={"author": author, "files": [{"name": sf.name, "sha256": sf.sha256, "size": sf.size,
                                                      "check": results[sf.index]["status"],
                                                      **submitted_summary(results[sf.index]),
                                                      **model_check_summary(results[sf.index])}
                                                     for sf in staged]},
            ), session=s)
            if submit:
                self._apply(s, req, Action.SUBMIT, actor)
            s.refresh(req)
            view = self._view(req, actor, contents, sent=True)
        return self._with_actions(view, actor)

    def submit(self, actor: str, request_id: str) -> RequestView:
        return self._simple(actor, request_id, Action.SUBMIT, "submit")

    def withdraw(self, actor: str, request_id: str, reason: str = "") -> RequestView:
        check_text(reason, "the reason", MAX_TEXT)
        return self._simple(actor, request_id, Action.WITHDRAW, "withdraw", reason=reason[:MAX_TEXT])

    def _simple(self, actor: str, request_id: str, action: Action, what: str, **details: Any) -> RequestView:
        def run():
            project, author, state = self._authorise(actor, request_id, action, what)
            contents = permissions.can_read_contents(self.registry, actor, project, author)
            with transaction(self.sessions) as s:
                req = self._load(s, request_id, lock=True)
                self._apply(s, req, action, actor, **details)
                view = self._view(req, actor, contents)
            return self._with_actions(view, actor)
        return self._guarded(actor, f"airlock.request.{action.value}", request_id, run)

    def resubmit(self, actor: str, request_id: str, files: list[tuple[str, BinaryIO]] = (),
                 remove: Iterable[str] = (), justification: str | None = None,
                 acro: Mapping[str, Any] | None = None) -> RequestView:
        """Answer a request for changes: replace or add ``files`` (by name), drop ``remove``, resubmit.

        ``acro`` adds or replaces ACRO records (by file name) for the new versions. A refused or
        failed resubmission is audited and leaves nothing of its round in staging, so it can be
        tried again."""
        files, remove = list(files), set(remove)

        def prepare():
            project, author, state = self._authorise(actor, request_id, Action.RESUBMIT, "resubmit")
            contents = permissions.can_read_contents(self.registry, actor, project, author)
            records = checked_context({"acro": acro}).get("acro") if acro else {}
            if not isinstance(records, dict) or not all(isinstance(r, dict) for r in records.values()):
                raise InvalidInput("acro must map file names to ACRO records")
            with transaction(self.sessions) as s:
                req = self._load(s, request_id)
                if req.direction == "import":
                    raise InvalidInput("an import is not resubmitted: withdraw it and import the corrected "
                                       "files as a new request")
                context, kept, plan = resubmission_plan(req, files, remove, records, self.limits)
                return req.project_id, req.round + 1, context, contents, req.author, kept, plan
        project, round_, context, contents, author, kept, plan = self._guarded(
            actor, "airlock.request.resubmit", request_id, prepare)
        directory = request_dir(self.settings.paths.staging, project, request_id)
        staged: list[StagedFile] = []

        def stage():
            staged.extend(stage_export(self, author, directory, round_, plan))
            check_staged_types(directory, staged, self.limits)
            staged[:] = release_copies(directory, staged, rebuild_sandbox(self.settings, project), actor)

        def run():
            thresholds, _ = self._thresholds(project)
            gate = self._gate(project, thresholds, request_id, author)
            # The checks (a model's attack takes minutes) run before the write transaction, on the
            # files the request will hold; the transaction then checks that nobody resubmitted meanwhile.
            files_after = {i: (i, n, stored, sha) for i, (n, stored, sha) in kept.items()}
            files_after.update({sf.index: (sf.index, sf.name, sf.stored_name, sf.sha256) for sf in staged})
            results = run_gate(gate, directory, [files_after[i] for i in sorted(files_after)], context)
            with transaction(self.sessions) as s:
                req = self._load(s, request_id, lock=True)
                if req.round + 1 != round_:
                    raise InvalidTransition("the request changed while resubmitting: try again")
                for f in list(req.files):
                    if f.name in remove:
                        req.files.remove(f)
                        s.delete(f)
                by_index = {f.index: f for f in req.files}
                for sf in staged:
                    f = by_index.get(sf.index)
                    if f is None:  # a new file: its check's columns are not null, so set before the flush
                        result = results[sf.index]
                        f = RequestFile(request_id=req.id, index=sf.index, name=sf.name, kind=result["kind"],
                                        check_status=result["status"], check_result=json.dumps(result))
                        req.files.append(f)
                    f.stored_name, f.sha256, f.size = sf.stored_name, sf.sha256, sf.size
                s.flush()
                if {f.index: (f.index, f.name, f.stored_name, f.sha256) for f in req.files} != files_after:
                    raise InvalidTransition("the request changed while resubmitting: try again")
                for f in req.files:
                    f.kind, f.check_status = results[f.index]["kind"], results[f.index]["status"]
                    f.check_result = json.dumps(results[f.index])
                req.round = round_
                req.context = json.dumps(context)
                if justification is not None and justification.strip():
                    req.justification = justification.strip()[:MAX_TEXT]
                self._apply(s, req, Action.RESUBMIT, actor, round=round_,
                            replaced=[sf.name for sf in staged], removed=sorted(remove),
                            files=[{"name": f.name, "sha256": f.sha256} for f in req.files])
                s.refresh(req)
                return self._view(req, actor, contents, sent=True)

        try:
            self._guarded(actor, "airlock.request.resubmit", request_id, stage)
            view = self._guarded(actor, "airlock.request.resubmit", request_id, run)
        except BaseException:
            discard(directory, staged)  # nothing committed refers to this round's copies
            raise
        return self._with_actions(view, actor)

    # ---- review ----------------------------------------------------------------------------------
    def review(self, actor: str, request_id: str, verdicts: Mapping[int, Mapping[str, str]]) -> RequestView:
        """Record ``actor``'s verdicts: ``{file index: {"decision", "comment", "sha256"?}}``.

        The verdicts must cover every file the actor has no valid verdict on. ``sha256``, when given,
        must be the bytes the reviewer saw (the gate's API and page require it, the CLI sends what it
        listed). Decides the request when enough checkers are complete.
        """
        check_user_name(actor)

        def run():
            project, author, _ = self._peek(request_id)
            permissions.check_checker(self.registry, actor, project, author)
            checkers = permissions.checkers_of(self.registry, project)  # whose verdicts count
            with transaction(self.sessions) as s:
                req = self._load(s, request_id, lock=True)
                if req.state not in {st.value for st in REVIEWABLE_STATES}:
                    raise InvalidTransition(f"cannot review a request that is {req.state}")
                submitters = submitted_by(s, req.id)
                permissions.check_not_submitter(actor, submitters)
                if actor in reviews.complete_reviewers(req):
                    raise InvalidTransition("you have already reviewed this version of the request")
                files = {f.index: f for f in req.files}
                clean = reviews.clean_verdicts(request_id, files, verdicts, reviews.valid_verdicts(req).get(actor, {}))
                for index, (decision, comment) in sorted(clean.items()):
                    s.add(Review(request_id=req.id, reviewer=actor, file_index=index,
                                 file_sha256=files[index].sha256, decision=decision, comment=comment,
                                 round=req.round, created_at=_utcnow()))
                s.flush()
                s.refresh(req)
                self._record(AuditEvent(
                    actor=actor, action="airlock.review.submit", target=f"request:{req.id}",
                    project=req.project_id,
                    details={"round": req.round, "verdicts": {files[i].name: {"decision": d, "sha256": files[i].sha256}
                                                               for i, (d, _) in clean.items()}}), session=s)
                if req.state == State.SUBMITTED.value:
                    self._apply(s, req, Action.START_REVIEW, actor)
                complete = reviews.complete_reviewers(req, checkers - submitters)
                action = reviews.decision_of(complete, req.reviews_required)
                if action is not None:
                    self._apply(s, req, action, actor, reviewers=sorted(complete),
                                **reviews.uncounted_reviewers(req, complete))
                return req.state
        state = self._guarded(actor, "airlock.review.submit", request_id, run)
        if state == State.APPROVED.value and self.limits.auto_release:
            return self.release(actor, request_id)
        return self.get_request(actor, request_id)

    # ---- release, revoke, download ---------------------------------------------------------------
    def release(self, actor: str, request_id: str) -> RequestView:
        """Copy exactly the reviewed bytes to the outbox; at most once, whatever runs concurrently."""
        check_user_name(actor)
        claim = secrets.token_hex(16)

        def take_claim():
            project, author, state = self._authorise(actor, request_id, Action.RELEASE, "release")
            contents = permissions.can_read_contents(self.registry, actor, project, author)
            checkers = permissions.checkers_of(self.registry, project)
            with transaction(self.sessions) as s:
                req = self._load(s, request_id, lock=True)
                check_transition(req.state, Action.RELEASE)
                complete = reviews.complete_reviewers(req, checkers - submitted_by(s, req.id))
                reviews.check_approvals(req, complete)
                directory = request_dir(self.settings.paths.staging, req.project_id, req.id)
                for f in req.files:  # defence in depth: a refused type never leaves, whatever the votes say
                    problem = type_refusal(directory, f, self.limits.allowed_extensions, req.direction)
                    if problem is not None:
                        raise IntegrityError(f"{f.name} cannot be released: {problem}; nothing released")
                stale = _utcnow() - timedelta(seconds=self.limits.stale_release_seconds)
                # the conditional UPDATE is the lock: only one caller can move the claim from empty
                taken = s.execute(
                    update(ExportRequest)
                    .where(ExportRequest.id == req.id, ExportRequest.state == State.APPROVED.value,
                           (ExportRequest.release_claim.is_(None)) | (ExportRequest.release_claimed_at < stale))
                    .values(release_claim=claim, release_claimed_at=_utcnow())
                    .execution_options(synchronize_session=False)
                ).rowcount
                if taken != 1:
                    raise InvalidTransition(f"request {request_id} is being released by someone else")
                reviewed = {(r.file_index, r.file_sha256) for per in complete.values() for r in per.values()}
                items = []
                for f in req.files:
                    if (f.index, f.sha256) not in reviewed:
                        raise IntegrityError(f"{f.name} was not reviewed in this version: nothing released")
                    items.append(ReleaseItem(directory / f.stored_name, f.name, f.sha256))
                return req.project_id, items, contents, req.direction

        project, items, contents, direction = self._guarded(actor, "airlock.request.release", request_id, take_claim)
        target = self._release_root(direction)
        try:
            copy_release(target, project, request_id, claim, items, open_to_workspaces=direction == "import")
        except BaseException as exc:
            with transaction(self.sessions) as s:
                s.execute(update(ExportRequest).where(ExportRequest.id == request_id,
                                                      ExportRequest.release_claim == claim)
                          .values(release_claim=None, release_claimed_at=None)
                          .execution_options(synchronize_session=False))
                self._record(AuditEvent(actor=actor, action="airlock.request.release", target=f"request:{request_id}",
                                        project=project, outcome=Outcome.FAILED,
                                        details={"reason": str(exc) or type(exc).__name__}), session=s)
            raise

        with transaction(self.sessions) as s:
            req = self._load(s, request_id, lock=True)
            if req.release_claim != claim:  # pragma: no cover - only after a takeover of a stale claim
                raise IntegrityError(f"the release of {request_id} was taken over by another process")
            req.released_at = _utcnow()
            self._apply(s, req, Action.RELEASE, actor,
                        files=[{"name": i.name, "sha256": i.sha256} for i in items])
            view = self._view(req, actor, contents)
        if direction == "import":
            refresh_manifest(target, self.sessions, project)
        return self._with_actions(view, actor)

    def _release_root(self, direction: str) -> Path:
        """Exports go to the outbox (downloaded by their author); imports to the imports area,
        mounted read-only in the project's workspaces (:mod:`.imports_mount`)."""
        return self.settings.paths.imports if direction == "import" else self.settings.paths.outbox

    def revoke(self, actor: str, request_id: str, reason: str) -> RequestView:
        """Take back an approval (checker/admin) or a release (admin): the outbox copy is withdrawn."""
        if not (reason or "").strip():
            raise InvalidInput("say why the request is revoked")
        check_text(reason, "the reason", MAX_TEXT)

        def run():
            project, author, state = self._authorise(actor, request_id, Action.REVOKE, "revoke")
            contents = permissions.can_read_contents(self.registry, actor, project, author)
            with transaction(self.sessions) as s:
                req = self._load(s, request_id, lock=True)
                if req.state != state:
                    raise InvalidTransition(f"request {request_id} changed meanwhile: it is now {req.state}")
                check_not_releasing(req, self.limits.stale_release_seconds)
                self._apply(s, req, Action.REVOKE, actor, reason=reason.strip()[:MAX_TEXT])
                direction = req.direction
                if state == State.RELEASED.value:
                    withdraw_release(self._release_root(direction), req.project_id, req.id)
                    if direction == "import":
                        hide_revoked(self._release_root(direction), req.project_id, req.id)
                view = self._view(req, actor, contents)
            if state == State.RELEASED.value and direction == "import":
                refresh_manifest(self._release_root(direction), self.sessions, project)
            return self._with_actions(view, actor)
        return self._guarded(actor, "airlock.request.revoke", request_id, run)

    def download(self, actor: str, request_id: str, index: int) -> tuple[str, Path]:
        """(name, path) of a released file, for its author only, after checking its bytes again."""
        check_user_name(actor)

        def run():
            project, author, _ = self._peek(request_id)
            platform_permissions.check_download(self.registry, actor, project, author)
            with transaction(self.sessions) as s:
                req = self._load(s, request_id)
                if req.state != State.RELEASED.value:
                    raise InvalidTransition(f"request {request_id} is {req.state}, not released")
                if req.direction == "import":
                    raise InvalidInput(f"request {request_id} is an import: its files are in the project's "
                                       f"workspaces under /imports/{request_id}, not downloaded")
                f = next((f for f in req.files if f.index == index), None)
                if f is None:
                    raise NotFound(f"request {request_id} has no file number {index}")
                path = outbox_dir(self.settings.paths.outbox, req.project_id, req.id) / f.name
                if not path.is_file() or sha256_file(path) != f.sha256:
                    raise IntegrityError(f"the released copy of {f.name} is missing or altered: ask an admin")
                self._record(AuditEvent(actor=actor, action="airlock.file.download", target=f"request:{req.id}",
                                        project=req.project_id, details={"file": f.name, "sha256": f.sha256}),
                             session=s)
                return f.name, path
        return self._guarded(actor, "airlock.file.download", request_id, run)
