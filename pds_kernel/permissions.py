"""Who may do what on the platform: every decision, as paired ``can_*`` (bool, no side effect) and
``check_*`` (raises :class:`PermissionDenied` with a message that says what to do).

The services call these functions themselves (the registry, the extract builder, the key store,
the workspace spawners, the dask-gateway hooks, the airlock), so no entry point (CLI, web page,
Kubernetes Job, hub hook) can skip a rule. Entry points may call ``can_*`` to decide what to show.

Decisions held here:

- **administer the registry** (:func:`check_administer_registry`): an active platform
  administrator of the registry. Until the registry holds one, the first writer bootstraps it;
  bootstrap ends for good with the first approved administrator (anchored outside the database).
  An operating-system account (``os:<user>``) is never an administrator as such: the CLI maps the
  OS user to a registry user explicitly (``cli.identities`` in the settings).
- **approve a membership** (:func:`check_approve_membership`): with
  ``registry.membership_approvals: 2`` a membership grants nothing until a second administrator,
  personally, neither its granter nor its member, approves it.
- **approve an administrator** (:func:`check_approve_administrator`): under the same rule a user
  made an administrator (created as one, promoted, reactivated) is none until a second
  administrator, personally, neither the one who made them nor themselves, approves it; except
  while the registry holds no approved administrator (first installation: bootstrap).
- **apply the declared registry** (:func:`check_apply_registry`): an administrator, or the
  registry-sync service identity, whose rights are exactly that (:data:`SERVICE_RIGHTS`).
- **build an extract** (:func:`check_build_extract`): an administrator or the extract-build
  service identity, for an open project that is not halted.
- **destroy a key** (:func:`check_destroy_key`): an administrator, personally (never ``--as``),
  once the project is over.
- **admit a workspace** (:func:`check_admit_workspace`): an active researcher of an open project
  that is not halted, in the project's hub group when the hub knows groups.
- **manage hub accounts** (:func:`check_manage_hub_accounts`): create, reset, approve, revoke a
  local hub account: a platform administrator, personally (never through ``--as``); nobody else,
  not a researcher for their own account, not a hub service token holding ``admin:users``.
- **approve a hub account** (:func:`check_approve_hub_account`): under the same two-person rule an
  account one administrator created or reset is pending until a second administrator, personally,
  neither that one nor its user, approves it; and nobody approves their own account.
- **end a project** (:func:`check_halt`, :func:`check_purge`): administrators; a purge needs the
  retention period to be over and two different administrators.
- **review, approve, release, download, import, approve a package**: the airlock's rules (at the
  end of this module; :mod:`pds_kernel.airlock.permissions` re-exports them) plus
  :func:`check_not_impersonated`: an identity taken with ``--as`` never reviews, approves,
  releases or downloads; and nothing of a halted project runs (:func:`check_running`).

Who an actor is (service identities and their rights, impersonation, the people behind an action,
an approved administrator, the second administrator of another's act) is defined in
:mod:`pds_kernel.permissions_actors` and re-exported here: import it from here. So are the rules of
a project's life (build its extract, halt it, destroy its key, purge it: :mod:`pds_kernel.permissions_projects`).

Impersonation: a platform administrator may run the CLI ``--as`` another registry user
(:func:`check_impersonate`); the resulting actor is an :class:`Impersonation`, a ``str`` equal to
the impersonated user's name that remembers who is behind it. Every audit entry it produces reads
``"<admin> acting as <user>"`` (:class:`pds_kernel.events.AuditEvent`).
"""

from __future__ import annotations

from datetime import date

from .airlock.states import DECIDED_STATES, Actor, State
from .errors import InvalidInput, NotFound, PermissionDenied
from .permissions_actors import (  # noqa: F401  (re-exported: permissions is the one place to import them from)
    SERVICE_COHORT_LINK,
    SERVICE_EXTRACT_BUILD,
    SERVICE_PACKAGE_APPROVAL,
    SERVICE_REGISTRY_SYNC,
    SERVICE_RIGHTS,
    Impersonation,
    Right,
    audit_actor,
    bootstraps,
    can_act_personally,
    can_review_submitted,
    check_not_impersonated,
    check_not_submitter,
    granted_by_administrator,
    has_administrator,
    has_right,
    impersonator,
    is_administrator,
    persons_behind,
    persons_of,
    second_administrator,
)
from .permissions_projects import (  # noqa: F401  (re-exported: permissions is the one place to import them from)
    can_build_extract,
    can_destroy_key,
    can_halt,
    can_purge,
    can_run,
    check_build_extract,
    check_destroy_key,
    check_halt,
    check_purge,
    check_running,
    project_refusal,
    purge_due,
)

