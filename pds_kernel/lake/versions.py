"""The lake's tables as Delta Lake tables: commits, versions, history (docs/adr/0005).

Each table folder ``lake/<TABLE>/`` is a Delta table: its ``_delta_log/`` says which Parquet files
each version holds. The ingestion writes the Parquet files itself (typed, checked, quarantined)
and then *records* them in one commit per table and batch (:func:`commit`): the commit is atomic
(the log entry ``NNNNNNNNNNNNNNNNNNNN.json`` is created only if absent, so two writers can never both
make version N) and a file that no commit names stays invisible to every reader.

A version is never changed: a correction removes the replaced file from the *next* version and
adds its new one; the old file stays on disk, and the old version readable, until the retention
policy expires it (:mod:`.retention`). Every commit carries, in its ``commitInfo``, the ingest
ledger entries of the files it added (``pds`` key, JSON): the ledger (``_manifest.json`` and its
journal, see :mod:`pds_kernel.ingest.manifest`) can always be brought up to date from the log
after a crash between the two writes.

Tables are not partitioned in Delta's sense: the month (``month=YYYYMM``), year or ``snapshot``
folder of a file is our layout, and the period is in the ledger. Any Delta reader (polars'
``scan_delta``, delta-rs, Spark, DuckDB's delta extension) reads the table's latest or a past
version without our code.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from ..errors import IntegrityError, InvalidInput, NotFound

DELTA_LOG = "_delta_log"
METADATA_KEY = "pds"
#: Table properties: the log is never cleaned up by delta-rs (an old version stays readable as long
#: as its files do: the retention policy is ours, see :mod:`.retention`; a log line is ~1 KB a file).
TABLE_CONFIGURATION = {"delta.enableExpiredLogCleanup": "false",
                       "delta.logRetentionDuration": "interval 36500 days"}
_COMMIT_FILE = re.compile(r"^[0-9]{20}\.json$")


@dataclass(frozen=True)
class AddedFile:
    path: str  #: relative to the table folder (``month=202301/ER_PRS_F_202301.parquet``)
    size: int
    rows: int


@dataclass(frozen=True)
class Version:
    """One version of a table, as ``pds lake history`` shows it."""

    version: int
    timestamp: float  #: seconds since the epoch
    operation: str
    run: str | None
    files: list[str]  #: delivered file names committed (or replaced) by this version
    corrections: dict[str, dict]  #: file name → {added, changed, removed, replaced_sha256}


def table_folder(lake: Path, table: str) -> Path:
    from . import table_dir

    return table_dir(lake, table)


def is_versioned(lake: Path, table: str) -> bool:
    return (table_folder(lake, table) / DELTA_LOG).is_dir()


def remove_interrupted_creations(lake: Path) -> list[str]:
    """Remove the Delta logs that hold no commit: a run killed while it created a table (delta-rs
    makes ``_delta_log/`` and stages version 0 beside it before linking it in place) leaves a log
    that every reader refuses ("no files in log segment"), and no version ever named a file of
    that table. Only regular files are removed (the staged upload); returns the tables whose log
    was removed. Run under the lake lock, before anything reads the logs."""
    from ..snds.catalogue import is_ingestible

    removed = []
    for log_dir in sorted(lake.glob(f"*/{DELTA_LOG}")) if lake.is_dir() else []:
        table = log_dir.parent.name
        if not is_ingestible(table) or log_dir.parent.is_symlink() or log_dir.is_symlink() or not log_dir.is_dir():
            continue
        if _holds_a_commit(log_dir):
            continue  # a table that was created: its log is read and checked as it is
        entries = list(log_dir.iterdir())
        strays = [e for e in entries if e.is_symlink() or not e.is_file()]
        if strays:
            raise IntegrityError(f"the Delta log of {table} holds no commit but holds {strays[0].name}, "
                                 f"which no interrupted creation leaves: inspect {log_dir}, then remove it "
                                 "or restore it from backup")
        for entry in entries:
            entry.unlink()
        log_dir.rmdir()
        removed.append(table)
    return removed


def _holds_a_commit(log_dir: Path) -> bool:
    """Whether a table's Delta log holds a version (a commit file or a checkpoint). Version 0 is
    looked up by name first: a log is never cleaned, so a created table has it, and this runs for
    every table at the start of every ingest (a log holds a file per commit)."""
    if (log_dir / f"{0:020d}.json").is_file():
        return True
    return any(_COMMIT_FILE.fullmatch(e.name) or "checkpoint" in e.name for e in log_dir.iterdir())


def versioned_tables(lake: Path) -> list[str]:
    """The tables of the lake that have a Delta log (valid table names only)."""
    from ..snds.catalogue import is_ingestible

    if not lake.is_dir():
        return []
    return sorted(p.parent.name for p in lake.glob(f"*/{DELTA_LOG}") if is_ingestible(p.parent.name))


@cache
def delta_schema(table: str):
    """The Delta schema of ``table`` (from the catalogue): the schema of its lake files. Built from
    polars' schema through the Arrow C interface, without pyarrow: an ingest whose files are all
    streamed never loads it (tested: the same Delta schema as through pyarrow, every table)."""
    import polars as pl
    from deltalake import Schema

    from ..snds.catalogue import ingestible_table
    from ..snds.tables import polars_type

    return Schema.from_arrow(pl.Schema({c.name: polars_type(c.type) for c in ingestible_table(table).columns}))


def type_changes(lake: Path, table: str) -> list[str]:
    """The columns of ``table`` whose type in the lake (its Delta log) is not the catalogue's any
    more, e.g. ``"EXE_SOI_DTD: string in the lake, date now"`` (T_RIPaaC's dates loaded as text
    before issue #17); empty for a table not in the lake. A file of the new type beside the old
    files makes the whole table unreadable (polars: "data type mismatch")."""
    if not is_versioned(lake, table):
        return []
    stored = {f.name: f.type for f in _open_log(table_folder(lake, table)).schema().fields}
    return [f"{f.name}: {getattr(stored[f.name], 'type', stored[f.name])} in the lake, "
            f"{getattr(f.type, 'type', f.type)} now" for f in delta_schema(table).fields
            if f.name in stored and stored[f.name] != f.type]


def _log_stamp(folder: Path) -> int:
    try:
        return (folder / DELTA_LOG).stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@lru_cache(maxsize=256)
def _files_cached(folder: str, version: int | None, stamp: int) -> tuple[tuple[str, ...], int]:
    from deltalake import DeltaTable

    try:
        dt = DeltaTable(folder, version=version) if version is not None else DeltaTable(folder)
        import polars as pl  # reads the Arrow table through its C interface: no pyarrow

        paths = pl.DataFrame(dt.get_add_actions(flatten=True)).get_column("path").to_list()
    except Exception as exc:  # delta-rs raises its own errors: name the table and what to do
        text = str(exc)
        if version is not None and ("not found" in text.lower() or "invalid" in text.lower()
                                    or "version" in text.lower()):
            raise NotFound(f"version {version} of table {Path(folder).name} does not exist or was "
                           "expired by the retention policy (see pds lake history)") from None
        if not _holds_a_commit(Path(folder) / DELTA_LOG):
            raise IntegrityError(f"table {Path(folder).name} has a Delta log with no commit: a run was "
                                 "killed while creating it; run pds ingest again (it removes the "
                                 "unfinished log and loads the table)") from None
        raise IntegrityError(f"the Delta log of {folder} is unreadable ({text[:300]}): restore the "
                             "table's _delta_log from backup") from None
    return tuple(sorted(paths)), dt.version()


def files_at(lake: Path, table: str, version: int | None = None) -> tuple[list[Path], int]:
    """The Parquet files of ``table`` at ``version`` (latest when None) and that version's number.
    A log naming a file outside the table's folder is refused."""
    folder = table_folder(lake, table)
    if version is not None and version < 0:
        raise InvalidInput(f"bad version {version}: versions are numbered from 0")
    stamp = _log_stamp(folder)
    if version is not None:
        # A version is looked up only when it can exist. delta-rs walks every number up to the one
        # asked for (~85 s for version 10**9, linear): `pds lake diff T 1 999999999999999999` or a
        # crafted extract pin held a CPU for ages. And a table without a log (never ingested)
        # reached delta-rs, whose error path listed the missing _delta_log: a raw FileNotFoundError.
        if not (folder / DELTA_LOG).is_dir():
            raise NotFound(f"table {table} has no versions in the lake at {lake}: ingest it first (or run "
                           "pds lake upgrade on a lake written before versions)")
        latest = _files_cached(str(folder), None, stamp)[1]
        if version > latest:
            raise NotFound(f"version {version} of table {table} does not exist: its latest version is "
                           f"{latest} (see pds lake history {table})")
    paths, number = _files_cached(str(folder), version, stamp)
    files = list(_checked_paths(str(folder), paths, table))
    if version is not None and not all(f.is_file() for f in files):
        raise NotFound(f"version {version} of table {table} was expired by the retention policy (its "
                       "replaced files are deleted): read a later version (see pds lake history)")
    return files, number


@lru_cache(maxsize=256)
def _checked_paths(folder: str, paths: tuple[str, ...], table: str) -> tuple[Path, ...]:
    """``folder / path`` for each path of the log, refusing any that leaves the table's folder: an
    absolute path, a ``..`` component, a folder that resolves elsewhere (a symbolic link), or not a
    Parquet file. Only folders are resolved, once each (a table has a few hundred at most), and the
    names checked with string operations: a system call per file (resolving it, or checking that it
    is not a link) cost 10-30 s on a 20,000-file table on this machine. A file replaced by a link
    inside a partition folder is not detected: that needs write access to the lake, as does editing
    the log (docs/adr/0007-lake-table-format.md). Cached per log state, like the listing."""
    root = os.path.realpath(folder)
    parents: dict[str, bool] = {}
    files = []
    for rel in paths:
        parent, _, name = rel.rpartition("/")
        if parent not in parents:
            resolved = os.path.realpath(os.path.join(folder, parent)) if parent else root
            parents[parent] = resolved == root or resolved.startswith(root + os.sep)
        if rel.startswith("/") or ".." in rel.split("/") or not name.endswith(".parquet") or not parents[parent]:
            raise IntegrityError(f"the Delta log of table {table} names {rel!r} outside {folder}: "
                                 "restore the table's _delta_log from backup")
        files.append(Path(folder, rel))
    return tuple(files)


def latest_version(lake: Path, table: str) -> int | None:
    """The latest version of ``table``, None when it has no Delta log."""
    if not is_versioned(lake, table):
        return None
    return files_at(lake, table)[1]


def commit(lake: Path, table: str, added: list[AddedFile], removed: list[str], metadata: dict,
           handles: dict | None = None) -> int:
    """Record ``added`` files and drop ``removed`` ones (paths relative to the table folder) in one
    new version of ``table``, created when it has none; returns the new version's number.

    ``metadata`` goes into the commit's ``commitInfo`` (key ``pds``). Every added file must already
    be in place: a commit never names a file that is not on disk.

    ``handles``: open tables kept by the caller across its commits (``{table: DeltaTable}``). Opening
    a table reads its last checkpoint, which lists every file of the table: kept open, a table only
    reads the commits made since (``update_incremental``), so a commit's cost does not grow with the
    table."""
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction, CommitProperties, RemoveAction

    folder = table_folder(lake, table)
    schema = delta_schema(table)
    if not (folder / DELTA_LOG).is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            DeltaTable.create(str(folder), schema=schema, name=table, mode="ignore",
                              description=f"SNDS table {table} (PDS Workspace lake)",
                              configuration=TABLE_CONFIGURATION)
        except Exception as exc:
            raise IntegrityError(f"cannot create the Delta table of {table} in {folder}: {exc}") from None
    now = int(time.time() * 1000)
    actions: list = []
    for rel in removed:
        actions.append(RemoveAction(rel, True, now))
    for f in added:
        if not (folder / f.path).is_file():
            raise IntegrityError(f"internal error: committing {f.path} of {table}, which is not on disk")
        actions.append(AddAction(f.path, f.size, {}, now, True, json.dumps({"numRecords": f.rows})))
    dt = handles.get(table) if handles is not None else None
    if dt is None:
        dt = DeltaTable(str(folder))
        if handles is not None:
            handles[table] = dt
    else:
        dt.update_incremental()  # commits made by others since: usually none
    properties = CommitProperties(custom_metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)},
                                  max_commit_retries=20)
    dt.create_write_transaction(actions, mode="append", schema=schema, commit_properties=properties)
    dt.update_incremental()
    return dt.version()


