"""External cohort linkage at intake: NIRs in, PERSON_IDs out, NIRs never in a workspace.

A study brings a list of the people it recruited, identified by NIR (the French social security
number), with its own columns. The platform acts as the trusted third party:

1. each NIR is normalised (spaces removed) and checked (15 characters, the 97-modulus key, Corsica's
   ``2A``/``2B``); invalid ones are counted and dropped;
2. a NIR listed more than once is ambiguous (which row is right?): every row of it is dropped and
   counted as a duplicate;
3. the trusted third party's correspondence (``paths.ttp/nir_correspondence.parquet``: NIR ->
   ``BEN_NIR_PSA``, the SNDS pseudonymised person key; in production the result of the health
   insurance's linkage service) gives the SNDS key; NIRs it does not know are counted unmatched;
4. the SNDS key becomes the project's ``PERSON_ID`` with the project's key (:mod:`pds_kernel.pseudo`,
   the key the project never sees), exactly as the extract builder does
   (:func:`pds_kernel.extract.linkage.person_map`).

The output is ``PERSON_ID`` + the study's own columns, sorted by ``PERSON_ID`` (the row order of the
list does not survive), and a match report of counts only: ``rows = matched + unmatched +
duplicates + invalid``. A study column whose name mentions NIR or whose values are shaped like
valid NIRs refuses the whole list: NIRs never reach a reviewer or a workspace. The raw list stays in
the staging area only (:mod:`.imports`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import polars as pl

from ..errors import InvalidInput, NotFound
from ..extract.linkage import PERSON, person_map
from ..extract.spec import COHORT_TABLE, PERSON_ID
from ..permissions import check_link_cohort
from ..pseudo import KeyStore

NIR_COLUMN = "NIR"
CORRESPONDENCE_FILE = "nir_correspondence.parquet"
COHORT_OUTPUT = "cohort.csv"
REPORT_OUTPUT = "match_report.json"
MAX_COHORT_ROWS = 1_000_000
_NIR_SHAPE = re.compile(r"^[1-478][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{8}$")
_STUDY_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_CELL_CHARS = 4096
#: A cell a spreadsheet runs as a formula (CSV injection): =, @, tab or CR first, or + / - first
#: in a cell that is not a number (-2.5 and +33 stay data; -2+3+cmd|... does not).
_FORMULA = r"^\s*[=@\t\r]"
_SIGNED = r"^\s*[+-]"
_NUMBER = r"^\s*[+-]?[0-9]+(?:[.,][0-9]+)?(?:[eE][+-]?[0-9]+)?\s*$"


def nir_is_valid(nir: str) -> bool:
    """A NIR of 15 characters whose last two digits are ``97 - (first 13 mod 97)``.

    Corsican departments ``2A``/``2B`` count as 19/18 in the key (the official rule)."""
    if not isinstance(nir, str) or not _NIR_SHAPE.fullmatch(nir):
        return False
    body = nir[:13].replace("2A", "19", 1) if nir[5:7] == "2A" else nir[:13]
    body = body.replace("2B", "18", 1) if nir[5:7] == "2B" else body
    return 97 - int(body) % 97 == int(nir[13:])


def nir_key(body13: str) -> str:
    """The two check digits of a 13-character NIR body (for the synthetic generator)."""
    digits = body13.replace("2A", "19") if body13[5:7] == "2A" else body13.replace("2B", "18") \
        if body13[5:7] == "2B" else body13
    return f"{97 - int(digits) % 97:02d}"


def normalise(values: pl.Series) -> pl.Series:
    return values.fill_null("").str.replace_all(r"[\s.-]", "").str.to_uppercase()


def load_correspondence(ttp_dir: Path) -> pl.DataFrame:
    path = Path(ttp_dir) / CORRESPONDENCE_FILE
    if not path.is_file():
        raise NotFound("the trusted third party's NIR correspondence is not installed "
                       f"({CORRESPONDENCE_FILE} under paths.ttp): ask an admin; no cohort can be linked")
    table = pl.read_parquet(path, columns=[NIR_COLUMN, PERSON])
    return table.with_columns(normalise(table[NIR_COLUMN]).alias(NIR_COLUMN)).unique(subset=[NIR_COLUMN])


def read_cohort(path: Path) -> pl.DataFrame:
    """The uploaded list as text columns; refuses a list without NIR column or with NIRs elsewhere."""
    try:
        raw = pl.read_csv(path, infer_schema=False, n_rows=MAX_COHORT_ROWS + 1)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
        # never polars' message: it quotes the offending line, that is, a NIR
        raise InvalidInput("the cohort list is not a readable CSV file (UTF-8, a header line, the same number "
                           "of fields on every line, quotes closed): fix the file") from None
    if raw.height > MAX_COHORT_ROWS:
        raise InvalidInput(f"a cohort list holds at most {MAX_COHORT_ROWS} rows")
    if NIR_COLUMN not in raw.columns:
        raise InvalidInput(f"a cohort list needs a column named {NIR_COLUMN} (the people's NIR); "
                           f"found: {', '.join(c[:40] for c in raw.columns[:20])}")
    for column in raw.columns:
        if column == NIR_COLUMN:
            continue
        if not _STUDY_COLUMN.fullmatch(column) or column.upper() == PERSON_ID:
            raise InvalidInput(f"study column {column[:40]!r}: use letters, digits and '_' "
                               f"(at most 64), and not {PERSON_ID}")
        if "NIR" in column.upper():
            raise InvalidInput(f"study column {column!r} names a NIR: only the {NIR_COLUMN} column may "
                               "hold NIRs, and it never enters the workspace; remove the column")
        shaped = normalise(raw[column]).map_elements(nir_is_valid, return_dtype=pl.Boolean)
        if shaped.any():
            raise InvalidInput(f"study column {column!r} holds {int(shaped.sum())} value(s) shaped like a "
                               "NIR: NIRs never enter the workspace; remove or recode the column")
        _check_cells(column, raw[column])
    _check_cells(NIR_COLUMN, raw[NIR_COLUMN])
    return raw


def _check_cells(column: str, values: pl.Series) -> None:
    """Refuse what a cell of a list must not carry into the workspace or a reviewer's spreadsheet:
    control characters (NUL among them), a cell longer than :data:`MAX_CELL_CHARS`, and a value a
    spreadsheet would run as a formula (``=``, ``@``, or ``+``/``-`` not followed by a number).
    Counts only: a cell is never quoted (it may hold a NIR)."""
    present = values.drop_nulls()
    checks = (
        (present.str.contains(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"), "control character(s) (NUL, ...)"),
        (present.str.len_chars() > MAX_CELL_CHARS, f"more than {MAX_CELL_CHARS} characters"),
        (present.str.contains(_FORMULA) | (present.str.contains(_SIGNED) & ~present.str.contains(_NUMBER)),
         "the start of a spreadsheet formula (=, @, or + / - in a cell that is not a number)"),
    )
    for found, what in checks:
        if found.any():
            raise InvalidInput(f"column {column[:40]!r} holds {int(found.sum())} value(s) with {what}: "
                               "recode them before importing the list")


def link_cohort(raw: pl.DataFrame, correspondence: pl.DataFrame, key: bytes) -> tuple[pl.DataFrame, dict]:
    """``(PERSON_ID + study columns, match report)``; the NIR column is not in the result."""
    study = [c for c in raw.columns if c != NIR_COLUMN]
    rows = raw.with_columns(normalise(raw[NIR_COLUMN]).alias(NIR_COLUMN))
    valid = rows[NIR_COLUMN].map_elements(nir_is_valid, return_dtype=pl.Boolean)
    invalid = int((~valid).sum())
    rows = rows.filter(valid)
    duplicated = rows[NIR_COLUMN].is_duplicated()
    duplicates = int(duplicated.sum())
    rows = rows.filter(~duplicated)
    joined = rows.join(correspondence, on=NIR_COLUMN, how="left")
    unmatched = int(joined[PERSON].is_null().sum())
    joined = joined.filter(pl.col(PERSON).is_not_null())
    ids = person_map(key, joined.select(PERSON).unique())
    linked = joined.join(ids, on=PERSON, how="left")
    same_person = linked[PERSON_ID].is_duplicated()  # two NIRs of one SNDS person: ambiguous too
    duplicates += int(same_person.sum())
    linked = linked.filter(~same_person).select(PERSON_ID, *study).sort(PERSON_ID)
    report = {"rows": raw.height, "matched": linked.height, "unmatched": unmatched,
              "duplicates": duplicates, "invalid": invalid,
              "match_rate": round(linked.height / raw.height, 4) if raw.height else 0.0}
    return linked, report


def count_in_cohort(linked: pl.DataFrame, cohort) -> int:
    """How many linked people the extract's COHORT table (a path, or a file open for reading) holds."""
    ids = pl.read_parquet(cohort, columns=[PERSON_ID])
    return linked.join(ids.unique(), on=PERSON_ID, how="semi").height


