"""The conformity check an extract must pass before a project sees it.

Refuses (every reason is collected, none stops the others):

* a file the manifest does not list, or whose SHA-256 differs from the manifest;
* a raw identifier column (BEN_NIR_PSA, NIR_ANO_17, BEN_NIR_ANO, BEN_IDT_ANO), or any column the
  spec does not allow;
* a raw identifier *value* of the lake in any text column (whole value, or any alphanumeric token
  of it: ``"id=ABC123"`` is caught too);
* a PERSON_ID outside the cohort;
* a quasi-identifier the spec says to generalise that is not generalised (birth month present,
  commune that is not a département code, date that is not the first of its month);
* a k-anonymity below the spec's ``min_k``.

It reports the k-anonymity of the declared quasi-identifiers: per table, the smallest number of
distinct persons sharing one combination of their values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..hashing import sha256_file
from .spec import BIRTH_MONTH_COLUMNS, COMMUNE_COLUMNS, PERSON_ID, RAW_ID_COLUMNS, ExtractSpec

MANIFEST = "manifest.json"
#: Département codes: metropolitan 01-95 with Corsica 2A/2B, overseas 971-978, abroad 99, unknown 999.
DEPARTEMENT = r"^(0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-8]|99|999)$"
_TOKEN = r"[0-9A-Za-z]+"
#: Without a ``min_k`` in the spec, a k below this is noted in the report (not refused).
UNCHECKED_K_WARNING = 5


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


def _check_files(directory: Path, spec: ExtractSpec, report: ConformityReport) -> dict[str, Path]:
    """Integrity: manifest present, every file listed with its hash, nothing else. Returns table -> file."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        report.refuse("the extract has no manifest.json")
        return {}
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    listed = {entry["file"]: (name, entry["sha256"]) for name, entry in manifest.get("tables", {}).items()}
    tables: dict[str, Path] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_dir() or rel == MANIFEST:
            continue
        if rel not in listed:
            report.refuse(f"file {rel} is not listed in the manifest")
            continue
        name, expected = listed[rel]
        if sha256_file(path) != expected:
            report.refuse(f"file {rel} does not match the SHA-256 recorded in the manifest")
        if name not in spec.output_tables():
            report.refuse(f"table {name} is not allowed by the spec")
            continue
        tables[name] = path
    for rel in listed:
        if not (directory / rel).is_file():
            report.refuse(f"file {rel} listed in the manifest is missing")
    return tables


def _count_in(values: pl.Series, reference: pl.DataFrame) -> int:
    """How many of ``values`` appear in the one-column frame ``reference`` (a hash join)."""
    return pl.DataFrame({"v": values}).join(reference, on="v", how="semi").height


def _raw_hits(column: pl.Series, distinct: pl.Series, raw_ids: pl.DataFrame) -> int:
    """How many values of a text column are, or contain as a token, a raw identifier (a value equal
    to an identifier counts once as a value and once as its token, as each row is searched both ways).

    ``distinct`` are the column's distinct non-null values: the (slow) token search runs on them
    only, as an extract column of millions of rows has few distinct values (a pseudonym per person,
    a handful of codes)."""
    values = column.drop_nulls()
    if values.is_empty():
        return 0
    tokens = pl.DataFrame({"value": distinct, "token": distinct.str.extract_all(_TOKEN)}).explode("token")
    hits_per_value = pl.concat([
        pl.DataFrame({"value": distinct}).join(raw_ids, left_on="value", right_on="v", how="semi"),
        tokens.join(raw_ids, left_on="token", right_on="v", how="semi").select("value"),
    ]).group_by("value").len()
    if hits_per_value.is_empty():
        return 0
    return int(pl.DataFrame({"value": values}).join(hits_per_value, on="value")["len"].sum())


def _distinct_text(frames: dict[str, pl.DataFrame]) -> dict[tuple[str, str], pl.Series]:
    """(table, column) -> distinct non-null values, for every text column of the extract."""
    return {(name, column): df.lazy().select(pl.col(column).drop_nulls().unique()).collect().to_series()
            for name, df in frames.items() for column, dtype in df.schema.items() if dtype == pl.String}


def _text_candidates(distinct: dict[tuple[str, str], pl.Series]) -> pl.Series:
    """The distinct text values of the extract and their alphanumeric tokens: the only values
    that a raw identifier of the lake could be found as."""
    parts = [pl.Series("v", [], dtype=pl.String)]
    for values in distinct.values():
        values = values.alias("v")
        parts += [values, values.str.extract_all(_TOKEN).explode().drop_nulls().alias("v")]
    return pl.concat(parts).unique()


