"""Release: exactly the reviewed bytes, all or nothing, once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from airlock_factories import PROJECT, SAFE_TABLE, files, make_request

from pds_kernel.airlock.release import ReleaseItem, copy_release
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.staging import request_dir
from pds_kernel.errors import IntegrityError, InvalidTransition, PermissionDenied


def _outbox(settings, view) -> Path:
    return settings.paths.outbox / PROJECT / view.id


def test_release_copies_reviewed_bytes_and_author_downloads(service, settings, runtime):
    view = make_request(service, "released")
    assert view.state == "released" and view.released_at
    name, path = service.download("alice", view.id, 0)
    assert name == "ages.csv" and path.read_bytes() == SAFE_TABLE
    assert path.parent == _outbox(settings, view)
    with pytest.raises(PermissionDenied):
        service.download("bob", view.id, 0)  # a fellow researcher is not the requester
    outcomes = [(e.actor, e.outcome) for e in runtime.audit.entries(action="airlock.file.download")]
    assert outcomes == [("alice", "ok"), ("bob", "denied")]


def test_hash_mismatch_blocks_release(service, settings, runtime):
    view = make_request(service, "approved")
    staged = next(request_dir(settings.paths.staging, PROJECT, view.id).glob("0-*"))
    os.chmod(staged, 0o644)
    staged.write_bytes(SAFE_TABLE.replace(b"120", b"3"))  # tampering after review
    with pytest.raises(IntegrityError, match="changed since it was reviewed"):
        service.release("olga", view.id)
    assert not _outbox(settings, view).exists()
    assert list((settings.paths.outbox / PROJECT).iterdir()) == []
    assert service.get_request("olga", view.id).state == "approved"
    failed = runtime.audit.entries(action="airlock.request.release")[-1]
    assert failed.outcome == "failed"


def test_failure_midway_leaves_no_partial_outbox(tmp_path):
    good = tmp_path / "a.csv"
    good.write_bytes(b"a,1\n")
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"b,2\n")
    import hashlib
    items = [ReleaseItem(good, "a.csv", hashlib.sha256(b"a,1\n").hexdigest()),
             ReleaseItem(bad, "b.csv", "0" * 64)]
    outbox = tmp_path / "outbox"
    with pytest.raises(IntegrityError):
        copy_release(outbox, PROJECT, "a" * 32, "claim1", items)
    assert list((outbox / PROJECT).iterdir()) == []


def test_killed_release_leaves_no_partial_outbox(tmp_path):
    """A release process killed in the middle of its copy leaves no final folder; a retry succeeds."""
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (64 * 1024 * 1024))
    import hashlib
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    outbox = tmp_path / "outbox"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "import pds_kernel.airlock.release as r\n"
        "orig = r._copy_checked\n"
        "def slow(item, target):\n"
        "    Path(sys.argv[2]).write_text('copying')\n"
        "    time.sleep(60)\n"
        "r._copy_checked = slow\n"
        f"r.copy_release(Path(sys.argv[1]), '{PROJECT}', '{'b' * 32}', 'claim2',"
        f" [r.ReleaseItem(Path('{big}'), 'big.csv', '{sha}')])\n"
    )
    marker = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", script, str(outbox), str(marker)])
    try:
        for _ in range(200):
            if marker.exists():
                break
            threading.Event().wait(0.05)
        assert marker.exists()
    finally:
        proc.kill()
        proc.wait()
    final = outbox / PROJECT / ("b" * 32)
    assert not final.exists()
    copy_release(outbox, PROJECT, "b" * 32, "claim3", [ReleaseItem(big, "big.csv", sha)])
    assert final.is_dir() and [p.name for p in (outbox / PROJECT).iterdir()] == ["b" * 32]


def test_concurrent_releases_release_once(runtime, registry, limits, settings):
    service = AirlockService(runtime, limits=limits, registry=registry)
    view = make_request(service, "approved")
    results, errors = [], []

    def attempt(who):
        try:
            results.append(AirlockService(runtime, limits=limits, registry=registry).release(who, view.id).state)
        except (InvalidTransition, IntegrityError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(who,)) for who in ("olga", "omar", "bob", "olga")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["released"] and len(errors) == 3
    assert len(runtime.audit.entries(action="airlock.request.release")) - len(
        [e for e in runtime.audit.entries(action="airlock.request.release") if e.outcome != "ok"]) == 1


def test_concurrent_final_approvals_release_once(runtime, registry, limits, settings):
    """Two checkers approving at the same time with auto-release: one approval, one release."""
    auto = replace(limits, auto_release=True)
    registry.upsert_project("root", PROJECT, reviews_required=2)
    service = AirlockService(runtime, limits=auto, registry=registry)
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    service.review("olga", view.id, {0: {"decision": "approve"}})
    states, errors = [], []

    def attempt(who):
        try:
            states.append(AirlockService(runtime, limits=auto, registry=registry)
                          .review(who, view.id, {0: {"decision": "approve"}}).state)
        except (InvalidTransition, IntegrityError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(who,)) for who in ("omar", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "released" in states
    ok = [e for e in runtime.audit.entries(action="airlock.request.release") if e.outcome == "ok"]
    assert len(ok) == 1
    assert [p.name for p in (settings.paths.outbox / PROJECT).iterdir()] == [view.id]


def test_revoke_after_release_stops_downloads(service, settings):
    view = make_request(service, "released")
    with pytest.raises(PermissionDenied):
        service.revoke("olga", view.id, "mistake")  # only an admin revokes a release
    service.revoke("root", view.id, "mistake")
    assert not _outbox(settings, view).exists()
    with pytest.raises(InvalidTransition):
        service.download("alice", view.id, 0)


def test_nothing_unreviewed_is_released(service):
    for state in ("submitted", "under_review", "rejected", "changes_requested"):
        view = make_request(service, state)
        with pytest.raises(InvalidTransition):
            service.release("root", view.id)
        with pytest.raises(InvalidTransition):
            service.download("alice", view.id, 0)
