"""Who is calling the web service: one small interface, one production implementation.

Production (:class:`HubIdentity`) asks JupyterHub: pages log in through HubOAuth (cookie, redirect
to the hub's login), the JSON API accepts JupyterHub API tokens (``Authorization: token ...``) so a
workspace can submit. Tests inject their own :class:`Identity` (defined in the test code); there is
no switch here that trusts a header or skips authentication.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tornado.httputil import url_concat
from tornado.web import RequestHandler

log = logging.getLogger(__name__)


class Identity(Protocol):
    """Resolve the user of a request; ``None`` means anonymous (denied everywhere)."""

    async def user(self, handler: RequestHandler, *, api: bool) -> str | None:
        """The user name; for ``api=True`` only a token in the Authorization header counts."""

    def login_url(self, handler: RequestHandler) -> str | None:
        """Where an anonymous browser is sent, or ``None`` to answer 403."""

    def handlers(self, prefix: str) -> list:
        """Extra Tornado routes the identity needs (an OAuth callback)."""


class HubIdentity:
    """JupyterHub OAuth for pages, JupyterHub API tokens for the JSON API."""

    def __init__(self, hub_auth=None):
        from jupyterhub.services.auth import HubOAuth

        # the singleton: JupyterHub's OAuth callback handler uses HubOAuth.instance() too
        self.hub_auth = hub_auth or HubOAuth.instance(cache_max_age=60)

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
        return model.get("name")

    def login_url(self, handler: RequestHandler) -> str | None:
        if not self.hub_auth.login_url:
            return None
        state = self.hub_auth.set_state_cookie(handler, next_url=handler.request.uri)
        return url_concat(self.hub_auth.login_url, {"state": state})

    def handlers(self, prefix: str) -> list:
        from jupyterhub.services.auth import HubOAuthCallbackHandler

        return [(prefix + "oauth_callback", HubOAuthCallbackHandler)]
