"""Support of tests/security/test_journeys.py: the journeys' world (tests/journeys/journey_world.py:
one real hub with the airlock, accounts for every role) and small helpers to read what the hub
stored."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "journeys"))

from journey_world import (
    ADMIN,
    GATE,
    NON_MEMBER,
    OTHER_CHECKER,
    OTHER_PROJECT,
    OUTSIDER,
    PROJECT,
    RESEARCHER,
    journey_world,
)

from pds_kernel.airlock.service import AirlockService
from pds_kernel.workspace_names import person_of

__all__ = ["ADMIN", "GATE", "NON_MEMBER", "OTHER_CHECKER", "OTHER_PROJECT", "OUTSIDER", "PROJECT",
           "RESEARCHER", "journey_world", "named_servers", "signed_in", "submit_request"]

#: A table a researcher could export (every count at least 10).
TABLE = b"month,persons\n2023-01,31\n2023-02,28\n"


def named_servers(hub, user: str) -> list[str]:
    """The named servers the hub stores for ``user`` and her workspace users (ADR 17), stopped ones
    included (phantoms too)."""
    stored = []
    for model in hub.admin_api("GET", "/users?include_stopped_servers").json():
        if model["name"] == user or person_of(model["name"]) == user:
            stored += [name for name in (model.get("servers") or {}) if name]
    return sorted(stored)


_SESSIONS: dict[tuple[int, str], object] = {}


def signed_in(hub, secrets: dict, user: str):
    """A browser-like session of ``user`` (cookies and the form token) with a REST token; one per
    user and hub (a second-factor code opens one session only: a new login waits for the next)."""
    key = (hub.port, user)
    if key not in _SESSIONS:
        client = hub.client()
        assert client.login(user, secrets[user]), f"{user} could not sign in"
        client.make_token(user)
        _SESSIONS[key] = client
    return _SESSIONS[key]


def submit_request(hub) -> str:
    """A submitted export request of the researcher, made through the real service."""
    view = AirlockService(hub.runtime).create(RESEARCHER, PROJECT, [("monthly.csv", io.BytesIO(TABLE))],
                                              "monthly persons", submit=True)
    return view.id
