"""The embedded default hub: NativeAuthenticator with two-factor codes, the sandbox spawner, and
projects as named servers. ``hub_config/jupyterhub_config.py`` calls :func:`configure`.

Ports, all on loopback except the public one (``settings.hub.ip``):

============================  =====================================
``settings.hub.port``          public proxy (browser)
``settings.hub.port + 1``      hub API (reached by sandboxes only through their hub socket)
``settings.hub.port + 2``      proxy API
``settings.hub.port + 3``      airlock gate service (when ``pds_kernel.airlock.web`` exists)
============================  =====================================

Accounts: created only by an operator with :func:`provision_account` (``pds hub account add``),
for active registry users, always with a TOTP second factor; there is no web sign-up (see
:mod:`.accounts` for the account pages that are served, all POST with XSRF and audited). Under the
two-person rule an account one administrator creates or resets waits for a second one
(:mod:`.provisions`). Every account is sealed with the audit key when the platform writes it, and
refused when its row was written otherwise, or put back as the platform wrote it before its newest
write (:mod:`.account_seals`, :mod:`.account_generations`). A TOTP code opens one session only. Data files (hub database, cookie secret, proxy pid, service token) live
in ``settings.paths.state / "hub"``.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from nativeauthenticator import NativeAuthenticator
from traitlets import Any, Bool, Float, default

from .. import permissions
from ..audit import AuditEvent, Outcome
from ..errors import InvalidInput, PermissionDenied
from ..registry import Registry
from ..registry.names import check_user_name
from ..sandbox.spawner import SandboxSpawner
from ..settings import Settings, load_settings
from ..workspace_names import parse_workspace_user
from . import budget
from .account_generations import GENERATION, new_generation, record_write
from .account_seals import BROKEN, AccountSeals, SealedAccount, reseal_accounts, seal_accounts_of_upgrade
from .accounts import (
    PASSWORD_CHANGE_IP,
    FailedLogins,
    PdsLoginHandler,
    TotpSteps,
    account_handlers,
    apply_account_approval,
    check_account_manager,
    code_step,
)
from .admission import admission_handlers
from .common import (
    AIRLOCK_SERVICE,
    AuditedLogoutHandler,
    HubContext,
    airlock_service_role,
    auth_model,
    build_load_roles,
    end_sessions,
    is_registry_user,
    make_post_auth_hook,
    record_login_refused,
    refresh_workspace_user,
    stop_revoked_servers,
)
from .expiry import MembershipWatcher
from .origins import KEY_BYTES, service_url, subdomain_host, workspace_host_hook
from .pages import make_template_vars, platform_handlers
from .provisions import AccountSecret, write_provision
from .provisions import ensure_table as ensure_provisions_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: JupyterHub service holding the token that ``pds hub sync`` uses (admin of users, groups, servers).
SYNC_SERVICE = "pds-sync"
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---- files and ports -------------------------------------------------------------------------
def hub_dir(settings: Settings) -> Path:
    path = settings.paths.state / "hub"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def hub_db_url(settings: Settings) -> str:
    return f"sqlite:///{hub_dir(settings) / 'jupyterhub.sqlite'}"


def api_port(settings: Settings) -> int:
    return settings.hub.port + 1


def proxy_api_port(settings: Settings) -> int:
    return settings.hub.port + 2


def airlock_port(settings: Settings) -> int:
    return settings.hub.port + 3


def public_host(settings: Settings) -> str:
    """The hub's public address, where a browser reaches it: JupyterHub's ``subdomain_host``
    (:mod:`.origins`)."""
    return subdomain_host(settings.hub.public_url, settings.hub.ip, settings.hub.port)


def gate_public_url(settings: Settings) -> str:
    """Where a browser reaches the gate's pages: its own host (:mod:`.origins`)."""
    return service_url(public_host(settings), AIRLOCK_SERVICE)


