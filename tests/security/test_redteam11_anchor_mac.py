"""Red team, eleventh round: the authenticated anchor lines (``pds_kernel/audit_anchor.py``, format 2).

The attacker may append to the anchor file (as the platform's account may, even with ``chattr +a``)
and reads it, but holds no audit key in force; in one attempt they hold the key retired by a
rotation (a leaked key is the reason to rotate). What they append: a line with a forged MAC, a real
line's MAC kept on changed fields, a line without MAC (format 1) after authenticated ones, a line
signed with a key of their own, a line signed with the retired key after the rotation, a torn line
(no newline), and real lines replayed at the end; plus the upgrade from a file of format-1 lines
written by the release before. Each test asserts that the line counts for nothing at the hub's
account checks (the lock-out of red team 10: one line naming entry 10**12) and that
``pds audit verify`` names it once, by its line number and why, and records it (or, for a replay,
that the harmless outcome holds).

The accounts are checked by the real authenticator on the real hub database, on SQLite and on
PostgreSQL (the ``world`` fixture of tests/security/test_hub_account_generations.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from audit_rotation_support import rotated
from audit_support import fill, pds_audit_verify
from hub_account_seals_support import put_back, snapshot
from test_hub_account_generations import refused, sealed, world_fixture  # noqa: F401  (the fixture world)

from pds_kernel.audit_anchor import ROTATION_REASON, Anchor, FileAnchorStore, anchor_mac, signed
from pds_kernel.audit_anchor_history import WINDOW
from pds_kernel.audit_forged import FORGED_ACTION
from pds_kernel.audit_key import AuditKey, Keyring
from pds_kernel.hub.account_generations import UPGRADE_ACTION
from pds_kernel.hub.account_seals import BROKEN
from pds_kernel.hub.local import set_account_approval
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime

pytestmark = pytest.mark.slow

FAR = 10**12  #: the entry a lock-out line names (red team 10)
ATTACKER_KEY = AuditKey(b"the attacker's own key, 32 bytes")


def _anchors(runtime: Runtime) -> FileAnchorStore:
    return FileAnchorStore(Path(runtime.settings.audit_anchor_file), runtime.audit.keyring)


def _append(runtime: Runtime, anchor: Anchor) -> int:
    """The attacker appends ``anchor``; returns its line number."""
    store = _anchors(runtime)
    store.append(anchor)
    return store.lines()[-1].number


def _refused(runtime: Runtime, user: str, secret: str) -> str | None:
    """:func:`refused`, its second factor's code made at least 2 s before the end of its 30 s step
    (a code made just before, checked just after, is refused whatever the anchors say)."""
    left = 30 - time.time() % 30
    if left < 2:
        time.sleep(left + 0.1)
    return refused(runtime, user, secret)


def _nobody_locked_out(runtime: Runtime, secrets: dict) -> None:
    """After the platform wrote on past the line, every account signs in to this hub, and a process
    started afresh (it reads the whole anchor file) finds every account's seal good (a second
    sign-in within the same 30 s would reuse the second factor's code, which is refused)."""
    fill(runtime, 2)
    for user in ("root", "alice", "bob"):
        assert _refused(runtime, user, secrets[user]) is None, user
    fresh = Runtime(runtime.settings)
    try:
        assert all(sealed(fresh, user) for user in ("root", "alice", "bob"))
    finally:
        fresh.close()


def _named_once(runtime: Runtime, number: int, why: str) -> None:
    """``pds audit verify`` fails naming line ``number`` (and why), records it, then a later
    verification lists it as recorded and passes (the chain is intact)."""
    report = runtime.audit.verify()
    assert not report.problems, report.problems
    assert [f.line for f in report.found_forged] == [number], report.forged
    assert why in report.found_forged[0].why, report.found_forged[0].why
    recorded = runtime.audit.entries(action=FORGED_ACTION)[-1]
    assert recorded.seq == report.forged_entry and recorded.outcome == "failed"
    assert [item["line"] for item in recorded.details["lines"]] == [number]
    again = runtime.audit.verify()
    assert again.ok and again.anchored is not None, again
    assert [(f.line, f.recorded) for f in again.forged if f.line == number] == [(number, report.forged_entry)]


def test_a_forged_mac_locks_nobody_out_and_verify_names_it(world):
    """Red team 10's lock-out with a MAC of the attacker's making (their own key, the real key's
    id): it does not verify. The real ``pds audit verify`` exits non-zero naming the line, says what
    to do, and records it; run again, it passes."""
    runtime, secrets = world
    line = replace(_anchors(runtime).read()[-1], seq=FAR, head="f" * 64)
    number = _append(runtime, replace(line, mac=anchor_mac(line, ATTACKER_KEY)))
    _nobody_locked_out(runtime, secrets)
    done = pds_audit_verify(runtime)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert f"forged anchor: line {number} of" in out and "its MAC does not verify" in out, out
    assert "Find who can write" in out and "recorded in the audit trail" in out, out
    assert [e.details["lines"][0]["line"] for e in runtime.audit.entries(action=FORGED_ACTION)] == [number]
    again = pds_audit_verify(runtime)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"line {number} of" in again.stdout and "recorded at entry" in again.stdout, again.stdout


