"""One JupyterHub user per workspace, so that each workspace has its own origin (ADR 17): the names.

JupyterHub names a host per *user* (``subdomain_host``: ``<user>.<host>``), and a user's named
servers all share it. One person's workspaces of two projects were therefore one origin: script in
her JupyterLab of project A opened her JupyterLab of project B and read it (ADR 16's residual). Here
the workspace of person ``alice`` in project ``diabetes-t2`` is the named server ``diabetes-t2`` of
the JupyterHub user ``alice@diabetes-t2``, a *workspace user*: its own host, its own cookies.

* A workspace user never signs in (``@`` is in no account name: :mod:`pds_kernel.registry.names`),
  holds no project group, and runs one server: the one named after its project.
* The person holds one JupyterHub role per workspace (``workspace.<person>.<project>``) that lets
  her start, stop and open that server and read its state, nothing else of it. Roles are a
  projection of the registry made by the hub itself (:mod:`pds_kernel.hub.workspace_roles`, at every login and
  auth refresh, and when she starts a workspace from her home page); they are created
  ``managed_by_auth`` so that JupyterHub keeps them across restarts. Whatever a role says, the
  registry decides at every start (:mod:`.admission`, the spawner) and the membership watcher stops
  a workspace whose access ended: a stale role grants nothing.
* The platform keys everything else on the person and the project (:func:`person_of`): the audit
  trail, homes, budgets, notices, the gate.
* dask-gateway keys a workspace's clusters by ``<person>/<project>`` (:attr:`Workspace.gateway_name`,
  read back by :func:`parse_gateway_name`): the name of before workspace users, so clusters kept their
  owner across that upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInput
from .registry.names import check_project_id, check_user_name

#: Between the person and the project in a workspace user's name; in no user name or project id.
SEPARATOR = "@"
#: Between the person and the project in a workspace's dask-gateway name; in no user name or project id.
GATEWAY_SEPARATOR = "/"
#: Prefix of the person's role on one workspace user.
ROLE_PREFIX = "workspace."


@dataclass(frozen=True)
class Workspace:
    """A person's workspace of a project, and the JupyterHub names that stand for it."""

    person: str
    project: str

    @property
    def user(self) -> str:
        """The JupyterHub user that owns the workspace's server (``alice@diabetes-t2``)."""
        return f"{self.person}{SEPARATOR}{self.project}"

    @property
    def gateway_name(self) -> str:
        """The name dask-gateway keys the workspace's clusters by (``alice/diabetes-t2``)."""
        return f"{self.person}{GATEWAY_SEPARATOR}{self.project}"

    @property
    def server(self) -> str:
        """The name of its one server: the project id."""
        return self.project

    @property
    def role(self) -> str:
        """The JupyterHub role the person holds on it (``workspace.alice.diabetes-t2``)."""
        return f"{ROLE_PREFIX}{self.person}.{self.project}"

    def role_definition(self) -> dict:
        """Start, stop, open and follow the one server; read the user's name. No tokens, no
        sharing, no other server of the workspace user."""
        server = f"{self.user}/{self.server}"
        return {
            "name": self.role,
            "description": f"{self.person}'s workspace of project {self.project}",
            "scopes": [f"servers!server={server}", f"access:servers!server={server}",
                       f"read:users:name!user={self.user}"],
            "managed_by_auth": True,
        }


def workspace(person: str, project: str) -> Workspace:
    """The workspace of ``person`` in ``project`` (both names checked)."""
    return Workspace(check_user_name(person), check_project_id(project))


def _parse(name: object, separator: str) -> Workspace | None:
    """The workspace ``name`` writes as ``<person><separator><project>``, or ``None``."""
    if not isinstance(name, str) or name.count(separator) != 1:
        return None
    person, _, project = name.partition(separator)
    try:
        return workspace(person, project)
    except InvalidInput:
        return None


def parse_workspace_user(name: object) -> Workspace | None:
    """The workspace a JupyterHub user name stands for, or ``None`` for any other name (a person's,
    a malformed one)."""
    return _parse(name, SEPARATOR)


def parse_gateway_name(name: object) -> Workspace | None:
    """The workspace a dask-gateway user name (``alice/diabetes-t2``) stands for, or ``None``."""
    return _parse(name, GATEWAY_SEPARATOR)


def person_of(name: str) -> str:
    """The person behind a JupyterHub user name: herself, or the person of a workspace user."""
    found = parse_workspace_user(name)
    return found.person if found is not None else name


def workspace_of_server(user_name: str, server_name: str) -> Workspace | None:
    """The workspace of JupyterHub server ``user_name/server_name``: only a workspace user's one
    server is a workspace."""
    found = parse_workspace_user(user_name)
    if found is None or server_name != found.server:
        return None
    return found
