"""Parse one delivered file into a staged Parquet file and a staged quarantine file.

This is the unit of work that runs on a Dask worker (or in the ingesting process): it reads only the
source file and writes only into its staging directory, so it can run anywhere the files are
visible and be retried freely. Nothing reaches the lake here; :mod:`pds_kernel.ingest.pipeline`
commits staged files in a fixed order.

The file is streamed in blocks of about ``batch_rows`` lines. A well-formed block (every line has
one field per column: the usual case) is read once by the polars CSV reader, split on ``;`` into
text columns, and the raw text of a quarantined line is rebuilt from its fields. A block with a
ragged or empty line is read twice: once as whole lines (kept for the quarantine and for counting
fields) and once split. Typed values and checks are polars expressions
(:mod:`pds_kernel.ingest.checks`); rows that pass go to Parquet, the others to the quarantine with
their line number, the check that failed and the raw line. The key hashes of the loaded rows are
computed here too, while the rows are in memory, for the duplicate check of the pipeline.

A file of at least :data:`.streamed.MIN_BYTES` whose bytes are clean (nearly every large claims
file) is parsed by one streaming query instead (:mod:`.streamed`, ADR 9); the block parser takes
every other file, and any file the streamed parser gives up on, with the same results.

Duplicate primary keys are not checked here: they depend on other files (of this delivery and of
the lake), so the pipeline checks them when it commits, in a deterministic order.
"""

from __future__ import annotations

import codecs
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InvalidInput, PdsError
from ..hashing import sha256_file
from ..snds.catalogue import ingestible_table
from ..snds.tables import polars_type
from . import streamed
from .checks import (
    Check,
    build_lake_columns,
    build_table_checks,
    joined_fields,
    quarantine_entry,
    quoted_fields,
    row_flags,
)
from .codes import CODES_BUILT, count_unknown_codes, known_series
from .delivery import check_header
from .keys import LINES_SCHEMA, key_hash_exprs
from .stats import ColumnStats
from .text import INVISIBLE, has_invisible
from .text import decode_block as _decode

