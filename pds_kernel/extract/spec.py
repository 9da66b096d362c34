"""The extract spec: a project's protocol turned into a strict, validated YAML file.

```yaml
project: diabetes-2024
years: [2022, 2023]                # the years the project may see (consecutive)
period: {from: 2022-03-01, to: 2023-12-31}   # optional: narrows the years
include:                           # every criterion must hold (AND)
  - drug: {atc: [A10]}             # ATC prefixes, ER_PRS_F ⨝ ER_PHA_F ⨝ IR_PHA_R
  - biology: {nabm: [1577]}        # NABM codes of a lab test, ER_PRS_F ⨝ ER_BIO_F
  - procedures: {ccam: [DDAF001]}  # CCAM acts, ER_PRS_F ⨝ ER_CAM_F or a valid stay ⨝ T_MCOaaA
  - hospital_drugs: {ucd: ["9261104"]}  # UCD codes, ER_PRS_F ⨝ ER_UCD_F or a valid stay ⨝ T_MCOaaMED
  - age: {min: 18, max: 85, at: 2022-01-01}
exclude:                           # any criterion excludes (OR)
  - long_term_illness: {icd10: [E10]}
tables:                            # what the project may see; "all" = every column
  IR_BEN_R: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
  ER_PRS_F: [EXE_SOI_DTD, PRS_NAT_REF, PRS_PAI_MNT]
generalise: {birth_date: year, commune: departement, care_date: month}
quasi_identifiers: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
min_k: 5                           # optional: refuse the extract below this k-anonymity
linkage: {file: cohort.csv, source_id: BEN_NIR_PSA, subject_id: SUBJECT}
```

Parsing (:func:`parse_spec`) is pure and names the place of every mistake. What depends on the lake
(tables present, years covered) is checked by :func:`check_against_lake`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from .. import lake as lake_mod
from ..errors import InvalidInput
from ..registry.names import check_project_id
from ..snds.catalogue import ingestible_table, nomenclature_codes, nomenclatures
from ..snds.tables import TABLES, Table
from ..validate import check_mapping
from ..validate import parse_date as _date
from .spec_yaml import load_spec_yaml, read_spec_text

#: The column that carries the project pseudonym of the person in every extract table.
PERSON_ID = "PERSON_ID"
#: The table listing the cohort's persons (and the project's subject number with a linkage file).
COHORT_TABLE = "COHORT"
#: Raw person identifiers of the SNDS: never copied, always re-keyed to PERSON_ID.
RAW_ID_COLUMNS: tuple[str, ...] = ("BEN_NIR_PSA", "NIR_ANO_17", "BEN_NIR_ANO", "BEN_IDT_ANO")
#: Columns holding a commune (generalised to the département).
COMMUNE_COLUMNS: dict[tuple[str, str], str] = {
    ("IR_BEN_R", "BEN_RES_COM"): "BEN_RES_DPT",
    ("T_MCOaaB", "BDI_COD"): "BDI_DEP",
}
#: Birth date finer than the year (dropped when birth_date is generalised to the year).
BIRTH_MONTH_COLUMNS = ("BEN_NAI_MOI",)
#: Ages in years at a dated event (PMSI's age at the stay's entry): with the event's date and the
#: birth year, each tells whether the birthday had passed, that is part of the birth month; not
#: copied when birth dates go to the year.
AGE_AT_EVENT_COLUMNS: dict[str, tuple[str, ...]] = {"T_MCOaaB": ("AGE_ANN",)}
#: Whole numbers that count days: PMSI's stay number ``SEJ_NUM`` counts the days from a reference
#: date to the stay's entry (the exact day); a stay's length ``SEJ_NBJ``, with the months of its
#: entry and of its exit (or of a death, or of the next stay's entry after a transfer), pins the
#: days of a short stay across a month's end (in on a 31st, out on the 1st). Not copied when care
#: dates go to the month.
DAY_COUNT_COLUMNS: dict[str, tuple[str, ...]] = {"T_MCOaaC": ("SEJ_NUM",), "T_MCOaaB": ("SEJ_NBJ",)}
#: Tables whose dates tell what happened to a person (death, last care processed, record updated),
#: not when an event of the period happened: a date after the period's end is not copied.
UNTIL_PERIOD_END_TABLES = ("IR_BEN_R",)
#: Spells (start and end date columns) of tables whose rows are kept when the spell overlaps the
#: period (an ALD open at some point of it): an end after the period's end is written as the SNDS
#: "no end" (:data:`~pds_kernel.snds.tables.MISSING_DATE`), so the project reads "still open at the
#: period's end" and does not learn when, or whether, the spell ended later.
OPEN_SPELLS: dict[str, tuple[str, str]] = {"IR_IMB_R": ("IMB_ALD_DTD", "IMB_ALD_DTF")}
#: Quasi-identifiers used for the k-anonymity report when the spec declares none.
DEFAULT_QUASI_IDENTIFIERS = ("BEN_NAI_ANN", "BEN_SEX_COD", "BEN_RES_DPT", "BEN_RES_COM",
                             "AGE_ANN", "COD_SEX", "BDI_DEP", "BDI_COD", "DCD_DPT_COD")
#: Tables whose rows belong to no person (copied whole, without PERSON_ID).
NON_PERSON_TABLES = ("IR_PHA_R",)

ATC_PREFIX = re.compile(r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$")
ICD10_PREFIX = re.compile(r"^[A-Z]([0-9]([0-9][0-9A-Z+]{0,3})?)?$")
SUBJECT_COLUMN = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")
DIAGNOSIS_PLACES = ("principal", "related", "secondary")
LINKAGE_SOURCES = ("BEN_NIR_PSA", "BEN_IDT_ANO", "BEN_NIR_ANO")
NABM_CODE = re.compile(r"^[0-9]{1,4}$")
CCAM_CODE = re.compile(r"^[A-Z]{4}[0-9]{3}$")
UCD_CODE = re.compile(r"^([0-9]{7}|[0-9]{13})$")
#: The nomenclatures of the catalogue a CCAM act or a UCD code of a spec must be found in.
CCAM_NOMENCLATURES = ("IR_CCAM_V63", "IR_CCAM_V54")
UCD_NOMENCLATURES = ("NU_UCD_R", "IR_UCD_V")
CRITERIA = ("drug", "biology", "procedures", "hospital_drugs", "diagnosis", "long_term_illness", "age",
            "sex", "care")
#: Catalogue tables an extract reads and may copy besides the profile's: the details of DCIR claims
#: (acts, hospital drugs) and of PMSI stays (acts, expensive drugs).
CATALOGUE_TABLES = ("ER_CAM_F", "ER_UCD_F", "T_MCOaaA", "T_MCOaaMED")
#: Every table an extract knows, in the order of its files and checks.
EXTRACT_TABLES: dict[str, Table] = {**TABLES, **{name: ingestible_table(name) for name in CATALOGUE_TABLES}}


@dataclass(frozen=True)
class Criterion:
    """One inclusion or exclusion criterion; only the fields of its ``kind`` are set."""

    kind: str
    #: ATC or ICD-10 prefixes; NABM codes (exact, without leading zeros); CCAM codes (exact); UCD
    #: codes (exact, as :func:`ucd_key`)
    codes: tuple[str, ...] = ()
    where: tuple[str, ...] = ()  #: diagnosis places: principal, related, secondary
    min_age: int | None = None
    max_age: int | None = None
    at: date | None = None  #: date at which the age is computed
    sexes: tuple[int, ...] = ()
    start: date | None = None  #: care date range
    end: date | None = None

    def tables(self) -> tuple[str, ...]:
        """Lake tables this criterion reads."""
        return {
            "drug": ("ER_PRS_F", "ER_PHA_F", "IR_PHA_R"),
            "biology": ("ER_PRS_F", "ER_BIO_F"),
            "procedures": ("ER_PRS_F", "ER_CAM_F", "T_MCOaaB", "T_MCOaaC", "T_MCOaaA"),
            "hospital_drugs": ("ER_PRS_F", "ER_UCD_F", "T_MCOaaB", "T_MCOaaC", "T_MCOaaMED"),
            "diagnosis": ("T_MCOaaB", "T_MCOaaC") + (("T_MCOaaD",) if "secondary" in self.where else ()),
            "long_term_illness": ("IR_IMB_R",),
            "age": ("IR_BEN_R",),
            "sex": ("IR_BEN_R",),
            "care": ("ER_PRS_F",),
        }[self.kind]


@dataclass(frozen=True)
class Linkage:
    file: Path
    source_id: str
    subject_id: str


@dataclass(frozen=True)
class Generalise:
    birth_year: bool = False  #: birth date → year (the birth month and ages at a stay are not copied)
    departement: bool = False  #: commune → département
    care_month: bool = False  #: every date → first day of its month (day counts are not copied)

    @property
    def any(self) -> bool:
        return self.birth_year or self.departement or self.care_month


@dataclass(frozen=True)
class ExtractSpec:
    project: str
    years: tuple[int, ...]
    start: date  #: first day the project may see
    end: date  #: last day the project may see
    include: tuple[Criterion, ...]
    exclude: tuple[Criterion, ...]
    #: requested columns per table, as written in the spec (lake column names), profile order
    tables: Mapping[str, tuple[str, ...]]
    generalise: Generalise = field(default_factory=Generalise)
    quasi_identifiers: tuple[str, ...] = DEFAULT_QUASI_IDENTIFIERS
    min_k: int | None = None
    linkage: Linkage | None = None
    text: str = ""  #: the source text, hashed into the manifest

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def needed_tables(self) -> tuple[str, ...]:
        """Every lake table the build reads (criteria, outputs and the tables they hang from)."""
        needed: set[str] = set(self.tables)
        for criterion in self.include + self.exclude:
            needed.update(criterion.tables())
        if needed & {"ER_PHA_F", "ER_BIO_F", "ER_CAM_F", "ER_UCD_F"}:
            needed.add("ER_PRS_F")
        if needed & {"T_MCOaaB", "T_MCOaaC", "T_MCOaaD", "T_MCOaaA", "T_MCOaaMED"}:
            needed.update({"T_MCOaaB", "T_MCOaaC"})
        if "KI_CCI_R" in needed or (self.linkage and self.linkage.source_id != "BEN_NIR_PSA"):
            needed.add("IR_BEN_R")
        return tuple(t for t in EXTRACT_TABLES if t in needed)

    def output_columns(self, table: str) -> tuple[str, ...]:
        """Columns of ``table`` in the extract: PERSON_ID, then the allowed requested columns."""
        if table == COHORT_TABLE:
            return (PERSON_ID,) + ((self.linkage.subject_id,) if self.linkage else ())
        requested = self.tables[table]
        keep = [c for c in requested if c not in RAW_ID_COLUMNS and self._generalised_away(table, c) is None]
        prefix = () if table in NON_PERSON_TABLES else (PERSON_ID,)
        return prefix + tuple(keep)

    def _generalised_away(self, table: str, column: str) -> str | None:
        """Why ``column`` of ``table`` is not copied under the spec's generalisation (None: copied)."""
        g = self.generalise
        if g.birth_year and column in BIRTH_MONTH_COLUMNS:
            return "a birth month, and birth dates go to the year"
        if g.birth_year and column in AGE_AT_EVENT_COLUMNS.get(table, ()):
            return ("an age at a dated stay, which tells whether the birthday had passed (part of the birth "
                    "month), and birth dates go to the year")
        if g.care_month and column in DAY_COUNT_COLUMNS.get(table, ()):
            return ("a count of days, which with the months of care dates gives their day, and care dates go "
                    "to the month (a spec without care_date: month copies it)")
        return None

    def withheld_columns(self) -> list[tuple[str, str, str]]:
        """``(table, column, why)`` of each requested column the generalisation keeps out of the
        extract (asking for one is no error: ``pds extract validate`` and ``build`` say so)."""
        return [(table, column, why) for table, columns in self.tables.items() for column in columns
                if column not in RAW_ID_COLUMNS and (why := self._generalised_away(table, column))]

    def output_tables(self) -> tuple[str, ...]:
        return tuple(self.tables) + (COHORT_TABLE,)