def test_a_real_lines_mac_on_changed_fields(world):
    """A real line's MAC kept on each field changed in turn: the entry (10**12), the head (the
    latest entry named with another hash: red team 10's old head named again), the reason (a
    forged ``hub.account.seals.upgrade`` anchor, so that the accounts' one-time sealing would count
    as done), the time, the first keyed entry. None counts; verify names each."""
    runtime, secrets = world
    real = _anchors(runtime).read()[-1]
    changes = [{"seq": FAR}, {"head": "0" * 64}, {"reason": UPGRADE_ACTION}, {"time": "2099-01-01T00:00:00+00:00"},
               {"keyed_from": real.keyed_from + 1}]
    numbers = [_append(runtime, replace(real, **change)) for change in changes]
    store = _anchors(runtime)
    assert [line.number for line in store.lines() if line.problem] == numbers
    assert real in store.read() and not [a for a in store.read() if a.seq == FAR or a.head == "0" * 64]
    assert sum(1 for a in store.read() if a.reason == UPGRADE_ACTION) == sum(
        1 for line in store.lines()[:numbers[0] - 1] if line.anchor.reason == UPGRADE_ACTION)
    _nobody_locked_out(runtime, secrets)
    report = runtime.audit.verify()
    assert not report.problems and [f.line for f in report.found_forged] == numbers
    assert all("MAC does not verify" in f.why for f in report.found_forged)
    assert runtime.audit.verify().ok


def test_a_line_without_mac_after_authenticated_lines(world):
    """A line of format 1 (no MAC, as the release before wrote them) after lines of format 2: an
    append-only file gets no line inserted before an existing one, so it was appended since."""
    runtime, secrets = world
    real = _anchors(runtime).read()[-1]
    number = _append(runtime, replace(real, seq=FAR, head="f" * 64, format=1, mac=""))
    assert '"mac"' not in _anchors(runtime).path.read_text().splitlines()[-1]  # exactly as format 1 was
    _nobody_locked_out(runtime, secrets)
    _named_once(runtime, number, "no MAC (format 1)")


def test_a_line_signed_with_a_key_of_the_attackers(world):
    """A line whose MAC verifies, under the attacker's own key, named by its own id: the keyring
    lacks that key."""
    runtime, secrets = world
    real = _anchors(runtime).read()[-1]
    number = _append(runtime, signed(replace(real, seq=FAR, key_id=ATTACKER_KEY.key_id), Keyring((ATTACKER_KEY,))))
    _nobody_locked_out(runtime, secrets)
    _named_once(runtime, number, f"key {ATTACKER_KEY.key_id}, which the audit keyring lacks")


def test_a_line_signed_with_the_retired_key_after_the_rotation(world):
    """The attacker holds the key retired by ``pds audit rotate-key``. Decided: a line of a retired
    key counts only for entries up to its rotation entry (which it signed); the rotation's own
    anchor (reason ``audit.key.rotate``, of the rotation entry, under the old key) retires it for
    every entry after, even before any line of the new key is written. The attacker's line for entry
    10**12 under the retired key counts for nothing; verify names it."""
    runtime, secrets = world
    runtime, old, new, rotation = rotated(runtime)
    try:
        store = _anchors(runtime)
        rotation_anchor = next(a for a in store.read() if a.reason == ROTATION_REASON)
        assert (rotation_anchor.seq, rotation_anchor.key_id) == (rotation, old.key_id)
        assert store.read()[-1].key_id == new.key_id
        retired = Keyring((old,))
        number = _append(runtime, signed(replace(rotation_anchor, seq=FAR, head="f" * 64, reason="write"), retired))
        late = _append(runtime, signed(replace(rotation_anchor, seq=rotation + 1, reason="write"), retired))
        _nobody_locked_out(runtime, secrets)
        report = runtime.audit.verify()
        assert not report.problems and [f.line for f in report.found_forged] == [number, late]
        assert all(f"retired from entry {rotation + 1} on" in f.why for f in report.found_forged), report.forged
        assert runtime.audit.verify().ok
    finally:
        runtime.close()


def test_a_torn_last_line(world):
    """The attacker appends the start of a line, no newline (as a crash in the middle of a write
    leaves it): no reader takes it (only whole lines are read), the platform's next anchor is
    written on a line of its own (not glued to it), and verify names the fragment once."""
    runtime, secrets = world
    path = Path(runtime.settings.audit_anchor_file)
    with open(path, "ab") as handle:
        handle.write(json.dumps(asdict(replace(_anchors(runtime).read()[-1], seq=FAR)))[:60].encode())
    assert sealed(runtime, "bob")
    number = len(path.read_bytes().split(b"\n"))
    fill(runtime, 1)
    store = _anchors(runtime)
    assert store.lines()[-1].problem is None and store.read()[-1].seq == runtime.audit.entries()[-1].seq
    assert [line.number for line in store.lines() if line.problem] == [number]
    _nobody_locked_out(runtime, secrets)
    _named_once(runtime, number, "not an anchor")


