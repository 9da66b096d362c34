"""The hub's own pages and page variables: where each role lands, and the administrators'
read-only platform page.

* :func:`make_template_vars`: ``c.JupyterHub.template_vars``: for the signed-in user, the projects
  they check outputs for and whether they administer the platform, so the home page gives a
  checker their review queue and every page links to the airlock and (for admins) the platform;
  and why a workspace of theirs was restarted or stopped by the hub (:mod:`.notices`).
* :class:`PlatformHandler`: ``GET /hub/platform``, the overview of :mod:`pds_kernel.overview`;
  who may see it is decided there (:func:`~pds_kernel.overview.check_platform_viewer`), not here.
"""

from __future__ import annotations

from datetime import date

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from ..errors import PdsError
from ..overview import Workspace, build_overview, iso
from ..registry import Role
from ..workspace_names import parse_workspace_user, person_of
from .common import AIRLOCK_SERVICE, HubContext
from .workspace_roles import workspace_users_of


def make_template_vars(context: HubContext, airlock_url: str = f"/services/{AIRLOCK_SERVICE}/") -> dict:
    """``pds``: a callable JupyterHub calls with the current user at each page render.
    ``airlock_url``: the gate's pages, on their own host (:mod:`.origins`)."""

    def pds(user) -> dict:
        if user is None:
            return {}
        registry = context.registry
        name = user.name
        return {
            "checks": [p.id for p in registry.active_projects(name, Role.OUTPUT_CHECKER)],
            "researches": [p.id for p in registry.active_projects(name, Role.RESEARCHER)],
            "admin": registry.is_administrator(name),
            "airlock": airlock_url,
            # why a workspace of theirs restarted or was stopped by the hub (pds_kernel.hub.notices)
            "notices": context.notices.for_user(name),
            "workspaces": workspaces_of(user),
        }

    return {"pds": pds}


def workspaces_of(user) -> dict[str, dict]:
    """Project id -> ``spawner`` (or None) and ``url`` of each workspace user of ``user`` (a
    JupyterHub ``User``) the hub knows: what the home page shows of her workspaces."""
    if user.db is None or "users" not in user.settings:
        return {}
    users = user.settings["users"]
    found = {}
    for row in workspace_users_of(user.db, user.name):
        owner = users[row]
        project = parse_workspace_user(row.name).project
        spawner = owner.spawners[project] if project in owner.orm_user.orm_spawners else None
        found[project] = {"spawner": spawner, "url": owner.server_url(project)}
    return found


def running_workspaces(users) -> list[Workspace]:
    """The servers the hub knows to be running (or starting), from its user objects."""
    rows = []
    for user in users:
        for name, spawner in user.spawners.items():
            if name and (spawner.active or spawner.ready):
                rows.append(Workspace(user=person_of(user.name), project=name, started=iso(spawner.orm_spawner.started),
                                      last_activity=iso(spawner.orm_spawner.last_activity)))
    return rows


class PlatformHandler(BaseHandler):
    """``/hub/platform``: read only, administrators only (403 with the reason for anyone else)."""

    @web.authenticated
    async def get(self):
        context: HubContext = self.authenticator.context
        user = self.current_user
        users = [self.users[u] for u in self.db.query(orm.User).all()]
        try:
            overview = build_overview(context.runtime, context.registry, user.name,
                                      running_workspaces(users))
        except PdsError as exc:
            error = web.HTTPError(exc.http_status, "%s", str(exc))
            error.jupyterhub_message = str(exc)
            raise error from None
        html = await self.render_template("platform.html", overview=overview, today=date.today())
        self.finish(html)


def platform_handlers() -> list[tuple[str, type]]:
    return [(r"/platform", PlatformHandler)]
