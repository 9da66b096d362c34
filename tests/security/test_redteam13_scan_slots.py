"""Red team, thirteenth round: imports sent at once to hold the gate. Each scan holds one of the
gate's worker threads and runs its own ``clamscan`` (the whole signature database in memory, about
1 GiB with the official signatures): twenty imports of one researcher at once took every worker
thread, so every other user's request waited, and loaded the signatures twenty times. The attempt
got through before :mod:`pds_kernel.airlock.scan_slots` (a researcher's second import, then a
third user's, were staged and scanned beside the first); now an import past the bound is refused
at once (503, audited) and the gate's threads stay free. Real gate over HTTP, real ClamAV (tests/security/imports_support.py);
the imports that hold the slots are real imports whose upload the test holds open.
"""

from __future__ import annotations

import threading

from imports_support import (  # noqa: F401  (fixtures)
    PROJECT,
    gate_registry_fixture,
    import_gate_fixture,
    settings_fixture,
)

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
