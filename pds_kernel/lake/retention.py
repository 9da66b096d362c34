"""The retention policy: how long an earlier version of a table stays readable.

A correction removes the replaced file from the table's next version but leaves it on disk, so
every earlier version (and an extract pinned to it) stays readable. ``pds lake expire`` deletes
the files that were replaced more than ``ingest.version_retention_days`` ago (Delta's *vacuum*:
only files that no current version holds), with their quarantine files, and drops them from the
ledger. A version that needed one of them can no longer be read: reading it says it was expired.
The files of the latest version are never deleted, whatever their age.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

from . import lake_lock, versions

log = logging.getLogger(__name__)

#: a longer retention deletes nothing either (a million years in hours fits delta-rs' integer)
MAX_RETENTION_DAYS = 365 * 1_000_000


@dataclass(frozen=True)
class Expired:
    table: str
    files: list[str]  #: relative to the lake


def expire_versions(lake: Path, retention_days: float, *, dry_run: bool = False) -> list[Expired]:
    """Delete the files replaced more than ``retention_days`` ago, table by table."""

    # NaN passed `< 0` and reached int() (a traceback), and so did infinity or 1e300 days
    # (delta-rs takes the hours as a 64-bit integer): `pds lake expire --days nan` is a typo, named
    # as one. Any retention beyond MAX_RETENTION_DAYS keeps every file, as the largest one does.
    if not math.isfinite(retention_days) or retention_days < 0:
        from ..errors import InvalidInput

        raise InvalidInput(f"bad retention {retention_days} days: give a number of days, 0 or more")
    retention_days = min(retention_days, MAX_RETENTION_DAYS)
    with lake_lock(lake):
        return _expire(lake, retention_days, dry_run)


def _expire(lake: Path, retention_days: float, dry_run: bool) -> list[Expired]:
    from deltalake import DeltaTable

    from ..ingest.manifest import Manifest  # the ledger is the ingestion's

    result = []
    deleted: set[str] = set()
    for table in versions.versioned_tables(lake):
        folder = lake / table
        gone = DeltaTable(str(folder)).vacuum(retention_hours=int(retention_days * 24), dry_run=dry_run,
                                              enforce_retention_duration=False)
        names = sorted(str((folder / g).relative_to(lake)) if not Path(g).is_absolute()
                       else str(Path(g).relative_to(lake.resolve())) for g in gone)
        if names:
            result.append(Expired(table, names))
            deleted.update(names)
    if dry_run or not deleted:
        return result
    manifest = Manifest(lake)
    stems = {Path(name).stem for name in deleted}
    for entry in list(manifest.entries.values()):
        if not entry.superseded:
            continue
        keep = []
        for kept in entry.superseded:
            if kept in deleted:
                continue
            if kept.endswith(".csv") and Path(kept).stem in stems:  # its version's quarantine file
                (lake / kept).unlink(missing_ok=True)
                continue
            keep.append(kept)
        if keep != entry.superseded:
            manifest.put(replace(entry, superseded=keep or None))
    manifest.save()
    log.info("expired %d replaced file(s)", len(deleted))
    return result


def apply_expiry(runtime, *, actor: str, retention_days: float | None = None,
                 dry_run: bool = False) -> list[Expired]:
    """:func:`expire_versions` on the runtime's lake with its retention policy (or the one given),
    audited as ``lake.expire`` (with every deleted file)."""
    from ..events import AuditEvent, Outcome

    lake = runtime.settings.paths.lake
    days = runtime.settings.ingest.version_retention_days if retention_days is None else retention_days
    result = expire_versions(lake, days, dry_run=dry_run)
    if not dry_run:
        runtime.audit.record(AuditEvent(actor=actor, action="lake.expire", target=str(lake), outcome=Outcome.OK,
                                        details={"retention_days": days,
                                                 "files": {e.table: e.files for e in result}}))
    return result
