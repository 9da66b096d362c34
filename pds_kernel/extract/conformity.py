"""The conformity check an extract must pass before a project sees it.

Refuses (every reason is collected, none stops the others):

* a file the manifest does not list, or whose SHA-256 differs from the manifest;
* a raw identifier column (BEN_NIR_PSA, NIR_ANO_17, BEN_NIR_ANO, BEN_IDT_ANO), or any column the
  spec does not allow;
* a raw identifier *value* of the lake anywhere inside a text column's value, a column name or a
  file's Parquet footer (metadata, statistics), in any case, glued to other letters or cut by
  separators, reversed, or in a hex, base64 or percent-encoded run (:mod:`.identifier_search`);
* a column stored with another type than the builder writes (a dictionary, a list, bytes, a
  struct, a date as text: what the other checks would not read), and a footer holding anything the
  builder never writes (:mod:`.footer`);
* an event outside the project's period: a claim's care date (ER_PRS_F), a stay's start (T_MCOaaC),
  a death (KI_CCI_R) before the period's first day or after its last (the first day of its
  month when care dates are generalised to the month), whatever the spec parser let through;
* a PERSON_ID outside the cohort;
* a date of IR_BEN_R after the period's last day (a death, the last care processed, an update);
* a quasi-identifier the spec says to generalise that is not generalised (birth month present,
  commune that is not a département code, date that is not the first of its month, a count of
  days up to a care date such as PMSI's ``SEJ_NUM``, an age at a dated stay such as ``AGE_ANN``);
* a k-anonymity below the spec's ``min_k``.

It reports the k-anonymity of the declared quasi-identifiers: per table, the smallest number of
distinct persons sharing one combination of their values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..hashing import sha256_file
from ..snds.tables import MISSING_DATE, polars_type
from .footer import footer_faults, footer_texts
from .identifier_search import RawIds, search, views
from .layout import bucket, entry_files, split
from .spec import (
    AGE_AT_EVENT_COLUMNS,
    BIRTH_MONTH_COLUMNS,
    COHORT_TABLE,
    COMMUNE_COLUMNS,
    DAY_COUNT_COLUMNS,
    EXTRACT_TABLES,
    OPEN_SPELLS,
    PERSON_ID,
    RAW_ID_COLUMNS,
    UNTIL_PERIOD_END_TABLES,
    ExtractSpec,
)

MANIFEST = "manifest.json"
#: Département codes: metropolitan 01-95 with Corsica 2A/2B, overseas 971-978, abroad 99, unknown 999.
DEPARTEMENT = r"^(0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-8]|99|999)$"
#: The key of a file's footer texts among the (file, column) keys of the text search.
_FOOTER = "\0footer"
#: The key of the column names among them.
_NAMES = ("", "")
#: Without a ``min_k`` in the spec, a k below this is noted in the report (not refused).
UNCHECKED_K_WARNING = 5
#: The date that puts a row of these tables in the project's period (the selection keeps only the
#: rows whose date is in it: :mod:`.select`); other dates follow their event and are not bounded.
PERIOD_COLUMNS = {"ER_PRS_F": "EXE_SOI_DTD", "T_MCOaaC": "EXE_SOI_DTD", "KI_CCI_R": "BEN_DCD_DTE"}


@dataclass
class ConformityReport:
    ok: bool = True
    reasons: list[str] = field(default_factory=list)
    k_anonymity: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def refuse(self, reason: str) -> None:
        self.ok = False
        self.reasons.append(reason)

    @property
    def k_min(self) -> int | None:
        values = [v["k"] for v in self.k_anonymity.values() if v["k"] is not None]
        return min(values) if values else None

    #: the spec's ``min_k`` (None: the spec sets none, so k-anonymity is reported, not checked)
    min_k: int | None = None

    @property
    def k_status(self) -> str:
        """What ``ok`` says about k-anonymity: checked against the spec's ``min_k``, or not at all
        (``ok`` must not read as "k = 1 is fine")."""
        if self.k_min is None:
            return "no quasi-identifier in the extract"
        if self.min_k is None:
            return f"not checked: k = {self.k_min} and the spec sets no min_k"
        verdict = "meets" if self.k_min >= self.min_k else "below"
        return f"{verdict} the spec's min_k {self.min_k} (k = {self.k_min})"

    def as_dict(self) -> dict:
        return {"ok": self.ok, "reasons": self.reasons, "k_anonymity": self.k_anonymity,
                "k_min": self.k_min, "min_k": self.min_k, "k_status": self.k_status, "notes": self.notes}


def _check_files(directory: Path, spec: ExtractSpec, report: ConformityReport) -> list[ListedFile]:
    """Integrity of the listing: manifest present, every file listed, nothing else, nothing
    missing. Returns the listed files of allowed tables that exist (their hashes are checked with
    their contents, partition by partition, see :func:`check_unit`)."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        report.refuse("the extract has no manifest.json")
        return []
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    listed: dict[str, ListedFile] = {}
    for name, entry in manifest.get("tables", {}).items():
        partitions = (entry.get("partitioning") or {}).get("partitions") if "files" in entry else None
        for index, item in enumerate(entry_files(entry)):
            listed[item["file"]] = ListedFile(name, item["file"], item["sha256"], index, partitions)
    files: list[ListedFile] = []
    refused_tables = set()
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_dir() or rel == MANIFEST:
            continue
        if rel not in listed:
            report.refuse(f"file {rel} is not listed in the manifest")
            continue
        item = listed[rel]
        if item.table not in spec.output_tables():
            if item.table not in refused_tables:
                report.refuse(f"table {item.table} is not allowed by the spec")
                refused_tables.add(item.table)
            continue
        files.append(item)
    for rel in listed:
        if not _inside(rel):
            report.refuse(f"the manifest lists {rel[:120]!r}, which is not a file of the extract (a path out of "
                          "its directory)")
        elif not (directory / rel).is_file():
            report.refuse(f"file {rel} listed in the manifest is missing")
    return files