def _list(where: str, value: Any) -> list:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{where}: expected a non-empty list")
    return value


def _criteria(origin: str, data: Mapping, key: str) -> list:
    """The criteria listed under ``key`` (absent or empty: none); a list, never another type."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{origin}: {key}: expected a list of criteria, got {type(value).__name__}")
    return value


def _int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{where}: expected an integer between {low} and {high}, got {value!r}")
    return value


def _codes(where: str, value: Any, pattern: re.Pattern, what: str) -> tuple[str, ...]:
    codes = []
    for i, code in enumerate(_list(where, value)):
        if not isinstance(code, str) or not pattern.fullmatch(code):
            raise InvalidInput(f"{where}[{i}]: {code!r} is not {what}")
        codes.append(code)
    return tuple(dict.fromkeys(codes))


_ATC_WHAT = "an ATC code prefix (e.g. A, A10, A10B, A10BA02)"
_ICD_WHAT = "an ICD-10 code prefix (e.g. I, I2, I21, I210)"
_NABM_WHAT = "a NABM code of a laboratory test (1 to 4 digits, e.g. 1577 or \"0552\")"


def _nabm_codes(where: str, value: Any) -> tuple[str, ...]:
    """NABM codes as written in ER_BIO_F's integer ``BIO_PRS_IDE``: digits, leading zeros dropped."""
    codes = []
    for i, code in enumerate(_list(where, value)):
        text = str(code) if isinstance(code, int) and not isinstance(code, bool) else code
        if not isinstance(text, str) or not NABM_CODE.fullmatch(text):
            raise InvalidInput(f"{where}[{i}]: {code!r} is not {_NABM_WHAT}")
        codes.append(str(int(text)))
    return tuple(dict.fromkeys(codes))


