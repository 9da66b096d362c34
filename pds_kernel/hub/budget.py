"""The hub's endpoint of the per-workspace served-bytes budget (:mod:`pds_kernel.served_bytes`).

``POST /hub/api/pds/served-bytes/<user>/<server>`` with ``{"want": N, "need": M}``: a reservation
for that workspace, made by its notebook server (:mod:`pds_kernel.sandbox.budget`) with its own
token (scope ``access:servers`` on that server). Every answer is audited:
``workspace.bytes_reserved``, or ``workspace.bytes_refused`` (403 with the reason) once the
budget is spent. Both hub modes register it (:func:`register`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..audit import AuditEvent, Outcome
from ..sandbox.reservations import API_PATH
from ..served_bytes import ServedBytesLedger
from ..workspace_names import person_of


def make_handler():
    """The JupyterHub API handler (built lazily: importing jupyterhub is slow)."""
    from jupyterhub.apihandlers.base import APIHandler
    from jupyterhub.scopes import needs_scope
    from tornado import web

    class ServedBytesHandler(APIHandler):
        """``POST /hub/api/pds/served-bytes/<user>/<server>`` ``{"want": N, "need": M}``: a
        reservation for that workspace. Needs ``access:servers`` on that server (its own token)."""

        def initialize(self, ledger: ServedBytesLedger, record: Callable[[AuditEvent], None]) -> None:
            self.ledger = ledger
            self.record = record

        @needs_scope("access:servers")
        async def post(self, user_name: str, server_name: str) -> None:
            body = self.get_json_body() or {}
            want, need = body.get("want"), body.get("need")
            if not (isinstance(want, int) and isinstance(need, int)) or isinstance(want, bool):
                raise web.HTTPError(400, "give the integers want and need")
            person = person_of(user_name)  # the budget is the person's, whatever hub user runs it
            try:
                reservation = self.ledger.reserve(person, server_name, want, need)
            except ValueError as exc:
                raise web.HTTPError(400, str(exc)) from None
            ok = reservation.granted > 0
            self.record(AuditEvent(
                actor=person, action="workspace.bytes_reserved" if ok else "workspace.bytes_refused",
                target=f"user:{person}", project=server_name,
                outcome=Outcome.OK if ok else Outcome.DENIED,
                details={"server": server_name, "want": want, "need": need, "granted": reservation.granted,
                         "available": reservation.available, "served": reservation.served}))
            if not ok:
                self.set_status(403)
                self.finish(json.dumps({"message": self.ledger.refusal, "reason": "pds-budget",
                                        "available": reservation.available}))
                return
            self.finish(json.dumps({"granted": reservation.granted, "available": reservation.available}))

    return ServedBytesHandler


def register(c, ledger: ServedBytesLedger, record: Callable[[AuditEvent], None]) -> None:
    """Add the reservation endpoint to JupyterHub's config ``c`` (both hub modes call this).

    ``JupyterHub.extra_handlers`` is deprecated (JupyterHub logs a warning) in favour of services,
    but a service could not check a *server's* token scopes as the hub does."""
    existing = list(c.JupyterHub.extra_handlers) if "extra_handlers" in c.JupyterHub else []
    c.JupyterHub.extra_handlers = [*existing, (API_PATH + r"/([^/]+)/([^/]+)", make_handler(),
                                               {"ledger": ledger, "record": record})]


def configure(c, context) -> ServedBytesLedger:
    """The ledger of this hub (in the platform database) and its endpoint in ``c``."""
    ledger = ServedBytesLedger(context.runtime.sessions, capacity=context.settings.hub.served_bytes_per_day)
    register(c, ledger, context.record)
    return ledger