#: Registry roles by value (``pds_kernel.registry.Role``; not imported: the registry imports this module).
RESEARCHER = "researcher"
OUTPUT_CHECKER = "output-checker"


#: Why nobody may administer a registry whose bootstrap ended (``registry.bootstrap.end``:
#: :mod:`pds_kernel.registry.bootstrap`) and that holds no valid administrator.
NO_ADMINISTRATOR_LEFT = (
    "the registry holds no valid administrator, yet its bootstrap ended (registry.bootstrap.end, "
    "anchored outside the database): its administrators were changed in the database outside PDS "
    "Workspace (rows deleted or deactivated, approvals the registry did not seal), and it is never "
    "bootstrapped again. An operator restores the administrators' rows (table registry_users) from a "
    "backup of the database (their seals stay valid under the audit key), then runs `pds audit verify` "
    "to find what else was changed (docs/isolation.md, \"Bootstrap ends for good\")")


# ---- platform administrators ------------------------------------------------------------------
def can_administer_registry(registry, actor: str) -> bool:
    """Create, change, close users, projects and memberships. While the registry holds no active
    administrator and never held one (first installation: :func:`bootstraps`), whoever opens it may
    bootstrap it, except a service."""
    if is_administrator(registry, actor):
        return True
    return str(actor) not in SERVICE_RIGHTS and bootstraps(registry)


def can_view_platform(registry, actor: str) -> bool:
    """The read-only platform page (pds_kernel.overview): active platform administrators only."""
    return is_administrator(registry, actor)


def check_platform_viewer(registry, actor: str) -> None:
    if not can_view_platform(registry, actor):
        raise PermissionDenied(f"{actor} is not a platform administrator: the platform page "
                               "is shown to administrators (pds-admin) only")


def _check_an_administrator_left(registry, actor: str, what: str) -> None:
    """Called once ``actor`` is refused: a registry with no valid administrator although its
    bootstrap ended (not :func:`bootstraps`) says why nobody may, and what to do."""
    if not has_administrator(registry) and registry.bootstrap_ended():
        raise PermissionDenied(f"{audit_actor(actor)} may not {what}: {NO_ADMINISTRATOR_LEFT}")


def check_administer_registry(registry, actor: str, what: str = "administer the registry") -> None:
    if not can_administer_registry(registry, actor):
        _check_an_administrator_left(registry, actor, what)
        raise PermissionDenied(f"{audit_actor(actor)} may not {what}: only an administrator may "
                               "(map your OS account to an administrator in cli.identities, or ask one)")


def can_grant_membership(actor: str, user_name: str) -> bool:
    """Nobody grants (or extends) a project membership to themselves: a membership opens a
    project's data, so an administrator's own memberships come from another administrator or a
    registry file applied by someone else. Checked with the right to administer the registry."""
    return user_name not in persons_behind(actor)


def check_grant_membership(actor: str, user_name: str) -> None:
    if not can_grant_membership(actor, user_name):
        raise PermissionDenied(f"{audit_actor(actor)} may not grant a project membership to "
                               f"{user_name}: nobody grants themselves access to a project's data; "
                               "ask another administrator")


def can_approve_membership(registry, actor: str, user_name: str, granted_by: str | None) -> bool:
    """The second administrator of a membership (``registry.membership_approvals: 2``): neither its
    granter nor its member (:func:`second_administrator`). The registry service checks it and
    records the approval."""
    return second_administrator(registry, actor, user_name, granted_by)


def check_approve_membership(registry, actor: str, user_name: str, granted_by: str | None) -> None:
    _check_second_administrator(
        registry, actor, user_name, granted_by, what="approve a project membership",
        not_admin="only a platform administrator may (one who did not grant it)",
        own=f"{actor} may not approve their own membership: nobody opens a project's data to themselves; "
            "another administrator must approve it",
        maker=f"{actor} granted this membership of {user_name} ({granted_by}): a second, different "
              "administrator must approve it",
        gone=f"the membership of {user_name} was granted by {granted_by}, who is no active administrator "
             "(the registry had none then, or they left): an administrator must grant it again "
             "(remove-member, add-member) and another approve it")