_CCAM_WHAT = "a CCAM act code (4 letters and 3 digits, e.g. DEQP003)"
_UCD_WHAT = "a UCD code (7 or 13 digits, as text, e.g. \"9261104\" or \"0000009261104\")"


def ucd_key(code: str) -> str:
    """The form in which UCD codes are compared: a 13-digit code made of six zeros and a 7-digit
    code (``0000009261104``, as NU_UCD_R and most SNDS tables write it) is that 7-digit code;
    any other code is itself. The cohort step compares the tables' values in this form too."""
    return code[6:] if len(code) == 13 and code.startswith("000000") else code


@cache
def _known_codes(names: tuple[str, ...], ucd: bool) -> frozenset[str] | None:
    """Codes of the catalogue nomenclatures ``names`` that are shipped (None when none is)."""
    shipped = [n for n in names if n in nomenclatures()]
    if not shipped:
        return None
    return frozenset(ucd_key(c) if ucd else c for n in shipped for c in nomenclature_codes(n))


def _catalogued_codes(where: str, value: Any, pattern: re.Pattern, what: str,
                      names: tuple[str, ...], ucd: bool = False) -> tuple[str, ...]:
    """Exact codes: the format first, then membership of the catalogue's nomenclatures."""
    known = _known_codes(names, ucd)
    codes = []
    for i, code in enumerate(_list(where, value)):
        if not isinstance(code, str) or not pattern.fullmatch(code):  # fullmatch: no "DEQP003\n"
            raise InvalidInput(f"{where}[{i}]: {code!r} is not {what}")
        key = ucd_key(code) if ucd else code
        if known is not None and key not in known:
            raise InvalidInput(f"{where}[{i}]: {code!r} is in no nomenclature of the SNDS catalogue "
                               f"({' or '.join(names)}); check the code (see pds snds tables)")
        codes.append(key)
    return tuple(dict.fromkeys(codes))