def _inside(rel: str) -> bool:
    """``rel`` names a file inside the extract: relative, no '..', no backslash, no empty part."""
    parts = rel.split("/") if isinstance(rel, str) else [""]
    return not rel.startswith("/") and "\\" not in rel and all(p not in ("", ".", "..") for p in parts)


@dataclass(frozen=True)
class ListedFile:
    """One file of the manifest: its table, path, SHA-256, and partition (index, count; count
    None for a single-file table)."""

    table: str
    file: str
    sha256: str
    index: int
    partitions: int | None


def _count_in(values: pl.Series, reference: pl.DataFrame) -> int:
    """How many of ``values`` appear in the one-column frame ``reference`` (a hash join)."""
    return pl.DataFrame({"v": values}).join(reference, on="v", how="semi").height


def _raw_hits(path: Path, column: str, hits: pl.DataFrame) -> int:
    """How many rows of text column ``column`` of file ``path`` hold a raw identifier (``hits``: its
    distinct values that do, :func:`.identifier_search.search`): the column is read only then."""
    values = pl.scan_parquet(path).select(pl.col(column).alias("value")).drop_nulls().collect()
    return values.join(hits.select("value").unique(), on="value", how="semi").height


def _distinct_text(root: Path, files: list[ListedFile], schemas: dict[str, pl.Schema]) -> dict[tuple[str, str], pl.Series]:
    """(file, column) -> distinct non-null values, for every text column (read a column at a time:
    a table is never held whole)."""
    return {(f.file, column): pl.scan_parquet(root / f.file).select(pl.col(column).drop_nulls().unique())
            .collect().to_series()
            for f in files for column, dtype in schemas[f.file].items() if dtype == pl.String}


Mapper = Callable[[Callable[..., Any], list[tuple]], list]


def _map_here(function: Callable[..., Any], items: list[tuple]) -> list:
    return [function(*item) for item in items]


