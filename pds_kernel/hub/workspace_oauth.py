"""A person's own workspace needs no "authorize access" page (ADR 17).

JupyterHub asks a user to confirm, once per server, before a server of *another* user may know who
she is (``OAuthAuthorizeHandler.needs_oauth_confirm``); it skips the question for her own servers.
Her workspaces are the servers of her workspace users (``alice@diabetes-t2``), so JupyterHub took
them for someone else's and showed the question at the first opening of each. Here a server of a
workspace user counts as its person's own, and only hers: anyone else, even with the role, is asked
as JupyterHub asks. The route replaces JupyterHub's (``Authenticator.get_handlers`` come first).
"""

from __future__ import annotations

from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

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

    def needs_oauth_confirm(self, user, oauth_client, requested_scopes):
        if is_own_workspace(user.name, oauth_client):
            return False
        return super().needs_oauth_confirm(user, oauth_client, requested_scopes)


def workspace_oauth_handlers() -> list[tuple[str, type]]:
    """JupyterHub's route of the authorize endpoint (under the hub's prefix)."""
    return [(r"/api/oauth2/authorize", WorkspaceOAuthAuthorizeHandler)]
