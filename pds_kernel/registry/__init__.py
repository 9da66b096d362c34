"""The project registry: projects, users, roles and memberships with expiry.

``Registry`` (in :mod:`.service`) is the only writer; every change commits with its audit entry.
An expired membership or a closed project grants nothing, anywhere: every consumer (hub, spawner,
extract builder, airlock) asks :meth:`Registry.check_access` / :meth:`Registry.can_access`.

``Registry`` is imported at its first use, not with the package: the database's schema check
imports :mod:`.models` (hence this package) in every process, ``pds ingest`` included, which never
uses the service and its ~40 modules (the PostgreSQL dialect, permissions, seals: ~3 MiB).
"""

from .models import Membership, Project, ProjectStatus, Role, User  # noqa: F401


def __getattr__(name: str):
    if name == "Registry":
        from .service import Registry

        return Registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
