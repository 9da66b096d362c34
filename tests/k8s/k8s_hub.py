"""A real JupyterHub 5.5 in Kubernetes mode without Kubernetes, for the gateway tests.

:func:`start_hub` configures it with :func:`pds_kernel.hub.kubernetes.configure` (after the services
z2jh renders from the chart's ``hub.services``) and serves its real REST API on loopback. Servers
start through the hub's own ``User.spawn``: it mints ``$JUPYTERHUB_API_TOKEN`` from
``server_token_scopes`` and runs the PDS hooks on KubeSpawner's real pod manifest; only the
Kubernetes calls are replaced (:class:`NoClusterSpawner`). Its ``PdsOAuthenticator`` talks to a
small identity provider on loopback (:mod:`.oidc_provider`): :meth:`Hub.sign_in` writes the person's
IdP groups there and her auth state as a sign-in leaves it, so JupyterHub's auth refreshes ask that
provider again, as in production (``enable_auth_state``).
"""

from __future__ import annotations

import json
import secrets
import time

from jupyterhub import orm, roles
from jupyterhub.app import JupyterHub
from jupyterhub.crypto import CryptKeeper
from kubespawner import KubeSpawner
from tornado import httpserver, netutil
from tornado import web as tornado_web
from tornado.httpclient import AsyncHTTPClient

from pds_kernel.hub.kubernetes import configure
from pds_kernel.hub.oidc import ADMIN_GROUP
from pds_kernel.hub.workspace_roles import grant
from pds_kernel.k8s.config import K8sConfig
from pds_kernel.workspace_names import workspace

from .conftest import z2jh_hub_config
from .oidc_provider import OpenIdProvider

GATEWAY = "dask-gateway"
#: One plain log format for both applications (importing dask_gateway_server changes the default
#: format of every traitlets application to one that JupyterHub's formatter cannot fill).
LOG_FORMAT = "[%(levelname)1.1s %(name)s] %(message)s"


# ---- JupyterHub -------------------------------------------------------------------------------
class _Ok(tornado_web.RequestHandler):
    def get(self, *args):
        self.finish({})


class NoClusterSpawner(KubeSpawner):
    """KubeSpawner without Kubernetes: ``start`` builds the real pod (profile, pre-spawn and
    modify-pod hooks) and keeps it, then hands the hub a loopback stand-in for the notebook."""

    notebook_url = ""  # set by the fixture

    async def start(self):
        await self.load_user_options()
        pod = await self.modify_pod_hook(self, await self.get_pod_manifest())
        self.pod_manifest = self.api.api_client.sanitize_for_serialization(pod)
        return self.notebook_url

    async def poll(self):
        return None

    async def stop(self, now=False):
        return None


def start_notebook_stand_in() -> tuple[httpserver.HTTPServer, str]:
    """What the hub sees of a started notebook server: an HTTP server answering ``{}``."""
    server = httpserver.HTTPServer(tornado_web.Application([(r"/(.*)", _Ok)]))
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return server, f"http://127.0.0.1:{sockets[0].getsockname()[1]}"


def chart_services() -> list[dict]:
    """``c.JupyterHub.services`` as z2jh renders the chart's ``hub.services`` (tokens generated)."""
    return [
        {"name": GATEWAY, "url": "http://traefik-dask-gateway", "display": False,
         "api_token": secrets.token_hex(32)},
        {"name": "airlock", "url": "http://pds-airlock:8080", "oauth_no_confirm": True,
         "api_token": secrets.token_hex(32)},
    ]


async def start_hub(settings, db_url: str, tmp_path, notebook_url: str, namespace: str | None = None,
                    load_roles: list | None = None):
    """``namespace``: KubeSpawner's, as z2jh sets it from the hub pod's (``$POD_NAMESPACE``);
    ``load_roles``: the chart's ``hub.loadRoles``, as z2jh renders them."""
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    c = z2jh_hub_config()  # the chart's hub.config: the hub's host name
    if namespace is not None:
        c.KubeSpawner.namespace = namespace
    c.JupyterHub.services = chart_services()
    if load_roles is not None:
        c.JupyterHub.load_roles = load_roles
    configure(c, settings=settings, k8s=K8sConfig())
    # the chart's hub.config.GenericOAuthenticator, against the identity provider on loopback
    idp = OpenIdProvider({}, IDP_CLIENT, secrets.token_hex(16))
    issuer = idp.start()
    c.PdsOAuthenticator.client_id, c.PdsOAuthenticator.client_secret = idp.client_id, idp.client_secret
    c.PdsOAuthenticator.authorize_url = f"{issuer}/authorize"
    c.PdsOAuthenticator.token_url = f"{issuer}/token"
    c.PdsOAuthenticator.userdata_url = f"{issuer}/userinfo"
    c.PdsOAuthenticator.allowed_groups = {IDP_SIGN_IN_GROUP}
    c.PdsOAuthenticator.idp_admin_groups = {IDP_ADMIN_GROUP}
    # test plumbing: a local database, loopback addresses, no Kubernetes API calls
    c.JupyterHub.db_url = db_url
    c.JupyterHub.cookie_secret = secrets.token_bytes(32)
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{port}"
    c.JupyterHub.spawner_class = NoClusterSpawner
    c.Application.log_format = LOG_FORMAT
    NoClusterSpawner.notebook_url = notebook_url
    empty = tmp_path / "jupyterhub_config.py"
    empty.write_text("")
    app = JupyterHub(config=c)
    app.config_file = str(empty)
    await app.initialize([])
    server = httpserver.HTTPServer(app.tornado_application)
    server.add_sockets(sockets)
    app.pds_test_idp = idp
    return app, HubServers(server, idp), f"http://127.0.0.1:{port}/hub/api"


