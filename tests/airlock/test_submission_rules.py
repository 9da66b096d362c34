"""What the gate refuses at submission, what a checker must justify, and what release re-checks.

- blocked, unknown and not-allowed types are refused before anything is staged, one reason per file;
- a staged file whose content is not its type (a ZIP named ``.csv``) is refused and removed;
- a resubmission that fails leaves nothing of its round behind and can be tried again;
- approving a file whose automatic checks failed needs a comment;
- release refuses a file whose type is refused, whatever the database says about its votes.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from airlock_factories import PROJECT, SAFE_TABLE, files, make_request
from sqlalchemy import select

from pds_kernel.airlock.models import RequestFile, Review
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.staging import RefusedFiles, request_dir
from pds_kernel.db import transaction
from pds_kernel.errors import IntegrityError, InvalidInput

ZIP_BYTES = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40
SMALL_CELLS = b"group,count\na,4\nb,50\n"


def staged_files(settings) -> list:
    return sorted(p for p in settings.paths.staging.rglob("*") if p.is_file())


def last(runtime, action: str):
    return runtime.audit.entries(action=action)[-1]


def test_blocked_unknown_and_not_allowed_types_are_refused_before_staging(runtime, registry, limits, settings):
    only_tables = replace(limits, allowed_extensions=frozenset({".csv", ".png"}))
    svc = AirlockService(runtime, limits=only_tables, registry=registry)
    with pytest.raises(RefusedFiles) as refused:
        svc.create("alice", PROJECT, files(("evil.exe", b"MZ\x90\x00"), ("m.pkl", b"\x80\x04K\x01."),
                                           ("m.joblib", b"\x80\x04K\x01."), ("notes.txt", b"method\n"),
                                           ("data.docx", b"PK\x03\x04"), ("ages.csv", SAFE_TABLE)), "paper")
    reasons = refused.value.reasons
    assert set(reasons) == {"evil.exe", "m.pkl", "m.joblib", "notes.txt", "data.docx"}
    assert "executables cannot leave" in reasons["evil.exe"]
    assert "pickles run code" in reasons["m.pkl"] and "pickles" in reasons["m.joblib"]
    assert "not allowed" in reasons["notes.txt"] and "not allowed" in reasons["data.docx"]
    assert "evil.exe: .exe files are blocked" in str(refused.value)  # the message names each file
    assert staged_files(settings) == []
    assert svc.list_requests("alice") == []
    entry = last(runtime, "airlock.request.create")
    assert (entry.actor, entry.outcome) == ("alice", "denied")
    assert set(entry.details["refused"]) == set(reasons)


def test_content_not_matching_its_type_is_refused_and_removed(service, runtime, settings):
    with pytest.raises(RefusedFiles) as refused:
        service.create("alice", PROJECT, files(("ages.csv", SAFE_TABLE), ("table.csv", ZIP_BYTES)), "paper")
    assert list(refused.value.reasons) == ["table.csv"]
    assert "binary content" in refused.value.reasons["table.csv"]
    assert staged_files(settings) == []  # the good file staged alongside is gone too
    entry = last(runtime, "airlock.request.create")
    assert entry.outcome == "denied" and list(entry.details["refused"]) == ["table.csv"]


def _changes_requested(svc: AirlockService):
    view = svc.create("alice", PROJECT, files(("a.csv", SAFE_TABLE), ("b.csv", SAFE_TABLE)), "paper")
    ask = {0: {"decision": "approve"}, 1: {"decision": "request_changes", "comment": "round b"}}
    svc.review("olga", view.id, ask)
    view = svc.review("omar", view.id, ask)
    assert view.state == "changes_requested"
    return view


def test_resubmit_refuses_blocked_and_disguised_files(service, runtime, settings):
    view = _changes_requested(service)
    before = staged_files(settings)
    with pytest.raises(RefusedFiles, match="evil.exe"):
        service.resubmit("alice", view.id, files(("b.csv", SAFE_TABLE + b"80+,120\n"), ("evil.exe", b"MZ")))
    entry = last(runtime, "airlock.request.resubmit")
    assert entry.outcome == "denied" and list(entry.details["refused"]) == ["evil.exe"]
    with pytest.raises(RefusedFiles, match="b.csv"):
        service.resubmit("alice", view.id, files(("b.csv", ZIP_BYTES)))
    assert last(runtime, "airlock.request.resubmit").details["refused"].keys() == {"b.csv"}
    assert staged_files(settings) == before  # neither attempt left a copy of round 2
    assert service.get_request("alice", view.id).state == "changes_requested"
    view = service.resubmit("alice", view.id, files(("b.csv", SAFE_TABLE + b"80+,120\n")))
    assert view.state == "submitted" and view.round == 2


def test_resubmit_failing_on_size_can_be_retried(runtime, registry, limits, settings):
    svc = AirlockService(runtime, limits=replace(limits, max_file_bytes=len(SAFE_TABLE) + 20), registry=registry)
    view = _changes_requested(svc)
    directory = request_dir(settings.paths.staging, PROJECT, view.id)
    fixed_a = SAFE_TABLE.replace(b"120", b"125")
    too_big = SAFE_TABLE + b"80+,120\n" * 10
    with pytest.raises(InvalidInput, match="larger than the per-file limit"):
        svc.resubmit("alice", view.id, files(("a.csv", fixed_a), ("b.csv", too_big)))
    assert sorted(p.name for p in directory.iterdir()) == ["0-r1-a.csv", "1-r1-b.csv"]
    failed = last(runtime, "airlock.request.resubmit")
    assert (failed.actor, failed.outcome, failed.target) == ("alice", "failed", f"request:{view.id}")
    assert "b.csv is larger than" in failed.details["reason"]
    assert svc.get_request("alice", view.id).state == "changes_requested"
    # the retry reuses round 2: nothing of the failed attempt is in its way
    view = svc.resubmit("alice", view.id, files(("a.csv", fixed_a), ("b.csv", SAFE_TABLE + b"80+,120\n")))
    assert view.state == "submitted" and view.round == 2
    assert sorted(p.name for p in directory.iterdir()) == ["0-r1-a.csv", "0-r2-a.csv", "1-r1-b.csv", "1-r2-b.csv"]
    done = last(runtime, "airlock.request.resubmit")
    assert done.outcome == "ok" and done.details["replaced"] == ["a.csv", "b.csv"]


def test_approving_a_file_that_failed_its_checks_needs_a_comment(service, runtime):
    view = service.create("alice", PROJECT, files(("t.csv", SMALL_CELLS)), "paper")
    assert view.files[0].check_status == "fail"
    with pytest.raises(InvalidInput, match="failed the automatic checks"):
        service.review("olga", view.id, {0: {"decision": "approve"}})
    assert last(runtime, "airlock.review.submit").outcome == "failed"
    with pytest.raises(InvalidInput, match="failed the automatic checks"):
        service.review("olga", view.id, {0: {"decision": "approve", "comment": "   "}})
    view = service.review("olga", view.id, {0: {"decision": "approve",
                                                "comment": "4 is a count of hospitals, not of persons"}})
    assert view.complete_reviews == 1
    assert [r.comment for r in view.reviews] == ["4 is a count of hospitals, not of persons"]


def _tamper(runtime, request_id: str, **values) -> None:
    with transaction(runtime.sessions) as s:
        row = s.scalars(select(RequestFile).where(RequestFile.request_id == request_id)).one()
        for key, value in values.items():
            setattr(row, key, value)


@pytest.mark.parametrize("tampering", ["check_result", "name", "unreadable"])
def test_release_refuses_a_refused_type_whatever_the_database_says(service, runtime, settings, tampering):
    view = make_request(service, "approved")
    if tampering == "check_result":
        failed = {"kind": "table", "status": "fail", "rules": {"file-type": "fail"}, "omitted": {},
                  "findings": [{"rule": "file-type", "status": "fail", "message": "not CSV"}]}
        _tamper(runtime, view.id, check_result=json.dumps(failed), check_status="fail")
        reason = "type failed the automatic checks"
    elif tampering == "name":
        _tamper(runtime, view.id, name="evil.exe")  # the row says .exe, the votes still count
        reason = "executables cannot leave"
    else:
        _tamper(runtime, view.id, check_result="not json")
        reason = "check result is unreadable"
    with pytest.raises(IntegrityError, match=reason):
        service.release("olga", view.id)
    assert not (settings.paths.outbox / PROJECT).exists() or list((settings.paths.outbox / PROJECT).iterdir()) == []
    entry = last(runtime, "airlock.request.release")
    assert (entry.actor, entry.outcome) == ("olga", "failed") and reason in entry.details["reason"]
    after = service.get_request("olga", view.id)
    assert after.state == "approved" and after.released_at is None


def test_release_refuses_staged_bytes_that_are_not_their_type(service, runtime, settings):
    """The staged copy replaced by a ZIP, and the database rewritten so that the votes are about those
    bytes: the type check of the staged copy still refuses it before anything is copied."""
    import hashlib
    import os

    view = make_request(service, "approved")
    staged = next(request_dir(settings.paths.staging, PROJECT, view.id).glob("0-*"))
    os.chmod(staged, 0o644)
    staged.write_bytes(ZIP_BYTES)
    forged = hashlib.sha256(ZIP_BYTES).hexdigest()
    _tamper(runtime, view.id, sha256=forged)
    with transaction(runtime.sessions) as s:
        for review in s.scalars(select(Review).where(Review.request_id == view.id)):
            review.file_sha256 = forged
    with pytest.raises(IntegrityError, match="binary content"):
        service.release("omar", view.id)
    assert last(runtime, "airlock.request.release").outcome == "failed"
    assert not (settings.paths.outbox / PROJECT / view.id).exists()