def _checked_columns(schema: pl.Schema, name: str, spec: ExtractSpec) -> list[str]:
    """The columns the row-level checks read: PERSON_ID, the quasi-identifiers and the columns the
    spec says to generalise (never a whole table: an extract's table can be larger than memory)."""
    wanted = {PERSON_ID, *spec.quasi_identifiers, *BIRTH_MONTH_COLUMNS, *DAY_COUNT_COLUMNS.get(name, ()),
              *AGE_AT_EVENT_COLUMNS.get(name, ())}
    wanted |= {commune for (table, commune), _ in COMMUNE_COLUMNS.items() if table == name}
    wanted |= {column for column, dtype in schema.items() if dtype == pl.Date}
    return [column for column in schema.names() if column in wanted]


def _footer_only(texts: list[tuple[str | None, str]], file: str,
                 distinct: dict[tuple[str, str], pl.Series]) -> pl.Series:
    """The footer's texts that are not values of their column (a statistic is one of its column's
    values, already searched; a statistic that is not is searched here)."""
    frame = pl.DataFrame({"column": [c or "" for c, _ in texts], "text": [t for _, t in texts]},
                         schema={"column": pl.String, "text": pl.String})
    values = [pl.DataFrame({"column": [column] * series.len(), "text": series.cast(pl.String)},
                           schema={"column": pl.String, "text": pl.String})
              for (name, column), series in distinct.items() if name == file]
    if values:
        frame = frame.join(pl.concat(values), on=["column", "text"], how="anti")
    return frame.get_column("text").unique()


def _unexpected_types(schema: pl.Schema, name: str, spec: ExtractSpec) -> dict[str, str]:
    """``column -> type`` of the columns whose type is not the one the builder writes (the lake's;
    text for PERSON_ID and the subject number): an identifier stored as a dictionary, a list, bytes
    or a struct escapes the search of text columns, a date stored as text the period check."""
    expected = {PERSON_ID: pl.String}
    if name == COHORT_TABLE:
        expected.update({spec.linkage.subject_id: pl.String} if spec.linkage else {})
    elif name in EXTRACT_TABLES:
        expected.update({c.name: polars_type(c.type) for c in EXTRACT_TABLES[name].columns})
    allowed = set(spec.output_columns(name))  # another column is refused as not allowed
    return {column: str(dtype) for column, dtype in schema.items()
            if column in expected and column in allowed and dtype != expected[column]}


def check_unit(directory: str, spec: ExtractSpec, files: list[ListedFile], cohorts: list[pl.Series],
               raw_ids: RawIds) -> list[dict]:
    """The checks of some files (one partition number of every table), where they are: on a Dask
    worker or on this machine. Returns small results per file (counts, column names, and the
    distinct persons per quasi-identifier combination), never rows. ``cohorts[i]`` are the cohort's
    PERSON_IDs that may appear in ``files[i]`` (those of its partition). Files are read a few
    columns at a time (:func:`_checked_columns`), one file after the other."""
    root = Path(directory)
    schemas = {f.file: pl.read_parquet_schema(root / f.file) for f in files}
    distinct = _distinct_text(root, files, schemas)
    trusted = {(f.file, PERSON_ID): cohort for f, cohort in zip(files, cohorts, strict=True)}
    texts = {key: views(values, trusted.get(key)) for key, values in distinct.items()}
    names = sorted({column for schema in schemas.values() for column in schema})
    texts[_NAMES] = views(pl.Series(names, dtype=pl.String))  # an identifier may hide in a column name too
    for f in files:  # and in the text of the files' footers (metadata; statistics other than the values)
        texts[(f.file, _FOOTER)] = views(_footer_only(footer_texts(root / f.file), f.file, distinct))
    found = search(texts, raw_ids)
    no_hits = pl.DataFrame(schema={"value": pl.String, "kind": pl.String})
    results = []
    for item, cohort in zip(files, cohorts, strict=True):
        path, schema = root / item.file, pl.Schema(schemas[item.file])
        df = pl.read_parquet(path, columns=_checked_columns(schema, item.table, spec))
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        in_names = found.get(_NAMES, no_hits).filter(pl.col("value").is_in(schema.names()))
        in_footer = found.get((item.file, _FOOTER), no_hits)
        result: dict = {"table": item.table, "file": item.file, "columns": schema.names(), "rows": rows,
                        "hash_ok": sha256_file(path) == item.sha256, "raw_hits": {}, "raw_kinds": {},
                        "outside": 0, "misplaced": 0, "finer": {}, "k": None,
                        "raw_names": in_names["value"].n_unique(), "name_kinds": in_names["kind"].to_list(),
                        "types": _unexpected_types(schema, item.table, spec), "footer": footer_faults(path),
                        "footer_hits": in_footer["value"].n_unique(), "footer_kinds": in_footer["kind"].to_list()}
        for column, dtype in schema.items():
            hits = found.get((item.file, column))
            if dtype == pl.String and hits is not None:
                result["raw_hits"][column] = _raw_hits(path, column, hits)
                result["raw_kinds"][column] = hits["kind"].to_list()
        if PERSON_ID in df.columns:
            persons = distinct.get((item.file, PERSON_ID))
            if persons is None:
                persons = df[PERSON_ID].drop_nulls().unique()
            cohort_frame = pl.DataFrame({"v": cohort.cast(pl.String).unique()})
            result["outside"] = persons.len() - _count_in(persons, cohort_frame) + df[PERSON_ID].null_count()
            # with one partition every row is in partition 0 (bucket(1) is 0): nothing to look at
            if item.partitions not in (None, 1) and df.schema[PERSON_ID] == pl.String:
                result["misplaced"] = df.filter(bucket(item.partitions) != item.index).height
        result["finer"] = _finer_than_spec(df, item.table, spec, rows)
        result["out_of_period"] = _out_of_period(df, item.table, spec)
        result["k"] = _persons_per_combination(df, spec)
        results.append(result)
        del df
    return results


