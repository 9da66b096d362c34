"""The registry service: the only writer of projects, users and memberships.

Every mutating method takes the acting identity and writes its audit entry in the same transaction
as the change. Access questions go through :meth:`Registry.can_access` (bool, no side effect) or
:meth:`Registry.check_access` (raises :class:`PermissionDenied` and records the decision), both in
:mod:`.reads`.
"""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .. import permissions
from ..audit import AuditEvent, Outcome
from ..db import transaction
from ..errors import InvalidInput, NotFound, PermissionDenied
from ..settings import check_quorum
from .bootstrap import has_administrator
from .models import MEMBERSHIP_APPROVALS_RULE, Membership, Project, ProjectStatus, RegistryRule, Role, User
from .names import check_new_user_name, check_project_id, check_user_name
from .reads import RegistryReads
from .seals import seal_approvals_of_upgrade
from .views import (
    PROJECT_FIELDS,
    MemberInfo,
    ProjectInfo,
    UserInfo,
    _project_info,
)

log = logging.getLogger(__name__)


class Registry(RegistryReads):
    """Projects, users and memberships, backed by the shared database (the reads and the access
    decisions: :mod:`.reads`)."""

    @classmethod
    def from_runtime(cls, runtime) -> Registry:
        return cls(runtime.sessions, runtime.audit, runtime.settings.registry.membership_approvals)

    # ---- writes -------------------------------------------------------------------------
    # Each public write is one transaction around a ``_write_*`` step that works inside a given
    # session, so that :meth:`apply` can run many steps in a single transaction (all or nothing).
    def upsert_user(self, actor: str, name: str, *, full_name: str = "", email: str = "",
                    is_admin: bool = False, active: bool = True) -> UserInfo:
        check_user_name(name)
        self._check_admin(actor, "registry.user.update", f"user:{name}")
        with transaction(self._sessions) as s:
            approvals = self._approvals(s, actor)  # every write records the rule (a demotion or a plain user too)
            had_administrator = has_administrator(s, self._seals)
            written = self._write_user(s, actor, name, full_name=full_name, email=email, is_admin=is_admin, active=active,
                                       bootstrap=self._bootstrap.applies(s, self._seals), approvals=approvals)
            self._bootstrap.after_write(s, self._seals, actor, had_administrator)
            return written

    def upsert_project(self, actor: str, project_id: str, **values) -> ProjectInfo:
        """Create or update a project. ``values`` are :data:`PROJECT_FIELDS`."""
        check_project_id(project_id)
        unknown = set(values) - set(PROJECT_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown project field(s): {', '.join(sorted(unknown))}")
        def check(registry, who) -> None:  # the administrator's right, then the quorum's floor
            permissions.check_administer_registry(registry, who)
            check_quorum(values.get("reviews_required"), "reviews_required")

        self._check_admin(actor, "registry.project.update", f"project:{project_id}", project_id, check=check)
        with transaction(self._sessions) as s:
            self._approvals(s, actor)
            return self._write_project(s, actor, project_id, values)

    def close_project(self, actor: str, project_id: str, reason: str = "") -> ProjectInfo:
        """Close a project: from now on it grants nothing to anyone, and its retention clock starts
        (``closed_on``: :func:`pds_kernel.permissions.purge_due`). Closing again keeps the first date."""
        self._check_admin(actor, "registry.project.close", f"project:{project_id}", project_id)
        with transaction(self._sessions) as s:
            self._approvals(s, actor)
            project = self._project(s, project_id)
            project.status = ProjectStatus.CLOSED
            project.closed_on = project.closed_on or date.today()
            s.flush()
            self._audit.record(AuditEvent(
                actor=actor, action="registry.project.close", target=f"project:{project_id}",
                project=project_id, details={"reason": reason, "closed_on": project.closed_on.isoformat()},
            ), session=s)
            return _project_info(project)

    def add_member(self, actor: str, project_id: str, user_name: str, role: Role | str,
                   expires_on: date) -> MemberInfo:
        """Grant ``role`` on a project until ``expires_on`` (inclusive); updates the expiry if present."""
        role = Role(role)
        if role == Role.ADMIN:
            raise InvalidInput("admin is a platform role: set it on the user, not on a membership")
        self._check_admin(actor, "registry.member.add", f"user:{user_name}", project_id)
        self._check_admin(actor, "registry.member.add", f"user:{user_name}", project_id,
                          check=lambda _registry, who: permissions.check_grant_membership(who, user_name))
        with transaction(self._sessions) as s:
            return self._write_member(s, actor, project_id, user_name, role, expires_on, self._approvals(s, actor))

    def approve_member(self, actor: str, project_id: str, user_name: str, role: Role | str) -> MemberInfo:
        """Approve the pending ``role`` membership of ``user_name`` (the second administrator of the
        two-person rule: :func:`pds_kernel.permissions.check_approve_membership`). The approval and
        every refusal (not an administrator, the granter, the member, ``--as``, nothing pending) are
        audited as ``registry.member.approve``."""
        target = f"user:{user_name}"[:200]
        try:
            try:
                role = Role(role)
            except ValueError:
                raise InvalidInput(f"role {str(role)[:40]!r} is not one of researcher, output-checker") from None
            with transaction(self._sessions) as s:
                seen = self._member_view(self._membership(s, project_id, user_name, role))
            if not seen.pending:
                raise InvalidInput(f"the {role.value} membership of {user_name} in {project_id} is not pending "
                                   f"(approved by {seen.approved_by}): nothing to approve")
            permissions.check_approve_membership(self, actor, user_name, seen.granted_by)
            with transaction(self._sessions) as s:
                self._approvals(s, actor)  # first, as every write: the rule's row is locked first
                # locked until the approval is written: an extension made meanwhile waits, then
                # makes the membership pending again (never rides on an approval of what was seen)
                member = self._membership(s, project_id, user_name, role, lock=True)
                if self._member_view(member) != seen:  # changed between the check and the write
                    raise InvalidInput(f"the {role.value} membership of {user_name} in {project_id} changed "
                                       "while it was being approved: look at it again (pds project show)")
                member.approved_by = permissions.audit_actor(actor)
                self._seals.seal_membership(member)
                s.flush()
                self._audit.record(AuditEvent(
                    actor=actor, action="registry.member.approve", target=target, project=project_id,
                    details={"role": role.value, "expires_on": member.expires_on.isoformat(),
                             "granted_by": member.granted_by},
                ), session=s)
                return self._member_view(member)
        except (PermissionDenied, NotFound, InvalidInput) as exc:
            self._audit.record(AuditEvent(actor=actor, action="registry.member.approve", target=target,
                                          project=project_id if isinstance(project_id, str) else "",
                                          outcome=Outcome.DENIED, details={"reason": str(exc)[:500]}))
            raise

    def _membership(self, s: Session, project_id: str, user_name: str, role: Role, *,
                    lock: bool = False) -> Membership:
        self._project(s, project_id)
        query = select(Membership).where(
            Membership.project_id == project_id, Membership.user_name == user_name, Membership.role == role)
        member = s.scalar(query.with_for_update() if lock else query)
        if member is None:
            raise NotFound(f"{user_name} is not a {role.value} of project {project_id}: nothing to approve")
        return member

    def remove_member(self, actor: str, project_id: str, user_name: str, role: Role | str | None = None) -> int:
        self._check_admin(actor, "registry.member.remove", f"user:{user_name}", project_id)
        with transaction(self._sessions) as s:
            self._approvals(s, actor)
            return self._delete_member(s, actor, project_id, user_name, None if role is None else Role(role))

    def _check_admin(self, actor: str, action: str, target: str = "", project: str = "",
                     check=None) -> None:
        """The permission of every write (:mod:`pds_kernel.permissions`), or ``check``; a refusal is audited."""
        try:
            (check or permissions.check_administer_registry)(self, actor)
        except (PermissionDenied, InvalidInput) as exc:
            self._audit.record(AuditEvent(actor=actor, action=action, target=target, project=project,
                                          outcome=Outcome.DENIED, details={"reason": str(exc)}))
            raise

    def _write_user(self, s: Session, actor: str, name: str, *, full_name: str, email: str,
                    is_admin: bool, active: bool, bootstrap: bool, approvals: int) -> UserInfo:
        """``bootstrap``: the registry had no active, approved administrator when this write began,
        and never had one (a first installation: :mod:`.bootstrap`): an administrator made now is
        approved at once, or nobody ever could be. Otherwise, with two ``approvals`` (the
        transaction's rule, :meth:`_approvals`), one made (created as one, promoted, reactivated)
        is pending until a second administrator approves it (:meth:`approve_administrator`)."""
        user = s.get(User, name, with_for_update=True)
        created = user is None
        before = None if created else self._user_view(user)
        if created:
            user = User(name=check_new_user_name(name))
            s.add(user)
        was_administrator = before is not None and before.is_admin and before.active
        user.full_name, user.email, user.is_admin, user.active = full_name, email, is_admin, active
        if is_admin and active and not was_administrator:
            # never rides on an approval given before a demotion or deactivation
            user.admin_granted_by = permissions.audit_actor(actor)
            approved = approvals == 1 or bootstrap
            user.admin_approved_by = user.admin_granted_by if approved else None
        elif not is_admin:
            user.admin_granted_by = user.admin_approved_by = None
        if before is None or not before.admin_pending or not (is_admin and active):
            # a new grant, a demotion or deactivation: sealed as it now stands. An approval the
            # registry did not seal (written in the database) stays unsealed: never blessed here
            self._seals.seal_administrator(user)
        s.flush()
        after = self._user_view(user)
        if created or before != after:
            details = {"is_admin": is_admin, "active": active}
            if is_admin:
                details["admin_pending"] = after.admin_pending
            self._audit.record(AuditEvent(
                actor=actor, action="registry.user.create" if created else "registry.user.update",
                target=f"user:{name}", details=details,
            ), session=s)
        return after

    def approve_administrator(self, actor: str, user_name: str) -> UserInfo:
        """Approve ``user_name``'s pending administrator role (the second administrator of the
        two-person rule: :func:`pds_kernel.permissions.check_approve_administrator`). The approval
        and every refusal (not an administrator, the one who made them, themselves, ``--as``,
        nothing pending) are audited as ``registry.user.approve_admin``."""
        target = f"user:{user_name}"[:200]
        try:
            check_user_name(user_name)
            with transaction(self._sessions) as s:
                seen = self._user(s, user_name)
            if not (seen.admin_pending and seen.active):
                raise InvalidInput(f"{user_name} is no pending administrator: nothing to approve"
                                   + (f" (approved by {seen.admin_approved_by})" if seen.is_admin and seen.active else ""))
            permissions.check_approve_administrator(self, actor, user_name, seen.admin_granted_by)
            with transaction(self._sessions) as s:
                self._approvals(s, actor)  # first, as every write: the rule's row is locked first
                user = s.get(User, user_name, with_for_update=True)  # a change made meanwhile waits
                if user is None or self._user_view(user) != seen:
                    raise InvalidInput(f"user {user_name} changed while being approved: look again "
                                       "(pds project users)")
                user.admin_approved_by = permissions.audit_actor(actor)
                self._seals.seal_administrator(user)
                s.flush()
                self._audit.record(AuditEvent(
                    actor=actor, action="registry.user.approve_admin", target=target,
                    details={"admin_granted_by": user.admin_granted_by},
                ), session=s)
                return self._user_view(user)
        except (PermissionDenied, NotFound, InvalidInput) as exc:
            self._audit.record(AuditEvent(actor=actor, action="registry.user.approve_admin", target=target,
                                          outcome=Outcome.DENIED, details={"reason": str(exc)[:500]}))
            raise

    def _write_project(self, s: Session, actor: str, project_id: str, values: dict) -> ProjectInfo:
        project = s.get(Project, project_id)
        created = project is None
        if created:
            missing = [f for f in ("title", "start_date", "end_date") if values.get(f) is None]
            if missing:
                raise InvalidInput(f"project {project_id}: missing {', '.join(missing)}")
            project = Project(id=project_id, status=ProjectStatus.ACTIVE)
            s.add(project)
        before = None if created else _project_info(project)
        if project.purged_at is not None:
            raise InvalidInput(f"project {project_id} was purged on {project.purged_at:%Y-%m-%d}: "
                               "its id cannot be used again")
        for key, value in values.items():
            if key == "status" and value is not None:
                value = ProjectStatus(value)
            setattr(project, key, value)
        if project.status == ProjectStatus.CLOSED:  # the retention clock starts at the first close
            project.closed_on = project.closed_on or date.today()
        else:
            project.closed_on = None
        if project.end_date < project.start_date:
            raise InvalidInput(f"project {project_id}: end date {project.end_date} is before start {project.start_date}")
        s.flush()
        after = _project_info(project)
        changed = {k: str(getattr(after, k)) for k in PROJECT_FIELDS
                   if before is None or getattr(before, k) != getattr(after, k)}
        if changed:
            self._audit.record(AuditEvent(
                actor=actor, action="registry.project.create" if created else "registry.project.update",
                target=f"project:{project_id}", project=project_id, details=changed,
            ), session=s)
        return after

    def _write_member(self, s: Session, actor: str, project_id: str, user_name: str, role: Role,
                      expires_on: date, approvals: int) -> MemberInfo:
        """Grant, extend or shorten a membership; ``approvals``: the transaction's rule
        (:meth:`_approvals`, read once when it began)."""
        project = self._project(s, project_id)
        if s.get(User, user_name) is None:
            raise NotFound(f"no user {user_name!r}: create the account first")
        if expires_on > project.end_date:
            raise InvalidInput(
                f"membership of {user_name} cannot outlive project {project_id} (ends {project.end_date})"
            )
        # locked: a concurrent approval either lands first (and this extension makes it pending
        # again) or waits for this write and finds the membership changed
        member = s.scalar(select(Membership).where(
            Membership.project_id == project_id, Membership.user_name == user_name,
            Membership.role == role).with_for_update())
        action = "registry.member.update" if member else "registry.member.add"
        if member is None:
            member = Membership(project_id=project_id, user_name=user_name, role=role, expires_on=expires_on)
            s.add(member)
        elif member.expires_on == expires_on:
            return self._member_view(member)
        if action == "registry.member.add" or expires_on > member.expires_on:
            # a grant or an extension: with two approvals it waits for a second administrator;
            # shortening (like removing) needs nobody's approval and keeps the approval it had
            member.granted_by = permissions.audit_actor(actor)
            member.approved_by = member.granted_by if approvals == 1 else None
        elif not self._seals.membership_sealed(member):
            member.approved_by = None  # an approval the registry did not seal is never blessed here
        member.expires_on = expires_on
        self._seals.seal_membership(member)
        s.flush()
        self._audit.record(AuditEvent(
            actor=actor, action=action, target=f"user:{user_name}", project=project_id,
            details={"role": role.value, "expires_on": expires_on.isoformat(), "pending": member.pending},
        ), session=s)
        return self._member_view(member)

    @staticmethod
    def _rule(s: Session) -> RegistryRule | None:
        """The registry's rule row, locked until the transaction ends (read again from the
        database). Every write locks it first (:meth:`_approvals` opens each write transaction),
        before any user or membership row: one order, so two writes never wait for each other."""
        return s.get(RegistryRule, MEMBERSHIP_APPROVALS_RULE, with_for_update=True, populate_existing=True)

    def _approvals(self, s: Session, actor: str) -> int:
        """How many administrators a membership needs: this process's setting or the registry's
        rule (:class:`RegistryRule`), whichever is higher. A process with a higher setting raises
        the rule (audited as ``registry.rule.update``) at each of its writes, whatever it writes (a
        plain user, a demotion, a project: not only a grant or a promotion); a lower setting never
        lowers it, so nobody drops the second administrator by running one command with a setting
        of their own."""
        rule = self._rule(s)
        seal_approvals_of_upgrade(s, self._seals, self._audit, actor)
        self._bootstrap.record_end(s, self._seals, actor)  # an upgraded installation's first write
        if self.membership_approvals > (rule.value if rule else 1):
            if rule is None:
                # two processes recording the rule at once: the second's insert waits for the
                # first's and does nothing (it failed on the key), then both read the row, locked
                insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
                s.execute(insert(RegistryRule).values(name=MEMBERSHIP_APPROVALS_RULE, value=1)
                          .on_conflict_do_nothing(index_elements=["name"]))
                rule = self._rule(s)
            if self.membership_approvals <= rule.value:
                return rule.value
            rule.value = self.membership_approvals
            s.flush()
            self._audit.record(AuditEvent(actor=actor, action="registry.rule.update", target="registry",
                                          details={MEMBERSHIP_APPROVALS_RULE: rule.value}), session=s)
        return max(self.membership_approvals, rule.value if rule else 1)

    def _delete_member(self, s: Session, actor: str, project_id: str, user_name: str, role: Role | None) -> int:
        self._project(s, project_id)
        query = delete(Membership).where(Membership.project_id == project_id,
                                         Membership.user_name == user_name)
        if role is not None:
            query = query.where(Membership.role == role)
        removed = s.execute(query).rowcount or 0
        if not removed:
            raise NotFound(f"{user_name} is not a member of {project_id}"
                           + (f" with role {role.value}" if role else ""))
        self._audit.record(AuditEvent(
            actor=actor, action="registry.member.remove", target=f"user:{user_name}",
            project=project_id, details={"role": role.value if role else "all", "removed": removed},
        ), session=s)
        return removed

    # ---- records made outside a registry write ------------------------------------------
    def record_approvals_rule(self, actor: str) -> int:
        """The rule for a write made outside the registry's tables (a hub account created or reset),
        as :meth:`_approvals` gives it to every registry write: a process with a higher setting
        records it first (``registry.rule.update``), so a later command with the setting lowered
        still works under it."""
        with transaction(self._sessions) as s:
            return self._approvals(s, actor)

    def seal_approvals_of_upgrade(self, actor: str) -> dict | None:
        """Seal the approvals made before revision 0012, if not done yet (every write does it
        first; ``pds db upgrade`` calls this so that access works before the next write): the
        numbers sealed, or ``None`` when it was done before."""
        with transaction(self._sessions) as s:
            self._rule(s)  # locked first, as by every write
            return seal_approvals_of_upgrade(s, self._seals, self._audit, actor)

    def record_bootstrap_end(self, actor: str) -> bool:
        """Record the end of bootstrap (:mod:`.bootstrap`) if the registry holds an administrator and
        it is not recorded yet (every write does it first; ``pds db upgrade`` too): whether it was now."""
        with transaction(self._sessions) as s:
            self._rule(s)  # locked first, as by every write
            return self._bootstrap.record_end(s, self._seals, actor)

    # ---- declarative --------------------------------------------------------------------
    def apply(self, actor: str, spec: RegistrySpec) -> list[str]:
        """Make the registry match ``spec`` (users, projects and each project's member list).

        Members of a listed project that the spec does not list are removed. Returns a list of
        human-readable changes. All or nothing: one transaction, in which the whole spec is
        validated first (names, dates, roles, and that every member names a user the spec lists or
        the registry holds) and only then written; any error rolls everything back, audit entries
        included. Every caller (``pds project apply``, the chart's registry Job, the demo) gets this.
        """
        self._check_admin(actor, "registry.apply", "registry", check=permissions.check_apply_registry)
        self._check_admin(actor, "registry.apply", "registry",
                          check=lambda _registry, who: self._check_own_grants(who, spec))
        with transaction(self._sessions) as s:
            validate_registry_spec(spec, set(s.scalars(select(User.name))))
            had_administrator = has_administrator(s, self._seals)
            changes = self._apply_in(s, actor, spec, bootstrap=self._bootstrap.applies(s, self._seals))
            self._bootstrap.after_write(s, self._seals, actor, had_administrator)
            return changes

    def _check_own_grants(self, actor: str, spec: RegistrySpec) -> None:
        """A registry file applied by a person may keep that person's memberships as they are, never
        add or extend one (see :func:`permissions.check_grant_membership`)."""
        for person in permissions.persons_behind(actor):
            held = {(m.project_id, m.role): m.expires_on for m in self.memberships_of(person)}
            for p in spec.projects:
                for m in p.members:
                    if m.user == person and held.get((p.id, Role(m.role))) != m.expires:
                        permissions.check_grant_membership(actor, person)

    def _apply_in(self, s: Session, actor: str, spec: RegistrySpec, *, bootstrap: bool) -> list[str]:
        changes: list[str] = []
        approvals = self._approvals(s, actor)  # the chart's registry Job records its rule at every install
        for u in spec.users:
            before = s.get(User, u.name)
            before = None if before is None else self._user_view(before)
            after = self._write_user(s, actor, u.name, full_name=u.full_name, email=u.email,
                                     is_admin=u.admin, active=u.active, bootstrap=bootstrap, approvals=approvals)
            if before != after:
                changes.append(f"user {u.name} {'created' if before is None else 'updated'}"
                               + (" (administrator pending: a second administrator must approve it)"
                                  if after.admin_pending and after.active else ""))
        for p in spec.projects:
            before = s.get(Project, p.id)
            before = None if before is None else _project_info(before)
            after = self._write_project(s, actor, p.id, p.fields())
            if before != after:
                changes.append(f"project {p.id} {'created' if before is None else 'updated'}")
            wanted = {(m.user, Role(m.role)): m.expires for m in p.members}
            current = {(m.user_name, Role(m.role)): m.expires_on for m in s.scalars(
                select(Membership).where(Membership.project_id == p.id))}
            for (user, role), expires in wanted.items():
                if current.get((user, role)) != expires:
                    member = self._write_member(s, actor, p.id, user, role, expires, approvals)
                    changes.append(f"{p.id}: {user} {role.value} until {expires}"
                                   + (" (pending: a second administrator must approve it)" if member.pending else ""))
            for (user, role) in sorted(current.keys() - wanted.keys()):
                self._delete_member(s, actor, p.id, user, role)
                changes.append(f"{p.id}: {user} {role.value} removed")
        return changes


from .spec import RegistrySpec, validate_registry_spec  # noqa: E402  (spec imports models only)