def count_in_extract(linked: pl.DataFrame, extract_dir: Path) -> int | None:
    """How many linked people are in the project's extract (its COHORT table), if built."""
    cohort = Path(extract_dir) / f"{COHORT_TABLE}.parquet"
    if not cohort.is_file():
        return None
    return count_in_cohort(linked, cohort)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (never an existing file, never through a link) with ``data``, mode 0440."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o440)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def link_list(actor: str, project: str, raw: Path, *, keys: Path, ttp: Path, extract: Path,
              out: Path, count_in_extract_of=None) -> dict:
    """Link the staged list ``raw`` of ``project`` into ``out`` (:data:`COHORT_OUTPUT` and
    :data:`REPORT_OUTPUT`, new files) and return ``{"report", "cohort_sha256"}``.

    The one linkage both runners do: the gate itself (``cohort_link.runner: local``) and the
    cohort-link Job (``python -m pds_kernel.k8s cohort-link``), as ``service:cohort-link``.
    ``count_in_extract_of(linked)``, when given, counts the linked people in the extract instead
    of reading ``extract`` (the gate's local runner reads it as checked against its publication;
    the Job's pod checked its ``/data`` before)."""
    check_link_cohort(actor, project)
    key = KeyStore(keys).get(project)
    correspondence = load_correspondence(ttp)
    linked, report = link_cohort(read_cohort(raw), correspondence, key)
    in_extract = (count_in_extract_of(linked) if count_in_extract_of is not None
                  else count_in_extract(linked, extract))
    if in_extract is not None:
        report["in_extract"] = in_extract
    cohort = linked.write_csv().encode()
    _write_new(Path(out) / COHORT_OUTPUT, cohort)
    _write_new(Path(out) / REPORT_OUTPUT, (json.dumps(report, indent=2) + "\n").encode())
    return {"report": report, "cohort_sha256": hashlib.sha256(cohort).hexdigest()}