def check_extract(directory: Path, spec: ExtractSpec, cohort: pl.Series, raw_ids: RawIds,
                  mapper: Mapper = _map_here) -> ConformityReport:
    """Check the extract in ``directory`` against ``spec``, the cohort's PERSON_IDs and the lake's
    raw identifier values. Never raises for a non-conformity: the report says what is wrong.

    ``raw_ids``: the lake's raw identifiers, or a function that, given the extract's distinct text
    values and tokens, returns the raw identifiers of the lake among them (same result, less work).

    The files are checked by partition number (:func:`check_unit`: partition ``i`` of every table
    together, single-file tables with partition 0), through ``mapper`` (``backend.map``: one task
    per partition on Dask); this function only adds up their small results. Sums are exact
    because a person's rows are all in one partition number (a row in the wrong partition is
    itself a refusal)."""
    report = ConformityReport()
    directory = Path(directory)
    files = _check_files(directory, spec, report)
    present = {f.table for f in files}
    for name in spec.output_tables():
        if name not in present:
            report.refuse(f"table {name} is missing from the extract")
    units: dict[int, list[ListedFile]] = {}
    for item in files:
        units.setdefault(item.index if item.partitions else 0, []).append(item)
    cohort = cohort.cast(pl.String)
    by_partition: dict[tuple[int, int], pl.Series] = {}
    for item in files:
        if item.partitions and (item.partitions, item.index) not in by_partition:
            frame = pl.DataFrame({PERSON_ID: cohort})
            by_partition.update({(item.partitions, i): part[PERSON_ID]
                                 for i, part in split(frame, item.partitions).items()})
            by_partition.setdefault((item.partitions, item.index), cohort.clear())
    items = []
    for number in sorted(units):
        unit = units[number]
        cohorts = [by_partition.get((f.partitions, f.index), cohort.clear()) if f.partitions else cohort
                   for f in unit]
        items.append((str(directory), spec, unit, cohorts, raw_ids))
    results = [r for unit_results in mapper(check_unit, items) for r in unit_results]
    for name in sorted({r["table"] for r in results}):
        _add_up(name, [r for r in results if r["table"] == name], spec, report)
    report.min_k = spec.min_k
    if spec.min_k is None and report.k_min is not None and report.k_min < UNCHECKED_K_WARNING:
        report.notes.append(f"k-anonymity {report.k_min}: some persons are alone (or nearly) on "
                            f"their quasi-identifiers; the spec sets no min_k, so this was not "
                            f"checked (set min_k, or generalise more, to refuse such an extract)")
    if spec.min_k is not None and report.k_min is not None and report.k_min < spec.min_k:
        report.refuse(f"k-anonymity {report.k_min} is below the spec's min_k {spec.min_k}")
    return report