def can_approve_administrator(registry, actor: str, user_name: str, granted_by: str | None) -> bool:
    """The second administrator of a new administrator (``registry.membership_approvals: 2``): an
    active, approved platform administrator, personally (never through ``--as``), who neither made
    them one (nor was impersonated to) nor is them, of a promotion an administrator made (or the
    registry-sync Job: :func:`granted_by_administrator`). Making an administrator is otherwise one
    administrator's act, and the account so made would be the second administrator of everything
    that one administrator does. The registry service checks it and records the approval."""
    return second_administrator(registry, actor, user_name, granted_by)


def check_approve_administrator(registry, actor: str, user_name: str, granted_by: str | None) -> None:
    _check_second_administrator(
        registry, actor, user_name, granted_by, what="approve an administrator",
        not_admin="only a platform administrator may (one approved, who did not make them one)",
        own=f"{actor} may not approve their own administrator role: another administrator must approve it",
        maker=f"{actor} made {user_name} an administrator ({granted_by}): a second, different administrator "
              "must approve it",
        gone=f"{user_name} was made an administrator by {granted_by}, who is no active administrator now: an "
             "administrator must make them one again (demote, promote) and another approve it")


def _check_second_administrator(registry, actor: str, user_name: str, made_by: str | None, *, what: str,
                                not_admin: str, own: str, maker: str, gone: str) -> None:
    """The refusals of :func:`second_administrator`, in the order an administrator needs them: not
    through ``--as``, an administrator, not the user themselves, not who made the grant, and a
    grant whose maker is an administrator still. Only the messages differ between its callers."""
    check_not_impersonated(actor, what)
    if not is_administrator(registry, actor):
        raise PermissionDenied(f"{actor} may not {what}: {not_admin}")
    if str(actor) == user_name:
        raise PermissionDenied(own)
    if str(actor) in persons_of(made_by):
        raise PermissionDenied(maker)
    if not second_administrator(registry, actor, user_name, made_by):
        raise PermissionDenied(gone)


def can_apply_registry(registry, actor: str) -> bool:
    return has_right(actor, Right.APPLY_REGISTRY) or can_administer_registry(registry, actor)


def check_apply_registry(registry, actor: str) -> None:
    if not can_apply_registry(registry, actor):
        raise PermissionDenied(f"{audit_actor(actor)} may not apply a registry file: only an "
                               f"administrator or the registry-sync Job ({SERVICE_REGISTRY_SYNC}) may")


# ---- the audit key ------------------------------------------------------------------------------
def can_rotate_audit_key(registry, actor: str) -> bool:
    """``pds audit rotate-key``: an active, approved platform administrator, personally (no
    bootstrap: a registry without an administrator makes one first)."""
    return can_act_personally(actor) and is_administrator(registry, actor)


def check_rotate_audit_key(registry, actor: str) -> None:
    if not can_rotate_audit_key(registry, actor):
        raise PermissionDenied(f"{audit_actor(actor)} may not rotate the audit key: only a platform "
                               "administrator may, as themselves (ask one)")


# ---- hub accounts (local mode) -----------------------------------------------------------------
def can_manage_hub_accounts(registry, actor: str) -> bool:
    """Create, reset, approve or revoke a hub account (``pds hub account``, the hub's accounts page):
    an active platform administrator, personally. As for the registry itself, while the registry
    holds no administrator (first installation) whoever opens it may, except a service identity."""
    return can_act_personally(actor) and can_administer_registry(registry, actor)


def check_manage_hub_accounts(registry, actor: str, what: str = "manage hub accounts") -> None:
    check_not_impersonated(actor, what)
    if not can_manage_hub_accounts(registry, actor):
        _check_an_administrator_left(registry, actor, what)
        raise PermissionDenied(f"{audit_actor(actor)} may not {what}: only a platform administrator may "
                               "(ask one; an administrator runs pds hub account as themselves)")


def can_approve_hub_account(registry, actor: str, user_name: str, provisioned_by: str | None, *,
                            pending: bool, approvals: int) -> bool:
    """Approve ``user_name``'s hub account (``pds hub account approve``, the accounts page): whoever
    manages accounts (:func:`can_manage_hub_accounts`), and under the two-person rule
    (``approvals`` 2: :meth:`pds_kernel.registry.Registry.approvals_rule`) never its own user (an
    account revoked by another administrator stays revoked). An account ``pending`` since an
    administrator created or reset it (its password and second factor are of their choosing, so
    they could sign in as its user) waits for a second administrator, whatever the rule says now:
    neither ``provisioned_by`` (nor the one they acted as) nor its user, personally, and only if
    ``provisioned_by`` is an administrator still (:func:`second_administrator`). Revoking stays one
    administrator's act (:func:`can_manage_hub_accounts`)."""
    if not can_manage_hub_accounts(registry, actor):
        return False
    if pending:
        return second_administrator(registry, actor, user_name, provisioned_by)
    return approvals < 2 or str(actor) != user_name