def _criterion(where: str, raw: Any) -> Criterion:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise InvalidInput(f"{where}: expected one criterion, e.g. {{drug: {{atc: [A10]}}}} "
                           f"(one of {', '.join(CRITERIA)})")
    (kind, body), = raw.items()
    where = f"{where}.{kind}"
    if kind == "drug":
        body = check_mapping(where, body, ("atc",), ("atc",))
        return Criterion("drug", codes=_codes(f"{where}.atc", body["atc"], ATC_PREFIX, _ATC_WHAT))
    if kind == "biology":
        body = check_mapping(where, body, ("nabm",), ("nabm",))
        return Criterion("biology", codes=_nabm_codes(f"{where}.nabm", body["nabm"]))
    if kind == "procedures":
        body = check_mapping(where, body, ("ccam",), ("ccam",))
        return Criterion("procedures", codes=_catalogued_codes(f"{where}.ccam", body["ccam"], CCAM_CODE,
                                                               _CCAM_WHAT, CCAM_NOMENCLATURES))
    if kind == "hospital_drugs":
        body = check_mapping(where, body, ("ucd",), ("ucd",))
        return Criterion("hospital_drugs", codes=_catalogued_codes(f"{where}.ucd", body["ucd"], UCD_CODE,
                                                                   _UCD_WHAT, UCD_NOMENCLATURES, ucd=True))
    if kind == "diagnosis":
        body = check_mapping(where, body, ("icd10", "where"), ("icd10",))
        places = tuple(_list(f"{where}.where", body.get("where", list(DIAGNOSIS_PLACES))))
        for i, place in enumerate(places):
            if place not in DIAGNOSIS_PLACES:
                raise InvalidInput(f"{where}.where[{i}]: {place!r} is not one of {', '.join(DIAGNOSIS_PLACES)}")
        return Criterion("diagnosis", codes=_codes(f"{where}.icd10", body["icd10"], ICD10_PREFIX, _ICD_WHAT),
                         where=tuple(p for p in DIAGNOSIS_PLACES if p in places))
    if kind == "long_term_illness":
        body = check_mapping(where, body, ("icd10",), ("icd10",))
        return Criterion("long_term_illness", codes=_codes(f"{where}.icd10", body["icd10"], ICD10_PREFIX, _ICD_WHAT))
    if kind == "age":
        body = check_mapping(where, body, ("min", "max", "at"))
        low = _int(f"{where}.min", body.get("min", 0), 0, 130)
        high = _int(f"{where}.max", body.get("max", 130), 0, 130)
        if high < low:
            raise InvalidInput(f"{where}: max ({high}) is below min ({low})")
        at = _date(f"{where}.at", body["at"]) if "at" in body else None
        return Criterion("age", min_age=low, max_age=high, at=at)
    if kind == "sex":
        values = _list(where, body)
        sexes = []
        for i, value in enumerate(values):
            if value not in (1, 2):
                raise InvalidInput(f"{where}[{i}]: {value!r} is not a sex code (1 = male, 2 = female)")
            sexes.append(value)
        return Criterion("sex", sexes=tuple(sorted(set(sexes))))
    if kind == "care":
        body = check_mapping(where, body, ("from", "to"), ("from", "to"))
        start, end = _date(f"{where}.from", body["from"]), _date(f"{where}.to", body["to"])
        if end < start:
            raise InvalidInput(f"{where}: 'to' ({end}) is before 'from' ({start})")
        return Criterion("care", start=start, end=end)
    raise InvalidInput(f"{where}: unknown criterion {kind!r} (one of {', '.join(CRITERIA)})")


