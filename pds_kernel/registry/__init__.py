"""The project registry: projects, users, roles and memberships with expiry.

``Registry`` (in :mod:`.service`) is the only writer; every change commits with its audit entry.
An expired membership or a closed project grants nothing, anywhere: every consumer (hub, spawner,
extract builder, airlock) asks :meth:`Registry.check_access` / :meth:`Registry.can_access`.
"""

from .models import Membership, Project, ProjectStatus, Role, User  # noqa: F401
from .service import Registry  # noqa: F401
