"""The embedded default hub: NativeAuthenticator with two-factor codes, the sandbox spawner, and
projects as named servers. ``hub_config/jupyterhub_config.py`` calls :func:`configure`.

Ports, all on loopback except the public one (``settings.hub.ip``):

============================  =====================================
``settings.hub.port``          public proxy (browser)
``settings.hub.port + 1``      hub API (reached by sandboxes only through their hub socket)
``settings.hub.port + 2``      proxy API
``settings.hub.port + 3``      airlock gate service (when ``pds_kernel.airlock.web`` exists)
============================  =====================================

Accounts: only registry users may sign up (``check_allowed`` and ``create_user`` ask the
registry), every account has a TOTP second factor, and an admin approves each sign-up
(``/hub/authorize``) unless the account is provisioned by an admin with :func:`provision_account`
(``pds hub account add``). Data files (hub database, cookie secret, proxy pid, service token) live
in ``settings.paths.state / "hub"``.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import secrets
import shutil
import sys
from datetime import date
from pathlib import Path

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import ToggleAuthorizationHandler
from traitlets import Any, Bool, default

from ..audit import AuditEvent, Outcome
from ..errors import InvalidInput, PermissionDenied
from ..registry import Registry
from ..registry.names import check_user_name
from ..sandbox.spawner import SandboxSpawner
from ..settings import Settings, load_settings
from . import budget
from .common import (
    AIRLOCK_SERVICE,
    AuditedLogoutHandler,
    HubContext,
    airlock_service_role,
    auth_model,
    build_load_roles,
    is_registry_user,
    make_post_auth_hook,
    record_login_refused,
    registry_admins,
    stop_revoked_servers,
)

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


def hub_url(settings: Settings) -> str:
    return f"http://{settings.hub.ip}:{settings.hub.port}"


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
class AuditedToggleAuthorizationHandler(ToggleAuthorizationHandler):
    """NativeAuthenticator's approve/revoke toggle, recorded in the audit trail."""

    async def get(self, slug):
        await super().get(slug)
        context = self.authenticator.context
        info = self.authenticator.get_user(slug)
        if context is not None and info is not None:
            context.record(AuditEvent(
                actor=self.current_user.name, action="hub.account.approve" if info.is_authorized
                else "hub.account.revoke", target=f"user:{slug}",
            ))


class PdsNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator restricted to registry accounts, with a mandatory second factor.

    * sign-up is possible only for active registry users, always with a TOTP secret;
    * login needs password + code, an approved account and an active registry account;
    * the auth model carries the project groups (``manage_groups``), recomputed at every login
      and every auth refresh, which also stop servers of projects the user may no longer use.
    """

    context = Any(None, allow_none=True, config=True,
                  help="The HubContext (settings, runtime, registry); set by configure().")
    require_2fa = Bool(True, config=True,
                       help="Refuse logins of accounts without a TOTP second factor. Default True.")

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

    def get_authed_users(self):
        """Accounts approved already, plus the registry's admins: their sign-up needs no approval
        (NativeAuthenticator pre-approves ``admin_users``, which stays empty here: see
        :data:`~.common.ADMIN_ROLE`)."""
        return set(super().get_authed_users()) | registry_admins(self.registry)

    def create_user(self, username, password, **kwargs):
        """Sign-up: only registry users, and always with a second factor."""
        name = self.normalize_username(username)
        if not is_registry_user(self.registry, name):
            self.context.record(AuditEvent(actor=str(name)[:64], action="hub.signup",
                                           target=f"user:{str(name)[:64]}", outcome=Outcome.DENIED,
                                           details={"reason": "not a registry user"}))
            return None
        kwargs["has_2fa"] = True
        kwargs["email"] = kwargs.get("email") or None
        info = super().create_user(name, password, **kwargs)
        if info is not None:
            self.context.record(AuditEvent(actor=name, action="hub.signup", target=f"user:{name}",
                                           details={"approved": bool(info.is_authorized)}))
        return info

    async def authenticate(self, handler, data):
        username = self.normalize_username((data or {}).get("username", ""))
        if not is_registry_user(self.registry, username):
            record_login_refused(self.context, username, handler, "not an active registry user")
            return None
        info = self.get_user(username)
        if self.require_2fa and info is not None and not info.has_2fa:
            record_login_refused(self.context, username, handler, "account has no second factor")
            return None
        name = await super().authenticate(handler, data)
        if name is None:
            why = "account not approved yet" if info is not None and not info.is_authorized \
                else "wrong password or code"
            record_login_refused(self.context, username, handler, why)
            return None
        return auth_model(self.registry, name)

    async def refresh_user(self, user, handler=None):
        model = auth_model(self.registry, user.name)
        if model is None:
            return False
        if handler is not None:
            await stop_revoked_servers(self.context, handler, user.name, reason="refresh")
        return model

    def get_handlers(self, app):
        return [(r"/authorize/([^/]*)", AuditedToggleAuthorizationHandler),
                (r"/logout", AuditedLogoutHandler),
                *super().get_handlers(app)]


# ---- accounts provisioned by an admin ----------------------------------------------------------
def _hub_sessions(settings: Settings):
    from jupyterhub import orm  # noqa: F401  (declares the hub tables)
    from jupyterhub.orm import new_session_factory
    from nativeauthenticator.orm import UserInfo  # noqa: F401  (adds users_info to them)

    return new_session_factory(hub_db_url(settings))


def provision_account(settings: Settings, registry: Registry, username: str, password: str, *,
                      actor: str, reset: bool = False) -> str:
    """Create an approved NativeAuthenticator account with a TOTP secret; return the secret.

    For admins and the demo. Run it while the hub is stopped (the hub caches accounts). The
    password is stored as a bcrypt hash; neither it nor the secret is logged or audited.
    """
    import bcrypt
    from nativeauthenticator.orm import UserInfo

    check_user_name(username)
    if not is_registry_user(registry, username):
        raise PermissionDenied(f"{username} is not an active registry user: add them to the registry first")
    if len(password) < 8:
        raise InvalidInput("the password must have at least 8 characters")
    secret = base64.b32encode(secrets.token_bytes(10)).decode()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    session = _hub_sessions(settings)()
    try:
        info = UserInfo.find(session, username)
        if info is not None and not reset:
            raise InvalidInput(f"{username} already has a hub account (use --reset to replace it)")
        if info is None:
            info = UserInfo(username=username, password=hashed, otp_secret=secret)
            session.add(info)
        info.password, info.otp_secret = hashed, secret
        info.is_authorized, info.has_2fa = True, True
        session.commit()
    finally:
        session.close()
        session.get_bind().dispose()
    registry._audit.record(AuditEvent(actor=actor, action="hub.account.create" if not reset
                                      else "hub.account.reset", target=f"user:{username}"))
    return secret


def approve_account(settings: Settings, registry: Registry, username: str, *, actor: str) -> None:
    """Approve a pending sign-up (same as the admin's /hub/authorize page)."""
    from nativeauthenticator.orm import UserInfo

    check_user_name(username)
    session = _hub_sessions(settings)()
    try:
        info = UserInfo.find(session, username)
        if info is None:
            raise InvalidInput(f"{username} has not signed up yet")
        info.is_authorized = True
        session.commit()
    finally:
        session.close()
        session.get_bind().dispose()
    registry._audit.record(AuditEvent(actor=actor, action="hub.account.approve", target=f"user:{username}"))


# ---- the configuration -------------------------------------------------------------------------
def configure(c, settings: Settings | None = None) -> HubContext:
    """Fill JupyterHub's config object ``c`` for the embedded default. Returns the context."""
    settings = settings or load_settings()
    context = HubContext.from_settings(settings)
    registry = context.registry
    state = hub_dir(settings)

    c.JupyterHub.ip = settings.hub.ip
    c.JupyterHub.port = settings.hub.port
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

    c.JupyterHub.authenticator_class = PdsNativeAuthenticator
    c.PdsNativeAuthenticator.context = context
    # No JupyterHub admins: registry admins get the narrower ADMIN_ROLE from build_load_roles.
    c.Authenticator.admin_users = set()
    c.Authenticator.post_auth_hook = make_post_auth_hook(context)
    c.Authenticator.refresh_pre_spawn = True
    c.Authenticator.auth_refresh_age = 300
    c.NativeAuthenticator.minimum_password_length = 8
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.open_signup = False

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
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    return context


def today() -> date:
    return date.today()