def _tables(where: str, raw: Any) -> dict[str, tuple[str, ...]]:
    raw = check_mapping(where, raw, tuple(EXTRACT_TABLES))
    if not raw:
        raise InvalidInput(f"{where}: list at least one table")
    result: dict[str, tuple[str, ...]] = {}
    for name in EXTRACT_TABLES:  # profile order, whatever the file's order
        if name not in raw:
            continue
        profile = EXTRACT_TABLES[name]
        value = raw[name]
        if value == "all":
            result[name] = profile.column_names
            continue
        columns = _list(f"{where}.{name}", value)
        for i, column in enumerate(columns):
            if column not in profile.column_names:
                raise InvalidInput(f"{where}.{name}[{i}]: unknown column {column!r} of {name}")
        result[name] = tuple(c for c in profile.column_names if c in columns)
    return result


def parse_spec(text: str, origin: str = "spec", base_dir: Path | None = None) -> ExtractSpec:
    """Parse and validate a spec's YAML text. ``base_dir`` resolves a relative linkage file."""
    data = load_spec_yaml(text, origin)
    data = check_mapping(origin, data or {}, ("project", "years", "period", "include", "exclude", "tables",
                                        "generalise", "quasi_identifiers", "min_k", "linkage"),
                    ("project", "years", "tables"))
    project = check_project_id(data["project"])
    years = [_int(f"{origin}: years[{i}]", y, 1900, 2200) for i, y in enumerate(_list(f"{origin}: years", data["years"]))]
    years = sorted(set(years))
    if years != list(range(years[0], years[-1] + 1)):
        raise InvalidInput(f"{origin}: years must be consecutive, got {years}")
    start, end = date(years[0], 1, 1), date(years[-1], 12, 31)
    if "period" in data:
        period = check_mapping(f"{origin}: period", data["period"], ("from", "to"))
        p_start = _date(f"{origin}: period.from", period.get("from", start))
        p_end = _date(f"{origin}: period.to", period.get("to", end))
        if not start <= p_start <= p_end <= end:
            raise InvalidInput(f"{origin}: period {p_start}..{p_end} must lie within the years {start}..{end}")
        start, end = p_start, p_end
    include = tuple(_criterion(f"{origin}: include[{i}]", c) for i, c in enumerate(_criteria(origin, data, "include")))
    exclude = tuple(_criterion(f"{origin}: exclude[{i}]", c) for i, c in enumerate(_criteria(origin, data, "exclude")))
    for i, c in enumerate(include + exclude):
        if c.kind == "care" and not (start <= c.start and c.end <= end):
            part = f"include[{i}]" if i < len(include) else f"exclude[{i - len(include)}]"
            raise InvalidInput(f"{origin}: {part}.care: {c.start}..{c.end} is outside the project's "
                               f"period {start}..{end}")
    if isinstance(data["tables"], Mapping):
        for name in data["tables"]:
            if name not in EXTRACT_TABLES:
                raise InvalidInput(f"{origin}: tables: unknown table {name!r} "
                                   f"(known: {', '.join(EXTRACT_TABLES)})")
    tables = _tables(f"{origin}: tables", data["tables"])

    gen_raw = check_mapping(f"{origin}: generalise", data.get("generalise") or {}, ("birth_date", "commune", "care_date"))
    for key, allowed in (("birth_date", "year"), ("commune", "departement"), ("care_date", "month")):
        if key in gen_raw and gen_raw[key] != allowed:
            raise InvalidInput(f"{origin}: generalise.{key}: only {allowed!r} is supported, got {gen_raw[key]!r}")
    generalise = Generalise(birth_year="birth_date" in gen_raw, departement="commune" in gen_raw,
                            care_month="care_date" in gen_raw)

    known_columns = {c for t in EXTRACT_TABLES.values() for c in t.column_names}
    if "quasi_identifiers" in data:
        qis = tuple(_list(f"{origin}: quasi_identifiers", data["quasi_identifiers"]))
        for i, qi in enumerate(qis):
            if not isinstance(qi, str) or qi not in known_columns or qi in RAW_ID_COLUMNS:
                raise InvalidInput(f"{origin}: quasi_identifiers[{i}]: {qi!r} is not a (non-identifier) column of the lake")
    else:
        qis = DEFAULT_QUASI_IDENTIFIERS
    min_k = _int(f"{origin}: min_k", data["min_k"], 1, 1_000_000) if "min_k" in data else None

    linkage = None
    if "linkage" in data:
        raw = check_mapping(f"{origin}: linkage", data["linkage"], ("file", "source_id", "subject_id"),
                       ("file", "source_id", "subject_id"))
        for name in ("file", "source_id", "subject_id"):
            if not isinstance(raw[name], str) or not raw[name]:
                raise InvalidInput(f"{origin}: linkage.{name}: expected text, got {type(raw[name]).__name__}")
        if raw["source_id"] not in LINKAGE_SOURCES:
            raise InvalidInput(f"{origin}: linkage.source_id: {raw['source_id']!r} is not one of "
                               f"{', '.join(LINKAGE_SOURCES)}")
        subject = str(raw["subject_id"])
        if not SUBJECT_COLUMN.fullmatch(subject) or subject in known_columns or subject == PERSON_ID:
            raise InvalidInput(f"{origin}: linkage.subject_id: {subject!r} must be an upper-case name "
                               "that is not already a column of the lake")
        linkage = Linkage(file=_linkage_file(origin, raw["file"], base_dir), source_id=raw["source_id"],
                          subject_id=subject)
    if not include and linkage is None:
        raise InvalidInput(f"{origin}: include: give at least one inclusion criterion (or a linkage file)")
    return ExtractSpec(project=project, years=tuple(years), start=start, end=end, include=include,
                       exclude=exclude, tables=tables, generalise=generalise, quasi_identifiers=qis,
                       min_k=min_k, linkage=linkage, text=text)


