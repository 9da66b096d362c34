"""Review rules: who reviews, how many, who sees what, and what a changed file loses."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from airlock_factories import OTHER, PROJECT, SAFE_TABLE, files, make_request

from pds_kernel.airlock.service import AirlockService
from pds_kernel.errors import IntegrityError, InvalidInput, InvalidTransition, PermissionDenied

APPROVE = {0: {"decision": "approve"}}


def test_author_never_reviews_even_as_checker(service, runtime):
    view = service.create("bob", PROJECT, files(("t.csv", SAFE_TABLE)), "why")  # bob is also a checker
    with pytest.raises(PermissionDenied, match="never reviews"):
        service.review("bob", view.id, APPROVE)
    denied = runtime.audit.entries(action="airlock.review.submit")[-1]
    assert denied.outcome == "denied" and denied.actor == "bob"


def test_researcher_and_outsiders_cannot_review(service):
    view = make_request(service)
    for who in ("mallory", "oscar", "nobody"):  # other project's researcher and checker, unknown user
        with pytest.raises(PermissionDenied):
            service.review(who, view.id, APPROVE)


def test_non_member_cannot_submit_or_see(service):
    with pytest.raises(PermissionDenied):
        service.create("mallory", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    view = make_request(service)
    with pytest.raises(PermissionDenied):
        service.get_request("mallory", view.id)
    assert service.list_requests("mallory", scope="all") == []


def test_only_admin_submits_on_behalf(service):
    with pytest.raises(PermissionDenied):
        service.create("bob", PROJECT, files(("t.csv", SAFE_TABLE)), "why", author="alice")
    view = service.create("root", PROJECT, files(("t.csv", SAFE_TABLE)), "why", author="alice")
    assert view.author == "alice"


def test_expired_membership_blocks_submission(service, registry):
    registry.add_member("root", PROJECT, "alice", "researcher", date(2021, 1, 1))
    with pytest.raises(PermissionDenied, match="expired"):
        service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")


def test_n_reviews_rule_default_two(service):
    view = make_request(service)
    assert view.reviews_required == 2
    view = service.review("olga", view.id, APPROVE)
    assert view.state == "under_review" and view.complete_reviews == 1
    with pytest.raises(InvalidTransition, match="already reviewed"):
        service.review("olga", view.id, APPROVE)
    view = service.review("omar", view.id, APPROVE)
    assert view.state == "approved" and view.complete_reviews == 2


def test_project_override_of_reviews_required(service, registry):
    registry.upsert_project("root", PROJECT, reviews_required=3)
    view = make_request(service)
    assert view.reviews_required == 3
    view = service.review("olga", view.id, APPROVE)
    view = service.review("omar", view.id, APPROVE)
    assert view.state == "under_review"
    assert service.review("bob", view.id, APPROVE).state == "approved"  # a checker: admins do not count


def test_any_reject_rejects_and_any_change_request_asks_changes(service):
    view = make_request(service)
    service.review("olga", view.id, APPROVE)
    view = service.review("omar", view.id, {0: {"decision": "reject", "comment": "identifying"}})
    assert view.state == "rejected"


def test_refusing_needs_a_comment_and_every_file(service):
    view = service.create("alice", PROJECT, files(("a.csv", SAFE_TABLE), ("b.csv", SAFE_TABLE)), "why")
    with pytest.raises(InvalidInput, match="comment"):
        service.review("olga", view.id, {0: {"decision": "reject"}, 1: {"decision": "approve"}})
    with pytest.raises(InvalidInput, match="missing: b.csv"):
        service.review("olga", view.id, APPROVE)
    with pytest.raises(InvalidInput, match="no file number 7"):
        service.review("olga", view.id, {7: {"decision": "approve"}})


def test_votes_hidden_until_own_review(service):
    view = make_request(service)
    service.review("olga", view.id, {0: {"decision": "approve", "comment": "fine by me"}})
    seen_by_omar = service.get_request("omar", view.id)
    assert seen_by_omar.reviews == [] and seen_by_omar.reviews_hidden
    seen_by_author = service.get_request("alice", view.id)
    assert seen_by_author.reviews == [] and seen_by_author.reviews_hidden
    assert [r.reviewer for r in service.get_request("olga", view.id).reviews] == ["olga"]
    service.review("omar", view.id, {0: {"decision": "request_changes", "comment": "round"}})
    decided = service.get_request("alice", view.id)
    assert decided.state == "changes_requested"
    assert {r.reviewer for r in decided.reviews} == {"olga", "omar"} and not decided.reviews_hidden


def test_change_after_review_loses_that_review(service):
    view = service.create("alice", PROJECT, files(("a.csv", SAFE_TABLE), ("b.csv", SAFE_TABLE)), "why")
    both = {0: {"decision": "approve"}, 1: {"decision": "approve"}}
    service.review("olga", view.id, both)
    view = service.review("omar", view.id, {0: {"decision": "approve"},
                                            1: {"decision": "request_changes", "comment": "round b"}})
    assert view.state == "changes_requested"
    view = service.resubmit("alice", view.id, files(("b.csv", SAFE_TABLE + b"80+,120\n")))
    assert view.state == "submitted" and view.round == 2
    valid = {(r.reviewer, r.file_index) for r in service.get_request("olga", view.id).reviews if r.valid}
    assert valid == {("olga", 0)}  # a.csv unchanged keeps olga's approval; b.csv lost every review
    # olga only has to look at b.csv again; omar's approval of a.csv survived as well
    view = service.review("olga", view.id, {1: {"decision": "approve"}})
    assert view.state == "under_review" and view.complete_reviews == 1
    view = service.review("omar", view.id, {1: {"decision": "approve"}})
    assert view.state == "approved"


def test_review_bound_to_bytes_seen(service):
    view = make_request(service)
    with pytest.raises(IntegrityError, match="changed since you opened it"):
        service.review("olga", view.id, {0: {"decision": "approve", "sha256": "0" * 64}})
    ok = service.review("olga", view.id, {0: {"decision": "approve", "sha256": view.files[0].sha256}})
    assert ok.complete_reviews == 1


def test_queue_lists_what_a_checker_may_review(service):
    view = make_request(service)
    assert [r.id for r in service.list_requests("olga", scope="queue")] == [view.id]
    service.review("olga", view.id, APPROVE)
    assert service.list_requests("olga", scope="queue") == []
    assert service.list_requests("oscar", scope="queue") == []
    assert [r.id for r in service.list_requests("alice")] == [view.id]


def test_two_projects_different_thresholds(runtime, registry):
    registry.upsert_project("root", OTHER, min_cell=3)
    svc = AirlockService(runtime, registry=registry)
    table = b"group,count\na,5\nb,40\n"
    declared = {"tables": {"t.csv": {"counts": ["count"]}}}  # issue #12: undeclared counts need review
    strict = svc.create("alice", PROJECT, files(("t.csv", table)), "why", declared)
    lax = svc.create("mallory", OTHER, files(("t.csv", table)), "why", declared)
    assert strict.files[0].check_status == "fail" and strict.min_cell == 10
    assert lax.files[0].check_status == "pass" and lax.min_cell == 3


def test_limits_refuse_with_reason(runtime, registry, limits):
    svc = AirlockService(runtime, limits=replace(limits, max_files=1, max_file_bytes=10), registry=registry)
    with pytest.raises(InvalidInput, match="at most 1"):
        svc.create("alice", PROJECT, files(("a.csv", b"x"), ("b.csv", b"y")), "why")
    with pytest.raises(InvalidInput, match="larger than"):
        svc.create("alice", PROJECT, files(("a.csv", SAFE_TABLE)), "why")
    for bad in ("../etc/passwd", "a/b.csv", ".hidden.csv", ""):
        with pytest.raises(InvalidInput):
            svc.create("alice", PROJECT, files((bad, b"x")), "why")
    staged = list((runtime.settings.paths.staging).rglob("*"))
    assert [p for p in staged if p.is_file()] == []  # refused requests leave nothing staged


def test_a_resubmission_adds_a_file_checked_like_the_others(service):
    """Answering a request for changes with a new file (not only replacing one): before, the new
    file's row was flushed before its check's columns were set and the resubmission failed."""
    view = make_request(service)
    service.review("olga", view.id, {0: {"decision": "approve"}})
    service.review("omar", view.id, {0: {"decision": "request_changes", "comment": "add the by-region table"}})
    view = service.resubmit("alice", view.id, files(("regions.csv", b"region,count\nnorth,140\nsouth,150\n"),
                                                    ("tiny.csv", b"region,count\nnorth,3\nsouth,150\n")))
    assert view.state == "submitted" and view.round == 2
    by_name = {f.name: f for f in view.files}
    assert set(by_name) == {"ages.csv", "regions.csv", "tiny.csv"}
    # the new files went through the gate: the small cell fails, the other is checked as ages.csv was
    assert by_name["tiny.csv"].check_status == "fail"
    assert (by_name["regions.csv"].check_status, by_name["regions.csv"].kind) == \
        (by_name["ages.csv"].check_status, by_name["ages.csv"].kind) == ("review", "table")
    assert {f.name: f.index for f in view.files} == {"ages.csv": 0, "regions.csv": 1, "tiny.csv": 2}


def test_a_released_request_keeps_showing_the_verdicts_it_was_released_on(service, registry):
    """Only current checkers' verdicts count while a request is open; once it is released, a
    checker who later leaves the project does not make its page say the release had no quorum."""
    from pds_kernel.registry import Role

    view = make_request(service)
    service.review("olga", view.id, {0: {"decision": "approve"}})
    service.review("omar", view.id, {0: {"decision": "approve"}})
    assert service.release("omar", view.id).state == "released"
    registry.remove_member("root", PROJECT, "olga", Role.OUTPUT_CHECKER)
    shown = service.get_request("omar", view.id)
    assert shown.complete_reviews == 2 and all(r.valid for r in shown.reviews)
