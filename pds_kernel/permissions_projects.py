"""Who may do what to a project's life: build its extract, halt it, destroy its key, purge it.

Part of the platform's one permissions module: :mod:`pds_kernel.permissions` re-exports every
function here, and the services import them from there (see its docstring for the decisions).
"""

from __future__ import annotations

from datetime import date, timedelta

from .errors import PermissionDenied
from .permissions_actors import Impersonation, Right, audit_actor, can_act_personally, has_right, is_administrator


def project_refusal(info, today: date) -> str | None:
    """Why ``info`` (a :class:`~pds_kernel.registry.service.ProjectInfo`) grants nothing today."""
    if getattr(info, "halted", False):
        return (f"project {info.id} is halted by an administrator ({info.halt_reason or 'no reason given'}): "
                "nothing of it runs until `pds project resume`")
    if info.status.value != "active":
        return f"project {info.id} is {info.status.value}"
    if not info.start_date <= today <= info.end_date:
        return f"project {info.id} runs from {info.start_date} to {info.end_date}"
    return None


def can_run(registry, project: str) -> bool:
    """Whether anything of ``project`` may run now (it is not halted)."""
    return not registry.get_project(project).halted


def check_running(registry, project: str) -> None:
    """Refuse with the halt's reason while ``project`` is halted (:mod:`pds_kernel.project_end`)."""
    info = registry.get_project(project)
    if info.halted:
        raise PermissionDenied(project_refusal(info, date.today()))


def can_build_extract(registry, actor: str, info, today: date | None = None) -> bool:
    return _build_refusal(registry, actor, info, today or date.today()) is None


def check_build_extract(registry, actor: str, info, what: str = "build", today: date | None = None) -> None:
    reason = _build_refusal(registry, actor, info, today or date.today(), what)
    if reason:
        raise PermissionDenied(reason)


def _build_refusal(registry, actor: str, info, today: date, what: str = "build") -> str | None:
    refusal = project_refusal(info, today)
    if refusal:
        return refusal
    if not (is_administrator(registry, actor) or has_right(actor, Right.BUILD_EXTRACT)):
        return f"{audit_actor(actor)} may not {what} extracts: only an administrator may"
    return None


def can_destroy_key(registry, actor: str, info, today: date | None = None) -> bool:
    return _destroy_refusal(registry, actor, info, today or date.today()) is None


def check_destroy_key(registry, actor: str, info, today: date | None = None) -> None:
    reason = _destroy_refusal(registry, actor, info, today or date.today())
    if reason:
        raise PermissionDenied(reason)


def _destroy_refusal(registry, actor: str, info, today: date) -> str | None:
    if not is_administrator(registry, actor) or not can_act_personally(actor):
        return (f"{audit_actor(actor)} may not destroy pseudonymisation keys: only an administrator may, "
                "personally (never through --as: it cannot be undone)")
    if info.status.value != "closed" and not info.end_date < today:
        return (f"project {info.id} is {info.status.value} until {info.end_date}: close it "
                "(pds project close) before destroying its key")
    return None


def can_halt(registry, actor: str) -> bool:
    return is_administrator(registry, actor)


def check_halt(registry, actor: str, what: str = "halt") -> None:
    if not can_halt(registry, actor):
        raise PermissionDenied(f"{audit_actor(actor)} may not {what} a project: only a platform "
                               "administrator may")


def purge_due(info, retention_days: int) -> date | None:
    """The first day a closed project may be purged (``None`` while it is not closed)."""
    if info.status.value != "closed" or info.closed_on is None:
        return None
    return info.closed_on + timedelta(days=retention_days)


def can_purge(registry, actor: str, info, retention_days: int, today: date | None = None) -> bool:
    return _purge_refusal(registry, actor, info, retention_days, today or date.today()) is None


def check_purge(registry, actor: str, info, retention_days: int, today: date | None = None) -> None:
    """May ``actor`` approve the purge of ``info`` today? (The second, different administrator's
    approval is what executes it: :meth:`pds_kernel.project_end.ProjectEnd.purge`.)"""
    reason = _purge_refusal(registry, actor, info, retention_days, today or date.today())
    if reason:
        raise PermissionDenied(reason)


def _purge_refusal(registry, actor: str, info, retention_days: int, today: date) -> str | None:
    if not is_administrator(registry, actor):
        return f"{audit_actor(actor)} may not purge a project: only platform administrators may (two of them)"
    if isinstance(actor, Impersonation):
        return f"{actor.label}: a purge is approved personally, never through --as"
    due = purge_due(info, retention_days)
    if due is None:
        return f"project {info.id} is {info.status.value}: close it first (pds project close), then wait " \
               f"the retention period ({retention_days} days)"
    if today < due:
        return (f"project {info.id} is in its retention period until {due - timedelta(days=1)} "
                f"(closed on {info.closed_on}, {retention_days} days): purge it from {due}")
    if info.purge_requested_by == str(actor):
        return (f"{actor} already approved the purge of {info.id}: a second, different administrator "
                "must approve it")
    return None
