"""Attacks on the checkers' verdicts across rounds: a verdict counts only for the file it was given
on. A reviewer's verdict is kept from round to round while the file at its index keeps its bytes
(the checker need not look again at what did not change); these attempts try to make a verdict
count for a file the checkers never saw under its name."""

from __future__ import annotations

import pytest
from disclosure_support import PROJECT, build_service, files

SAFE_TABLE = b"age,count\n18-40,120\n40-65,230\n65+,310\n"
OTHER_TABLE = b"region,count\nnorth,140\nsouth,150\n"
LEAKING_NAME = "results_BENNIR_1850375123456.csv"  # a name that carries what the table may not


@pytest.fixture
def service(runtime):
    return build_service(runtime)[0]


def _changes_on_a(service, request_id, also_b=True):
    both = {0: {"decision": "request_changes", "comment": "round a"}}
    if also_b:
        both[1] = {"decision": "approve"}
    service.review("olga", request_id, {0: {"decision": "approve"}, **({1: {"decision": "approve"}} if also_b else {})})
    return service.review("omar", request_id, both)


def test_a_removed_files_index_reused_by_a_new_name_does_not_inherit_its_approvals(service):
    """Round 1: a.csv and b.csv, both checkers approve b. Round 2: b.csv is removed. Round 3: the
    same bytes come back as a new file with a name nobody reviewed. Before the fix the new file
    took b's old index, and b's approvals (same index, same bytes) counted for it."""
    view = service.create("alice", PROJECT, files(("a.csv", SAFE_TABLE), ("b.csv", OTHER_TABLE)), "why")
    assert _changes_on_a(service, view.id).state == "changes_requested"
    view = service.resubmit("alice", view.id, remove=["b.csv"])
    assert [f.name for f in view.files] == ["a.csv"]
    # olga's approval of a.csv still counts (same bytes); omar asks for changes again
    assert service.review("omar", view.id, {0: {"decision": "request_changes", "comment": "again"}}).state \
        == "changes_requested"
    view = service.resubmit("alice", view.id, files((LEAKING_NAME, OTHER_TABLE)))
    new = next(f for f in view.files if f.name == LEAKING_NAME)
    checker = service.get_request("olga", view.id)
    counted = {(r.reviewer, r.file_index) for r in checker.reviews if r.valid}
    assert not {i for _, i in counted if i == new.index}, (new.index, counted)
    # both checkers approving a.csv alone does not release the unseen file
    service.review("olga", view.id, {new.index: {"decision": "approve"}})
    with pytest.raises(Exception, match="missing: " + LEAKING_NAME.replace(".", r"\.")):
        service.review("omar", view.id, {0: {"decision": "approve"}})
    assert service.get_request("alice", view.id).state != "approved"


def test_removing_and_adding_in_one_round_never_reuses_an_index(service):
    view = service.create("alice", PROJECT, files(("a.csv", SAFE_TABLE), ("b.csv", OTHER_TABLE)), "why")
    _changes_on_a(service, view.id)
    view = service.resubmit("alice", view.id, files((LEAKING_NAME, OTHER_TABLE)), remove=["b.csv"])
    assert {f.name: f.index for f in view.files}[LEAKING_NAME] == 2
    assert not [r for r in service.get_request("olga", view.id).reviews if r.valid and r.file_index == 2]


def test_a_verdict_of_someone_no_longer_a_checker_does_not_count_toward_the_quorum(runtime):
    """olga approves, then loses her checker role on the project (an administrator removes her,
    say for a conflict of interest); omar's approval must not make the quorum of two with hers."""
    from pds_kernel.registry import Role

    service, registry = build_service(runtime)
    view = service.create("alice", PROJECT, files(("a.csv", SAFE_TABLE)), "why")
    service.review("olga", view.id, {0: {"decision": "approve"}})
    registry.remove_member("setup", PROJECT, "olga", Role.OUTPUT_CHECKER)
    view = service.review("omar", view.id, {0: {"decision": "approve"}})
    assert view.state == "under_review" and view.complete_reviews == 1, (view.state, view.complete_reviews)
    with pytest.raises(Exception, match="cannot release a request that is under_review"):
        service.release("omar", view.id)
    assert not list(runtime.settings.paths.outbox.rglob("a.csv"))
    shown = service.get_request("omar", view.id)
    assert {(r.reviewer, r.valid) for r in shown.reviews} == {("olga", False), ("omar", True)}


def test_an_approved_request_is_not_released_once_a_checker_who_approved_it_has_left(runtime):
    """Both checkers approve (no automatic release); omar then loses his role before anyone
    releases: the release must not go ahead on his verdict."""
    from pds_kernel.registry import Role

    service, registry = build_service(runtime)
    view = service.create("alice", PROJECT, files(("a.csv", SAFE_TABLE)), "why")
    service.review("olga", view.id, {0: {"decision": "approve"}})
    assert service.review("omar", view.id, {0: {"decision": "approve"}}).state == "approved"
    registry.remove_member("setup", PROJECT, "omar", Role.OUTPUT_CHECKER)
    with pytest.raises(Exception, match="omar no longer output checkers of the project"):
        service.release("olga", view.id)
    assert not list(runtime.settings.paths.outbox.rglob("a.csv"))
    refused = runtime.audit.entries(action="airlock.request.release")
    assert refused and refused[-1].outcome != "ok" and "omar" in str(refused[-1].details), refused[-1:]
