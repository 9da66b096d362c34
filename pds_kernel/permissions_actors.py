"""Who an actor of :mod:`pds_kernel.permissions` is: a registry user, a service identity with its
exact rights, or an administrator acting as another user (``--as``: :class:`Impersonation`), and
the people an action or an audit label is by; and whether an actor is an approved administrator
of the registry, or may be the second administrator of another's act (the two-person rule's
predicate, shared by memberships, administrators and hub accounts). Part of the permissions
module, which re-exports all of it (import it from there); it imports only the errors (the
registry is passed in), so it can make no import cycle.
"""

from __future__ import annotations

import enum

from .errors import NotFound, PermissionDenied

#: The Helm registry-sync Job: applies the registry declared in the chart's values, nothing else.
SERVICE_REGISTRY_SYNC = "service:registry-sync"
#: The Helm extract-build Job: builds the extract of the project it is created for, nothing else.
SERVICE_EXTRACT_BUILD = "service:extract-build"
#: The Helm package-approval Jobs: approve the releases listed in the chart's values, nothing else.
SERVICE_PACKAGE_APPROVAL = "service:package-approval"
#: The gate's cohort-link Jobs (and the local gate acting as the trusted third party): link one
#: staged cohort list of a project to the project's PERSON_IDs, nothing else.
SERVICE_COHORT_LINK = "service:cohort-link"


class Right(str, enum.Enum):
    """What a service identity may do (an administrator may do all of it)."""

    APPLY_REGISTRY = "apply-registry"
    BUILD_EXTRACT = "build-extract"
    APPROVE_PACKAGES = "approve-packages"
    LINK_COHORT = "link-cohort"


#: Service identities and their exact rights. A service identity is not a registry user (the
#: ``service:`` prefix is not a valid user name), so it can never log in, review or be a member.
SERVICE_RIGHTS: dict[str, frozenset[Right]] = {
    SERVICE_REGISTRY_SYNC: frozenset({Right.APPLY_REGISTRY}),
    SERVICE_EXTRACT_BUILD: frozenset({Right.BUILD_EXTRACT}),
    SERVICE_PACKAGE_APPROVAL: frozenset({Right.APPROVE_PACKAGES}),
    SERVICE_COHORT_LINK: frozenset({Right.LINK_COHORT}),
}


class Impersonation(str):
    """The name of a registry user (``str`` value) acted as by an administrator (:attr:`by`)."""

    by: str

    def __new__(cls, user: str, by: str) -> Impersonation:
        value = super().__new__(cls, user)
        value.by = by
        return value

    @property
    def label(self) -> str:
        return f"{self.by} acting as {str.__str__(self)}"

    def __reduce__(self):
        return (Impersonation, (str.__str__(self), self.by))


def impersonator(actor: str) -> str | None:
    """Who is behind ``actor`` when it is an impersonation, else ``None``."""
    return actor.by if isinstance(actor, Impersonation) else None


def audit_actor(actor: str) -> str:
    """How ``actor`` is written in the audit trail (``"X acting as Y"`` for an impersonation)."""
    return actor.label if isinstance(actor, Impersonation) else str(actor)


def has_right(actor: str, right: Right) -> bool:
    return right in SERVICE_RIGHTS.get(str(actor), frozenset())


def persons_behind(actor: str) -> set[str]:
    """The people an action of ``actor`` is by: the actor, and the administrator behind an
    impersonation (``--as``)."""
    return {str.__str__(actor), impersonator(actor)} - {None}


def persons_of(label: str | None) -> set[str]:
    """The people an audit actor label is by (``"root acting as ada"``: root and ada; user names
    hold no space, so the label reads back unambiguously)."""
    return set(label.split(" acting as ")) if label else set()


def can_review_submitted(actor: str, submitted_by: frozenset[str]) -> bool:
    """Whether ``actor`` put none of a request's files in it (``submitted_by``: the author, an
    administrator on their behalf or ``--as`` them); see :func:`check_not_submitter`."""
    return str(actor) not in submitted_by


def check_not_submitter(actor: str, submitted_by: frozenset[str]) -> None:
    """Whoever put files in a request (``submitted_by``: the author, an administrator on their behalf
    or ``--as`` them) never reviews it, and their verdicts never count: four eyes on someone else's bytes."""
    if not can_review_submitted(actor, submitted_by):
        raise PermissionDenied(f"{actor} submitted files of this request for its author: whoever chose a "
                               "request's files never reviews it; another output checker of the project does")


def can_act_personally(actor: str) -> bool:
    """Reviews, approvals, releases and downloads are personal: never through ``--as``."""
    return not isinstance(actor, Impersonation)


def check_not_impersonated(actor: str, what: str) -> None:
    if not can_act_personally(actor):
        raise PermissionDenied(f"{actor.label}: an impersonated identity may never {what}; "
                               f"{actor} must do it personally, signed in as themselves")


# ---- administrators (the registry decides who is one) ------------------------------------------
def is_administrator(registry, actor: str) -> bool:
    """An active platform administrator of the registry, approved (with
    ``registry.membership_approvals: 2`` a user made an administrator is none until a second
    administrator approves it: :func:`pds_kernel.permissions.check_approve_administrator`). Nothing else is: not an OS
    account (``os:<user>``), not a service identity."""
    if not isinstance(actor, str) or ":" in actor:
        return False
    try:
        user = registry.get_user(str(actor))
    except NotFound:
        return False
    return user.is_admin and user.active and not user.admin_pending


def has_administrator(registry) -> bool:
    """The registry holds an active, approved administrator (a pending one does not count)."""
    return any(u.is_admin and u.active and not u.admin_pending for u in registry.users())


def bootstraps(registry) -> bool:
    """The registry is in bootstrap: it holds no active, approved administrator and never held one
    (its end is recorded outside the database: :mod:`pds_kernel.registry.bootstrap`). A registry
    whose administrators were all made invalid in its database is not: nobody may administer it."""
    return not has_administrator(registry) and not registry.bootstrap_ended()


def granted_by_administrator(registry, granted_by: str | None) -> bool:
    """Whether a grant is one administrator's half of the two-person rule: made by an administrator
    who is one still (the one behind ``--as`` for an impersonation), or by the registry-sync Job
    (whose values an administrator wrote). A grant made while the registry had no active
    administrator (an OS account, any user bootstrapping it) is nobody's half: it is granted again."""
    if granted_by == SERVICE_REGISTRY_SYNC:
        return True
    return bool(granted_by) and is_administrator(registry, granted_by.split(" acting as ")[0])


def second_administrator(registry, actor: str, user_name: str, granted_by: str | None) -> bool:
    """``actor`` may be the second administrator of what ``granted_by`` did for ``user_name``: an
    active, approved administrator, personally (never through ``--as``), neither the one who did it
    (nor the one impersonated) nor ``user_name``, of an act an administrator did
    (:func:`granted_by_administrator`)."""
    return (can_act_personally(actor) and is_administrator(registry, actor)
            and str(actor) not in persons_of(granted_by) | {user_name}
            and granted_by_administrator(registry, granted_by))
