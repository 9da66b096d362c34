"""The per-workspace budget of bytes a notebook server may hand to the browser (the ledger).

A workspace is a (user, project) pair. Its notebook server counts every byte it sends (HTTP bodies
and WebSocket messages, see :mod:`pds_kernel.sandbox.budget`) against bytes it has *reserved* here
first, through the hub (:mod:`pds_kernel.hub.budget`), a few MiB at a time. The state is a table
of the platform database (the hub's side: never reachable from a workspace), so restarting the
server, deleting files in the home or starting a new kernel resets nothing. The only operation
is a reservation, which can only use the budget up: a kernel holding the server's token (it
inherits ``$JUPYTERHUB_API_TOKEN``) can waste its own budget, never raise it.

The budget is a token bucket: ``capacity`` bytes, refilled continuously at ``capacity`` per
``period_seconds``. A workspace gets at most ``capacity`` at once and at most ``2 * capacity`` in
any window of ``period_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import BigInteger, Float, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from .db import Base, transaction
from .sandbox.reservations import MAX_RESERVATION

DEFAULT_PERIOD_SECONDS = 24 * 3600
REFUSAL = ("this workspace has used its budget of bytes shown in the browser ({capacity} bytes "
           "per {hours:g} h): results leave only through an export request "
           "(pds_kernel.workspace.request_export); the budget refills at {rate} bytes per hour")


class ServedBytes(Base):
    __tablename__ = "workspace_served_bytes"

    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    available: Mapped[float] = mapped_column(Float)  #: bytes left in the bucket at ``updated``
    updated: Mapped[float] = mapped_column(Float)  #: Unix time of the last reservation
    served: Mapped[int] = mapped_column(BigInteger, default=0)  #: bytes reserved since the first one


@dataclass(frozen=True)
class Reservation:
    granted: int  #: bytes granted now (0: refused)
    available: int  #: bytes left in the bucket after this reservation
    served: int  #: bytes reserved by this workspace since its first reservation


class ServedBytesLedger:
    """Token buckets of bytes, one per (user, project), in the platform database."""

    def __init__(self, sessions: sessionmaker[Session], capacity: int,
                 period_seconds: float = DEFAULT_PERIOD_SECONDS, clock: Callable[[], float] = time.time):
        if capacity <= 0 or period_seconds <= 0:
            raise ValueError("the served-bytes budget and its period must be positive")
        self.sessions = sessions
        self.capacity = int(capacity)
        self.period_seconds = float(period_seconds)
        self.clock = clock

    def __deepcopy__(self, memo: dict) -> ServedBytesLedger:
        return self  # shared on purpose, like HubContext: traitlets deep-copies config values

    def __copy__(self) -> ServedBytesLedger:
        return self

    @property
    def refusal(self) -> str:
        return REFUSAL.format(capacity=self.capacity, hours=self.period_seconds / 3600,
                              rate=int(self.capacity * 3600 / self.period_seconds))

    def reserve(self, user: str, project: str, want: int, need: int) -> Reservation:
        """Grant up to ``want`` bytes when at least ``need`` are available, else nothing."""
        want, need = int(want), int(need)
        if not 0 < need <= want <= MAX_RESERVATION:
            raise ValueError(f"a reservation is 0 < need <= want <= {MAX_RESERVATION} bytes")
        try:
            return self._reserve(user, project, want, need)
        except IntegrityError:  # two first reservations at once: the row exists now
            return self._reserve(user, project, want, need)

    def _reserve(self, user: str, project: str, want: int, need: int) -> Reservation:
        with transaction(self.sessions) as session:
            row = session.get(ServedBytes, (user, project), with_for_update=True)
            now = self.clock()
            if row is None:
                row = ServedBytes(user=user, project=project, available=float(self.capacity), updated=now, served=0)
                session.add(row)
            refill = max(0.0, now - row.updated) * self.capacity / self.period_seconds
            available = min(float(self.capacity), row.available + refill)
            granted = min(want, int(available)) if available >= need else 0
            row.available = available - granted
            row.updated = now
            row.served = int(row.served or 0) + granted
            return Reservation(granted=granted, available=int(row.available), served=row.served)
