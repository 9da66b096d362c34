"""The registry's reads and access decisions: the state of projects, users and memberships as it
is now, and whether a user may act in a project (:meth:`RegistryReads.can_access`, no side effect;
:meth:`RegistryReads.check_access`, which records its decision in the audit trail).

Nothing here changes the registry: :class:`.service.Registry`, the only writer, extends this class.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .. import permissions
from ..audit import AuditEvent, AuditTrail, Outcome
from ..db import transaction
from ..errors import InvalidInput, NotFound, PermissionDenied
from .bootstrap import Bootstrap
from .models import MEMBERSHIP_APPROVALS_RULE, Membership, Project, ProjectStatus, RegistryRule, Role, User
from .names import check_project_id, check_user_name
from .seals import ApprovalSeals
from .views import MemberInfo, ProjectInfo, UserInfo, _member_info, _project_info, _user_info


class RegistryReads:
    """Projects, users and memberships as the shared database holds them, read only."""

    def __init__(self, sessions: sessionmaker[Session], audit: AuditTrail, membership_approvals: int = 1):
        if membership_approvals not in (1, 2) or isinstance(membership_approvals, bool):
            raise InvalidInput(f"setting registry.membership_approvals is {membership_approvals!r}: use 1 "
                               "(the granter's grant is enough) or 2 (a second administrator approves it)")
        self._sessions = sessions
        self._audit = audit
        self._seals = ApprovalSeals(audit.key, audit)
        self._bootstrap = Bootstrap(audit)  # ended for good once anchored: :mod:`.bootstrap`
        self.membership_approvals = membership_approvals

    def _member_view(self, m: Membership) -> MemberInfo:
        return _member_info(m, sealed=self._seals.membership_sealed(m))

    def _user_view(self, u: User) -> UserInfo:
        return _user_info(u, sealed=self._seals.administrator_sealed(u))

    def _user(self, s: Session, name: str) -> UserInfo:
        user = s.get(User, name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return self._user_view(user)

    def get_project(self, project_id: str) -> ProjectInfo:
        check_project_id(project_id)
        with transaction(self._sessions) as s:
            return _project_info(self._project(s, project_id))

    def projects(self) -> list[ProjectInfo]:
        with transaction(self._sessions) as s:
            return [_project_info(p) for p in s.scalars(select(Project).order_by(Project.id))]

    def get_user(self, name: str) -> UserInfo:
        with transaction(self._sessions) as s:
            return self._user(s, name)

    def users(self) -> list[UserInfo]:
        with transaction(self._sessions) as s:
            return [self._user_view(u) for u in s.scalars(select(User).order_by(User.name))]

    def members(self, project_id: str) -> list[MemberInfo]:
        with transaction(self._sessions) as s:
            self._project(s, project_id)
            rows = s.scalars(select(Membership).where(Membership.project_id == project_id)
                             .order_by(Membership.user_name, Membership.role))
            return [self._member_view(m) for m in rows]

    def memberships_of(self, user_name: str) -> list[MemberInfo]:
        with transaction(self._sessions) as s:
            rows = s.scalars(select(Membership).where(Membership.user_name == user_name)
                             .order_by(Membership.project_id, Membership.role))
            return [self._member_view(m) for m in rows]

    def active_projects(self, user_name: str, role: Role | str = Role.RESEARCHER,
                        today: date | None = None) -> list[ProjectInfo]:
        """Projects where ``user_name`` holds ``role`` right now (open project, valid membership)."""
        today = today or date.today()
        role = Role(role)
        with transaction(self._sessions) as s:
            user = s.get(User, user_name)
            if user is None or not user.active:
                return []
            rows = s.execute(select(Project, Membership).join(Membership).where(
                Membership.user_name == user_name, Membership.role == role).order_by(Project.id))
            return [_project_info(p) for p, m in rows
                    if p.is_open(today) and m.is_valid(today) and self._seals.membership_sealed(m)]

    def approvals_rule(self) -> int:
        """How many administrators the two-person rule asks for now, read only: this process's
        setting or the registry's recorded rule, whichever is higher (what :meth:`.service.Registry._approvals` gives
        a write of this process, without recording anything)."""
        with transaction(self._sessions) as s:
            rule = s.get(RegistryRule, MEMBERSHIP_APPROVALS_RULE)
            return max(self.membership_approvals, rule.value if rule else 1)

    def bootstrap_ended(self) -> bool:
        """Whether the registry's bootstrap ended (recorded in the audit trail or its anchors)."""
        with transaction(self._sessions) as s:
            return self._bootstrap.ended(s)

    def is_administrator(self, actor: str) -> bool:
        """Whether ``actor`` is an active platform administrator of the registry (the rule is
        :func:`pds_kernel.permissions.is_administrator`; an ``os:<user>`` never is)."""
        return permissions.is_administrator(self, actor)

    def can_access(self, user_name: str, project_id: str, role: Role | str = Role.RESEARCHER,
                   today: date | None = None) -> bool:
        """True when the user is active and holds a valid ``role`` membership of an open project."""
        return self._deny_reason(user_name, project_id, Role(role), today or date.today()) is None

    def check_access(self, user_name: str, project_id: str, role: Role | str = Role.RESEARCHER, *,
                     action: str, actor: str | None = None, today: date | None = None) -> ProjectInfo:
        """Decide, record the decision in the audit trail, raise :class:`PermissionDenied` if refused."""
        role = Role(role)
        reason = self._deny_reason(user_name, project_id, role, today or date.today())
        event = AuditEvent(actor=actor or user_name, action=action, target=f"user:{user_name}",
                           project=project_id if isinstance(project_id, str) else "",
                           details={"role": role.value})
        if reason is not None:
            self._audit.record(event.with_outcome(Outcome.DENIED, reason=reason))
            raise PermissionDenied(reason)
        self._audit.record(event)
        return self.get_project(project_id)

    def _deny_reason(self, user_name: str, project_id: str, role: Role, today: date) -> str | None:
        try:
            check_project_id(project_id)
            check_user_name(user_name)
        except InvalidInput as exc:
            return str(exc)
        with transaction(self._sessions) as s:
            user = s.get(User, user_name)
            if user is None or not user.active:
                return f"user {user_name} has no active account"
            project = s.get(Project, project_id)
            if project is None:
                return f"{user_name} is not a member of project {project_id}"
            if project.halted_at is not None:
                return (f"project {project_id} is halted by an administrator: nothing of it runs until "
                        "`pds project resume`")
            if project.status != ProjectStatus.ACTIVE:
                return f"project {project_id} is {ProjectStatus(project.status).value}"
            if not project.is_open(today):
                return f"project {project_id} runs from {project.start_date} to {project.end_date}"
            member = s.scalar(select(Membership).where(
                Membership.project_id == project_id, Membership.user_name == user_name,
                Membership.role == role))
            if member is None:
                return f"{user_name} is not a {role.value} of project {project_id}"
            if member.approved_by is not None and not self._seals.membership_sealed(member):
                return (f"the {role.value} membership of {user_name} in {project_id} carries an approval the "
                        "registry did not seal (written in its database, not by PDS Workspace): it counts as "
                        "pending; a second administrator must approve it: pds project approve-member "
                        f"{project_id} {user_name} --role {role.value}")
            if member.approved_by is None:
                return (f"the {role.value} membership of {user_name} in {project_id} is pending: a second "
                        f"administrator must approve it: pds project approve-member {project_id} {user_name} "
                        f"--role {role.value}")
            if not member.is_valid(today):
                return f"the {role.value} membership of {user_name} in {project_id} expired on {member.expires_on}"
            return None

    @staticmethod
    def _project(s: Session, project_id: str) -> Project:
        check_project_id(project_id)
        project = s.get(Project, project_id)
        if project is None:
            raise NotFound(f"no project {project_id!r}")
        return project