def _secret_file(path: Path) -> str:
    """The 32 random bytes (hex) kept in ``path``, written there (0600, never over an existing
    file) on first use."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def sync_token(settings: Settings) -> str:
    """The ``pds-sync`` service token, created (0600) on first use; never logged."""
    return _secret_file(hub_dir(settings) / "pds-sync.token")


def workspace_host_key(settings: Settings) -> bytes:
    """The key that names the workspaces' hosts (:func:`.origins.workspace_host_hook`): 32 random
    bytes kept in the hub's state directory (0600, made on first use), so a workspace keeps its
    host from one start of the hub to the next; never logged."""
    path = hub_dir(settings) / "workspace-hosts.key"
    try:
        key = bytes.fromhex(_secret_file(path))
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise InvalidInput(f"{path} does not hold a key (64 hexadecimal digits): remove it and start "
                           "the hub again (every workspace then gets a new host)")
    return key


def airlock_cookie_secret(settings: Settings) -> str:
    """The gate's cookie secret (hex), created (0600) on first use so that its HubOAuth sessions
    survive a hub restart; never logged."""
    return _secret_file(hub_dir(settings) / "airlock_cookie_secret")


def airlock_environment(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The gate's environment: the hub's own ``PDS_*`` settings (JupyterHub passes a managed
    service only a few variables), so the gate reads the same database, staging and outbox."""
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items()
           if name.startswith("PDS_") and name not in {"PDS_HUB_AIRLOCK", "PDS_AIRLOCK_COOKIE_SECRET"}}
    env["PDS_AIRLOCK_COOKIE_SECRET"] = airlock_cookie_secret(settings)
    return env


def proxy_command() -> list[str]:
    """configurable-http-proxy: the repository's node_modules first, then $PATH."""
    local = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return [str(local)]
    found = shutil.which("configurable-http-proxy")
    if found is None:
        raise InvalidInput("configurable-http-proxy is not installed: run make (npm install)")
    return [found]


def airlock_available() -> bool:
    """True when the airlock gate can run as ``python -m pds_kernel.airlock.web``.

    ``PDS_HUB_AIRLOCK=off`` leaves it out (a hub without exports, e.g. to debug the hub alone):
    JupyterHub refuses to start when a managed service cannot start, so a gate that cannot even
    start would keep the hub down. A gate that dies later is started again by JupyterHub at its
    next poll (within 30 s), while the hub keeps serving.
    """
    if os.environ.get("PDS_HUB_AIRLOCK", "auto").lower() in {"off", "0", "false", "no"}:
        return False
    try:
        spec = importlib.util.find_spec("pds_kernel.airlock.web")
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec("pds_kernel.airlock.web.__main__")
    except ModuleNotFoundError:
        return False
    return spec is not None