def _add_up(name: str, results: list[dict], spec: ExtractSpec, report: ConformityReport) -> None:
    """One table's refusals and k-anonymity from the results of its files."""
    results = sorted(results, key=lambda r: r["file"])
    for r in results:
        if not r["hash_ok"]:
            report.refuse(f"file {r['file']} does not match the SHA-256 recorded in the manifest")
    columns = list(dict.fromkeys(c for r in results for c in r["columns"]))
    allowed = spec.output_columns(name)
    for column in columns:
        if column in RAW_ID_COLUMNS:
            report.refuse(f"{name}.{column} is a raw identifier column")
        elif column not in allowed:
            report.refuse(f"{name}.{column} is not allowed by the spec")
    for r in results:
        for column, dtype in r["types"].items():
            report.refuse(f"{name}.{column} is stored as {dtype[:40]}, not the type the extract builder writes "
                          "(an identifier may hide from the check in another type): rebuild the extract")
        if r["footer"]:
            report.refuse(f"file {r['file']} holds in its Parquet footer {', '.join(r['footer'])}, which the "
                          "extract builder never writes: rebuild the extract")
        if r["footer_hits"]:
            report.refuse(f"the Parquet footer of file {r['file']} holds {r['footer_hits']} raw identifier "
                          f"value(s) of the lake ({_kinds(r['footer_kinds'])})")
    if any(r.get("raw_names") for r in results):  # never the name itself: it is the identifier
        report.refuse(f"a column name of {name} is a raw identifier of the lake (or holds one: "
                      f"{_kinds(k for r in results for k in r['name_kinds'])})")
    for column in columns:
        hits = sum(r["raw_hits"].get(column, 0) for r in results)
        if hits:
            report.refuse(f"{name}.{column} holds {hits} raw identifier value(s) of the lake "
                          f"({_kinds(k for r in results for k in r['raw_kinds'].get(column, []))})")
    outside = sum(r["outside"] for r in results)
    if outside:
        report.refuse(f"{name} holds {outside} person(s) outside the cohort")
    misplaced = sum(r["misplaced"] for r in results)
    if misplaced:
        report.refuse(f"{name} holds {misplaced} row(s) in a partition file other than their PERSON_ID's")
    finer: dict[tuple[str, str], int] = {}
    for r in results:
        for key, count in r["finer"].items():
            finer[key] = finer.get(key, 0) + count
    for (kind, column), count in finer.items():
        if kind == "birth_month":
            report.refuse(f"{name}.{column} is a birth month, but the spec generalises birth dates to the year")
        elif kind == "departement" and count:
            report.refuse(f"{name}.{column}: {count} value(s) finer than a département")
        elif kind == "care_month" and count:
            report.refuse(f"{name}.{column}: {count} date(s) not generalised to the month")
        elif kind == "age_at_event":
            report.refuse(f"{name}.{column} is an age at a dated stay (it tells part of the birth month), but "
                          "the spec generalises birth dates to the year")
        elif kind == "day_count":
            report.refuse(f"{name}.{column} counts days (with the months of care dates, it tells their day), "
                          "but the spec generalises care dates to the month")
    out_of_period: dict[str, int] = {}
    for r in results:
        for column, count in r.get("out_of_period", {}).items():
            out_of_period[column] = out_of_period.get(column, 0) + count
    for column, count in out_of_period.items():
        if count:
            report.refuse(f"{name}.{column}: {count} date(s) outside the project's period "
                          f"{spec.start}..{spec.end}")
    partials = [r["k"] for r in results if r["k"] is not None]
    if partials:
        qis = [c for c in partials[0].columns if c != "n"]
        if len({tuple(p.columns) for p in partials}) > 1:
            report.refuse(f"{name}: its partition files do not have the same columns")
            return
        combined = pl.concat(partials, how="vertical_relaxed").group_by(qis).agg(pl.col("n").sum())
        k = None if combined.is_empty() else int(combined["n"].min())
        report.k_anonymity[name] = {"columns": qis, "k": k}


