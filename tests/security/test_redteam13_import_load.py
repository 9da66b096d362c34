"""Red team, thirteenth round: imports sent at once to hold the gate, and again and again to fill
its disk. Each scan holds one of the
gate's worker threads and runs its own ``clamscan`` (the whole signature database in memory, about
1 GiB with the official signatures): twenty imports of one researcher at once took every worker
thread, so every other user's request waited, and loaded the signatures twenty times. The attempt
got through before :mod:`pds_kernel.airlock.scan_slots` (a researcher's second import, then a
third user's, were staged and scanned beside the first); now an import past the bound is refused
at once (503, audited) and the gate's threads stay free. Real gate over HTTP, real ClamAV (tests/security/imports_support.py);
the imports that hold the slots are real imports whose upload the test holds open.

Staged files are kept for the record (withdrawn and rejected requests' too): nothing bounded
what one researcher staged, on the disk every project's staged files share. Importing, withdrawing
and importing again got through before :mod:`pds_kernel.airlock.import_quota`
(``airlock.import_max_bytes_per_day``; 6 MiB here).
"""

from __future__ import annotations

import threading

import pytest
from imports_support import (  # noqa: F401  (fixtures)
    IMPORT_LIMIT,
    PROJECT,
    gate_registry_fixture,
    import_gate_fixture,
    import_settings,
)

DAY_LIMIT = 6 * 1024 * 1024


@pytest.fixture(name="settings")
def settings_fixture(settings, tmp_path):
    return import_settings(settings, tmp_path / "clamav", import_max_file_bytes=IMPORT_LIMIT,
                           import_max_bytes_per_day=DAY_LIMIT)

CODE = b"print('analysis')\n"


class HeldUpload:
    """An upload whose bytes arrive when the test says so (a slow client, as the gate sees it)."""

    def __init__(self) -> None:
        self.reading, self.go, self.sent = threading.Event(), threading.Event(), False

    def read(self, size: int = -1) -> bytes:
        self.reading.set()
        assert self.go.wait(30)
        if self.sent:
            return b""
        self.sent = True
        return CODE


def _hold(gate, user: str) -> tuple[HeldUpload, threading.Thread, list]:
    upload, out = HeldUpload(), []
    thread = threading.Thread(target=lambda: out.append(
        gate.imports.create(user, PROJECT, [("tool.py", upload)], "a tool")), daemon=True)
    thread.start()
    assert upload.reading.wait(10)  # staging: the slot is taken
    return upload, thread, out


def _refused(answer, reason: str, gate, user: str) -> None:
    assert answer.status_code == 503, (answer.status_code, answer.text[:300])
    assert reason in answer.json()["error"], answer.json()["error"]
    entry = gate.service.runtime.audit.entries(action="airlock.import.create")[-1]
    assert entry.actor == user and entry.outcome == "failed" and reason in str(entry.details), entry


def test_imports_sent_at_once_hold_no_more_than_their_slots(import_gate):
    held = [_hold(import_gate, "alice")]
    try:
        _refused(import_gate.upload("alice", "other.py", CODE), "another of your imports", import_gate, "alice")
        held.append(_hold(import_gate, "bob"))
        _refused(import_gate.upload("carol", "mine.py", CODE), "scanning 2 imports already", import_gate, "carol")
    finally:
        for upload, _, _ in held:
            upload.go.set()
    for _, thread, out in held:
        thread.join(30)
        assert out and out[0].state == "submitted"
    assert import_gate.upload("carol", "mine.py", CODE).status_code == 201  # the slots were given back


def test_importing_again_and_again_fills_no_more_than_the_day_allows(import_gate):
    table = b"code,label\n" + b"A01,some label of a nomenclature\n" * 110_000  # 3.5 MiB
    first = import_gate.upload("alice", "codes.csv", table)
    assert first.status_code == 201, first.text[:300]
    withdrawn = import_gate.api("alice", "POST", f"requests/{first.json()['id']}/withdraw", json={})
    assert withdrawn.status_code == 200, withdrawn.text[:300]
    again = import_gate.upload("alice", "codes.csv", table)
    assert again.status_code == 400 and "import_max_bytes_per_day" in again.json()["error"], again.text[:300]
    entry = import_gate.service.runtime.audit.entries(action="airlock.import.create")[-1]
    assert entry.actor == "alice" and entry.outcome == "failed" and "24 hours" in str(entry.details), entry
    staged = [p for p in import_gate.service.settings.paths.staging.rglob("*") if p.is_file()]
    assert len(staged) == 1, staged  # the withdrawn import's file, kept; nothing of the refused one
    assert import_gate.upload("carol", "codes.csv", table).status_code == 201  # another researcher's day
