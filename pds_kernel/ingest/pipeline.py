"""``ingest_delivery``: load a delivery into the lake, file by file, losing nothing.

The run, in order:

1. take the lake's lock (one ingest at a time) and recover from an interrupted run: remove the
   staging area and every lake file the manifest does not name (committed by a run killed before
   it recorded them);
2. decide per file: already loaded with the same SHA-256 → skipped; loaded with another SHA-256 →
   refused unless the run is a correction delivery (``corrections=True``: each of its files must
   replace a loaded one), except snapshot tables, whose new version replaces the old one; a file
   of a table the lake holds with column types since changed → refused; otherwise parse it;
3. parse (locally or on Dask workers, see :mod:`.executor`) in load order: snapshots
   (referentials) first, then the monthly and yearly files; a file checked against a referential
   waits until every referential of the run is committed (see :func:`phases`);
4. commit each parsed file in load order: quarantine duplicate keys, move the staged Parquet and
   quarantine files into the lake (atomic renames; a replacement gets a new name, the replaced
   file stays for the earlier version), compare a replacement with the file it replaces by primary
   key (rows added, changed, removed); then, in batches (:data:`FLUSH_EVERY_FILES` files or
   :data:`FLUSH_EVERY_BYTES` of delivered files, at once for a replacement), one
   new version of each table touched
   (a Delta commit, see :mod:`.commits`), the ledger's journal (fsync) and the files' audit
   entries (one transaction);
5. write the whole manifest, the quality report and the run's audit entry.

The cost of committing one file does not grow with the lake: an append to the journal and, per
batch, one Delta commit per table, one fsync and one database transaction (see :mod:`.commits`).

A kill at any point leaves the lake as the manifest describes it, and the next run finishes the
job: the result is the same as one clean run.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from ..errors import IntegrityError, PdsError
from ..events import AuditEvent, Outcome
from ..hashing import sha256_file
from ..lake import QUARANTINE_DIR, data_files_on_disk, lake_lock, partition_dir, versions
from ..lake.diff import diff_files
from ..settings import check_not_exposed, check_private_place
from ..snds.catalogue import ingestible_table
from ..snds.periods import plausible_years
from .checks import latest_date
from .commits import Commits, check_log_matches_ledger, check_upgraded, reconcile
from .delivery import DeliveryFile, discover
from .executor import make_executor
from .keys import KeyIndex
from .manifest import Manifest, ManifestEntry
from .parse import ParseJob, ParseOutcome
from .quarantine import move_to_quarantine

log = logging.getLogger(__name__)

STAGING_DIR = "_staging"
#: Committed files are made durable (a version of each table, journal fsync, audit transaction) at
#: least every this many files or this many bytes of delivered files (a large claims file makes its
#: own): a kill loses at most that much work, which the next run redoes. Every 192 MiB instead saved
#: no measurable time on the bench's large files (~0.04 s of the main thread per flush, beside the
#: parse) and held ~14 MiB more at the whole delivery's peak (alternating runs, 2026-12-07). The
#: batches depend on the delivery only, never on the clock or on which worker answered first, so a
#: local run and a run on Dask make the same versions of the same files.
FLUSH_EVERY_FILES = 256
FLUSH_EVERY_BYTES = 32 * 1024 * 1024


class Status:
    LOADED = "loaded"
    SKIPPED = "skipped"
    REFUSED = "refused"
    EMPTY = "empty"  #: a header and no row: not loaded, its month stays open
    CORRECTED = "corrected"  #: replaced a loaded file: a new version of its table


@dataclass(frozen=True)
class FileResult:
    """What happened to one file of the delivery in this run."""

    name: str
    table: str | None
    month: str | None
    sha256: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    status: str  #: loaded | skipped | refused | empty | corrected
    reason: str = ""
    #: a replacement: rows added, changed and removed against the replaced file (by primary key)
    correction: dict | None = None


@dataclass
class IngestResult:
    run_id: str
    lake: Path
    files: list[FileResult] = field(default_factory=list)
    report_html: Path | None = None
    report_json: Path | None = None
    commit_seconds: float = 0.0  #: time spent committing table versions (Delta commits)

    @property
    def clean(self) -> bool:
        """True when nothing was refused, no row was quarantined and no correction removed rows."""
        return all(f.status != Status.REFUSED and f.rows_quarantined == 0
                   and not (f.correction or {}).get("removed") for f in self.files)

    @property
    def corrections(self) -> list[FileResult]:
        return [f for f in self.files if f.correction is not None]

    def totals(self) -> dict[str, int]:
        return {key: sum(getattr(f, key) for f in self.files)
                for key in ("rows_read", "rows_loaded", "rows_quarantined")}


class Progress(Protocol):
    """What the pipeline tells a progress display (the CLI draws one bar per file)."""

    def start(self, name: str, total_bytes: int) -> None: ...
    def advance(self, name: str, nbytes: int) -> None: ...
    def done(self, result: FileResult) -> None: ...


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def recover(lake: Path, manifest: Manifest) -> list[Path]:
    """Remove what an interrupted run left: the staging area and lake files that no ledger entry
    (current or kept earlier version) and no version of the table's log names (run after the
    ledger was reconciled with the log)."""
    shutil.rmtree(lake / STAGING_DIR, ignore_errors=True)
    referenced = manifest.referenced()
    named: dict[str, set[Path]] = {}  #: per table, files some version of its log names
    removed = []
    candidates = data_files_on_disk(lake)  # never the Delta logs' checkpoints
    candidates += list((lake / QUARANTINE_DIR).glob("*/*.csv"))
    for path in candidates:
        if path in referenced:
            continue
        if not path.is_symlink() and not path.is_file():
            # a folder named like a data file (planted): unlink() failed with a raw OSError at the
            # start of every run; the ingest never makes one, so it is named, not removed
            raise IntegrityError(f"{path} is not a file the ingest wrote (a folder?): inspect it and "
                                 "remove it, then run pds ingest again")
        if path.suffix == ".parquet":  # never a file a version names (one the ledger lost track of)
            table = path.parts[-3]
            if table not in named:
                named[table] = versions.ever_added(lake, table) if versions.is_versioned(lake, table) else set()
            if path in named[table]:
                continue
        path.unlink()
        removed.append(path)
    if removed:
        log.warning("removed %d file(s) left by an interrupted ingest", len(removed))
    return removed


def phases(files: list[DeliveryFile]) -> list[list[DeliveryFile]]:
    """``files`` (in load order: referentials first) cut into the phases of a run. A file checked
    against a referential (ER_PHA_F against IR_PHA_R) can be parsed only once every referential of
    the run is committed, so the second phase starts at the first such file; the files before it
    (the referentials and the tables checked against none, e.g. ER_PRS_F) are parsed together, and
    the threads keep parsing claims while the referentials are committed. The load order, hence
    the lake, its versions and the report, is the same as with one phase per kind of file."""
    waits = next((i for i, f in enumerate(files)
                  if not f.is_snapshot and _checked_against_referentials(f.table)), len(files))
    return [part for part in (files[:waits], files[waits:]) if part]


def _checked_against_referentials(table: str) -> bool:
    return any(c.references is not None for c in ingestible_table(table).columns)


def ingest_delivery(runtime, source: Path, *, actor: str, dask_address: str | None = None,
                    progress: Progress | None = None, corrections: bool = False) -> IngestResult:
    """Load the delivery in ``source`` into the lake; see the module docstring for the steps.
    ``corrections``: the delivery corrects loaded files (each of its files must replace one)."""
    from .report import write_report

    settings = runtime.settings
    lake = settings.paths.lake
    run = _Run(runtime, lake, new_run_id(), actor, progress, corrections)
    source = Path(source)
    interrupted: list[str] = []  # tables whose creation a killed run left unfinished
    try:
        for name in ("lake", "reports", "raw"):  # identifying data: never where a workspace reads (audited below)
            check_private_place(settings.paths, name)
        check_not_exposed(settings.paths, source, f"the delivery {source}", "a project may already have read it: "
                          "move it to paths.raw and tell the security officer")
        with lake_lock(lake), _cyclic_gc_paused():
            interrupted = versions.remove_interrupted_creations(lake)
            if interrupted:
                log.warning("removed the Delta log of %s: a killed run was creating the table(s)",
                            ", ".join(interrupted))
            manifest = Manifest(lake)
            check_upgraded(lake, manifest)
            run.record_recovered(reconcile(lake, manifest))
            manifest.flush()  # after their audit entries: a kill in between recovers them again
            check_log_matches_ledger(lake, manifest)
            recover(lake, manifest)
            run.manifest = manifest
            run.commits = Commits(lake, manifest, run.run_id)
            to_parse = run.triage(source)
            with make_executor(dask_address) as executor:
                for phase in phases(to_parse):
                    jobs, ready = run.jobs(phase, settings)
                    done = 0
                    for item, outcome in executor.run(jobs, progress):
                        run.commit(ready[item], outcome)
                        done += 1
                    if done != len(jobs):  # an executor must answer for every job
                        raise PdsError(f"internal error: {len(jobs)} files to parse, {done} parsed")
                    run.flush()
            manifest.save()
            run.flush()
            shutil.rmtree(lake / STAGING_DIR / run.run_id, ignore_errors=True)
            result = IngestResult(run.run_id, lake, run.ordered_results(), commit_seconds=run.commits.seconds)
            result.report_json, result.report_html = write_report(
                settings.paths.reports, run.run_id, lake, manifest, result)
    except BaseException as exc:
        try:  # what was committed stays recorded and audited
            run.flush()
        except Exception:
            log.exception("could not record the files committed before the failure")
        runtime.audit.record(AuditEvent(actor=actor, action="ingest.run", target=str(source),
                                        outcome=Outcome.FAILED,
                                        details={"run": run.run_id, "error": str(exc)[:500],
                                                 "files": len(run.results)}))
        raise
    runtime.audit.record(AuditEvent(
        actor=actor, action="ingest.run", target=str(source), outcome=Outcome.OK,
        details={"run": run.run_id, "files": len(result.files), **result.totals(),
                 **({"recovered": run.recovered} if run.recovered else {}),
                 "refused": sum(f.status == Status.REFUSED for f in result.files),
                 "skipped": sum(f.status == Status.SKIPPED for f in result.files),
                 "corrections": {f.name: f.correction for f in result.corrections},
                 "versions": run.commits.committed,
                 "dask": bool(dask_address), "report": str(result.report_html),
                 **({"unfinished_logs_removed": interrupted} if interrupted else {})}))
    return result


@contextmanager
def _cyclic_gc_paused():
    """Python's cyclic garbage collector off for the run, back on after. A run makes few
    reference cycles (a database session per flush) but many short-lived objects on several
    threads, and each collection walks every object of the process (SQLAlchemy, polars, Arrow
    modules) holding the interpreter lock: 7 % of a whole-delivery run's CPU time
    (bench/RESULTS.md). Memory is freed by reference counting as before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Run:
    """State of one ingest run (not shared: one per call)."""

    def __init__(self, runtime, lake: Path, run_id: str, actor: str, progress: Progress | None,
                 corrections: bool = False):
        self.runtime = runtime
        self.corrections = corrections
        self.lake = lake
        self.run_id = run_id
        self.actor = actor
        self.progress = progress
        self.manifest: Manifest
        self.results: dict[str, FileResult] = {}
        self.indexes: dict[str, KeyIndex] = {}
        self.codes: dict[tuple[str, str], pl.Series] = {}  #: referential codes, per run
        self.events: list[AuditEvent] = []  #: audit entries of files not flushed yet
        self.recovered: list[str] = []  #: files committed by a killed run, audited by this one
        self.commits: Commits | None = None  # type: ignore[assignment]  # set once the lake is checked
        self.unflushed = 0
        self.unflushed_bytes = 0
        self.latest = latest_date()  #: one bound on dates for every file of the run

    # -- decisions ---------------------------------------------------------------------------
    def triage(self, source: Path) -> list[DeliveryFile]:
        files, unrecognised = discover(source, plausible_years(self.runtime.settings.ingest.earliest_year))
        for item in unrecognised:
            self.record(FileResult(item.name, None, None, "", 0, 0, 0, Status.REFUSED, item.reason))
        to_parse = []
        for f in files:
            entry = self.manifest.get(f.name)
            if entry is None:
                if self.corrections:
                    what = f"month {f.month}" if f.month else "referential"
                    self.record(FileResult(
                        f.name, f.table, f.month, sha256_file(f.path), 0, 0, 0, Status.REFUSED,
                        f"a correction delivery replaces loaded files, and this {what} of {f.table} "
                        "is not loaded: deliver it with a plain pds ingest (without --correction)"))
                else:
                    to_parse.append(f)
                continue
            sha = sha256_file(f.path)
            if sha == entry.sha256:
                self.record(FileResult(f.name, f.table, f.month, sha, 0, 0, 0, Status.SKIPPED,
                                       f"already loaded with the same SHA-256 (run {entry.run})"))
            elif f.is_snapshot or self.corrections:
                to_parse.append(f)  # a new version of the table replaces the file, the old one is kept
            else:
                self.record(FileResult(
                    f.name, f.table, f.month, sha, 0, 0, 0, Status.REFUSED,
                    f"a different file with this name was loaded (run {entry.run}, SHA-256 "
                    f"{entry.sha256[:12]}…, now {sha[:12]}…): a loaded month is never replaced "
                    "silently; deliver it as a correction (pds ingest --correction), which makes a "
                    "new version of the table and reports the rows added, changed and removed"))
        return self.refuse_changed_types(to_parse)

    def refuse_changed_types(self, files: list[DeliveryFile]) -> list[DeliveryFile]:
        """``files`` but those of a table the lake holds with column types the catalogue has changed
        since (recorded as refused): loaded, they would make the whole table unreadable."""
        changed = {t: versions.type_changes(self.lake, t) for t in sorted({f.table for f in files})}
        for f in files:
            if changed[f.table]:
                self.record(FileResult(
                    f.name, f.table, f.month, sha256_file(f.path), 0, 0, 0, Status.REFUSED,
                    f"table {f.table} in the lake was loaded with column types the catalogue has "
                    f"changed since ({'; '.join(changed[f.table])}): a file of the new types would make "
                    "the table unreadable; rebuild the table before loading more (see "
                    "docs/data-intake.md, Column types that changed)"))
        return [f for f in files if not changed[f.table]]

    def jobs(self, files: list[DeliveryFile], settings) -> tuple[list[ParseJob], list[DeliveryFile]]:
        """Parse jobs for ``files``; files whose referential is missing are refused here."""
        jobs, ready = [], []
        staging = self.lake / STAGING_DIR / self.run_id
        for f in files:
            references, missing = {}, None
            table = ingestible_table(f.table)
            for column in table.columns:
                if column.references is None:
                    continue
                ref_table, ref_column = column.references
                entries = self.manifest.of_table(ref_table)
                if not entries:
                    missing = ref_table
                    break
                if column.references not in self.codes:  # referentials are committed first
                    # a series: as a list of Python ints, IR_PHA_R's ~110,000 codes held
                    # ~6 MiB for the rest of the run (bench/RESULTS.md)
                    codes = pl.scan_parquet([self.lake / e.parquet for e in entries]).select(
                        pl.col(ref_column).unique()).collect().get_column(ref_column)
                    self.codes[column.references] = codes.drop_nulls()
                references[column.name] = self.codes[column.references]
            if missing:
                self.record(FileResult(
                    f.name, f.table, f.month, sha256_file(f.path), 0, 0, 0, Status.REFUSED,
                    f"referential {missing} is not loaded: deliver {missing}.csv (with this delivery or before)"))
                continue
            nomenclatures = {c.name: c.nomenclature for c in table.columns if c.nomenclature is not None}
            jobs.append(ParseJob(source=str(f.path), table=f.table, month=f.month,
                                 staging=str(staging / f.table), encoding=settings.ingest.encoding,
                                 batch_rows=settings.ingest.batch_rows, references=references,
                                 nomenclatures=nomenclatures, latest=self.latest))
            ready.append(f)
        return jobs, ready

    # -- commit -------------------------------------------------------------------------------
    def commit(self, f: DeliveryFile, outcome: ParseOutcome) -> None:
        if outcome.refused:
            self.record(FileResult(f.name, f.table, f.month, outcome.sha256, 0, 0, 0,
                                   Status.REFUSED, outcome.refused))
            return
        if outcome.empty:
            if self.manifest.get(f.name) is not None:  # a loaded month or referential: never emptied
                reason = ("empty file: a header and no row; the loaded rows are kept as they were (an "
                          "empty file never replaces loaded rows)")
            elif f.month:
                reason = "empty file: a header and no row; nothing loaded, the month stays open for the complete file"
            else:
                reason = "empty file: a header and no row; nothing loaded"
            self.record(FileResult(f.name, f.table, f.month, outcome.sha256, 0, 0, 0, Status.EMPTY, reason))
            return
        previous = self.manifest.get(f.name)
        self._quarantine_duplicates(f, outcome, replacing=previous)
        outcome.check_conservation()
        # a replacement gets a name of its own: the replaced file stays for the earlier version
        suffix = f".{self.run_id}" if previous is not None else ""
        target = partition_dir(self.lake, f.table, f.month) / f"{f.stem}{suffix}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        quarantine = self.lake / QUARANTINE_DIR / f.table / f"{f.stem}{suffix}.csv"
        _check_inside(target.parent, self.lake / f.table)
        if outcome.quarantine:
            quarantine.parent.mkdir(parents=True, exist_ok=True)
            _check_inside(quarantine.parent, self.lake / QUARANTINE_DIR / f.table)
        correction = None
        if previous is not None:
            change = diff_files(f.table, [self.lake / previous.parquet], [Path(outcome.parquet)])
            correction = change.as_dict()
        os.replace(outcome.parquet, target)
        if outcome.quarantine:
            os.replace(outcome.quarantine, quarantine)
        superseded = None
        if previous is not None:
            superseded = [*(previous.superseded or ()), previous.parquet,
                          *([previous.quarantine] if previous.quarantine else [])]
        entry = ManifestEntry(
            name=f.name, table=f.table, month=f.month, sha256=outcome.sha256,
            rows_read=outcome.rows_read, rows_loaded=outcome.rows_loaded,
            rows_quarantined=outcome.rows_quarantined,
            parquet=str(target.relative_to(self.lake)),
            quarantine=str(quarantine.relative_to(self.lake)) if outcome.quarantine else None,
            run=self.run_id, replaces=previous.sha256 if previous else None,
            nulls=outcome.stats.nulls, missing_dates=outcome.stats.missing_dates,
            unknown_codes=outcome.stats.unknown_codes, early_dates=outcome.stats.early_dates,
            late_dates=outcome.stats.late_dates,
            superseded=superseded, correction=correction)
        self.commits.add(entry, target.stat().st_size, previous)
        self.unflushed += 1
        self.unflushed_bytes += outcome.bytes
        status, reason = Status.LOADED, ""
        if previous is not None:
            status = Status.CORRECTED
            reason = (f"replaces the file with SHA-256 {previous.sha256[:12]}… (kept in the earlier "
                      f"version): {change.summary()}")
            self.indexes.pop(f.table, None)  # the replaced file's keys are gone from the table
        self.record(FileResult(f.name, f.table, f.month, outcome.sha256, outcome.rows_read,
                               outcome.rows_loaded, outcome.rows_quarantined, status, reason, correction))
        # a correction is its own version; referentials are made durable with their batch, and in
        # any case at the end of their phase, before the files checked against them are parsed
        if previous is not None or self.unflushed >= FLUSH_EVERY_FILES or self.unflushed_bytes >= FLUSH_EVERY_BYTES:
            self.flush()

    def flush(self) -> None:
        """Make the committed files durable: a version of each table, then their audit entries (one
        database transaction), then the manifest's journal (fsync).

        The journal comes last: a run killed after a version's commit and before its files' audit
        entries left a correction in the lake that no audit entry named (the journal was durable, so
        the next run recovered nothing and reported the file skipped). Now such a kill leaves the
        ledger behind the log, and the next run recovers the entries and audits them
        (:meth:`record_recovered`); a kill between the audit and the journal audits them twice, the
        second time marked as recovered."""
        from ..db import transaction

        if self.commits is None:  # failed before the lake was checked: nothing was committed
            return
        self.commits.flush()
        if self.events:
            with transaction(self.runtime.sessions) as session:
                self.runtime.audit.record_many(self.events, session=session)
            self.events.clear()
        self.manifest.flush()
        self.unflushed = 0
        self.unflushed_bytes = 0

    def record_recovered(self, entries: list[ManifestEntry]) -> None:
        """Audit the files a killed run committed and did not audit (the ledger entries recovered
        from the tables' logs): one ``ingest.file`` each, naming the run that committed it,
        recorded at once (one database transaction)."""
        events = []
        for e in entries:
            status = Status.CORRECTED if e.replaces or e.correction is not None else Status.LOADED
            result = FileResult(e.name, e.table, e.month, e.sha256, e.rows_read, e.rows_loaded, e.rows_quarantined,
                                status, f"committed as version {e.version} by run {e.run}, which was "
                                        "interrupted before recording it", e.correction)
            self.recovered.append(e.name)
            events.append(AuditEvent(
                actor=self.actor, action="ingest.file", target=e.name, outcome=Outcome.OK,
                details={"run": e.run, "recovered_by": self.run_id, **_file_details(result), "version": e.version}))
        if events:  # the database's modules are imported when first needed: a run starts parsing sooner
            from ..db import transaction

            with transaction(self.runtime.sessions) as session:
                self.runtime.audit.record_many(events, session=session)

    def _index(self, f: DeliveryFile, replacing: ManifestEntry | None = None) -> KeyIndex:
        """Keys loaded before ``f`` that it could repeat: those of the earlier months of its table.
        An empty index for a snapshot (it replaces the table) or a table whose key holds the
        month of the file (DCIR: FLX_DIS_DTD; its month is checked, and a month is loaded once):
        then only duplicates within the file are possible, and no index of the table is kept."""
        if ingestible_table(f.table).duplicates_only_within_a_file:
            return KeyIndex(f.table)
        if replacing is not None:  # a correction: the keys of every other file of its table
            index = KeyIndex(f.table)
            for entry in self.manifest.of_table(f.table):
                if entry.name != replacing.name:
                    index.add_lake_file(entry.name, self.lake / entry.parquet)
            return index
        if f.table not in self.indexes:
            index = KeyIndex(f.table)
            for entry in self.manifest.of_table(f.table):
                index.add_lake_file(entry.name, self.lake / entry.parquet)
            self.indexes[f.table] = index
        return self.indexes[f.table]

    def _quarantine_duplicates(self, f: DeliveryFile, outcome: ParseOutcome,
                               replacing: ManifestEntry | None = None) -> None:
        if not outcome.lines and outcome.key_lines is None:
            return  # the parser found no repeated key, and no other file can hold one
        index = self._index(f, replacing)
        # line, h1, h2 of each loaded row (see parse): in memory for a small file
        staged = outcome.key_lines if outcome.key_lines is not None else pl.read_parquet(outcome.lines)
        hashes, lines = staged.select("h1", "h2"), staged.get_column("line")
        dups = index.find_duplicates(hashes, lines)
        if dups.height:
            move_to_quarantine(outcome, f, dups, self.runtime.settings.ingest.encoding)
            keep = ~pl.int_range(hashes.height, dtype=pl.UInt32, eager=True).is_in(dups.get_column("row").implode())
            hashes, lines = hashes.filter(keep), lines.filter(keep)
        if f.table in self.indexes and replacing is None:
            index.add(f.name, hashes, lines)

    # -- results ------------------------------------------------------------------------------
    def record(self, result: FileResult) -> None:
        self.results[result.name] = result
        outcome = Outcome.DENIED if result.status == Status.REFUSED else Outcome.OK
        self.events.append(AuditEvent(actor=self.actor, action="ingest.file", target=result.name,
                                      outcome=outcome, details={"run": self.run_id, **_file_details(result)}))
        if self.progress is not None:
            self.progress.done(result)

    def ordered_results(self) -> list[FileResult]:
        return sorted(self.results.values(), key=lambda r: r.name)


def _file_details(result: FileResult) -> dict:
    """The details of a file's ``ingest.file`` audit entry (its target is the file's name)."""
    return {k: v for k, v in asdict(result).items() if k != "name"}


def _check_inside(folder: Path, root: Path) -> None:
    """Refuse to move a file into ``folder`` unless it resolves inside ``root`` (the table's folder,
    or its quarantine folder). A partition folder replaced by a link (``month=202303`` pointing
    elsewhere, planted by someone with write access to the table folder) made the ingest write the
    month's rows outside the lake, report it loaded, and commit a version that every reader then
    refused: the table unreadable until restored from backup. Checked before anything moves."""
    resolved, top = os.path.realpath(folder), os.path.realpath(root)
    if resolved != top and not resolved.startswith(top + os.sep):
        raise IntegrityError(f"{folder} leads outside {root} (a link?): nothing was written there; "
                             "inspect it and remove it, then run pds ingest again")