def history(lake: Path, table: str, since: int = -1) -> list[Version]:
    """The versions of ``table`` after version ``since``, oldest first."""
    folder = table_folder(lake, table)
    if not (folder / DELTA_LOG).is_dir():
        raise NotFound(f"table {table} has no version history in {lake}: ingest it first (or run "
                       "pds lake upgrade on a lake written before versions)")
    dt = _open_log(folder)
    latest = dt.version()
    if latest <= since:
        return []
    versions = []
    for info in dt.history(latest - since):
        number = info.get("version")
        if number is None or number <= since:
            continue
        meta = _metadata(info)
        versions.append(Version(
            version=number, timestamp=info.get("timestamp", 0) / 1000, operation=info.get("operation", ""),
            run=meta.get("run"), files=[e["name"] for e in meta.get("entries", [])],
            corrections=meta.get("corrections", {})))
    return sorted(versions, key=lambda v: v.version)


def committed_entries(lake: Path, table: str, since: int) -> list[tuple[int, dict]]:
    """``(version, ledger entry)`` of every file committed to ``table`` after version ``since``."""
    folder = table_folder(lake, table)
    dt = _open_log(folder)
    latest = dt.version()
    found = []
    if latest <= since:
        return found
    for info in dt.history(latest - since):
        number = info.get("version")
        if number is not None and number > since:
            found += [(number, entry) for entry in _metadata(info).get("entries", [])]
    return sorted(found, key=lambda pair: pair[0])


