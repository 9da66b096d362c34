"""Hub accounts of the local mode: the web handlers an admin may use, one-time second-factor codes.

NativeAuthenticator 1.3 ships account actions as plain GET links (``/hub/authorize/USER`` toggles
an account, ``/hub/discard/USER`` deletes a pending one), which any page an admin visits can
trigger (CSRF), and an admin page that sets another user's password. None of them is served here:

* ``/hub/signup`` is not served: accounts are created by ``pds hub account add`` only (an operator
  on the host), so nobody can claim a name, an admin's included, and nothing is pre-approved;
* ``/hub/authorize`` lists accounts; ``POST /hub/authorize/USER`` with ``action=approve|revoke``
  and the ``_xsrf`` form token (JupyterHub checks it for every cookie-authenticated POST) sets the
  approval through :func:`apply_account_approval` (as ``pds hub account approve|revoke`` does),
  which asks :func:`pds_kernel.permissions.check_manage_hub_accounts` first (a platform
  administrator of the registry now, personally: holding the hub scope ``admin:users``, as the
  ``pds-sync`` service token does, is not enough), audited allowed and denied
  (``hub.account.approve`` / ``hub.account.revoke``); GET there is 405. Under the two-person rule
  an account that one administrator created or reset waits for a second one
  (:func:`pds_kernel.permissions.check_approve_hub_account`, :mod:`.provisions`); the page shows
  who made each pending account;
* ``/hub/discard/USER``, ``/hub/change-password/USER`` (another user's password) and
  ``/hub/confirm/...`` (e-mail self-approval) are not served (404): ``pds hub account add USER
  --reset`` replaces a password and second factor, ``pds hub account revoke USER`` disables one.

Every account is sealed with the audit key when the platform writes it (:mod:`.account_seals`), the
seal naming that write's generation (:mod:`.account_generations`): a sign-in of an account whose
seal is missing or wrong, or names an older write than the audit trail's newest, gets a wrong
password's answer, and the accounts page shows it as "seal broken / pending".

A TOTP code is accepted once: :class:`TotpSteps` keeps, per user, the last 30-second time step
whose code opened a session, in the hub database (so a restart does not reopen the window), and
:meth:`TotpSteps.claim` refuses the same or an earlier step.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import replace

import onetimepass
from jupyterhub.scopes import needs_scope
from nativeauthenticator.handlers import AuthorizationAreaHandler, ChangePasswordHandler, LocalBase
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, delete, insert, select, update
from sqlalchemy import exc as sa_exc
from tornado import web

from .. import permissions
from ..audit import AuditEvent, Outcome
from ..errors import InvalidInput, NotFound, PermissionDenied
from .account_generations import GENERATION, new_generation, record_write
from .account_seals import BROKEN, REMEDY, AccountSeals, SealedAccount
from .common import end_sessions
from .provisions import approve_provision, authorize_unless_pending, find_provision, pending_provisions
from .user_api import user_api_handlers

_admin_users_scope = needs_scope("admin:users")

#: Length of a TOTP time step, in seconds (RFC 6238 default, as NativeAuthenticator uses it).
TOTP_STEP = 30
#: The address of the request changing a password, for its audit entry (set by
#: :class:`AuditedChangePasswordHandler` in its own request's context, read by the authenticator's
#: ``change_password``, which NativeAuthenticator's handler calls without the request).
PASSWORD_CHANGE_IP: ContextVar[str] = ContextVar("pds_password_change_ip", default="")

_metadata = MetaData()
totp_steps_table = Table(
    "pds_totp_last_step", _metadata,
    Column("username", String(255), primary_key=True),
    Column("step", Integer, nullable=False),
)

failed_logins_table = Table(
    "pds_failed_logins", _metadata,
    Column("username", String(255), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last", Float, nullable=False),  #: time of the last failed attempt (epoch seconds)
)


def current_step(now: float | None = None) -> int:
    return int(time.time() if now is None else now) // TOTP_STEP


class TotpSteps:
    """The last accepted TOTP time step of each user, in the hub database (table created here)."""

    def __init__(self, db) -> None:
        self.db = db
        _metadata.create_all(db.get_bind(), tables=[totp_steps_table])

    def last_step(self, username: str) -> int | None:
        return self.db.execute(select(totp_steps_table.c.step)
                               .where(totp_steps_table.c.username == username)).scalar()

    def can_use(self, username: str, step: int) -> bool:
        last = self.last_step(username)
        return last is None or step > last

    def claim(self, username: str, step: int) -> bool:
        """Record ``step`` as used by ``username``; False when it (or a later one) was used already.

        One conditional UPDATE (or INSERT), committed at once: of two logins racing with the
        same code, one wins."""
        result = self.db.execute(update(totp_steps_table)
                                 .where(totp_steps_table.c.username == username,
                                        totp_steps_table.c.step < step).values(step=step))
        if result.rowcount == 1:
            self.db.commit()
            return True
        if self.last_step(username) is not None:
            self.db.rollback()
            return False
        try:
            self.db.execute(insert(totp_steps_table).values(username=username, step=step))
            self.db.commit()
        except Exception:  # a concurrent insert of the same user: that login won
            self.db.rollback()
            return False
        return True


class FailedLogins:
    """Failed login attempts in a row per user, in the hub database (table created here), so a
    block outlives a restart of the hub (NativeAuthenticator keeps them in the hub's memory: a
    restart, or an upgrade, gave a guesser five fresh attempts)."""

    def __init__(self, db) -> None:
        self.db = db
        _metadata.create_all(db.get_bind(), tables=[failed_logins_table])

    def get(self, username: str) -> tuple[int, float]:
        """``(failures in a row, time of the last one)``; ``(0, 0.0)`` for none."""
        row = self.db.execute(select(failed_logins_table.c.count, failed_logins_table.c.last)
                              .where(failed_logins_table.c.username == username)).first()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def add(self, username: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        result = self.db.execute(update(failed_logins_table).where(failed_logins_table.c.username == username)
                                 .values(count=failed_logins_table.c.count + 1, last=now))
        if result.rowcount == 0:
            try:
                self.db.execute(insert(failed_logins_table).values(username=username, count=1, last=now))
            except sa_exc.IntegrityError:  # a concurrent first failure of the user inserted it: count this one
                self.db.rollback()
                self.db.execute(update(failed_logins_table).where(failed_logins_table.c.username == username)
                                .values(count=failed_logins_table.c.count + 1, last=now))
        self.db.commit()

    def clear(self, username: str) -> None:
        self.db.execute(delete(failed_logins_table).where(failed_logins_table.c.username == username))
        self.db.commit()

    def is_blocked(self, username: str, allowed: int, wait_seconds: float, now: float | None = None) -> bool:
        """True after ``allowed`` failures in a row, until ``wait_seconds`` after the last one."""
        count, last = self.get(username)
        now = time.time() if now is None else now
        return bool(allowed) and count >= allowed and now - last <= wait_seconds


def code_step(code: str, secret: str, now: float | None = None) -> int | None:
    """The time step (now) for which ``code`` is the valid TOTP of ``secret``; ``None`` if not."""
    now = time.time() if now is None else now
    if onetimepass.valid_totp(str(code or "").strip(), secret, clock=int(now)):
        return current_step(now)
    return None


#: What the login page says when the second-factor field is empty.
MISSING_CODE = ("Enter the 6-digit code that your authenticator app shows for PDS Workspace: "
                "a code is required with your password.")


#: The end of NativeAuthenticator's answer to the right password of an account not approved.
_UPSTREAM_NOT_APPROVED = "has not been authorized by an administrator yet."

#: What the login page says instead (only to whoever gave the account's password).
NOT_APPROVED = ("This account is not approved: it was revoked, or it was just created or reset and waits "
                "for a second administrator's approval (pds hub account approve, by an administrator who "
                "did not create or reset it). Ask an administrator.")


#: NativeAuthenticator's answer to every other refused login (wrong name, password or code, a
#: code used already, an account blocked after failed attempts), which :func:`refused_login_message`
#: replaces.
_UPSTREAM_REFUSAL = "Invalid username or password."


def refused_login_message(allowed_failed_logins: int, seconds_before_next_try: int) -> str:
    """What the login page says when a login is refused for any reason but a missing code or an
    account not approved yet: the same words whatever was wrong (no hint which of the three, nor
    whether the name exists or is blocked), but every cause a user can fix is named, with what to do.

    NativeAuthenticator said "Invalid username or password." for a wrong code, a code used a moment
    ago (a second login in the same 30 seconds) and an account blocked after failed attempts (even
    with the right password and code): users were sent to reset a password that was right."""
    text = ("Wrong user name, password or code (the page does not say which). A code opens one "
            "session only: if you have just signed in, wait for your app's next code.")
    if allowed_failed_logins:
        minutes = max(1, round(seconds_before_next_try / 60))
        text += (f" After {allowed_failed_logins} failed attempts in a row, an account is blocked for "
                 f"{minutes} minutes, right password and code included: wait, then try again.")
    return text


class PdsLoginHandler(NativeLoginHandler):
    """NativeAuthenticator's login page, where a missing second-factor code is reported as such
    (it was "Invalid username or password") and every other refusal says what a user can check
    (:func:`refused_login_message`). The refusal is audited like any other; a wrong code and a
    wrong password still get the same answer (no hint which one was wrong)."""

    def _render(self, login_error=None, username=None):
        if login_error and login_error.endswith(_UPSTREAM_NOT_APPROVED) and self._sealed(username):
            login_error = NOT_APPROVED  # right password and code, account not approved
        elif login_error == _UPSTREAM_REFUSAL or (login_error or "").endswith(_UPSTREAM_NOT_APPROVED):
            login_error = refused_login_message(self.authenticator.allowed_failed_logins,
                                                self.authenticator.seconds_before_next_try)
        return super()._render(login_error=login_error, username=username)

    def _sealed(self, username) -> bool:
        """An account changed outside the platform gets a wrong password's answer, right password
        or not (:mod:`.account_seals`): its refusal tells nothing."""
        info = self.authenticator.get_user(username or "")
        return info is not None and self.authenticator.account_sealed(info)

    async def post(self):
        username = self.get_body_argument("username", "", strip=True)
        code = self.get_body_argument("2fa", "", strip=True)
        if self.authenticator.allow_2fa and not code:
            context = getattr(self.authenticator, "context", None)
            if context is not None:
                context.record(AuditEvent(
                    actor=username[:64], action="hub.login", target=f"user:{username[:64]}",
                    outcome=Outcome.DENIED,
                    details={"reason": "no second-factor code", "remote_ip": self.request.remote_ip or ""}))
            self.set_status(400)
            self.finish(await self._render(login_error=MISSING_CODE, username=username[:64]))
            return
        await super().post()


class AccountsAreaHandler(AuthorizationAreaHandler):
    """``GET /hub/authorize``: the accounts, with POST forms (template ``authorization-area.html``
    of ``pds_kernel/hub/templates``), and who created or reset each one that waits for a second
    administrator."""

    @_admin_users_scope
    async def get(self):
        users = self.db.query(UserInfo).order_by(UserInfo.username).all()
        self.finish(await self.render_template("authorization-area.html", users=users,
                                               pending=pending_provisions(self.db),
                                               broken=self.authenticator.account_seals.broken(self.db)))


def check_account_manager(registry, record, actor: str, action: str, username: str, **details) -> None:
    """:func:`pds_kernel.permissions.check_manage_hub_accounts` for ``action`` on ``username``'s
    account; a refusal is audited (outcome ``denied``) before it is raised."""
    what = action.removeprefix("hub.account.")
    try:
        permissions.check_manage_hub_accounts(registry, actor, f"{what} hub accounts")
    except PermissionDenied as exc:
        record(AuditEvent(actor=actor, action=action, target=f"user:{str(username)[:64]}",
                          outcome=Outcome.DENIED, details={**details, "reason": str(exc)}))
        raise


def apply_account_approval(db, registry, record, seals: AccountSeals, username: str, approved: bool, *,
                           actor: str, via: str, remote_ip: str = "") -> None:
    """Approve or revoke ``username``'s hub account in the hub database session ``db``: the one
    service behind ``pds hub account approve|revoke`` and ``POST /hub/authorize/USER``.

    Only a platform administrator, personally (:func:`check_account_manager`). An approval is
    also asked of :func:`pds_kernel.permissions.check_approve_hub_account`: an account pending since
    one administrator created or reset it (:mod:`.provisions`) needs a second one, neither that
    one nor its user; under the two-person rule nobody approves their own account. The approval is
    a conditional write: an account reset while it was being approved stays pending (refused,
    "look again"). Revoking is one administrator's act; it also refuses every login cookie of the
    user and deletes their API tokens (:func:`end_sessions`); their running servers stop at the hub
    watcher's next pass. ``record`` writes an audit event: allowed and denied decisions are both
    recorded.

    Both write the account's seal (:mod:`.account_seals`) from what they checked, and only for an
    account whose password, second factor and provision are still those the platform sealed: an
    approval of any other is refused (audited: ``pds hub account add USER --reset`` gives it new
    ones); a revocation of one is made but leaves its seal broken. Each one made draws a new
    generation (:mod:`.account_generations`), sealed and recorded in its audit entry: a revocation
    that seals nothing still makes every older seal name an older write."""
    from jupyterhub import orm

    action = "hub.account.approve" if approved else "hub.account.revoke"
    details = {"via": via, **({"remote_ip": remote_ip} if remote_ip else {})}
    check_account_manager(registry, record, actor, action, username, **details)
    generation = new_generation()
    info = UserInfo.find(db, username)
    if info is None:
        record(AuditEvent(actor=actor, action=action, target=f"user:{str(username)[:64]}",
                          outcome=Outcome.DENIED, details={**details, "reason": "no such account"}))
        raise NotFound(f"{username} has no hub account: create it with pds hub account add {username}")
    db.refresh(info)  # the hub's session keeps rows: `pds hub account` changes them from another process
    checked = seals.credentials_sealed(db, info)
    if approved:
        details.update(_approve(db, registry, record, info, checked, seals, actor, details, generation))
    else:
        info.is_authorized = False
        if checked is not None:
            seals.write(db, checked.approved(False).renewed(generation))
        else:
            details["account_seal"] = "broken: left unsealed"
        db.commit()
        hub_user = db.query(orm.User).filter(orm.User.name == username).first()
        if hub_user is not None:
            end_sessions(db, hub_user, delete_tokens=True)
    record_write(record, AuditEvent(actor=actor, action=action, target=f"user:{username}",
                                    details={**details, GENERATION: generation}), username)


def _approve(db, registry, record, info, checked: SealedAccount | None, seals: AccountSeals, actor: str,
             details: dict, generation: str) -> dict:
    """The approval of :func:`apply_account_approval`: decided on the account as its seal shows it
    (``checked``), then written only if the account's provision is still the one decided on, and
    sealed; committed. Returns what the audit entry adds."""
    username, seen = info.username, find_provision(db, info.username)
    pending = seen is not None and seen.pending
    try:
        if checked is None:
            raise InvalidInput(f"the hub account of {username} was changed outside the platform ({BROKEN}): "
                               f"its password or second factor may be someone else's; "
                               + REMEDY.format(user=username) + ", then approve it")
        permissions.check_approve_hub_account(registry, actor, username, seen.provisioned_by if seen else None,
                                              pending=pending, approvals=registry.approvals_rule())
        approver = permissions.audit_actor(actor)
        if (pending and not approve_provision(db, seen, approver)) \
                or not authorize_unless_pending(db, UserInfo.__table__, username):
            raise InvalidInput(f"the hub account of {username} changed while it was being approved (reset "
                               "again, or approved by another administrator): look at it again; a reset waits "
                               f"for a second administrator (pds hub account approve {username})")
        seals.write(db, checked.approved(True, replace(seen, approved_by=approver) if pending else None)
                    .renewed(generation))
    except (PermissionDenied, InvalidInput) as exc:
        db.rollback()
        record(AuditEvent(actor=actor, action="hub.account.approve", target=f"user:{username}",
                          outcome=Outcome.DENIED, details={**details, "reason": str(exc)[:500]}))
        raise
    db.commit()
    db.refresh(info)
    if not pending:
        return {}
    return {"provisioned_by": seen.provisioned_by, "provision": seen.action, "second_administrator": True}


class AccountAuthorizationHandler(LocalBase):
    """``POST /hub/authorize/USER`` with ``action=approve`` or ``action=revoke``
    (:func:`apply_account_approval`)."""

    async def get(self, slug):
        raise web.HTTPError(405, "account approval is a POST form with its _xsrf token")

    @_admin_users_scope
    async def post(self, slug):
        action = self.get_body_argument("action", "")
        if action not in {"approve", "revoke"}:
            raise web.HTTPError(400, "action must be approve or revoke")
        context = self.authenticator.context
        try:
            apply_account_approval(self.db, context.registry, context.record, self.authenticator.account_seals,
                                   slug, action == "approve", actor=self.current_user.name, via="web",
                                   remote_ip=self.request.remote_ip or "")
        except (PermissionDenied, NotFound, InvalidInput) as exc:
            raise web.HTTPError(exc.http_status, str(exc)) from None
        self.redirect(self.hub.base_url + "authorize#" + slug)


class AuditedChangePasswordHandler(ChangePasswordHandler):
    """``/hub/change-password``: a user changes their own password (the current one is required;
    JupyterHub checks ``_xsrf``); the authenticator's ``change_password`` audits a change as
    ``hub.account.password``, with this request's address (:data:`PASSWORD_CHANGE_IP`)."""

    async def post(self):
        PASSWORD_CHANGE_IP.set(self.request.remote_ip or "")
        await super().post()


class NotServedHandler(LocalBase):
    """A NativeAuthenticator page that PDS does not serve (see the module docstring)."""

    async def get(self, *args):
        raise web.HTTPError(404)

    async def post(self, *args):
        raise web.HTTPError(404)


def account_handlers(login_handler, logout_handler) -> list[tuple[str, type]]:
    """The authenticator's pages: login, logout, own password, the accounts area; nothing else;
    and the user API without renames (JupyterHub puts the authenticator's handlers first)."""
    return [
        (r"/login", login_handler),
        (r"/logout", logout_handler),
        (r"/signup", NotServedHandler),
        (r"/authorize", AccountsAreaHandler),
        (r"/authorize/([^/]*)", AccountAuthorizationHandler),
        (r"/discard/([^/]*)", NotServedHandler),
        (r"/confirm/([^/]*)", NotServedHandler),
        (r"/change-password", AuditedChangePasswordHandler),
        (r"/change-password/([^/]+)", NotServedHandler),
        *user_api_handlers(),
    ]