def check_extract(directory: Path, spec: ExtractSpec, cohort: pl.Series,
                  raw_ids: pl.Series | Callable[[pl.Series], pl.Series]) -> ConformityReport:
    """Check the extract in ``directory`` against ``spec``, the cohort's PERSON_IDs and the lake's
    raw identifier values. Never raises for a non-conformity: the report says what is wrong.

    ``raw_ids``: the lake's raw identifiers, or a function that, given the extract's distinct text
    values and tokens, returns the raw identifiers of the lake among them (same result, less work)."""
    report = ConformityReport()
    tables = _check_files(Path(directory), spec, report)
    for name in spec.output_tables():
        if name not in tables:
            report.refuse(f"table {name} is missing from the extract")
    frames = {name: pl.read_parquet(path) for name, path in sorted(tables.items())}
    distinct = _distinct_text(frames)
    if callable(raw_ids):
        raw_ids = raw_ids(_text_candidates(distinct))
    raw_frame = pl.DataFrame({"v": raw_ids.cast(pl.String).drop_nulls().unique()})
    cohort_frame = pl.DataFrame({"v": cohort.cast(pl.String).unique()})
    for name, df in frames.items():
        allowed = spec.output_columns(name)
        for column in df.columns:
            if column in RAW_ID_COLUMNS:
                report.refuse(f"{name}.{column} is a raw identifier column")
            elif column not in allowed:
                report.refuse(f"{name}.{column} is not allowed by the spec")
        for column, dtype in df.schema.items():
            if dtype == pl.String:
                hits = _raw_hits(df[column], distinct[(name, column)], raw_frame)
                if hits:
                    report.refuse(f"{name}.{column} holds {hits} raw identifier value(s) of the lake")
        if PERSON_ID in df.columns:
            persons = distinct[(name, PERSON_ID)] if (name, PERSON_ID) in distinct \
                else df[PERSON_ID].drop_nulls().unique()
            outside = persons.len() - _count_in(persons, cohort_frame) + df[PERSON_ID].null_count()
            if outside:
                report.refuse(f"{name} holds {outside} person(s) outside the cohort")
        _check_generalised(name, df, spec, report)
        _k_anonymity(name, df, spec, report)
    report.min_k = spec.min_k
    if spec.min_k is None and report.k_min is not None and report.k_min < UNCHECKED_K_WARNING:
        report.notes.append(f"k-anonymity {report.k_min}: some persons are alone (or nearly) on "
                            f"their quasi-identifiers; the spec sets no min_k, so this was not "
                            f"checked (set min_k, or generalise more, to refuse such an extract)")
    if spec.min_k is not None and report.k_min is not None and report.k_min < spec.min_k:
        report.refuse(f"k-anonymity {report.k_min} is below the spec's min_k {spec.min_k}")
    return report


def _check_generalised(name: str, df: pl.DataFrame, spec: ExtractSpec, report: ConformityReport) -> None:
    g = spec.generalise
    if g.birth_year:
        for column in BIRTH_MONTH_COLUMNS:
            if column in df.columns:
                report.refuse(f"{name}.{column} is a birth month, but the spec generalises birth dates to the year")
    if g.departement:
        for (table, commune), _ in COMMUNE_COLUMNS.items():
            if table == name and commune in df.columns:
                bad = df.filter(pl.col(commune).is_not_null()
                                & ~pl.col(commune).str.contains(DEPARTEMENT)).height
                if bad:
                    report.refuse(f"{name}.{commune}: {bad} value(s) finer than a département")
    if g.care_month:
        for column, dtype in df.schema.items():
            if dtype == pl.Date:
                bad = df.filter(pl.col(column).dt.day() != 1).height
                if bad:
                    report.refuse(f"{name}.{column}: {bad} date(s) not generalised to the month")


def _k_anonymity(name: str, df: pl.DataFrame, spec: ExtractSpec, report: ConformityReport) -> None:
    if PERSON_ID not in df.columns:
        return
    qis = [c for c in spec.quasi_identifiers if c in df.columns]
    if not qis:
        return
    if df.is_empty():
        report.k_anonymity[name] = {"columns": qis, "k": None}
        return
    # distinct persons per combination, counted on a 64-bit hash of the pseudonym (ten times
    # cheaper than on the 64-character strings); a collision could only merge two persons, so k
    # can come out smaller than the truth, never larger: the check errs towards refusing
    person = pl.col(PERSON_ID).hash(seed=0).alias(PERSON_ID)
    k = df.select(*qis, person).group_by(qis).agg(pl.col(PERSON_ID).n_unique().alias("n"))["n"].min()
    report.k_anonymity[name] = {"columns": qis, "k": int(k)}
