"""Factories of the airlock tests: requests reached through the real service."""

from __future__ import annotations

import io

from pds_kernel.airlock.service import AirlockService

PROJECT = "diab-2024"
OTHER = "other-2024"
SAFE_TABLE = b"age,count\n18-40,120\n40-65,230\n65+,310\n"


def files(*items: tuple[str, bytes]):
    return [(name, io.BytesIO(data)) for name, data in items]


def make_request(service: AirlockService, state: str = "submitted", *, author: str = "alice",
                 content: bytes = SAFE_TABLE, name: str = "ages.csv"):
    """Reach ``state`` through the real service (never by writing the database)."""
    view = service.create(author, PROJECT, files((name, content)), "paper figure 2", submit=state != "draft")
    approve = {0: {"decision": "approve"}}
    if state in {"draft", "submitted"}:
        return view
    if state == "withdrawn":
        return service.withdraw(author, view.id, "no longer needed")
    view = service.review("olga", view.id, approve if state != "rejected_one" else
                          {0: {"decision": "reject", "comment": "no"}})
    if state == "under_review":
        return view
    second = {"approved": approve, "released": approve, "revoked": approve,
              "changes_requested": {0: {"decision": "request_changes", "comment": "round the counts"}},
              "rejected": {0: {"decision": "reject", "comment": "identifies people"}}}[state]
    view = service.review("omar", view.id, second)
    if state == "released":
        return service.release("omar", view.id)
    if state == "revoked":
        return service.revoke("olga", view.id, "wrong table")
    return view
