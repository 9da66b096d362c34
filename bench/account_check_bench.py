"""The check of a local hub account at sign-in with a long audit trail: its seal and its generation.

A platform database (SQLite, the local default) holds N audit entries (100,000; 10,000 in quick
mode), one anchor per entry (as when every entry is its own commit: the anchor file at its largest;
each line authenticated, one HMAC to check), 2% of them approvals of other accounts. alice's account was written before all of them, so her
newest write is N entries old: the worst case of the count of the entries after it. Measured:

* the first check of alice's account in a new process (:meth:`AccountSeals.refusal`: it reads the
  whole anchor file and counts every entry after her newest write);
* every later check (the anchor lines appended since, the entries written since);
* peer: what a sign-in pays anyway, NativeAuthenticator's bcrypt check of her password.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path


def _world(root: Path, n: int):
    from sqlalchemy import text

    from pds_kernel.audit import AuditEvent
    from pds_kernel.audit_anchor import FileAnchorStore, signed
    from pds_kernel.hub.local import provision_account
    from pds_kernel.registry import Registry
    from pds_kernel.registry.spec import parse_registry
    from pds_kernel.runtime import Runtime
    from pds_kernel.settings import Paths, Settings

    paths = Paths(**{name: root / name for name in Paths.__dataclass_fields__})
    settings = Settings(paths=paths)
    runtime = Runtime(settings)
    registry = Registry.from_runtime(runtime)
    registry.apply("bench", parse_registry({"users": [{"name": "root", "admin": True}, {"name": "alice"}]}))
    provision_account(settings, registry, "alice", "long-enough-password", actor="root")
    for batch in range(n // 1000):
        events = [AuditEvent(actor="bob", action="hub.login", target="user:bob") for _ in range(980)]
        events += [AuditEvent(actor="root", action="hub.account.approve", target=f"user:u{batch}-{i}",
                              details={"generation": "0" * 32}) for i in range(20)]
        runtime.audit.record_many(events)
    keyring = runtime.audit.keyring
    store = FileAnchorStore(Path(settings.audit_anchor_file), keyring)
    last = store.read()[-1]
    with runtime.engine.connect() as connection:
        heads = connection.execute(text("SELECT seq, hash FROM audit_log ORDER BY seq")).all()
    with open(settings.audit_anchor_file, "w", encoding="utf-8") as handle:  # authenticated, as written
        for seq, head in heads:
            handle.write(json.dumps(asdict(signed(replace(last, seq=seq, head=head), keyring)), sort_keys=True,
                                    separators=(",", ":")) + "\n")
    runtime.close()
    return settings, len(heads)


def _check(settings):
    """(seconds of the first check in a new process, median seconds of 20 later ones, bcrypt's)."""
    import statistics

    from nativeauthenticator.orm import UserInfo

    from pds_kernel.hub.account_seals import AccountSeals
    from pds_kernel.hub.local import hub_session
    from pds_kernel.runtime import Runtime

    runtime = Runtime(settings)
    try:
        with hub_session(settings) as db:
            info = UserInfo.find(db, "alice")
            seals = AccountSeals(runtime.audit)
            started = time.perf_counter()
            assert seals.refusal(db, info) is None
            first = time.perf_counter() - started
            later = []
            for _ in range(20):
                started = time.perf_counter()
                assert seals.refusal(db, info) is None
                later.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert info.is_valid_password("long-enough-password")
            bcrypt = time.perf_counter() - started
    finally:
        runtime.close()
    return first, statistics.median(later), bcrypt


def run(out_dir: Path, quick: bool) -> dict:
    n = 10_000 if quick else 100_000
    import tempfile

    settings, entries = _world(Path(tempfile.mkdtemp(prefix="world-", dir=out_dir)), n)
    first, later, bcrypt = _check(settings)
    note = f"{entries:,} audit entries and anchors; alice's newest write {entries - 1:,} entries old"
    rows = [
        {"name": "account check, first in a process", "value": first * 1000, "unit": "ms",
         "peer": "bcrypt check of the password", "peer_value": bcrypt * 1000, "ratio": bcrypt / first, "note": note},
        {"name": "account check, later ones (median of 20)", "value": later * 1000, "unit": "ms",
         "peer": "bcrypt check of the password", "peer_value": bcrypt * 1000, "ratio": bcrypt / later, "note": note},
    ]
    markdown = ("Ours: `AccountSeals.refusal`, the whole check a sign-in, a session's refresh and the "
                "membership watcher make of a local hub account (its seal, the generation of its newest "
                "write in the audit trail, the trail whole after it as the anchors know it: "
                "docs/adr/0013, amended). Peer: the bcrypt check of the password that every sign-in "
                "makes anyway. The first check of a process reads the whole anchor file (one HMAC a line: "
                "anchors are authenticated) and counts every entry after the account's newest write; later ones read and count only what "
                "was added since.")
    return {"title": "Hub account check at sign-in with a long audit trail", "rows": rows, "markdown": markdown}
