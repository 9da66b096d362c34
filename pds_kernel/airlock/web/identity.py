"""Who is calling the web service: one small interface, one production implementation.

Production (:class:`HubIdentity`) asks JupyterHub: pages log in through HubOAuth (cookie, redirect
to the hub's login), the JSON API accepts JupyterHub API tokens (``Authorization: token ...``) so a
workspace can submit. A workspace's own server token is confined to that workspace's project
(``handler.workspace_project``): it submits and follows that project's requests, nothing else.
Tests inject their own :class:`Identity` (defined in the test code); there is
no switch here that trusts a header or skips authentication.

Every request is asked of the hub (:func:`uncached_hub_oauth`): JupyterHub's ``HubAuth`` remembers
the hub's answer for a token (300 s by default, 60 s here before), so a token the hub had deleted
(an account revoked with ``pds hub account revoke``, a logout) kept submitting exports, reading
requests and downloading released files at the gate for up to a minute after the revocation
(tests/security/test_revocation_attacks.py). One loopback call per request is the price.
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol

from tornado.httputil import url_concat
from tornado.web import RequestHandler

from ...workspace_names import parse_workspace_user

log = logging.getLogger(__name__)


class Identity(Protocol):
    """Resolve the user of a request; ``None`` means anonymous (denied everywhere)."""

    async def user(self, handler: RequestHandler, *, api: bool) -> str | None:
        """The user name; for ``api=True`` only a token in the Authorization header counts."""

    def login_url(self, handler: RequestHandler) -> str | None:
        """Where an anonymous browser is sent, or ``None`` to answer 403."""

    def handlers(self, prefix: str) -> list:
        """Extra Tornado routes the identity needs (an OAuth callback)."""


def workspace_project(model: dict, access_scopes: set[str]) -> tuple[bool, str | None]:
    """Pure: is this hub identity model (``/hub/api/user``) usable at the gate, and from where?

    Returns ``(True, None)`` for the user themselves (their browser session or a token they made:
    scopes grant access to this service), ``(True, project)`` for a workspace's own server token
    (``$JUPYTERHUB_API_TOKEN`` inside a sandbox: its scopes name exactly one server,
    ``access:servers!server=<user>/<project>``), and ``(False, None)`` for any other token.
    Code running in a workspace acts only for that workspace's project.
    """
    from jupyterhub.services.auth import check_scopes

    scopes = set(model.get("scopes") or [])
    if access_scopes and check_scopes(access_scopes, scopes):
        return True, None
    prefix = f"access:servers!server={model.get('name')}/"
    servers = [scope[len(prefix):] for scope in scopes if scope.startswith(prefix)]
    if len(servers) == 1 and servers[0]:
        return True, servers[0]
    return not access_scopes, None  # outside a hub (no service scopes to require): the user


def workspace_person(name: object, project: str | None) -> str | None:
    """Pure: the person a usable identity acts for. A workspace user (:mod:`pds_kernel.workspace_names`)
    acts only through its own server's token, for its person in its project; it never acts as
    itself (it never signs in)."""
    if not isinstance(name, str):
        return None
    found = parse_workspace_user(name)
    if found is None:
        return name
    return found.person if project == found.project else None


@functools.cache
def _uncached_class():
    from jupyterhub.services.auth import HubOAuth

    class UncachedHubOAuth(HubOAuth):
        def user_for_token(self, token, use_cache=True, session_id="", *, sync=True):
            return super().user_for_token(token, use_cache=False, session_id=session_id, sync=sync)

    return UncachedHubOAuth


def uncached_hub_oauth():
    """The gate's ``HubOAuth`` singleton, which asks the hub about a token at every request and
    never answers from memory (``cache_max_age=0`` would mean *forever* in JupyterHub: the cache is
    skipped per call instead). JupyterHub's OAuth callback handler takes ``HubOAuth.instance()``,
    which is this one once made (traitlets hands the instance to the parent classes too)."""
    return _uncached_class().instance()


class HubIdentity:
    """JupyterHub OAuth for pages, JupyterHub API tokens for the JSON API, both checked with the
    hub at every request (:func:`uncached_hub_oauth`)."""

    def __init__(self, hub_auth=None):
        self.hub_auth = hub_auth or uncached_hub_oauth()

    async def user(self, handler: RequestHandler, *, api: bool) -> str | None:
        if api:
            token = self.hub_auth.get_token(handler, in_cookie=False)
            if not token:
                return None
            model = await self.hub_auth.user_for_token(token, sync=False)
        else:
            model = await self.hub_auth.get_user(handler, sync=False)
        if not model or model.get("kind", "user") != "user":
            return None
        usable, project = workspace_project(model, set(self.hub_auth.access_scopes))
        person = workspace_person(model.get("name"), project)
        if not usable or person is None:
            return None
        handler.workspace_project = project
        return person

    def login_url(self, handler: RequestHandler) -> str | None:
        if not self.hub_auth.login_url:
            return None
        state = self.hub_auth.set_state_cookie(handler, next_url=handler.request.uri)
        return url_concat(self.hub_auth.login_url, {"state": state})

    def handlers(self, prefix: str) -> list:
        from jupyterhub.services.auth import HubOAuthCallbackHandler

        from .logs import SafeSummary

        class CallbackHandler(SafeSummary, HubOAuthCallbackHandler):
            """JupyterHub's callback, whose query string (the client's) is never logged."""

        return [(prefix + "oauth_callback", CallbackHandler)]
