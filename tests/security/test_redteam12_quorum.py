"""Red team, twelfth round (12A): one person lowers the export quorum, then one checker releases.

The gate's promise is two independent human reviews before anything leaves. The number of reviews
a request needs is configuration: the platform's ``disclosure.reviews_required`` and a project's
override in the registry (``reviews_required``, set by one administrator with ``pds project``, a
registry file, or the chart's values applied by the registry-sync Job; no second administrator
approves it). Each attempt below lowers the quorum to one (or to nothing) by one of those paths, or
finds a request row that says one (written before, or by hand in the database), then has a single
output checker approve and release the author's file. Each asserts the attack fails: the gate never
counts fewer than two independent reviews (``pds_kernel.airlock.reviews.MIN_REVIEWS``), whatever the
configuration or the row says, and the configuration paths refuse the value with a message that
says so.

All six got through before the fix: one checker's approval approved and released the file
(``state == "released"``) for a project set to one review by the registry service, by a registry
file, with the platform setting at one (or zero), and for a request row holding one.

In-process against the real service, registry and SQLite database (tests/security/disclosure_support.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from disclosure_support import PROJECT, build_service, files
from sqlalchemy import update

from pds_kernel.airlock.models import ExportRequest
from pds_kernel.airlock.service import AirlockService
from pds_kernel.db import transaction
from pds_kernel.errors import IntegrityError, InvalidInput
from pds_kernel.registry.spec import parse_registry
from pds_kernel.settings import Disclosure

SAFE_TABLE = b"age,count\n18-40,120\n40-65,230\n65+,310\n"
APPROVE = {0: {"decision": "approve"}}


def _one_checker_releases(service: AirlockService, request_id: str) -> str:
    """olga alone approves and releases; the state the request ends in."""
    view = service.review("olga", request_id, APPROVE)
    if view.state == "approved":
        try:
            view = service.release("olga", request_id)
        except IntegrityError:
            pass
    return service.get_request("alice", request_id).state


def test_a_project_lowered_to_one_review_by_the_registry_service(runtime):
    service, registry = build_service(runtime)
    with pytest.raises(InvalidInput, match="at least 2"):
        registry.upsert_project("setup", PROJECT, reviews_required=1)
    assert registry.get_project(PROJECT).reviews_required in (None, 2)
    refusal = [e for e in runtime.audit.entries(action="registry.project.update") if e.outcome != "ok"]
    assert refusal, "the refused change is audited"
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    assert view.reviews_required >= 2
    assert _one_checker_releases(service, view.id) == "under_review"


def test_a_project_lowered_to_one_review_in_a_registry_file():
    """The file ``pds project apply`` and the registry-sync Job read (the chart's values)."""
    data = {"users": [{"name": "alice"}],
            "projects": [{"id": PROJECT, "title": "t", "start": date(2020, 1, 1), "end": date(2099, 12, 31),
                          "disclosure": {"reviews_required": 1}}]}
    with pytest.raises(InvalidInput, match="reviews_required.*at least 2"):
        parse_registry(data, "registry.yaml")


@pytest.mark.parametrize("quorum", [1, 0])
def test_the_platform_setting_lowered(runtime, quorum):
    """``PDS_DISCLOSURE__REVIEWS_REQUIRED=1`` (or 0) where the gate runs: refused at load, and a
    gate given such settings anyway (a test's ``replace``) still waits for two."""
    with pytest.raises(InvalidInput, match="disclosure.reviews_required.*at least 2"):
        Disclosure(reviews_required=quorum)
    service, _ = build_service(runtime)
    low = object.__new__(Disclosure)  # past the check, as a settings object built by other code could be
    for f in Disclosure.__dataclass_fields__:
        object.__setattr__(low, f, getattr(Disclosure(), f))
    object.__setattr__(low, "reviews_required", quorum)
    service.settings = replace(service.settings, disclosure=low)
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    assert view.reviews_required >= 2
    assert _one_checker_releases(service, view.id) == "under_review"


def test_a_request_row_that_says_one(runtime):
    """The row of an open request holds ``reviews_required = 1`` (written before the floor, or by
    hand in the database): the decision and the release still need two."""
    service, _ = build_service(runtime)
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    with transaction(runtime.sessions) as s:
        s.execute(update(ExportRequest).where(ExportRequest.id == view.id).values(reviews_required=1))
    assert service.get_request("olga", view.id).reviews_required >= 2
    assert _one_checker_releases(service, view.id) == "under_review"


def test_an_approved_row_that_says_one_is_not_released(runtime):
    """The row says one and its state says approved (a decision taken under the old rule): the
    release counts the approvals again and refuses with one."""
    service, _ = build_service(runtime)
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    service.review("olga", view.id, APPROVE)
    with transaction(runtime.sessions) as s:
        s.execute(update(ExportRequest).where(ExportRequest.id == view.id)
                  .values(reviews_required=1, state="approved"))
    with pytest.raises(IntegrityError, match="required approvals"):
        service.release("olga", view.id)
    assert service.get_request("alice", view.id).state == "approved"
    assert not (runtime.settings.paths.outbox / PROJECT / view.id).exists()


def test_two_reviews_still_release(runtime):
    """Control: the honest path, two checkers, releases."""
    service, registry = build_service(runtime)
    registry.upsert_project("setup", PROJECT, reviews_required=2, end_date=date(2099, 12, 31))
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    service.review("olga", view.id, APPROVE)
    service.review("omar", view.id, APPROVE)
    assert service.release("olga", view.id).state == "released"