def _kinds(kinds) -> str:
    """How identifiers were found (:mod:`.identifier_search`), for a reason: ``as written, base64``."""
    return ", ".join(sorted(set(kinds)))


def _finer_than_spec(df: pl.DataFrame, name: str, spec: ExtractSpec, rows: int) -> dict[tuple[str, str], int]:
    """Quasi-identifiers the spec generalises that are not: ``(kind, column) -> rows`` (``df``: the
    table's checked columns, :func:`_checked_columns`; ``rows``: the table's rows)."""
    g = spec.generalise
    found: dict[tuple[str, str], int] = {}
    if g.birth_year:
        for column in BIRTH_MONTH_COLUMNS:
            if column in df.columns:
                found[("birth_month", column)] = rows
        for column in AGE_AT_EVENT_COLUMNS.get(name, ()):
            if column in df.columns:
                found[("age_at_event", column)] = rows
    if g.departement:
        for (table, commune), _ in COMMUNE_COLUMNS.items():
            if table == name and commune in df.columns:
                found[("departement", commune)] = df.filter(
                    pl.col(commune).is_not_null() & ~pl.col(commune).str.contains(DEPARTEMENT)).height
    if g.care_month:
        for column, dtype in df.schema.items():
            if dtype == pl.Date:
                found[("care_month", column)] = df.filter(pl.col(column).dt.day() != 1).height
        for column in DAY_COUNT_COLUMNS.get(name, ()):
            if column in df.columns:
                found[("day_count", column)] = rows
    return found


def _out_of_period(df: pl.DataFrame, name: str, spec: ExtractSpec) -> dict[str, int]:
    """Rows of ``df`` whose period date (:data:`PERIOD_COLUMNS`) is outside the spec's period
    (from the first day of its month when care dates are generalised to the month), or whose
    spell (:data:`~.spec.OPEN_SPELLS`) starts after the period or ends outside it."""
    if name in UNTIL_PERIOD_END_TABLES:  # what happened to the person, up to the period's end
        return {column: df.filter(pl.col(column) > spec.end).height
                for column, dtype in df.schema.items() if dtype == pl.Date}
    first = spec.start.replace(day=1) if spec.generalise.care_month else spec.start
    if name in OPEN_SPELLS:  # open at some point of the period; a later end is written "no end"
        start, end = OPEN_SPELLS[name]
        found = {}
        if df.schema.get(start) == pl.Date:
            found[start] = df.filter(pl.col(start) > spec.end).height
        if df.schema.get(end) == pl.Date:
            ended = pl.col(end).is_not_null() & (pl.col(end) != MISSING_DATE)
            found[end] = df.filter(ended & ~pl.col(end).is_between(first, spec.end)).height
        return found
    column = PERIOD_COLUMNS.get(name)
    if column is None or column not in df.columns or df.schema[column] != pl.Date:
        return {}
    return {column: df.filter(pl.col(column).is_not_null() & ~pl.col(column).is_between(first, spec.end)).height}


def _persons_per_combination(df: pl.DataFrame, spec: ExtractSpec) -> pl.DataFrame | None:
    """Distinct persons per combination of the declared quasi-identifiers in ``df`` (columns: the
    quasi-identifiers and ``n``), or None when the table has no PERSON_ID or no quasi-identifier.

    Persons are counted on a 64-bit hash of the pseudonym (ten times cheaper than on the
    64-character strings); a collision could only merge two persons, so k can come out smaller
    than the truth, never larger: the check errs towards refusing."""
    if PERSON_ID not in df.columns:
        return None
    qis = [c for c in spec.quasi_identifiers if c in df.columns]
    if not qis:
        return None
    person = pl.col(PERSON_ID).hash(seed=0).alias(PERSON_ID)
    # the distinct (combination, person) pairs, then their count per combination: a third cheaper
    # than counting distinct persons inside each group
    return (df.select(*qis, person).unique().group_by(qis)
            .agg(pl.len().cast(pl.Int64).alias("n")))
