"""A person's own workspace needs no "authorize access" page (ADR 17).

JupyterHub asks a user to confirm, once per server, before a server of *another* user may know who
she is (``OAuthAuthorizeHandler.needs_oauth_confirm``); it skips the question for her own servers.
Her workspaces are the servers of her workspace users (``alice@diabetes-t2``), so JupyterHub took
them for someone else's and showed the question at the first opening of each. Here a server of a
workspace user counts as its person's own, and only hers: anyone else, even with the role, is asked
as JupyterHub asks. The route replaces JupyterHub's (``Authenticator.get_handlers`` come first).

Before oauthlib reads the rest of the request, a server's client that the signed-in person may not
access is answered as a client that does not exist (``400 Invalid client_id parameter value.``).
JupyterHub checked access only after oauthlib had validated the request, and oauthlib sends a
request it finds wrong (no ``response_type``, an unknown scope...) back to the client's own
address: another person who formed a workspace's client id from its person and project was sent to
its keyed host (ADR 17, amended), and the answers told a running workspace (it has a client) from
one that does not run (red team 23, tests/security/test_redteam23_workspace_hosts.py).
"""

from __future__ import annotations

from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from oauthlib.oauth2.rfc6749.errors import InvalidClientIdError
from tornado import web

from ..audit import AuditEvent, Outcome
from ..workspace_names import workspace_of_server


def is_own_workspace(user_name: str, oauth_client) -> bool:
    """Whether ``oauth_client`` is the server of a workspace user whose person is ``user_name``."""
    spawner = getattr(oauth_client, "spawner", None)
    owner = getattr(getattr(spawner, "user", None), "name", None)
    if spawner is None or owner is None:
        return False
    found = workspace_of_server(owner, spawner.name)
    return found is not None and found.person == user_name


class WorkspaceOAuthAuthorizeHandler(OAuthAuthorizeHandler):
    """JupyterHub's authorize endpoint; a person's own workspace is her own server."""

    def refuse_servers_out_of_reach(self) -> None:
        """A server's client the signed-in person may not access answers as an unknown client
        does, whether it runs or not (see the module's docstring); services and unknown clients
        go on to JupyterHub's own checks."""
        client_id = self.get_argument("client_id", "")
        client = self.oauth_provider.fetch_by_client_id(client_id) if client_id else None
        spawner = getattr(client, "spawner", None)
        if spawner is not None and not self.get_scope_filter("access:servers")(spawner, kind="server"):
            person = self.current_user.name
            self.log.warning("refused %s the authorization of a server out of reach", person)
            self.authenticator.context.record(AuditEvent(
                actor=person, action="hub.oauth.authorize", target=f"server:{spawner.user.name}/{spawner.name}",
                outcome=Outcome.DENIED, details={"reason": "no access to the server"}))
            refusal = InvalidClientIdError()
            raise web.HTTPError(refusal.status_code, refusal.description)

    @web.authenticated
    async def get(self):
        self.refuse_servers_out_of_reach()
        return await super().get()

    @web.authenticated
    def post(self):
        self.refuse_servers_out_of_reach()
        return super().post()

    def needs_oauth_confirm(self, user, oauth_client, requested_scopes):
        if is_own_workspace(user.name, oauth_client):
            return False
        return super().needs_oauth_confirm(user, oauth_client, requested_scopes)


def workspace_oauth_handlers() -> list[tuple[str, type]]:
    """JupyterHub's route of the authorize endpoint (under the hub's prefix)."""
    return [(r"/api/oauth2/authorize", WorkspaceOAuthAuthorizeHandler)]