def test_real_lines_replayed_at_the_end(world):
    """The attacker copies real lines to the end of the file: the one anchoring alice's approval
    after her revocation (her revoked row then put back), and, after more than WINDOW anchors of
    the platform's verifications, the first keyed line. A replayed line is authentic and trusted,
    and says only what was true: the highest anchored entry stays the highest, no number is
    anchored with two hashes, and a line seen long before is no rollback. Harmless: nobody is let
    in, nobody locked out, verify finds nothing to name."""
    runtime, secrets = world
    store = _anchors(runtime)
    before = snapshot(runtime, "alice")
    approved = store.lines()[-1]
    set_account_approval(runtime.settings, Registry.from_runtime(runtime), "alice", False, actor="root")
    put_back(runtime, "alice", before)
    path = Path(runtime.settings.audit_anchor_file)
    raw = path.read_bytes().split(b"\n")
    with open(path, "ab") as handle:
        handle.write(raw[approved.number - 1] + b"\n")
    assert store.lines()[-1].problem is None
    reason = _refused(runtime, "alice", secrets["alice"])
    assert reason is not None and reason.startswith(BROKEN), reason  # her old row stays refused
    assert sealed(runtime, "bob")
    verified = runtime.audit.verify()
    assert verified.ok and verified.anchored is not None
    # far enough that the first lines left what the check remembers: the lines WINDOW + 5
    # verifications of the unchanged trail write (each re-reads every line: a thousand of them took
    # most of a minute on PostgreSQL), written here as verify writes its own: the same head, signed
    for _ in range(WINDOW + 4):
        store.append(signed(replace(verified.anchored, mac=""), runtime.audit.keyring))
    assert runtime.audit.verify().ok
    with open(path, "ab") as handle:
        handle.write(raw[0] + b"\n")
    fresh = Runtime(runtime.settings)
    try:
        assert _refused(runtime, "bob", secrets["bob"]) is None
        for process in (runtime, fresh):
            assert sealed(process, "bob") and sealed(process, "root")
            assert _refused(process, "alice", secrets["alice"]).startswith(BROKEN)
    finally:
        fresh.close()
    report = runtime.audit.verify()
    assert report.ok and not report.forged, report


def test_the_upgrade_from_a_file_of_format_1_lines(world):
    """The anchor file of an installation of the release before: every line of format 1, without
    MAC. It keeps counting (accounts checked against it, verify intact, the latest anchor found);
    the first write of this release appends authenticated lines after it; from then on a format-1
    line appended counts for nothing, and verify names it."""
    runtime, secrets = world
    path = Path(runtime.settings.audit_anchor_file)
    old_lines = []
    for text in path.read_text().splitlines():
        fields = json.loads(text)
        del fields["mac"]
        old_lines.append(json.dumps({**fields, "format": 1}, sort_keys=True, separators=(",", ":")) + "\n")
    path.write_text("".join(old_lines))
    upgraded = Runtime(runtime.settings)  # this release, started on that file
    try:
        store = _anchors(upgraded)
        assert all(a.format == 1 for a in store.read()) and len(store.read()) == len(old_lines)
        assert store.latest() == store.read()[-1]  # the end holds no authenticated line: read whole
        assert all(sealed(upgraded, user) for user in ("root", "alice", "bob"))
        fill(upgraded, 1)
        assert store.read()[-1].format == 2 and len(store.read()) > len(old_lines)
        report = upgraded.audit.verify()
        assert report.ok and not report.forged, report
        number = _append(upgraded, replace(store.read()[len(old_lines) - 1], seq=FAR, head="f" * 64))
        assert store.lines()[number - 1].anchor.format == 1
        _nobody_locked_out(upgraded, secrets)
        _named_once(upgraded, number, "no MAC (format 1)")
        assert all(line.problem is None for line in store.lines()[:len(old_lines)])  # the old lines still count
    finally:
        upgraded.close()


def test_a_mac_of_non_ascii_characters(world):
    """Red team 10's lock-out with a MAC the attacker wrote in non-ASCII characters (and lone
    surrogates): comparing it must not raise (``hmac.compare_digest`` refuses non-ASCII text, which
    ended every account check with an exception: got through before its fix). The line counts for
    nothing; verify names it."""
    runtime, secrets = world
    line = replace(_anchors(runtime).read()[-1], seq=FAR, head="f" * 64)
    store = _anchors(runtime)
    for mac in ("é" * 64, "\udc80" * 64):
        text = json.dumps({**asdict(line), "mac": mac}, sort_keys=True, separators=(",", ":")) + "\n"
        with open(store.path, "a", encoding="utf-8", errors="surrogatepass") as handle:
            handle.write(text)
    numbers = [line.number for line in store.lines()[-2:]]
    _nobody_locked_out(runtime, secrets)
    report = runtime.audit.verify()
    assert not report.problems and [f.line for f in report.found_forged] == numbers, report