#: The longest linkage file name a spec may give (a name is a path relative to the spec).
_MAX_FILE_NAME = 255


def _linkage_file(origin: str, name: str, base_dir: Path | None) -> Path:
    """The linkage file ``name``: relative to the spec, inside its directory once links are resolved.

    The file is read as CSV and its header named in errors, so a spec must not point the build at
    the key store, the trusted third party's files or another project's list (by an absolute path,
    by '..', or through a symbolic link next to the spec)."""
    if len(name) > _MAX_FILE_NAME or not name.isprintable():
        raise InvalidInput(f"{origin}: linkage.file: the name must be printable text of at most {_MAX_FILE_NAME} "
                           "characters (no control character such as NUL or a line break): rename the file")
    base = (base_dir or Path.cwd()).resolve()
    path = Path(name)
    resolved = (base / path).resolve()
    if path.is_absolute() or ".." in path.parts or not resolved.is_relative_to(base) or resolved == base:
        raise InvalidInput(f"{origin}: linkage.file: {name[:120]!r} must be a file inside the spec's directory "
                           f"({base}), named relative to it (no absolute path, no '..', no link leading out): "
                           "put the linkage file next to the spec")
    return resolved


def load_spec(path: Path) -> ExtractSpec:
    """Read and validate the spec file at ``path`` (a regular UTF-8 file of bounded size)."""
    path = Path(path)
    return parse_spec(read_spec_text(path), str(path), base_dir=path.resolve().parent)


