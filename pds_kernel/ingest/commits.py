"""Committing loaded files to the lake's versioned tables, and repairing the ledger after a crash.

The pipeline moves each loaded file into the lake and hands it here (:meth:`Commits.add`); at each
flush, every table with new files gets **one** Delta commit (a new version) adding them and
removing the files they replace (corrections), then the ledger entries are appended to the journal
(fsync). The Delta commit is the commit point: a kill before it leaves files no version names
(invisible, removed by the next run's recovery); a kill after it and before the journal leaves the
ledger behind the log, which :func:`reconcile` brings up to date from the commit's metadata.

A version's cost is one small log file per table and batch, whatever the size of the table (plus a
checkpoint every 100 versions, written by delta-rs), so committing a file costs the same in the
first and in the 20,000th batch (bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import IntegrityError, InvalidTransition
from ..lake import versions
from .manifest import Manifest, ManifestEntry

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    entries: list[ManifestEntry]
    added: list[versions.AddedFile]
    removed: list[str]
    corrections: dict[str, dict]


class Commits:
    """Files loaded by one run and not committed yet, per table."""

    def __init__(self, lake: Path, manifest: Manifest, run_id: str):
        self.lake = lake
        self.manifest = manifest
        self.run_id = run_id
        self.pending: dict[str, _Pending] = {}
        self.committed: dict[str, list[int]] = {}  #: table → versions made by this run
        self.seconds = 0.0  #: time spent in Delta commits (the versioned commit's own cost)
        self.files = 0  #: files committed
        self.handles: dict = {}  #: open Delta tables, kept across this run's commits

    def add(self, entry: ManifestEntry, size: int, replaced: ManifestEntry | None) -> None:
        """Record ``entry`` (its Parquet file already in place) for the next commit of its table;
        ``replaced``: the entry whose file it replaces (a correction or a new referential)."""
        folder = self.lake / entry.table
        pending = self.pending.setdefault(entry.table, _Pending([], [], [], {}))
        pending.entries.append(entry)
        pending.added.append(versions.AddedFile(str((self.lake / entry.parquet).relative_to(folder)),
                                                size, entry.rows_loaded))
        if replaced is not None:
            pending.removed.append(str((self.lake / replaced.parquet).relative_to(folder)))
            pending.corrections[entry.name] = {"replaced_sha256": replaced.sha256, **(entry.correction or {})}

    def __len__(self) -> int:
        return sum(len(p.entries) for p in self.pending.values())

    def flush(self) -> None:
        """One new version per table with pending files, and their ledger entries (in memory: the
        caller makes the journal durable after the files' audit entries, see ``_Run.flush``)."""
        for table in sorted(self.pending):
            pending = self.pending.pop(table)
            entries = [e.to_dict() for e in pending.entries]
            started = time.perf_counter()
            number = versions.commit(self.lake, table, pending.added, pending.removed,
                                     {"run": self.run_id, "entries": entries,
                                      "corrections": pending.corrections}, self.handles)
            self.seconds += time.perf_counter() - started
            self.files += len(entries)
            self.committed.setdefault(table, []).append(number)
            for entry in pending.entries:
                self.manifest.put(replace(entry, version=number))


def check_upgraded(lake: Path, manifest: Manifest) -> None:
    """Refuse to ingest into a lake written before versions: ``pds lake upgrade`` converts it."""
    old = manifest.unversioned_tables()
    if old:
        raise InvalidTransition(
            f"the lake at {lake} was written before versioned tables ({len(old)} table(s): "
            f"{', '.join(old[:5])}{'…' if len(old) > 5 else ''}): run pds lake upgrade first "
            "(it records the current files as version 1 of each table; nothing is rewritten)")


def reconcile(lake: Path, manifest: Manifest) -> list[ManifestEntry]:
    """Bring the ledger up to date with the tables' Delta logs (a run killed between a commit and
    its journal entry); returns the entries recovered, put in the ledger but not made durable: the
    caller audits them first (the killed run never did), then flushes the journal."""
    recovered = []
    for table in versions.versioned_tables(lake):
        known = manifest.known_version(table)
        if versions.latest_version(lake, table) <= known:
            continue
        for number, data in versions.committed_entries(lake, table, known):
            try:
                entry = ManifestEntry(**{**data, "version": number})
            except TypeError as exc:
                raise IntegrityError(f"version {number} of table {table} carries unreadable ledger entries "
                                     f"({exc}): its _delta_log was edited; restore it from backup") from None
            manifest.put(entry)
            recovered.append(entry)
    if recovered:
        log.warning("recovered %d ledger entr(ies) from the lake's version log", len(recovered))
    return recovered


def check_log_matches_ledger(lake: Path, manifest: Manifest) -> None:
    """The latest version of every table holds exactly the files the ledger says it holds: a
    ``_delta_log`` or ledger edited by hand (a file added, dropped or swapped outside an ingest)
    stops the ingestion before it builds on it."""
    for table in versions.versioned_tables(lake):
        files, number = versions.files_at(lake, table)
        in_log = {str(p.relative_to(lake)) for p in files}
        in_ledger = {e.parquet for e in manifest.of_table(table)}
        if in_log != in_ledger:
            extra, missing = sorted(in_log - in_ledger), sorted(in_ledger - in_log)
            raise IntegrityError(
                f"version {number} of table {table} does not hold the files the ingest ledger records "
                f"(not in the ledger: {extra[:3]}; missing from the version: {missing[:3]}): the table's "
                "_delta_log or the ledger was changed outside pds ingest; restore them from backup")
