"""The ingest ledger (``_manifest.json``): what was delivered and loaded, file by file.

One entry per delivered file name: its table and period, its SHA-256, rows read, loaded and
quarantined, where its Parquet and quarantine files are (relative to the lake), the table version
that committed it, the files of its earlier versions still kept, what its last correction changed,
and the null, missing-date and unknown-code counts of its loaded rows per column (for the quality
report, see :mod:`.stats`).

The lake's commit record is the tables' Delta log (:mod:`pds_kernel.lake.versions`): a file is in
the lake when a version names it. The ledger is written *after* each commit, and each commit
carries the entries it adds, so a crash between the two is repaired from the log by the next run
(:func:`pds_kernel.ingest.pipeline.reconcile`). A Parquet file that neither the ledger (current or
kept earlier version) nor the log names is a leftover of an interrupted run, removed by the next one.

It is kept in two files (read together by :func:`pds_kernel.lake.read_manifest`):

* ``lake/_manifest.json``, the whole manifest, rewritten atomically (temporary file, fsync,
  rename) once at the end of a run;
* ``lake/_manifest.journal``, one JSON line per file committed since, appended as files are
  committed and made durable (fsync) by :meth:`Manifest.flush` in batches. A kill loses at most
  the lines not flushed yet: their Parquet files are then unnamed and removed by the next run,
  which loads those files again. A torn last line (a kill during the write) is ignored.

So committing a file costs one short append, whatever the size of the lake; the whole manifest is
written once per run (with the C JSON encoder: ~0.2 s for 20,000 files).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import IntegrityError
from ..lake import JOURNAL_NAME, MANIFEST_NAME, read_manifest

FORMAT = 1


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    table: str
    month: str | None  #: ``YYYYMM``, ``YYYY`` (a yearly file) or None (a snapshot)
    sha256: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    parquet: str  #: path relative to the lake
    quarantine: str | None  #: path relative to the lake, None when no row was quarantined
    run: str  #: id of the run that loaded it
    replaces: str | None = None  #: SHA-256 of the snapshot this one replaced
    nulls: dict[str, int] | None = None  #: per column, over the loaded rows (None: not recorded)
    missing_dates: dict[str, int] | None = None  #: per date column: rows holding 1600-01-01
    #: per column with a nomenclature: loaded values missing from it (only columns that have one)
    unknown_codes: dict[str, int] | None = None
    #: per care date column: loaded dates from 1900 to before the SNDS (None: not counted, a file
    #: loaded before red team 20D)
    early_dates: dict[str, int] | None = None
    #: per care date column: loaded dates after the file's period (None: not counted)
    late_dates: dict[str, int] | None = None
    version: int | None = None  #: version of its table that committed it (None: lake before versions)
    #: files (relative to the lake) of the earlier versions of this delivered file, kept until expired
    superseded: list[str] | None = None
    #: rows added, changed and removed by this file against the one it replaced (a correction)
    correction: dict | None = None

    def to_dict(self) -> dict:
        """The entry as plain data (no deep copy: the figures' dicts are shared, never mutated)."""
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(ManifestEntry))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Manifest:
    """The manifest of one lake, loaded in memory (the whole file and its journal).

    :meth:`put` records an entry (in memory, and in the journal's buffer); :meth:`flush` makes the
    journal durable; :meth:`save` writes the whole manifest and empties the journal."""

    def __init__(self, lake: Path):
        self.lake = lake
        self.path = lake / MANIFEST_NAME
        self.journal_path = lake / JOURNAL_NAME
        self.entries: dict[str, ManifestEntry] = {}
        self._by_table: dict[str, dict[str, ManifestEntry]] = {}
        self._pending: list[bytes] = []
        try:
            for entry in read_manifest(lake).values():
                self._set(ManifestEntry(**entry))
        except TypeError as exc:
            raise IntegrityError(f"ingest manifest {self.path} is unreadable ({exc}): "
                                 "restore it from backup before ingesting") from None

    def _set(self, entry: ManifestEntry) -> None:
        previous = self.entries.get(entry.name)
        if previous is not None:
            self._by_table.get(previous.table, {}).pop(entry.name, None)
        self.entries[entry.name] = entry
        self._by_table.setdefault(entry.table, {})[entry.name] = entry

    def get(self, name: str) -> ManifestEntry | None:
        return self.entries.get(name)

    def put(self, entry: ManifestEntry) -> None:
        """Record ``entry``: at once in memory, on disk at the next :meth:`flush` or :meth:`save`."""
        self._set(entry)
        self._pending.append(json.dumps(entry.to_dict(), sort_keys=True, separators=(",", ":"))
                             .encode("utf-8") + b"\n")

    def flush(self) -> None:
        """Append the entries put since the last flush to the journal, durably (fsync)."""
        if not self._pending:
            return
        self.lake.mkdir(parents=True, exist_ok=True)
        with self.journal_path.open("ab") as fh:
            fh.write(b"".join(self._pending))
            fh.flush()
            os.fsync(fh.fileno())
        self._pending.clear()

    def save(self) -> None:
        """Write the whole manifest atomically, then drop the journal it now contains."""
        data = {"format": FORMAT,
                "files": {name: self.entries[name].to_dict() for name in sorted(self.entries)}}
        self.lake.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        self._pending.clear()
        self.journal_path.unlink(missing_ok=True)

    def of_table(self, table: str) -> list[ManifestEntry]:
        """Entries of ``table`` in load order (periods, then names)."""
        return sorted(self._by_table.get(table, {}).values(), key=lambda e: (e.month or "", e.name))

    def referenced(self) -> set[Path]:
        """Every lake file the ledger names (Parquet and quarantine, earlier versions' included)."""
        files = set()
        for e in self.entries.values():
            files.add(self.lake / e.parquet)
            if e.quarantine:
                files.add(self.lake / e.quarantine)
            files.update(self.lake / kept for kept in e.superseded or ())
        return files

    def unversioned_tables(self) -> list[str]:
        """Tables with entries committed before versions existed (the lake needs ``pds lake upgrade``)."""
        return sorted({e.table for e in self.entries.values() if e.version is None})

    def known_version(self, table: str) -> int:
        """The latest table version the ledger has recorded (-1: none)."""
        return max((e.version for e in self._by_table.get(table, {}).values() if e.version is not None),
                   default=-1)
