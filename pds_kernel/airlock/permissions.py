"""Who may do what to a request: paired ``can_*`` (bool, for showing buttons) and ``check_*``
(raises :class:`PermissionDenied`, for enforcing). The web pages, the JSON API and the CLI call
the same functions through :mod:`.service`.

Roles are per project. Only an **output checker of the project** (the registry role, active now)
reviews, counts toward the quorum, releases, revokes an approval and reads the contents of files
that are not released; never the author of the request, and never a platform admin as such (an
admin who is also a checker of the project acts as that checker). Everyone else who may see a
request (its author, an admin) sees its metadata only: names, sizes, SHA-256s, verdicts, the
reviewers' comments, and the check findings reduced to rule, status and location
(:func:`.views.build_redacted_check`).

Registry questions (membership, role, expiry, open project) go to
:meth:`Registry.check_access`, which also records the decision in the audit trail.
"""

from __future__ import annotations

from ..errors import NotFound, PermissionDenied
from ..registry import Registry, Role
from .states import DECIDED_STATES, Actor, State


def is_admin(registry: Registry, user: str) -> bool:
    try:
        info = registry.get_user(user)
    except NotFound:
        return False
    return info.is_admin and info.active


def can_check(registry: Registry, user: str, project: str) -> bool:
    """An output checker of ``project`` right now (being a platform admin is not enough)."""
    return registry.can_access(user, project, Role.OUTPUT_CHECKER)


def can_research(registry: Registry, user: str, project: str) -> bool:
    return registry.can_access(user, project, Role.RESEARCHER)


def projects_checked_by(registry: Registry, user: str) -> frozenset[str]:
    """Every project where :func:`can_check` is true for ``user`` now (one registry question)."""
    return frozenset(p.id for p in registry.active_projects(user, Role.OUTPUT_CHECKER))


def projects_researched_by(registry: Registry, user: str) -> frozenset[str]:
    """Every project where :func:`can_research` is true for ``user`` now (one registry question)."""
    return frozenset(p.id for p in registry.active_projects(user, Role.RESEARCHER))


def check_submitter(registry: Registry, actor: str, project: str, author: str) -> None:
    """The author must be an active researcher of the project; only an admin submits for someone else."""
    if actor != author and not is_admin(registry, actor):
        raise PermissionDenied(f"{actor} cannot submit a request on behalf of {author}: admins only")
    registry.check_access(author, project, Role.RESEARCHER, action="airlock.access.submit", actor=actor)


def check_checker(registry: Registry, actor: str, project: str, author: str) -> None:
    """A reviewer is an output checker of the project, never the author (admins are not reviewers)."""
    if actor == author:
        raise PermissionDenied("the author of a request never reviews it")
    registry.check_access(actor, project, Role.OUTPUT_CHECKER, action="airlock.access.review")


def can_act(registry: Registry, who: Actor, user: str, project: str, author: str) -> bool:
    """May ``user`` trigger a move reserved to ``who`` on a request of ``author`` in ``project``?"""
    if who == Actor.ADMIN:
        return is_admin(registry, user)
    if who == Actor.AUTHOR:
        return (user == author and can_research(registry, user, project)) or is_admin(registry, user)
    return user != author and can_check(registry, user, project)


def check_act(registry: Registry, who: Actor, user: str, project: str, author: str, what: str) -> None:
    if not can_act(registry, who, user, project, author):
        if who == Actor.CHECKER and user == author:
            raise PermissionDenied("the author of a request never reviews, releases or revokes it")
        label = {Actor.ADMIN: "an admin", Actor.AUTHOR: "its author (an active researcher)",
                 Actor.CHECKER: f"an output checker of project {project} (admins are not checkers)"}[who]
        raise PermissionDenied(f"only {label} may {what} this request")


def can_view(registry: Registry, user: str, project: str, author: str) -> bool:
    """The request's metadata: the author (still a researcher of the project), the project's
    checkers, admins. Contents are another question (:func:`can_read_contents`)."""
    return ((user == author and can_research(registry, user, project))
            or can_check(registry, user, project) or is_admin(registry, user))


def check_view(registry: Registry, user: str, project: str, author: str) -> None:
    if not can_view(registry, user, project, author):
        raise PermissionDenied(f"{user} may not see requests of project {project} by {author}")


def can_read_contents(registry: Registry, user: str, project: str, author: str) -> bool:
    """The bytes of a file the gate has not released (raw, rendered, cell values in findings, the
    justification and context the author sent): output checkers of the project, never the author.

    The gate's pages are served to a browser outside the workspace, so whatever is shown there has
    left: the author gets released bytes through the download only."""
    return user != author and can_check(registry, user, project)


def check_read_contents(registry: Registry, user: str, project: str, author: str) -> None:
    if user == author:
        raise PermissionDenied("the author never sees the contents of a file the gate has not released: "
                               "wait for the release, then download it")
    if not can_read_contents(registry, user, project, author):
        raise PermissionDenied(f"only output checkers of project {project} see the contents of its "
                               "files before release")


def can_see_votes(user: str, author: str, state: State, reviewed_this_round: bool) -> bool:
    """Checkers see the others' verdicts only after giving their own; everyone once decided."""
    if State(state) in DECIDED_STATES:
        return True
    return user != author and reviewed_this_round