# ---- authenticator ---------------------------------------------------------------------------
class PdsNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator restricted to registry accounts, with a mandatory second factor.

    * no web sign-up: accounts come from ``pds hub account add`` (:func:`provision_account`);
    * login needs password + a code not used before, an approved account and an active registry
      account;
    * the auth model carries the project groups (``manage_groups``), recomputed at every login
      and every auth refresh, which also stop servers of projects the user may no longer use.
    """

    context = Any(None, allow_none=True, config=True,
                  help="The HubContext (settings, runtime, registry); set by configure().")
    require_2fa = Bool(True, config=True,
                       help="Refuse logins of accounts without a TOTP second factor. Default True.")
    membership_check_interval = Float(
        10.0, config=True,
        help="Seconds between checks that every running workspace's user may still use its project "
             "(expired membership, closed project, disabled account stop it). 0 disables. Default 10.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._totp_steps: TotpSteps | None = None
        self._failed_logins: FailedLogins | None = None
        self._account_seals: AccountSeals | None = None
        self._watcher: MembershipWatcher | None = None
        if self.context is not None and self.membership_check_interval > 0:
            self._watcher = MembershipWatcher.start_for(self, self.membership_check_interval,
                                                        sync_token(self.context.settings))

    @default("enable_signup")
    def _default_enable_signup(self) -> bool:
        return False

    @default("allow_2fa")
    def _default_allow_2fa(self) -> bool:
        return True

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @property
    def registry(self) -> Registry:
        return self.context.registry

    def check_allowed(self, username, authentication=None):
        return is_registry_user(self.registry, username)

    def create_user(self, username, password, **kwargs):
        """No web sign-up (``/hub/signup`` is not served): refused and audited if ever reached."""
        name = str(username)[:64]
        self.context.record(AuditEvent(actor=name, action="hub.signup", target=f"user:{name}",
                                       outcome=Outcome.DENIED,
                                       details={"reason": "accounts are created by pds hub account add"}))
        return None

    @property
    def failed_logins(self) -> FailedLogins:
        if self._failed_logins is None:
            self._failed_logins = FailedLogins(self.db)
        return self._failed_logins

    # NativeAuthenticator's four methods for failed attempts, on the hub database instead of a
    # dict in memory (a restart gave a guesser fresh attempts); the wait counts whole seconds
    # (upstream compares ``timedelta.seconds``, which forgets whole days).
    def add_login_attempt(self, username):
        self.failed_logins.add(username)

    def can_try_to_login_again(self, username):
        count, last = self.failed_logins.get(username)
        return count == 0 or time.time() - last > self.seconds_before_next_try

    def is_blocked(self, username):
        return self.failed_logins.is_blocked(username, self.allowed_failed_logins,
                                             self.seconds_before_next_try)

    def successful_login(self, username):
        self.failed_logins.clear(username)

    @property
    def account_seals(self) -> AccountSeals:
        if self._account_seals is None:
            self._account_seals = AccountSeals(self.context.runtime.audit)
        return self._account_seals

    def account_sealed(self, info) -> bool:
        """``info`` (a ``users_info`` row) is what the platform last wrote of the account
        (:mod:`.account_seals`)."""
        return self.account_seals.sealed(self.db, info)

    def change_password(self, username, new_password):
        """NativeAuthenticator's change of a user's own password (``/hub/change-password``, the
        current password checked by the handler), sealed with the account under a new generation
        and audited (``hub.account.password``, with the generation); refused (``None``, audited) for
        an account whose seal is broken: its password is not re-sealed."""
        import bcrypt

        info = self.get_user(username)
        if info is None or not self.is_password_strong(new_password):
            return None
        self.db.refresh(info)
        account = self.account_seals.checked(self.db, info)
        if account is None:
            self.db.rollback()
            self.context.record(AuditEvent(actor=username, action="hub.account.password", target=f"user:{username}",
                                           outcome=Outcome.DENIED, details={"reason": BROKEN}))
            return None
        info.password = bcrypt.hashpw(new_password.encode(), bcrypt.gensalt(self.context.settings.hub.password_cost))
        generation = new_generation()
        self.account_seals.write(self.db, account.with_password(info.password).renewed(generation))  # what was checked
        self.db.commit()
        record_write(self.context.record, AuditEvent(
            actor=username, action="hub.account.password", target=f"user:{username}",
            details={"remote_ip": PASSWORD_CHANGE_IP.get(), GENERATION: generation}), username)
        return True

    @property
    def totp_steps(self) -> TotpSteps:
        if self._totp_steps is None:
            self._totp_steps = TotpSteps(self.db)
        return self._totp_steps

    async def authenticate(self, handler, data):
        username = self.normalize_username((data or {}).get("username", ""))
        if not is_registry_user(self.registry, username):
            record_login_refused(self.context, username, handler, "not an active registry user")
            return None
        info = self.get_user(username)
        if info is not None:  # the hub's session keeps rows: see changes made by `pds hub account`
            self.db.refresh(info)
            refusal = self.account_seals.refusal(self.db, info)
            if refusal is not None:  # refused as a wrong password is (PdsLoginHandler)
                record_login_refused(self.context, username, handler, refusal)
                return None
        if self.require_2fa and info is not None and not info.has_2fa:
            record_login_refused(self.context, username, handler, "account has no second factor")
            return None
        step = code_step((data or {}).get("2fa", ""), info.otp_secret) if info is not None else None
        if step is not None and not self.totp_steps.can_use(username, step):
            self.add_login_attempt(username)
            record_login_refused(self.context, username, handler, "second-factor code used already")
            return None
        blocked = bool(self.allowed_failed_logins) and self.is_blocked(username)
        name = await super().authenticate(handler, data)
        if name is None:
            why = "blocked after failed attempts" if blocked else "account not approved yet" \
                if info is not None and not info.is_authorized else "wrong password or code"
            record_login_refused(self.context, username, handler, why)
            return None
        if step is None or not self.totp_steps.claim(name, step):
            record_login_refused(self.context, username, handler, "second-factor code used already")
            return None
        return auth_model(self.registry, name)

    async def refresh_user(self, user, handler=None):
        if parse_workspace_user(user.name) is not None:  # never signs in: valid while its person's access is
            return await refresh_workspace_user(self.context, user, handler, account_ok=self.can_use_account)
        model = auth_model(self.registry, user.name)
        if model is None:
            return False
        info = self.get_user(user.name)
        if info is not None:
            self.db.refresh(info)
        if info is None or not info.is_authorized or not self.account_sealed(info):
            return False  # revoked (web or CLI), or changed outside the platform: cookies and tokens stop
        if handler is not None:
            await stop_revoked_servers(self.context, handler, user.name, reason="refresh")
        return model

    def can_use_account(self, username: str) -> bool:
        """True when ``username`` has a hub account that is approved now (re-read from the database)
        and sealed."""
        info = self.get_user(username)
        if info is None:
            return False
        self.db.refresh(info)
        return bool(info.is_authorized) and self.account_sealed(info)

    def get_handlers(self, app):
        return [*account_handlers(PdsLoginHandler, AuditedLogoutHandler), *admission_handlers()]


# ---- accounts provisioned by an admin ----------------------------------------------------------
@contextmanager
def hub_session(settings: Settings) -> Iterator[Session]:
    """A session on the local hub's database (JupyterHub's tables and NativeAuthenticator's
    ``users_info``), closed and its engine disposed on the way out: the platform's commands open the
    database the hub itself runs on, once per action, and leave no connection behind."""
    from jupyterhub import orm  # noqa: F401  (declares the hub tables)
    from jupyterhub.orm import new_session_factory
    from nativeauthenticator.orm import UserInfo  # noqa: F401  (adds users_info to them)

    session = new_session_factory(hub_db_url(settings))()
    try:
        yield session
    finally:
        session.close()
        session.get_bind().dispose()


def provision_account(settings: Settings, registry: Registry, username: str, password: str, *,
                      actor: str, reset: bool = False) -> AccountSecret:
    """Create a NativeAuthenticator account with a TOTP secret; return the secret (an
    :class:`.provisions.AccountSecret`, which says whether the account is pending).

    The only way accounts are made (``pds hub account add``, and the demo), by a platform
    administrator only (:func:`pds_kernel.permissions.check_manage_hub_accounts`; a refusal is
    audited). The one who runs it chooses the password and second factor, so under the two-person
    rule (``registry.membership_approvals: 2``, the registry's rule:
    :meth:`~pds_kernel.registry.Registry.record_approvals_rule`) the account, created or reset, is
    *pending*: nobody signs in with it until a second administrator approves it
    (:func:`.accounts.apply_account_approval`); who made it is recorded with it
    (:mod:`.provisions`). With one approval, or while the registry holds no approved administrator
    (a first installation: bootstrap, as for the registry's own administrators), it is approved at
    once. Works with the hub running: the hub re-reads the account at each login. ``reset`` also
    ends every session of the account (login cookies and API tokens, as a revocation). The password
    is stored as a bcrypt hash; neither it nor the secret is logged or audited.
    """
    import bcrypt
    from nativeauthenticator.orm import UserInfo

    action = "hub.account.reset" if reset else "hub.account.create"
    check_account_manager(registry, registry._audit.record, actor, action, username)
    check_user_name(username)
    if not is_registry_user(registry, username):
        raise PermissionDenied(f"{username} is not an active registry user: add them to the registry first")
    if len(password) < 8:
        raise InvalidInput("the password must have at least 8 characters")
    bootstrap = permissions.bootstraps(registry)
    secret = base64.b32encode(secrets.token_bytes(10)).decode()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(settings.hub.password_cost))
    seals = AccountSeals(registry._audit)
    generation = new_generation()
    ended = 0
    with hub_session(settings) as session:
        ensure_provisions_table(session)
        seal_accounts_of_upgrade(session, seals, registry._audit, actor)
        info = UserInfo.find(session, username)
        if info is not None and not reset:
            raise InvalidInput(f"{username} already has a hub account (use --reset to replace it)")
        approvals = registry.record_approvals_rule(actor)  # the hub database has not been written yet
        pending = approvals >= 2 and not bootstrap
        if info is None:
            info = UserInfo(username=username, password=hashed, otp_secret=secret)
            session.add(info)
        info.password, info.otp_secret = hashed, secret
        info.is_authorized, info.has_2fa = not pending, True
        provision = write_provision(session, username, action=action.removeprefix("hub.account."),
                                    provisioned_by=permissions.audit_actor(actor), approvals=approvals,
                                    approved=not pending)
        seals.write(session, SealedAccount.of(info, provision, generation))
        if reset:
            from jupyterhub import orm

            hub_user = session.query(orm.User).filter(orm.User.name == username).first()
            if hub_user is not None:  # commits the account with it
                ended = end_sessions(session, hub_user, delete_tokens=True)
        session.commit()
    details: dict = {"pending": pending, "approvals": approvals, GENERATION: generation}
    if bootstrap and approvals >= 2:
        details["bootstrap"] = True
    if reset:
        details["tokens_deleted"] = ended
    record_write(registry._audit.record, AuditEvent(actor=actor, action=action, target=f"user:{username}",
                                                    details=details), username)
    return AccountSecret(secret, username, pending)


def set_account_approval(settings: Settings, registry: Registry, username: str, approved: bool, *,
                         actor: str) -> None:
    """Approve or revoke a hub account (``pds hub account approve|revoke``), audited.

    Approving an account pending since one administrator created or reset it takes a second
    administrator (:func:`pds_kernel.permissions.check_approve_hub_account`). Revoking also refuses every login cookie the user holds (a new JupyterHub ``cookie_id``),
    deletes their API tokens, and the hub's membership watcher stops their running servers within
    ``membership_check_interval``. Works with the hub running. A platform administrator only
    (:func:`.accounts.apply_account_approval`, the same service as the hub's accounts page)."""
    check_user_name(username)
    seals = AccountSeals(registry._audit)
    with hub_session(settings) as session:
        seal_accounts_of_upgrade(session, seals, registry._audit, actor)
        apply_account_approval(session, registry, registry._audit.record, seals, username, approved,
                               actor=actor, via="cli")


def seal_accounts_made_before_seals(settings: Settings, audit, actor: str) -> list[str] | None:
    """The one-time sealing of the accounts made before the seals (:mod:`.account_seals`), by the
    hub's start and ``pds db upgrade``: the names sealed, or ``None`` when it was done before."""
    seals = AccountSeals(audit)
    if seals.upgrade_done(audit):  # the usual case: the hub database is not even opened
        return None
    with hub_session(settings) as session:
        return seal_accounts_of_upgrade(session, seals, audit, actor)


def reseal_hub_accounts(settings: Settings, audit, old, new) -> dict | None:
    """After a rotation of the audit key from ``old`` to ``new`` (``pds audit rotate-key``):
    :func:`.account_seals.reseal_accounts` on the local hub's database; ``None`` when this
    installation has none (on Kubernetes the hub signs users in through the identity provider)."""
    if not (hub_dir(settings) / "jupyterhub.sqlite").is_file():
        return None
    with hub_session(settings) as session:
        return reseal_accounts(session, audit, old, new)


# ---- the configuration -------------------------------------------------------------------------
def configure(c, settings: Settings | None = None) -> HubContext:
    """Fill JupyterHub's config object ``c`` for the embedded default. Returns the context."""
    settings = settings or load_settings()
    context = HubContext.from_settings(settings)
    registry = context.registry
    state = hub_dir(settings)
    seal_accounts_made_before_seals(settings, context.runtime.audit, actor="hub")

    c.JupyterHub.ip = settings.hub.ip
    c.JupyterHub.port = settings.hub.port
    # each user's workspaces, the gate and the hub on their own host (pds_kernel.hub.origins)
    c.JupyterHub.subdomain_host = public_host(settings)
    # w--<keyed digest>.<host> per workspace (ADR 17, amended): its name tells nobody who works on what
    c.JupyterHub.subdomain_hook = workspace_host_hook(workspace_host_key(settings))
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = api_port(settings)
    c.JupyterHub.db_url = hub_db_url(settings)
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port(settings)}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.ConfigurableHTTPProxy.command = proxy_command()
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.redirect_to_server = False
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.template_paths = [str(Path(__file__).resolve().parent / "templates")]
    c.JupyterHub.template_vars = make_template_vars(context, gate_public_url(settings))
    c.JupyterHub.extra_handlers = platform_handlers()

    c.JupyterHub.authenticator_class = PdsNativeAuthenticator
    c.PdsNativeAuthenticator.context = context
    # No JupyterHub admins: registry admins get the narrower ADMIN_ROLE from build_load_roles.
    c.Authenticator.admin_users = set()
    c.Authenticator.post_auth_hook = make_post_auth_hook(context)
    c.Authenticator.refresh_pre_spawn = True
    c.Authenticator.auth_refresh_age = 300
    c.PdsNativeAuthenticator.membership_check_interval = settings.hub.membership_check_seconds
    c.NativeAuthenticator.minimum_password_length = 8
    c.NativeAuthenticator.check_common_password = True
    # Five failed logins in a row block the account for 10 minutes. NativeAuthenticator's help says
    # the wait defaults to 600 s, but the trait's default is 0: the "block" lasted one second.
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.seconds_before_next_try = 600
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.enable_signup = False
    # A login cookie lives 12 hours at most; a logout refuses it at once (AuditedLogoutHandler).
    c.JupyterHub.cookie_max_age_days = 0.5

    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = max(5, len(registry.projects()))
    c.JupyterHub.spawner_class = SandboxSpawner
    c.SandboxSpawner.context = context
    budget.configure(c, context)
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 60
    c.Spawner.default_url = "/lab"

    roles = build_load_roles(registry)
    services = [{"name": SYNC_SERVICE, "api_token": sync_token(settings)}]
    roles.append({"name": "pds-sync", "description": "pds hub sync: registry to hub",
                  "scopes": ["admin:users", "admin:servers", "admin:groups", "list:users"],
                  "services": [SYNC_SERVICE]})
    if airlock_available():
        port = airlock_port(settings)
        services.append({
            "name": AIRLOCK_SERVICE, "url": f"http://127.0.0.1:{port}",
            "command": [sys.executable, "-m", "pds_kernel.airlock.web"],
            "environment": airlock_environment(settings),
            "oauth_no_confirm": True,
        })
        roles.append(airlock_service_role())
        c.SandboxSpawner.gate_port = port
        c.SandboxSpawner.gate_pages = gate_public_url(settings)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    return context


def today() -> date:
    return date.today()