def check_approve_hub_account(registry, actor: str, user_name: str, provisioned_by: str | None, *,
                              pending: bool, approvals: int) -> None:
    check_manage_hub_accounts(registry, actor, "approve hub accounts")
    if (pending or approvals >= 2) and str(actor) == user_name:
        raise PermissionDenied(f"{actor} may not approve their own hub account: another administrator "
                               f"must (pds hub account approve {user_name}, as themselves)")
    if not pending:
        return
    if str(actor) in persons_of(provisioned_by):
        raise PermissionDenied(f"{actor} created or reset the hub account of {user_name} ({provisioned_by}): "
                               "a second, different administrator must approve it: "
                               f"pds hub account approve {user_name}")
    if not can_approve_hub_account(registry, actor, user_name, provisioned_by, pending=pending,
                                   approvals=approvals):
        raise PermissionDenied(f"the hub account of {user_name} was created or reset by {provisioned_by}, who is "
                               "no active administrator now: an administrator must reset it again "
                               f"(pds hub account add {user_name} --reset) and another approve it")


# ---- impersonation ----------------------------------------------------------------------------
def can_impersonate(registry, actor: str, user: str) -> bool:
    """``--as``: a platform administrator (never through another impersonation) taking the identity
    of an existing registry user."""
    if isinstance(actor, Impersonation) or not is_administrator(registry, actor):
        return False
    try:
        registry.get_user(user)
    except NotFound:
        return False
    return True


def check_impersonate(registry, actor: str, user: str) -> None:
    if not is_administrator(registry, actor) or isinstance(actor, Impersonation):
        raise PermissionDenied(f"{audit_actor(actor)} may not act as {user}: --as is for platform "
                               "administrators only; run the command as yourself")
    if not can_impersonate(registry, actor, user):
        raise PermissionDenied(f"--as {user}: there is no registry user {user!r}")


# ---- workspaces --------------------------------------------------------------------------------
def can_admit_workspace(registry, user: str, project: str, groups: set[str] | None = None,
                        today: date | None = None) -> bool:
    return registry.can_access(user, project, RESEARCHER, today=today) and (
        groups is None or project in groups)


def check_admit_workspace(registry, user: str, project: str, *, action: str,
                          groups: set[str] | None = None, today: date | None = None):
    """The one admission rule of a workspace (local sandbox, Kubernetes pod, dask-gateway cluster):
    an active researcher of an open, non-halted project (the registry decision is audited under
    ``action``) and, when the hub passes the user's groups, a member of the project's hub group.
    Returns the :class:`ProjectInfo`."""
    if not project:
        raise PermissionDenied("start a project server: the server name must be a project id")
    info = registry.check_access(user, project, RESEARCHER, action=action, today=today)
    if groups is not None and project not in groups:
        raise PermissionDenied(f"{user} is not in the hub group of project {project}: "
                               "sign in again (the identity provider may have withdrawn it)")
    return info


def left_hub_group(person: str, project: str) -> str:
    """Why a running workspace or Dask cluster stops while the registry still admits it: its person
    is out of the project's hub group (on Kubernetes, the identity provider's side)."""
    return f"{person} is no longer in the hub group of project {project}: the identity provider withdrew it"


def hub_groups_unconfirmed(person: str, project: str, seconds: float) -> str:
    """Why a Dask cluster stops when the hub has not said for ``seconds`` whether its person is still
    in the project's hub group (deny by default: the identity provider's side is unknown)."""
    return (f"the hub has not confirmed for {seconds:.0f} s that {person} is still in the hub group of project "
            f"{project}: the cluster stops until the hub answers again (start it again then)")


# ---- imports and packages (the two-way airlock calls these) ----------------------------------
def can_import(registry, actor: str, project: str, from_workspace: bool = False) -> bool:
    """Ask for an import into a project: an active researcher of it, personally, from a browser
    at the gate (never from inside a workspace)."""
    return not from_workspace and can_act_personally(actor) and can_research(registry, actor, project)


