"""``pds lake upgrade``: turn a lake written before versions into versioned tables, in place.

Such a lake has only the ingest ledger (``_manifest.json`` and its journal) to say which files it
holds; it stays readable as it is (:func:`pds_kernel.lake.committed_files`), but the ingestion
refuses to write to it. The upgrade records, for each table of the ledger, the files the ledger
names as one commit of a new Delta table (version 1 after the empty version 0), with the ledger
entries in the commit's metadata, then writes the version into the ledger. No Parquet file is
rewritten or moved. A file the ledger names and that is missing refuses the upgrade of the whole
lake before anything is written (restore it first).

Running it again does nothing; a run killed half-way is finished by the next one (a table whose
log exists is reconciled from it, see :func:`pds_kernel.ingest.commits.reconcile`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import IntegrityError, NotFound
from . import JOURNAL_NAME, MANIFEST_NAME, data_files_on_disk, lake_lock, versions


@dataclass(frozen=True)
class UpgradedTable:
    table: str
    files: int
    rows: int
    version: int


def upgrade_lake(lake: Path) -> list[UpgradedTable]:
    """Record every table of the ledger written before versions as a versioned table."""
    if not (lake / MANIFEST_NAME).is_file() and not (lake / JOURNAL_NAME).is_file():
        raise NotFound(f"no ingest ledger at {lake / MANIFEST_NAME}: nothing to upgrade")
    with lake_lock(lake):
        return _upgrade(lake)


def _upgrade(lake: Path) -> list[UpgradedTable]:
    from ..ingest.commits import reconcile  # the ledger is the ingestion's
    from ..ingest.manifest import Manifest

    manifest = Manifest(lake)
    reconcile(lake, manifest)
    old = manifest.unversioned_tables()
    missing = [e.parquet for t in old for e in manifest.of_table(t) if not (lake / e.parquet).is_file()]
    if missing:
        raise IntegrityError(f"the ledger names {len(missing)} file(s) that are not in the lake (first: "
                             f"{missing[0]}): restore them from backup before upgrading")
    done = []
    for table in old:
        entries = manifest.of_table(table)
        folder = lake / table
        added = [versions.AddedFile(str((lake / e.parquet).relative_to(folder)),
                                    (lake / e.parquet).stat().st_size, e.rows_loaded) for e in entries]
        number = versions.commit(lake, table, added, [], {
            "run": "upgrade", "operation": "upgrade from the ledger",
            "entries": [e.to_dict() for e in entries], "corrections": {}})
        for entry in entries:
            manifest.put(replace(entry, version=number))
        manifest.flush()
        done.append(UpgradedTable(table, len(entries), sum(e.rows_loaded for e in entries), number))
    manifest.save()
    return done


def commit_written_files(lake: Path) -> dict[str, int]:
    """Record every Parquet file under ``lake`` as one version of its table, for lakes written
    without the ingestion (test fixtures, benchmarks); returns each table's version."""
    import polars as pl

    found: dict[str, list[Path]] = {}
    for parquet in data_files_on_disk(lake):
        found.setdefault(parquet.parts[-3], []).append(parquet)
    made = {}
    for table, files in found.items():
        added = [versions.AddedFile(str(p.relative_to(lake / table)), p.stat().st_size,
                                    pl.scan_parquet(p).select(pl.len()).collect().item()) for p in files]
        made[table] = versions.commit(lake, table, added, [], {"run": "fixture", "entries": [], "corrections": {}})
    return made


def apply_upgrade(runtime, *, actor: str) -> list[UpgradedTable]:
    """:func:`upgrade_lake` on the runtime's lake, audited as ``lake.upgrade``."""
    from ..events import AuditEvent, Outcome

    lake = runtime.settings.paths.lake
    event = AuditEvent(actor=actor, action="lake.upgrade", target=str(lake))
    try:
        done = upgrade_lake(lake)
    except Exception as exc:
        runtime.audit.record(event.with_outcome(Outcome.FAILED, reason=str(exc)[:500]))
        raise
    runtime.audit.record(event.with_outcome(Outcome.OK, tables={t.table: t.version for t in done}))
    return done