IDP_CLIENT, IDP_SIGN_IN_GROUP, IDP_ADMIN_GROUP = "pds-workspace", "pds-users", "pds-admins"


class HubServers:
    """The hub's HTTP server and its identity provider's: stopped together."""

    def __init__(self, hub, idp: OpenIdProvider):
        self.hub, self.idp = hub, idp

    def stop(self) -> None:
        self.hub.stop()
        self.idp.server.stop()


def idp_groups(groups: list[str]) -> list[str]:
    """The identity provider's groups that give the hub groups ``groups`` (the registry agreeing)."""
    return [IDP_SIGN_IN_GROUP, *(f"pds-project-{g}" for g in groups if g != ADMIN_GROUP),
            *([IDP_ADMIN_GROUP] if ADMIN_GROUP in groups else [])]


class Hub:
    def __init__(self, app, api_url: str, services: list[dict]):
        self.app, self.api_url = app, api_url
        self.service_tokens = {s["name"]: s["api_token"] for s in services}
        self.idp: OpenIdProvider = app.pds_test_idp

    def sign_in(self, name: str, groups: list[str]):
        """What the hub does once PdsOAuthenticator accepted a user (``BaseHandler.auth_to_user``):
        create the user with JupyterHub's default roles, set the project groups, keep the provider's
        tokens (encrypted auth state), the provider now putting her in the matching IdP groups.
        ``groups=[]``: the provider withdrew every project."""
        orm_user = orm.User.find(self.app.db, name)
        if orm_user is None:
            orm_user = orm.User(name=name)
            self.app.db.add(orm_user)
            roles.assign_default_roles(self.app.db, entity=orm_user)
            self.app.db.commit()
        user = self.app.users[orm_user]
        user.sync_groups(groups)
        self.idp.directory[name] = idp_groups(groups)
        token = secrets.token_urlsafe(24)
        self.idp.tokens[token] = name
        auth_state = {"access_token": token, "token_response": {"access_token": token, "token_type": "Bearer"},
                      "oauth_user": {"preferred_username": name, "groups": self.idp.directory[name]}}
        # User.save_auth_state's encryption, done here without awaiting its thread
        orm_user.encrypted_auth_state = CryptKeeper.instance()._encrypt(auth_state)
        self.app.db.commit()
        user._auth_refreshed = time.monotonic()  # as auth_to_user: signed in now, no refresh for auth_refresh_age
        return user

    def workspace_user(self, user, project: str):
        """The hub user that runs ``user``'s workspace of ``project`` (``alice@alpha-study``, ADR 17),
        made with the person's role on it as the hub makes it (:func:`pds_kernel.hub.workspace_roles.grant`)."""
        found = workspace(user.name, project)
        grant(self.app.db, found)
        return self.app.users[orm.User.find(self.app.db, found.user)]

    async def start_server(self, user, project: str, token_scopes=None, *, legacy: bool = False) -> str:
        """Start ``user``'s workspace of ``project`` (the server of her workspace user; ``legacy``:
        her own named server, as before workspace users) through JupyterHub's own ``User.spawn``;
        its token."""
        if not legacy:
            user = self.workspace_user(user, project)
        spawner = user.get_spawner(project, replace_failed=True)
        if token_scopes is not None:
            spawner.server_token_scopes = token_scopes
        await user.spawn(project)
        spawner.stop_polling()
        return spawner.api_token

    async def whoami(self, token: str) -> dict:
        """``GET /hub/api/user``: what the gateway and the airlock are told about a token."""
        response = await AsyncHTTPClient().fetch(f"{self.api_url}/user",
                                                 headers={"Authorization": f"token {token}"})
        return json.loads(response.body)




def start_proxy(app):
    """The real configurable-http-proxy of ``app`` (initialised), on free loopback ports: JupyterHub
    stops a server only once its route is removed from the proxy (a stop whose route could not be
    removed is dropped, the server left running). Returns the process; terminate it after use."""
    import os
    import socket
    import subprocess
    import time

    from ports import free_port

    from pds_kernel.hub.local import proxy_command

    port, api_port = free_port(), free_port()
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": app.proxy.auth_token}
    proc = subprocess.Popen([*proxy_command(), "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
                             "--api-port", str(api_port), "--log-level", "warn"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", api_port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("configurable-http-proxy did not start") from None
            time.sleep(0.1)
    app.proxy.api_url = f"http://127.0.0.1:{api_port}"
    return proc


async def stop_watched_hub(app, server, proxy, notebook) -> None:
    """Stop what a test started with :func:`start_hub` and :func:`start_proxy`: the hub's periodic
    checks (the membership watcher, the Dask worker refusal check), the proxy, the hub's and the
    notebook stand-in's HTTP servers, the hub's database."""
    for name in ("_watcher", "_worker_watch"):
        watcher = getattr(app.authenticator, name, None)
        if watcher is not None:
            await watcher.close()
    proxy.terminate()
    proxy.wait(10)
    server.stop()
    notebook.stop()
    app.db.close()