def check_import(registry, actor: str, project: str, *, from_workspace: bool = False) -> None:
    """An import is asked for by an active researcher of the project, for themselves (nobody imports
    on someone else's behalf), from outside any workspace: code in a workspace could otherwise
    bring in what it liked, or launder what it holds through a review."""
    if from_workspace:
        raise PermissionDenied("files are imported from your browser at the gate, never from inside a "
                               "workspace: open the gate's page 'Import files'")
    check_not_impersonated(actor, "ask for an import")
    registry.check_access(actor, project, RESEARCHER, action="airlock.access.import", actor=actor)


def can_link_cohort(actor: str, project: str) -> bool:
    """Link a staged cohort list of ``project`` with the project's key: the cohort-link service
    identity only (the gate's Job, or the gate itself locally, acting as the trusted third party)
    and only for a well-formed project id. No person, not even an administrator, links a list by
    hand: what a researcher asks for is an import (:func:`check_import`), checked by the gate first."""
    from .registry.names import check_project_id

    try:
        check_project_id(project)
    except InvalidInput:
        return False
    return has_right(actor, Right.LINK_COHORT)


def check_link_cohort(actor: str, project: str) -> None:
    if not can_link_cohort(actor, project):
        raise PermissionDenied(f"{str(actor)[:60]} may not link a cohort list of {str(project)[:60]!r}: only the "
                               f"gate's cohort-link service ({SERVICE_COHORT_LINK}) may, for an import it accepted")


def can_request_package(registry, actor: str, project: str) -> bool:
    """Ask for a package for a project's workspaces: an active researcher of it, personally."""
    return can_act_personally(actor) and can_research(registry, actor, project)


def check_request_package(registry, actor: str, project: str) -> None:
    check_not_impersonated(actor, "ask for a package")
    registry.check_access(actor, project, RESEARCHER, action="packages.access.request")


def can_approve_package(registry, actor: str) -> bool:
    """Approve or refuse a package release (it becomes installable in every workspace): a platform
    administrator, personally, or the chart's package-approval Job (the releases its values list)."""
    if has_right(actor, Right.APPROVE_PACKAGES):
        return True
    return can_act_personally(actor) and is_administrator(registry, actor)


def check_approve_package(registry, actor: str) -> None:
    check_not_impersonated(actor, "approve or refuse a package")
    if not can_approve_package(registry, actor):
        raise PermissionDenied(f"{actor} may not approve or refuse packages: platform administrators only")


def can_see_package_requests(registry, actor: str, project: str) -> bool:
    """A project's package requests: administrators and the project's active members."""
    return (is_administrator(registry, actor) or can_research(registry, actor, project)
            or can_check(registry, actor, project))


def can_download(registry, actor: str, project: str, author: str) -> bool:
    """A released file: its author, personally, still a researcher of the project."""
    return can_act_personally(actor) and str(actor) == author and can_research(registry, actor, project)


def check_download(registry, actor: str, project: str, author: str) -> None:
    check_not_impersonated(actor, "download released files")
    if str(actor) != author:
        raise PermissionDenied("only the author of a request downloads its released files")
    registry.check_access(actor, project, RESEARCHER, action="airlock.access.download")


# ---- the airlock: submit, view, review, approve, release, revoke, read contents ----------------
# Roles are per project. Only an **output checker of the project** (the registry role, active now)
# reviews, counts toward the quorum, releases, revokes an approval and reads the contents of files
# that are not released; never the author of the request, never a platform admin as such (an admin
# who is also a checker of the project acts as that checker), never an impersonated identity.
# Everyone else who may see a request (its author, an admin) sees its metadata only (names, sizes,
# SHA-256s, verdicts, comments, check findings reduced to rule, status and location).
def is_admin(registry, user: str) -> bool:
    return is_administrator(registry, user)


def _personal(actor: str, what: str) -> None:
    """Reviews, releases and revocations are never made by an impersonated identity (``--as``)."""
    check_not_impersonated(actor, what)


def can_check(registry, user: str, project: str) -> bool:
    """An output checker of ``project`` right now (being a platform admin is not enough)."""
    return registry.can_access(user, project, OUTPUT_CHECKER)


def checkers_of(registry, project: str) -> frozenset[str]:
    """The output checkers of ``project`` right now (:func:`can_check` for each member with the
    role): only their verdicts count toward a request's quorum and its release, so a checker removed
    from the project, expired or deactivated after voting no longer makes up the two reviews."""
    return frozenset(m.user_name for m in registry.members(project)
                     if m.role == OUTPUT_CHECKER and can_check(registry, m.user_name, project))


def can_research(registry, user: str, project: str) -> bool:
    return registry.can_access(user, project, RESEARCHER)


