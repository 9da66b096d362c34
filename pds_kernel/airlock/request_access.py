"""The steps every call of :class:`.service.AirlockService` is made of, none of which writes a request.

Load a request by its checked id (:meth:`RequestAccess._load`); read who owns it and where it
stands in a short transaction of its own, then decide whether the actor may act on it, between
transactions (:meth:`RequestAccess._peek`, :meth:`RequestAccess._authorise`); run a call and audit
a refusal before raising it (:meth:`RequestAccess._guarded`, :meth:`RequestAccess._deny`); build
what a viewer sees and may do (:meth:`RequestAccess._view`, :meth:`RequestAccess._with_actions`).
The state changes themselves are the service's (:meth:`.service.AirlockService._apply`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from ..audit import AuditEvent, Outcome
from ..db import transaction
from ..errors import IntegrityError, InvalidInput, InvalidTransition, NotFound, PdsError, PermissionDenied
from ..registry import Registry
from . import permissions
from .inputs import brief
from .limits import AirlockLimits, load_limits
from .models import ExportRequest
from .staging import RefusedFiles, check_request_id
from .states import Action, check_transition
from .submitters import submitted_by
from .views import REVIEWABLE, RequestView, build_view, offered_actions

#: The most of a refusal's reason an audit entry keeps: a reason may quote what a workspace sent
#: (the messages quote little: :func:`.inputs.quoted`), and administrators read the trail
MAX_AUDITED_REASON = 2_000


class RequestAccess:
    """The airlock's runtime, limits and registry, and the read-side steps of every service call."""

    def __init__(self, runtime, limits: AirlockLimits | None = None, registry: Registry | None = None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.limits = limits or load_limits(runtime.settings)
        self.registry = registry or Registry.from_runtime(runtime)
        self.sessions = runtime.sessions
        self._audit = runtime.audit

    def _record(self, event: AuditEvent, session: Session | None = None) -> None:
        self._audit.record(event, session=session)

    def _deny(self, actor: str, action: str, req_id: str, project: str, exc: PdsError) -> None:
        """Audit a refusal: a policy decision (role, state, a refused file type) is ``denied``, a bad
        input or a broken record ``failed``."""
        denied = isinstance(exc, (PermissionDenied, InvalidTransition, RefusedFiles))
        details: dict[str, Any] = {"reason": brief(str(exc), MAX_AUDITED_REASON)}
        if isinstance(exc, RefusedFiles):
            details["refused"] = {brief(n, 200): brief(str(why), MAX_AUDITED_REASON // 4)
                                  for n, why in list(exc.reasons.items())[:self.limits.max_files]}
        self._record(AuditEvent(actor=actor, action=action, target=f"request:{req_id}", project=project,
                                outcome=Outcome.DENIED if denied else Outcome.FAILED, details=details))

    def _load(self, s: Session, request_id: str, lock: bool = False) -> ExportRequest:
        check_request_id(request_id)
        req = s.get(ExportRequest, request_id, with_for_update=lock)
        if req is None:
            raise NotFound(f"no export request {request_id}")
        return req


    def _guarded(self, actor: str, action_name: str, request_id: str, fn):
        """Run ``fn``; audit a refusal (permission, transition, integrity) before re-raising it."""
        try:
            return fn()
        except (PermissionDenied, InvalidTransition, IntegrityError, InvalidInput) as exc:
            project = ""
            try:
                with transaction(self.sessions) as s:
                    req = s.get(ExportRequest, request_id) if isinstance(request_id, str) else None
                    project = req.project_id if req is not None else ""
            except PdsError:
                pass
            self._deny(actor, action_name, request_id if isinstance(request_id, str) else "?", project, exc)
            raise

    def _view(self, req: ExportRequest, viewer: str, contents: bool = False,
              checkers: frozenset[str] | None = None, sent: bool = False) -> RequestView:
        """``req`` as ``viewer`` sees it: redacted unless ``contents`` (decided by
        :func:`.permissions.can_read_contents`, between transactions: see :meth:`_peek`);
        ``checkers`` as for :func:`.views.build_view`; the files' SHA-256s as
        :func:`.permissions.can_see_digests` says (``sent``: the answer to the call that sent them)."""
        digests = permissions.can_see_digests(contents, sent, req.direction or "export", req.released_at is not None)
        return build_view(req, viewer, contents=contents, checkers=checkers, digests=digests)

    def _with_actions(self, view: RequestView, viewer: str, submitters: frozenset[str] | None = None) -> RequestView:
        """Add what ``viewer`` may do now (registry questions: outside any open transaction);
        ``submitters`` (:func:`.submitters.submitted_by`) when the caller read them already."""
        if submitters is None:
            submitters = frozenset()
            if view.state in REVIEWABLE:
                with transaction(self.sessions) as s:
                    submitters = submitted_by(s, view.id)
        return replace(view, actions=offered_actions(self.registry, view, viewer, submitters))

    def _peek(self, request_id: str) -> tuple[str, str, str]:
        """(project, author, state) of a request, read in a short transaction of its own.

        SQLite transactions here are exclusive (BEGIN IMMEDIATE), and the registry opens its own:
        permission checks therefore run between transactions, never inside one, and the write
        transaction that follows re-checks the state it acts on.
        """
        with transaction(self.sessions) as s:
            req = self._load(s, request_id)
            return req.project_id, req.author, req.state

    def _authorise(self, actor: str, request_id: str, action: Action, what: str) -> tuple[str, str, str]:
        """(project, author, state) of a request that ``actor`` may ``action`` now, else raises.

        Visibility comes first (a request's state is nobody else's business), then whether the
        state allows ``action``, then whether ``actor`` holds the role the transition needs. Runs
        between transactions (see :meth:`_peek`); the write that follows re-checks the state."""
        project, author, state = self._peek(request_id)
        permissions.check_view(self.registry, actor, project, author)
        rule = check_transition(state, action)
        permissions.check_act(self.registry, rule.actor, actor, project, author, what)
        return project, author, state
