"""The person's JupyterHub roles on her workspace users, projected from the registry by the hub
itself (ADR 17; the names: :mod:`pds_kernel.workspace_names`).

The functions take JupyterHub's own database session (a handler's ``db``) and commit.
"""

from __future__ import annotations

import logging

from ..errors import InvalidInput
from ..workspace_names import SEPARATOR, Workspace, parse_workspace_user, workspace

log = logging.getLogger(__name__)


def workspace_users_of(db, person: str) -> list:
    """The JupyterHub users (ORM rows) of ``person``'s workspaces."""
    from jupyterhub import orm

    prefix = person + SEPARATOR
    rows = db.query(orm.User).filter(orm.User.name.startswith(prefix, autoescape=True)).all()
    return [row for row in rows if (found := parse_workspace_user(row.name)) is not None and found.person == person]


def grant(db, found: Workspace) -> bool:
    """Create the workspace user and the person's role on it if missing (commits); True when
    something was made. The person must have a JupyterHub user already (she has signed in once)."""
    from jupyterhub import orm, roles

    person = orm.User.find(db, found.person)
    if person is None:
        raise InvalidInput(f"{found.person} has never signed in to the hub: the workspace starts after a first sign-in")
    owner = orm.User.find(db, found.user)
    if owner is not None and any(role.name == found.role for role in person.roles):
        return False
    if owner is None:
        owner = orm.User(name=found.user)
        db.add(owner)
        db.commit()
        roles.assign_default_roles(db, entity=owner)  # JupyterHub's "user": its server's own token
        log.info("created the workspace user %s", found.user)
    role = roles.create_role(db, found.role_definition(), commit=True, reset_to_defaults=False)
    roles.grant_role(db, person, role, commit=True)
    return True


def withdraw(db, found: Workspace) -> bool:
    """Take the person's role on the workspace away (the role is deleted; commits). True when there
    was one. Its server is stopped by the caller."""
    from jupyterhub import orm

    role = orm.Role.find(db, found.role)
    if role is None:
        return False
    db.delete(role)
    db.commit()
    log.info("withdrew the role %s", found.role)
    return True


def project_workspaces(db, person: str, allowed: set[str]) -> tuple[list[str], list[str]]:
    """Make ``person``'s roles match the projects she may work in now: granted for ``allowed``,
    withdrawn for every other workspace of hers. Returns (granted, withdrawn) project ids."""
    granted = [project for project in sorted(allowed) if grant(db, workspace(person, project))]
    withdrawn = []
    for row in workspace_users_of(db, person):
        found = parse_workspace_user(row.name)
        if found.project not in allowed and withdraw(db, found):
            withdrawn.append(found.project)
    return granted, withdrawn