def projects_checked_by(registry, user: str) -> frozenset[str]:
    """Every project where :func:`can_check` is true for ``user`` now (one registry question)."""
    return frozenset(p.id for p in registry.active_projects(user, OUTPUT_CHECKER))


def projects_researched_by(registry, user: str) -> frozenset[str]:
    """Every project where :func:`can_research` is true for ``user`` now (one registry question)."""
    return frozenset(p.id for p in registry.active_projects(user, RESEARCHER))


def check_submitter(registry, actor: str, project: str, author: str) -> None:
    """The author must be an active researcher of the project; only an admin submits for someone else."""
    if actor != author and not is_admin(registry, actor):
        raise PermissionDenied(f"{actor} cannot submit a request on behalf of {author}: admins only")
    registry.check_access(author, project, RESEARCHER, action="airlock.access.submit", actor=actor)


def check_checker(registry, actor: str, project: str, author: str) -> None:
    """A reviewer is an output checker of the project, never the author (admins are not reviewers)."""
    _personal(actor, "review a request")
    check_running(registry, project)
    if actor == author:
        raise PermissionDenied("the author of a request never reviews it")
    registry.check_access(actor, project, OUTPUT_CHECKER, action="airlock.access.review")


def can_act(registry, who: Actor, user: str, project: str, author: str) -> bool:
    """May ``user`` trigger a move reserved to ``who`` on a request of ``author`` in ``project``?"""
    if who == Actor.CHECKER and getattr(user, "by", None):
        return False  # an impersonated identity never acts as a checker
    if who == Actor.ADMIN:
        return is_admin(registry, user)
    if who == Actor.AUTHOR:
        return (user == author and can_research(registry, user, project)) or is_admin(registry, user)
    return user != author and can_check(registry, user, project)


def check_act(registry, who: Actor, user: str, project: str, author: str, what: str) -> None:
    if who == Actor.CHECKER:
        _personal(user, f"{what} a request")
    check_running(registry, project)
    if not can_act(registry, who, user, project, author):
        if who == Actor.CHECKER and user == author:
            raise PermissionDenied("the author of a request never reviews, releases or revokes it")
        label = {Actor.ADMIN: "an admin", Actor.AUTHOR: "its author (an active researcher)",
                 Actor.CHECKER: f"an output checker of project {project} (admins are not checkers)"}[who]
        raise PermissionDenied(f"only {label} may {what} this request")


def can_view(registry, user: str, project: str, author: str) -> bool:
    """The request's metadata: the author (still a researcher of the project), the project's
    checkers, admins. Contents are another question (:func:`can_read_contents`)."""
    return ((user == author and can_research(registry, user, project))
            or can_check(registry, user, project) or is_admin(registry, user))


def check_view(registry, user: str, project: str, author: str) -> None:
    check_running(registry, project)
    if not can_view(registry, user, project, author):
        raise PermissionDenied(f"{user} may not see requests of project {project} by {author}")


def can_read_contents(registry, user: str, project: str, author: str) -> bool:
    """The bytes of a file the gate has not released (raw, rendered, cell values in findings, the
    justification and context the author sent): output checkers of the project, never the author.

    The gate's pages are served to a browser outside the workspace, so whatever is shown there has
    left: the author gets released bytes through the download only."""
    return user != author and can_check(registry, user, project)


def check_read_contents(registry, user: str, project: str, author: str) -> None:
    if user == author:
        raise PermissionDenied("the author never sees the contents of a file the gate has not released: "
                               "wait for the release, then download it")
    if not can_read_contents(registry, user, project, author):
        raise PermissionDenied(f"only output checkers of project {project} see the contents of its "
                               "files before release")


def can_see_digests(contents: bool, sent_the_bytes: bool, direction: str, released: bool) -> bool:
    """The SHA-256s of a request's files (and of the verdicts bound to them): to whoever reads the
    contents, to the call that sent the bytes (it has them), for an import (its bytes came from
    outside), and once released. Not before to anyone else: outside the workspace a hash confirms a
    guess of the bytes (the author hashed her table with its small cell set to 0..199 and found it,
    red team 20B, tests/security/test_redteam20_gate.py)."""
    return contents or sent_the_bytes or direction == "import" or released


def can_see_votes(user: str, author: str, state: State, reviewed_this_round: bool) -> bool:
    """Checkers see the others' verdicts only after giving their own; everyone once decided."""
    if State(state) in DECIDED_STATES:
        return True
    return user != author and reviewed_this_round