def _open_log(folder: Path):
    """The Delta table of ``folder``, latest version. delta-rs's own error (a file planted in the
    log: a stray ``_last_checkpoint``, a commit file after a gap) became a traceback in ``pds lake
    history``; it is named as the integrity error it is, as the readers do (:func:`_files_cached`)."""
    from deltalake import DeltaTable

    try:
        return DeltaTable(str(folder))
    except Exception as exc:
        raise IntegrityError(f"the Delta log of {folder} is unreadable ({str(exc)[:300]}): restore the "
                             "table's _delta_log from backup") from None


def _metadata(info: dict) -> dict:
    raw = info.get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise IntegrityError("a commit of the lake's Delta log has unreadable pds metadata: restore "
                             "the table's _delta_log from backup") from None
    return data if isinstance(data, dict) else {}


def ever_added(lake: Path, table: str) -> set[Path]:
    """Every file any commit of ``table``'s log added (the files some version names, while its log
    is kept): what the clean-up after a killed run must never delete."""
    folder = table_folder(lake, table)
    found = set()
    for commit_file in (folder / DELTA_LOG).glob("*.json"):
        if not _COMMIT_FILE.fullmatch(commit_file.name):
            continue
        for line in commit_file.read_bytes().splitlines():
            if line.startswith(b'{"add"'):
                try:
                    found.add(folder / json.loads(line)["add"]["path"])
                except (ValueError, KeyError, TypeError):
                    continue
    return found


def lake_versions(lake: Path, tables) -> dict[str, int]:
    """``{table: latest version}`` of the versioned tables among ``tables`` (what an extract pins)."""
    return {t: v for t in sorted(set(tables)) if (v := latest_version(lake, t)) is not None}


def check_version(value: str | int) -> int:
    """A version number given by a user: a non-negative integer."""
    text = str(value)
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise InvalidInput(f"bad version {text!r}: give a version number from pds lake history")
    return int(text)
