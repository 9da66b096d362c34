"""What an audit entry says, before it is written: :class:`AuditEvent` and its :class:`Outcome`.

Kept apart from :mod:`pds_kernel.audit` (the hash-chained store, built on SQLAlchemy) so that code
which only describes events, such as the ingestion, starts without loading the database layer;
the store is loaded when the first event is recorded. ``pds_kernel.audit`` re-exports both names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class Outcome:
    """Outcome values of an audit event (plain strings in storage)."""

    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is written. Every mutating service function takes one."""

    actor: str
    action: str
    target: str = ""
    project: str = ""
    outcome: str = Outcome.OK
    details: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # An impersonated identity (``pds --as``) is written "<admin> acting as <user>", everywhere.
        label = getattr(self.actor, "label", None)
        if isinstance(label, str):
            object.__setattr__(self, "actor", label)

    def with_outcome(self, outcome: str, **more_details: Any) -> AuditEvent:
        return AuditEvent(
            actor=self.actor,
            action=self.action,
            target=self.target,
            project=self.project,
            outcome=outcome,
            details={**self.details, **more_details},
            schema_version=self.schema_version,
        )