#: Parquet compression of lake files (zstd level 1: nearly as fast as snappy, clearly smaller).
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
#: Files with at most this many loaded rows hand their key hashes to the pipeline in memory.
INLINE_KEY_ROWS = 50_000
#: Columns of a quarantine file, in order.
QUARANTINE_COLUMNS = ("line", "check", "column", "reason", "raw")
#: Bytes sampled at the start of a file to size the blocks.
_SAMPLE_BYTES = 1 << 16
_MAX_HEADER_BYTES = 1 << 20
#: Candidate separators for the whole-line pass: control bytes that do not occur in the block.
_LINE_SEPARATORS = ("\x1f", "\x1e", "\x1d", "\x1c", "\x01", "\x02")
#: Bytes the typed CSV reader skips around a number where the text conversion refuses it.
_BLANKS = (b" ", b"\t", b"\r")
_SEPARATOR_BYTE = ord(";")
#: Lake types that the fast path reads typed (see :func:`_read_block`).
_NUMBER_TYPES = ("int", "float", "year", "month")
#: C0 control characters a field may not hold (tab is text; a carriage return is left only when
#: lone, not before a line feed: some readers end a line there, red team 14B).
_CONTROL = "[\x00-\x08\x0b-\x1f]"
#: Byte order marks: what each one says the file is.
_BOMS = ((codecs.BOM_UTF8, "UTF-8"), (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


@dataclass(frozen=True)
class ParseJob:
    """Everything a worker needs to parse one file (plain data, so it pickles to a Dask worker)."""

    source: str
    table: str
    month: str | None
    staging: str  #: directory for this file's staged outputs
    encoding: str = "latin-1"
    batch_rows: int = 50_000
    #: column -> allowed codes (a series: ~8 bytes a code, where a list of Python ints took ~50)
    references: dict[str, pl.Series] = field(default_factory=dict)
    #: column -> (nomenclature, code column) whose codes it should hold (unknown codes are
    #: counted for the report, not refused); the worker reads the lists from the package
    nomenclatures: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the last date a value may hold (:func:`.checks.latest_date` of the run's day, one for all
    #: the files of a run, wherever they are parsed); None: the worker's day
    latest: date | None = None


@dataclass
class ParseOutcome:
    """What parsing one file produced. ``parquet``/``lines``/``quarantine`` are staged paths."""

    name: str
    table: str
    month: str | None
    sha256: str = ""
    bytes: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    refused: str = ""  #: non-empty when the whole file is refused, with the reason
    parquet: str = ""
    #: staged Parquet of the line numbers and key hashes of the loaded rows, in order; "" when the
    #: duplicate check has nothing to do (the file repeats no key and no other file can share one)
    #: or when they are small enough to travel in ``key_lines``
    lines: str = ""
    #: the same line numbers and key hashes in memory, for a file of at most
    #: :data:`INLINE_KEY_ROWS` loaded rows (saves writing and reading back a file per small file)
    key_lines: pl.DataFrame | None = None
    quarantine: str = ""  #: staged quarantine CSV, or "" when no row was quarantined
    stats: ColumnStats | None = None  #: nulls and missing dates of the loaded rows
    #: a header and no row: reported, never committed, so that the month (or the referential)
    #: stays open for the complete file
    empty: bool = False

    def check_conservation(self) -> None:
        """Every row read is either loaded or quarantined: never lost, never counted twice."""
        if self.rows_read != self.rows_loaded + self.rows_quarantined:
            raise AssertionError(
                f"{self.name}: rows read {self.rows_read} != loaded {self.rows_loaded} "
                f"+ quarantined {self.rows_quarantined}")


def lake_schema(table: str) -> dict:
    """``{column: polars type}`` of ``table`` (profile or catalogue) in the lake, in table order."""
    return {c.name: polars_type(c.type) for c in ingestible_table(table).columns}


class _LakeFileWriter:
    """The loaded rows of a file, block by block, into its staged Parquet file with polars'
    writer and the streamed parser's layout (zstd level 1, row groups of
    :data:`.streamed.ROW_GROUP_ROWS`), so the ingest never loads pyarrow (~30 MiB of a run's peak,
    bench/RESULTS.md). A file of one block (every small file) is written at once; the blocks of a
    larger file are staged as parts (lz4) and joined by one streaming query at the end, so memory
    stays bounded by a block whatever the file's size."""

    def __init__(self, target: Path, lake_types: dict):
        self.target = target
        self.lake_types = lake_types
        self.held: pl.DataFrame | None = None
        self.parts: list[Path] = []

    def write(self, frame: pl.DataFrame) -> None:
        if self.held is None and not self.parts:
            self.held = frame
            return
        if self.held is not None:
            self._spill(self.held)
            self.held = None
        self._spill(frame)

    def _spill(self, frame: pl.DataFrame) -> None:
        part = self.target.with_name(f"{self.target.stem}.part{len(self.parts)}.parquet")
        frame.write_parquet(part, compression="lz4")
        self.parts.append(part)

    def close(self) -> None:
        options = dict(compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
                       row_group_size=streamed.ROW_GROUP_ROWS)
        if self.parts:
            pl.scan_parquet(self.parts).sink_parquet(self.target, maintain_order=True, **options)
        else:
            frame = self.held if self.held is not None else pl.DataFrame(schema=self.lake_types)
            frame.write_parquet(self.target, **options)
        self.held = None
        self.discard()

    def discard(self) -> None:
        """Remove the staged parts (after the file is written, or when the parse stopped)."""
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.parts.clear()


def _blocks(fh, first: bytes, block_bytes: int, digest) -> Iterator[bytes]:
    """Blocks of whole lines (each ends at a newline, except perhaps the last of the file).

    Each block is built with one copy of what was read (a join of the previous read's tail and
    this read up to its last newline): concatenating and then slicing copied the whole block twice
    more, and every fresh block-sized buffer costs page faults (a third of a run's system time)."""
    pending = first
    while True:
        data = fh.read(block_bytes)
        digest.update(data)
        if not data:
            if pending:
                yield pending
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            pending += data
            continue
        view = memoryview(data)
        yield b"".join((pending, view[: cut + 1]))
        pending = bytes(view[cut + 1:])


def _read_block(block: bytes, header: list[str], encoding: str,
                numbers: dict[str, pl.DataType] | None = None, first_line: int = 0,
                flaw: str | None = None, quoting: pl.Expr | None = None) -> pl.DataFrame:
    """Columns of ``header`` plus ``__fields`` (the field count of each line), ``__flaw`` (the
    check a whole line fails, null when none: see :data:`.checks.LINE_FLAWS`) and ``__raw`` (the whole
    line) when it cannot be rebuilt from the fields (see :func:`_raw_line`). ``flaw`` marks every
    line of the block (the last line of a file without a final line end); ``quoting`` is true on
    a line of a quoting export (:func:`.checks.quoted_fields`; default: any double quote).

    Fast path, taken by every well-formed block: one strict read split on ``;``. The reader fails
    on a line with too many fields and pads a line with too few with nulls; the second case is
    caught by counting the separators of the block (with no line above the expected count, the
    total is right only when every line has exactly the expected count). Any other block is read
    by the slow path, twice: once as whole lines, once split and padded. A block holding a C0
    control character (NUL...) takes the slow path too, and its lines holding one are flagged.

    With ``numbers`` (column → numeric type), the fast path first tries to read those columns
    typed, which saves building and converting their text. The reader accepts what the text
    conversion of :mod:`.checks` accepts, with the same values, and fails on the rest, except for
    a leading blank or a trailing carriage return (which it ignores): blocks holding a blank or a
    carriage return are read as text. Columns come back typed only when every value parsed."""
    block = _decode(block, encoding, first_line)
    text_schema = {c: pl.String for c in header}
    schemas = [text_schema]
    if numbers and not any(blank in block for blank in _BLANKS):
        schemas.insert(0, {c: numbers.get(c, pl.String) for c in header})
    fields = None
    for schema in schemas:
        try:
            fields = pl.read_csv(block, separator=";", has_header=False, quote_char=None, schema=schema)
            break
        except pl.exceptions.PolarsError:
            continue
    codes = np.frombuffer(block, dtype=np.uint8)
    controls = _has_controls(codes, fields.height if fields is not None else -1)
    quoted = b'"' in block  # deliveries are not quoted: see Check.QUOTE
    invisible = has_invisible(block)
    if (fields is not None and not controls and not quoted and not invisible
            and int(np.count_nonzero(codes == _SEPARATOR_BYTE)) == fields.height * (len(header) - 1)):
        return fields.with_columns(pl.lit(len(header), dtype=pl.UInt32).alias("__fields"),
                                   pl.lit(flaw, dtype=pl.String).alias("__flaw"))
    line_sep = next((s for s in _LINE_SEPARATORS if s.encode() not in block), None)
    if line_sep is None:  # pragma: no cover - a block holding every control byte
        raise InvalidInput("file holds binary control characters: not a delivery CSV file")
    lines = pl.read_csv(block, separator=line_sep, has_header=False, quote_char=None,
                        schema={"__raw": pl.String}, truncate_ragged_lines=True,
                        empty_string_is_null=False)
    fields = pl.read_csv(block, separator=";", has_header=False, quote_char=None,
                         schema=text_schema, truncate_ragged_lines=True, missing_columns="insert",
                         extra_columns="ignore")  # a long first line is counted, not a crash
    if lines.height != fields.height:  # pragma: no cover - both readers see the same lines
        raise PdsError(f"internal error: {lines.height} lines but {fields.height} rows in a block")
    raw = lines.get_column("__raw").fill_null("")
    count = (raw.str.count_matches(";", literal=True) + 1).cast(pl.UInt32)
    if flaw is not None:
        flaws = pl.lit(flaw, dtype=pl.String)
    elif controls or quoted or invisible:
        flaws = (pl.when(pl.col("__raw").str.contains(_CONTROL)).then(pl.lit(Check.CONTROL_CHARACTER))
                 .when(quoting if quoting is not None else pl.col("__raw").str.contains('"', literal=True))
                 .then(pl.lit(Check.QUOTE))
                 .when(pl.col("__raw").str.contains(INVISIBLE)).then(pl.lit(Check.INVISIBLE)))
    else:
        flaws = pl.lit(None, dtype=pl.String)
    return fields.with_columns(raw, count.alias("__fields")).with_columns(flaws.alias("__flaw"))


def _has_controls(codes: np.ndarray, lines: int) -> bool:
    """True when the block ``codes`` holds a C0 control byte other than tab and line feed (a NUL of a
    damaged transfer, binary data, a lone carriage return: CRLF is decoded as LF). In the usual case one vectorised count
    settles it: the block's only bytes below 0x20 are the line ends of its ``lines`` lines."""
    if int(np.count_nonzero(codes < 0x20)) == lines:
        return False
    return bool(np.count_nonzero((codes < 0x20) & (codes != 0x0A) & (codes != 0x09)))


def _number_columns(table, header: list[str]) -> dict[str, pl.DataType]:
    """The columns of ``header`` that the CSV reader may read as numbers (see :func:`_read_block`)."""
    return {c.name: polars_type(c.type) for c in table.columns
            if c.name in header and c.type in _NUMBER_TYPES}


def _raw_line(frame: pl.DataFrame, header: list[str]) -> pl.Expr:
    """The original text of each line: ``__raw`` when the slow path kept it, otherwise the fields
    joined again (exact: the fast path only takes blocks whose every line has exactly one field
    per column, and a field never holds ``;`` or a line end; empty fields read as null)."""
    if "__raw" in frame.columns:
        return pl.col("__raw")
    return joined_fields(header)


def _open_header(fh, digest, encoding: str) -> tuple[list[str], bytes]:
    line = fh.readline(_MAX_HEADER_BYTES)
    digest.update(line)
    if not line:
        raise InvalidInput("file is empty: expected a header line")
    for bom, what in _BOMS:
        if line.startswith(bom):
            if what == "UTF-8" and codecs.lookup(encoding).name == "utf-8":
                line = line[len(bom):]  # declared UTF-8: the mark says the same, drop it
                break
            raise InvalidInput(
                f"file starts with a {what} byte order mark (BOM, bytes {bom.hex(' ').upper()}): "
                f"it is {what} text, not {encoding} as declared; convert it to {encoding} "
                "without a BOM, or set the delivery's encoding (ingest.encoding)")
    if not line.endswith(b"\n") and len(line) >= _MAX_HEADER_BYTES:
        raise InvalidInput("first line is too long to be a header")
    text = line.rstrip(b"\r\n").decode("latin-1")
    sample = fh.read(_SAMPLE_BYTES)
    digest.update(sample)
    return text.split(";"), sample


def _block_size(sample: bytes, batch_rows: int) -> int:
    """Bytes per block so that a block holds about ``batch_rows`` lines."""
    lines = max(sample.count(b"\n"), 1)
    per_line = max(len(sample) // lines, 16)
    return max(per_line * batch_rows, 1 << 12)


def parse_file(job: ParseJob, progress: Callable[[int], None] | None = None) -> ParseOutcome:
    """Parse ``job.source`` into staged files under ``job.staging``. A malformed file (header,
    encoding) comes back refused, with the reason; it never raises for bad input."""
    source = Path(job.source)
    table = ingestible_table(job.table)
    outcome = ParseOutcome(name=source.name, table=job.table, month=job.month)
    staging = Path(job.staging)
    staging.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as fh:
            header, sample = _open_header(fh, digest, job.encoding)
            header = check_header(job.table, header)
            body, resume = fh.tell(), digest.copy()
            if not _parse_streamed(job, table, header, fh, sample, digest, outcome, staging, progress):
                digest = resume  # not clean: hash and parse the body again, block by block
                fh.seek(body)
                _parse_body(job, table, header, fh, sample, digest, outcome, staging, progress)
    except InvalidInput as exc:
        outcome.refused = str(exc)
        outcome.rows_read = outcome.rows_loaded = outcome.rows_quarantined = 0
        for name in (outcome.parquet, outcome.lines, outcome.quarantine):
            if name:
                Path(name).unlink(missing_ok=True)
        outcome.parquet = outcome.lines = outcome.quarantine = ""
        outcome.key_lines = None
        outcome.stats = None
        if not outcome.sha256:
            outcome.sha256 = _finish_digest(source, digest)
        return outcome
    outcome.sha256 = digest.hexdigest()
    outcome.bytes = source.stat().st_size
    outcome.check_conservation()
    if outcome.rows_read == 0:  # a header and no row: nothing to commit (see ParseOutcome.empty)
        for name in (outcome.parquet, outcome.lines):
            if name:
                Path(name).unlink(missing_ok=True)
        outcome.parquet = outcome.lines = ""
        outcome.key_lines = None
        outcome.empty = True
    return outcome


def _finish_digest(source: Path, digest) -> str:
    """SHA-256 of a whole file when parsing stopped early (the digest holds a prefix only)."""
    return sha256_file(source)


def _parse_body(job, table, header, fh, sample, digest, outcome: ParseOutcome, staging: Path,
                progress) -> None:
    present = set(header)
    typed, checks = build_table_checks(table, present, job.references, job.month, job.latest)
    lake_columns = build_lake_columns(table, present)
    lake_types = lake_schema(job.table)
    bad_flags = row_flags(len(header), checks)
    entry: list[pl.Expr] = []  # the quarantine entry's columns, built at the file's first bad row

    numbers = _number_columns(table, header)
    quoting = quoted_fields(table, header)

    def checked(block: bytes, first_line: int, read_typed: dict | None,
                flaw: str | None) -> tuple[pl.DataFrame, pl.Series]:
        """The block with its line numbers and typed copies, and the flags of its bad rows.
        The CSV reader returns columns in several chunks and the line numbers come as one: the
        frame is made contiguous first, or every later step would realign its chunks (a copy of
        the whole block each time, which costs more than this one)."""
        frame = _read_block(block, header, job.encoding, read_typed, first_line, flaw, quoting).rechunk().with_columns(
            pl.int_range(first_line, first_line + pl.len(), dtype=pl.UInt32).alias("__line"),
            *typed.values())
        return frame, frame.select(pl.any_horizontal(bad_flags).fill_null(True)).to_series()

    stem = Path(job.source).stem
    parquet_path = staging / f"{stem}.parquet"
    lines_path = staging / f"{stem}.lines.parquet"
    quarantine_path = staging / f"{stem}.quarantine.csv"
    outcome.parquet, outcome.lines = str(parquet_path), str(lines_path)
    outcome.stats = stats = ColumnStats(job.table, period=job.month)
    loaded: list[pl.DataFrame] = []  # line number and key hashes of each loaded row
    hashes = key_hash_exprs(job.table) if table.primary_key else []
    with CODES_BUILT:
        codes = {c: known_series(*n, lake_types[c])
                 for c, n in job.nomenclatures.items() if c in present}
    next_line = 2  # line 1 is the header
    quarantine_fh: io.BufferedWriter | None = None
    writer = _LakeFileWriter(parquet_path, lake_types)
    try:
        for piece in _blocks(fh, sample, _block_size(sample, job.batch_rows), digest):
            for block, flaw in _split_cut_line(piece):
                frame, flags = checked(block, next_line, numbers, flaw)
                n_bad = int(flags.sum())
                if n_bad and any(frame.schema[c] != pl.String for c in numbers):
                    # Quarantined rows need the text of every field: read this block as text.
                    frame, flags = checked(block, next_line, None, flaw)
                    n_bad = int(flags.sum())
                next_line += frame.height
                # Only the lake columns are filtered (the text columns are not copied), and
                # not at all in the usual case of a block without a bad row.
                good = frame.select(*lake_columns, "__line").cast(lake_types)
                if n_bad:
                    good = good.filter(~flags)
                if good.height:
                    writer.write(good.drop("__line"))
                    if hashes:
                        loaded.append(good.select(pl.col("__line").alias("line"), *hashes))
                    stats.add(good)
                    if codes:
                        count_unknown_codes(good, codes, stats)
                if n_bad:
                    entry = entry or quarantine_entry(len(header), checks)
                    rows = frame.filter(flags).select(
                        pl.col("__line").alias("line"), *entry,
                        _raw_line(frame, header).alias("raw"))
                    if quarantine_fh is None:
                        quarantine_fh = quarantine_path.open("wb")
                        outcome.quarantine = str(quarantine_path)
                    rows.write_csv(quarantine_fh, separator=";",
                                   include_header=quarantine_fh.tell() == 0)
                outcome.rows_read += frame.height
                outcome.rows_loaded += good.height
                outcome.rows_quarantined += n_bad
            if progress is not None:
                progress(len(piece))
        writer.close()
    finally:
        writer.discard()
        if quarantine_fh is not None:
            quarantine_fh.close()
    _hand_over_keys(table, pl.concat(loaded) if loaded else None, outcome, lines_path)


def _hand_over_keys(table, lines: pl.DataFrame | None, outcome: ParseOutcome, lines_path: Path) -> None:
    """Give the pipeline the line numbers and key hashes of the loaded rows (``lines``): in
    memory, in a staged file, or not at all when its duplicate check has nothing to do."""
    if not table.primary_key:
        outcome.lines = ""  # no key declared: no duplicate to look for
        return
    if lines is None:
        lines = pl.DataFrame(schema=LINES_SCHEMA)
    if table.duplicates_only_within_a_file and not _repeats_a_key(lines):
        outcome.lines = ""  # nothing for the pipeline's duplicate check to do: no key file
        return
    if lines.height <= INLINE_KEY_ROWS:
        outcome.lines, outcome.key_lines = "", lines
        return
    outcome.lines = str(lines_path)
    lines.write_parquet(lines_path, compression="lz4")


def _parse_streamed(job: ParseJob, table, header: list[str], fh, sample: bytes, digest,
                    outcome: ParseOutcome, staging: Path, progress) -> bool:
    """Parse a large file with clean bytes in one streaming query (:mod:`.streamed`). False, with
    nothing staged and ``digest`` and ``fh`` to be restarted, when the file is small or its bytes
    are not clean: the block parser of :func:`_parse_body` then parses it."""
    source = Path(job.source)
    size = source.stat().st_size
    if len(header) < 2 or size < streamed.MIN_BYTES:
        return False
    before, body = streamed.identity(source, fh), fh.tell() - len(sample)
    scan = streamed.scan_bytes(fh, sample, digest, len(header))
    if scan is None:
        return False
    lake_types = lake_schema(job.table)
    numbers = {} if scan.blanks else _number_columns(table, header)
    with CODES_BUILT:
        codes = {c: known_series(*n, lake_types[c]) for c, n in job.nomenclatures.items() if c in header}
    target = staging / f"{source.stem}.parquet"
    found = streamed.stream_rows(source, table, header, job.references, job.month, numbers,
                                 lake_types, target, codes, latest=job.latest, blanks=scan.blanks)
    if numbers and (found is None or found.loaded < scan.rows):
        # A number the reader refused, or rows to quarantine: load the file from its text read,
        # as the block parser does, so that the rows loaded and the rows quarantined come from
        # the same read (the typed reader accepts the same numbers as the text conversion).
        found = streamed.stream_rows(source, table, header, job.references, job.month, {},
                                     lake_types, target, codes, latest=job.latest, blanks=scan.blanks)
    if found is None:  # a text read of clean bytes fails only if the file changed under it
        return False
    bad = pl.DataFrame()
    if found.loaded < scan.rows:
        bad = streamed.quarantined_rows(source, table, header, job.references, job.month, job.latest, scan.blanks)
    if bad is None or found.loaded + bad.height != scan.rows or streamed.identity(source, fh) != before:
        # The file changed between the reads (a delivery still being written, a swap): the block
        # parser reads it once, so the hash recorded is that of the rows loaded.
        target.unlink(missing_ok=True)
        return False
    quarantined = bad.height
    if quarantined:
        outcome.quarantine = str(staging / f"{source.stem}.quarantine.csv")
        bad.write_csv(outcome.quarantine, separator=";")
    outcome.parquet = str(target)
    outcome.stats = ColumnStats(job.table, period=job.month).add_figures(found.figures)
    outcome.stats.unknown_codes.update(found.unknown_codes)
    outcome.rows_read, outcome.rows_loaded, outcome.rows_quarantined = scan.rows, found.loaded, quarantined
    _hand_over_keys(table, found.keys, outcome, staging / f"{source.stem}.lines.parquet")
    if progress is not None:
        progress(size - body)  # the bytes after the header, as the block parser counts them
    return True


def _split_cut_line(block: bytes) -> list[tuple[bytes, str | None]]:
    """``block`` as it is when it ends with a line end (every block but perhaps the file's last);
    otherwise its whole lines, then its last line flagged :attr:`Check.LAST_LINE_CUT`: a file
    must end with a line end, or its last value may have been cut by the transfer."""
    if block.endswith(b"\n"):
        return [(block, None)]
    cut = block.rfind(b"\n") + 1
    pieces = [(block[:cut], None)] if cut else []
    return pieces + [(block[cut:] + b"\n", Check.LAST_LINE_CUT)]


def _repeats_a_key(lines: pl.DataFrame) -> bool:
    """True when two loaded rows of the file share their key hashes (h1 and h2). Counting the
    distinct ``h1`` is cheap; the pair is compared only when some ``h1`` repeats."""
    if lines.height < 2 or lines.get_column("h1").n_unique() == lines.height:
        return False
    return bool(lines.select(pl.struct("h1", "h2").is_duplicated().any()).item())