def lake_months(lake: Path) -> list[str]:
    """Every YYYYMM that has a monthly partition of any table in the lake."""
    months = set()
    for name, table in TABLES.items():
        if table.split != "monthly":
            continue
        for file in lake_mod.table_files(lake, name):
            part = file.parent.name
            if part.startswith("month="):
                months.add(part[len("month="):])
    return sorted(months)


def check_against_lake(spec: ExtractSpec, lake: Path) -> None:
    """What the spec needs from the lake is there: its tables, and data in its years."""
    missing = [t for t in spec.needed_tables() if not lake_mod.has_table(lake, t)]
    if missing:
        raise InvalidInput(f"the spec needs table(s) {', '.join(missing)}, which the lake at {lake} does not hold")
    months = lake_months(lake)
    if not months:
        raise InvalidInput(f"the lake at {lake} holds no monthly data")
    first, last = months[0], months[-1]
    covered = {int(m[:4]) for m in months}
    outside = [y for y in spec.years if y not in covered]
    if outside:
        raise InvalidInput(f"years {', '.join(map(str, outside))} are outside the lake's data "
                           f"({first[:4]}-{first[4:]} to {last[:4]}-{last[4:]})")
    lake_start = date(int(first[:4]), int(first[4:]), 1)
    lake_end_month = date(int(last[:4]), int(last[4:]), 1)
    if spec.end < lake_start or spec.start > _month_end(lake_end_month):
        raise InvalidInput(f"period {spec.start}..{spec.end} is outside the lake's data "
                           f"({first[:4]}-{first[4:]} to {last[:4]}-{last[4:]})")


def _month_end(first_day: date) -> date:
    nxt = date(first_day.year + (first_day.month == 12), first_day.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)
