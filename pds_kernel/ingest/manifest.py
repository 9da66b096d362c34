"""The ingest manifest ``lake/_manifest.json``: what the lake holds, file by file.

One entry per delivered file name: its table and month, its SHA-256, rows read, loaded and
quarantined, where its Parquet and quarantine files are (relative to the lake), and the null and
missing-date counts of its loaded rows per column (for the quality report, see :mod:`.stats`). The manifest is
the lake's commit record: a Parquet file that no entry names is a leftover of an interrupted run and
is removed by the next one. It is always rewritten whole and atomically (temporary file, fsync,
rename), and only after the files it names are in place.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import IntegrityError
from ..lake import MANIFEST_NAME

FORMAT = 1


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    table: str
    month: str | None
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


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Manifest:
    """The manifest of one lake, loaded in memory; :meth:`put` saves it at once."""

    def __init__(self, lake: Path):
        self.lake = lake
        self.path = lake / MANIFEST_NAME
        self.entries: dict[str, ManifestEntry] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = {name: ManifestEntry(**entry) for name, entry in data["files"].items()}
            except (ValueError, KeyError, TypeError) as exc:
                raise IntegrityError(f"ingest manifest {self.path} is unreadable ({exc}): "
                                     "restore it from backup before ingesting") from None

    def get(self, name: str) -> ManifestEntry | None:
        return self.entries.get(name)

    def put(self, entry: ManifestEntry) -> None:
        self.entries[entry.name] = entry
        self.save()

    def save(self) -> None:
        data = {"format": FORMAT,
                "files": {name: asdict(self.entries[name]) for name in sorted(self.entries)}}
        self.lake.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))

    def of_table(self, table: str) -> list[ManifestEntry]:
        """Entries of ``table`` in load order (months, then names)."""
        return sorted((e for e in self.entries.values() if e.table == table),
                      key=lambda e: (e.month or "", e.name))

    def referenced(self) -> set[Path]:
        """Every lake file the manifest names (Parquet and quarantine)."""
        files = set()
        for e in self.entries.values():
            files.add(self.lake / e.parquet)
            if e.quarantine:
                files.add(self.lake / e.quarantine)
        return files
