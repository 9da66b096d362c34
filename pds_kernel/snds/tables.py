"""The delivery profile: which SNDS tables and columns PDS Workspace delivers and loads, and how.

This is the one contract shared by the synthetic generator (which writes these files), the
ingestion (which parses and checks them) and the extract builder (which reads the lake).

For each table: the columns we carry (a realistic subset of the published schema, see
:mod:`pds_kernel.snds.schema`), the lake type of each column, its text format in the CSV files, the
checks applied at load time, the primary key, and how files are split (per month or one snapshot).

Decisions taken here (also in ``docs/data-intake.md``):

* ``ETA_NUM`` is text in every table (FINESS numbers of Corsica contain ``2A``/``2B``), ``RSA_NUM``
  an integer in every table: the published schema disagrees between tables, the lake does not.
* PMSI linkage return codes (``*_RET``) are kept as text codes (``"0"`` = linkage OK).
* Dates are ``date`` in the lake. DCIR writes them as SAS datetimes (``01JAN2023:00:00:00``), PMSI
  stay dates as ``%d%m%Y`` text. A missing date is written ``01JAN1600:00:00:00`` (or ``01011600``)
  and loaded as the date 1600-01-01, never as null, exactly as in the SNDS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from .periods import Years, plausible_years
from .schema import source_table

LakeType = Literal["str", "int", "float", "date", "year", "month", "bool"]
TextFormat = Literal["plain", "sas_datetime", "dmy"]

#: The date the SNDS writes for "missing".
MISSING_DATE = date(1600, 1, 1)

ICD10 = r"^[A-Z][0-9]{2}[0-9A-Z+]{0,3}$"
ATC7 = r"^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$"
ATC3 = r"^[A-Z][0-9]{2}$"
#: Pattern of a year-month (``YYYYMM`` text: the catalogue's ``yearmonth`` columns).
YEARMONTH = r"^[0-9]{4}(0[1-9]|1[0-2])$"
#: Names of label columns (see :attr:`Column.free_text`).
_FREE_TEXT_NAME = r"(^|_)(LIB|NOM)(_|$)|_L[0-9]{2}$"


@dataclass(frozen=True)
class Column:
    name: str
    type: LakeType
    fmt: TextFormat = "plain"
    nullable: bool = True
    values: frozenset | None = None  #: closed value set (a small nomenclature), if any
    pattern: str | None = None  #: regular expression a non-empty value must match
    references: tuple[str, str] | None = None  #: (table, column) the value must exist in
    #: (nomenclature, code column) of the catalogue the value should exist in; reported in the
    #: quality report (counts of unknown codes), never a reason to quarantine
    nomenclature: tuple[str, str] | None = None
    #: the published maximum length of a text value (characters), when the catalogue gives one
    length: int | None = None

    @property
    def free_text(self) -> bool:
        """A label or a name (``PHA_MED_NOM``, ``ACT_LIB_IND``, ``PHA_ATC_L07``), not a code: text
        in which a double quote or a blank around the value may be part of what was written. Every
        other text column holds codes or identifiers (the SNDS names its labels ``..._LIB``,
        ``..._NOM`` and ``..._Lnn``)."""
        return (self.type == "str" and self.values is None and self.pattern is None
                and self.references is None and self.nomenclature is None
                and re.search(_FREE_TEXT_NAME, self.name) is not None)

    def check_pattern(self, value: str) -> bool:
        return self.pattern is None or re.match(self.pattern, value) is not None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    #: "monthly": one file per month (``NAME_YYYYMM.csv``); "yearly": one file per year (the PMSI
    #: ``T_MCO23B.csv`` for ``T_MCOaaB``); "snapshot": one file (``NAME.csv``) that replaces the
    #: previous version of the table.
    split: Literal["monthly", "yearly", "snapshot"] = "monthly"
    #: the date column whose month decides a monthly file (the DCIR flux date, the date of death,
    #: the exit of a PMSI stay), or a year-month column (:data:`YEARMONTH`: OPEN_DAMIR's flux
    #: month): the ingestion quarantines a row whose value falls outside its file's month (or
    #: year, for a yearly file)
    month_from: str | None = None
    #: the year and month columns that decide the period of a file, as ``month_from`` does
    #: (``SOR_ANN``, ``SOR_MOI``: the exit of a PMSI stay)
    year_month_from: tuple[str, str] | None = None
    #: the identifier columns of a person in this table (pseudonymised in every extract)
    person_keys: tuple[str, ...] = ()
    #: DCIR, PMSI, REFERENTIAL, CAUSES_OF_DEATH for the profile; the SNDS product for the others
    group: str = "DCIR"
    #: declared foreign keys: ((columns), table, (columns)), checked in the quality report
    foreign_keys: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def keys_bound_to_month(self) -> bool:
        """True when the primary key holds the ``month_from`` column: rows of two monthly files can
        never share a key (their months differ), so duplicates are only possible within a file."""
        return self.month_from is not None and self.month_from in self.primary_key

    @property
    def duplicates_only_within_a_file(self) -> bool:
        """True when a loaded file's keys can never repeat a key of another file: a snapshot
        (it replaces the table) or a table whose keys are bound to the file's month."""
        return self.split == "snapshot" or self.keys_bound_to_month

    @property
    def required(self) -> tuple[str, ...]:
        """Columns a delivered file must contain (non-nullable ones, keys included)."""
        return tuple(c.name for c in self.columns if not c.nullable)


def _c(name: str, type: LakeType, fmt: TextFormat = "plain", **kw) -> Column:
    return Column(name, type, fmt, **kw)


def _key(name: str, type: LakeType, fmt: TextFormat = "plain") -> Column:
    return Column(name, type, fmt, nullable=False)


#: The 9 columns that identify a DCIR claim line and join ER_PRS_F to its detail tables.
DCIR_KEYS: tuple[str, ...] = (
    "DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP",
    "FLX_TRT_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF",
)

_DCIR_KEY_COLUMNS = (
    _key("DCT_ORD_NUM", "int"),
    _key("FLX_DIS_DTD", "date", "sas_datetime"),
    _key("FLX_EMT_NUM", "int"),
    _key("FLX_EMT_ORD", "int"),
    _key("FLX_EMT_TYP", "int"),
    _key("FLX_TRT_DTD", "date", "sas_datetime"),
    _key("ORG_CLE_NUM", "str"),
    _key("PRS_ORD_NUM", "int"),
    _key("REM_TYP_AFF", "int"),
)

SEX = frozenset({0, 1, 2, 9})

IR_BEN_R = Table(
    "IR_BEN_R",
    (
        _key("BEN_NIR_PSA", "str"),
        _key("BEN_RNG_GEM", "int"),
        _c("BEN_NIR_ANO", "str"),
        _c("BEN_IDT_ANO", "str"),
        _c("BEN_CDI_NIR", "str", pattern=r"^[0-9]{2}$"),
        _c("BEN_NAI_ANN", "year"),
        _c("BEN_NAI_MOI", "month"),
        _c("BEN_SEX_COD", "int", values=SEX),
        _c("BEN_DCD_DTE", "date", "sas_datetime"),
        _c("BEN_RES_DPT", "str"),
        _c("BEN_RES_COM", "str"),
        _c("ORG_AFF_BEN", "str"),
        _c("BEN_DTE_INS", "date", "sas_datetime"),
        _c("BEN_DTE_MAJ", "date", "sas_datetime"),
        _c("MAX_TRT_DTD", "date", "sas_datetime"),
    ),
    primary_key=("BEN_NIR_PSA", "BEN_RNG_GEM"),
    split="snapshot",
    person_keys=("BEN_NIR_PSA", "BEN_NIR_ANO", "BEN_IDT_ANO"),
    group="REFERENTIAL",
)

ER_PRS_F = Table(
    "ER_PRS_F",
    _DCIR_KEY_COLUMNS
    + (
        _key("BEN_NIR_PSA", "str"),
        _key("BEN_RNG_GEM", "int"),
        _c("BEN_SEX_COD", "int", values=SEX),
        _c("BEN_NAI_ANN", "year"),
        _c("BEN_RES_DPT", "str"),
        _c("EXE_SOI_DTD", "date", "sas_datetime"),
        _c("EXE_SOI_DTF", "date", "sas_datetime"),
        _c("PRS_NAT_REF", "int"),
        _c("PRS_ACT_QTE", "float"),
        _c("PRS_PAI_MNT", "float"),
        _c("BSE_REM_MNT", "float"),
        _c("DPN_QLF", "int"),
        _c("PSE_SPE_COD", "int"),
        _c("PFS_EXE_NUM", "str"),
        _c("ETB_PRE_FIN", "str"),
    ),
    primary_key=DCIR_KEYS,
    month_from="FLX_DIS_DTD",
    person_keys=("BEN_NIR_PSA",),
)

ER_PHA_F = Table(
    "ER_PHA_F",
    _DCIR_KEY_COLUMNS
    + (
        _key("PHA_PRS_C13", "int"),
        _c("PHA_ACT_QSN", "int"),
        _c("PHA_ACT_PRU", "float"),
        _key("PHA_ORD_NUM", "int"),
    ),
    primary_key=DCIR_KEYS + ("PHA_ORD_NUM",),
    month_from="FLX_DIS_DTD",
)

ER_BIO_F = Table(
    "ER_BIO_F",
    _DCIR_KEY_COLUMNS
    + (
        _key("BIO_PRS_IDE", "int"),
        _c("BIO_ACT_QSN", "int"),
        _key("BIO_ORD_NUM", "int"),
    ),
    primary_key=DCIR_KEYS + ("BIO_ORD_NUM",),
    month_from="FLX_DIS_DTD",
)

IR_PHA_R = Table(
    "IR_PHA_R",
    (
        _key("PHA_CIP_C13", "int"),
        _c("PHA_PRS_IDE", "int"),
        _c("PHA_MED_NOM", "str"),
        _c("PHA_ATC_C07", "str", pattern=ATC7),
        _c("PHA_ATC_L07", "str"),
        _c("PHA_ATC_C03", "str", pattern=ATC3),
    ),
    primary_key=("PHA_CIP_C13",),
    split="snapshot",
    group="REFERENTIAL",
)

IR_IMB_R = Table(
    "IR_IMB_R",
    (
        _key("BEN_NIR_PSA", "str"),
        _key("BEN_RNG_GEM", "int"),
        _key("IMB_ALD_NUM", "int"),
        _key("IMB_ALD_DTD", "date", "sas_datetime"),
        _c("IMB_ALD_DTF", "date", "sas_datetime"),
        _c("IMB_ETM_NAT", "int"),
        _key("MED_MTF_COD", "str"),
    ),
    primary_key=("BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD", "MED_MTF_COD"),
    split="snapshot",
    person_keys=("BEN_NIR_PSA",),
    group="REFERENTIAL",
)

T_MCOaaB = Table(
    "T_MCOaaB",
    (
        _key("ETA_NUM", "str"),
        _key("RSA_NUM", "int"),
        _key("DGN_PAL", "str"),
        _c("DGN_REL", "str"),
        _c("GRG_GHM", "str", pattern=r"^[0-9]{2}[A-Z][0-9]{2}[0-9A-Z]$"),
        _c("SEJ_NBJ", "int"),
        _c("AGE_ANN", "int"),
        _c("COD_SEX", "str", values=frozenset({"1", "2"})),
        _c("SOR_ANN", "year"),
        _c("SOR_MOI", "month"),
        _c("ENT_MOD", "str"),
        _c("SOR_MOD", "str"),
        _c("BDI_DEP", "str"),
        _c("BDI_COD", "str"),
    ),
    primary_key=("ETA_NUM", "RSA_NUM"),
    year_month_from=("SOR_ANN", "SOR_MOI"),
    group="PMSI",
)

T_MCOaaC = Table(
    "T_MCOaaC",
    (
        _key("ETA_NUM", "str"),
        _key("RSA_NUM", "int"),
        _key("NIR_ANO_17", "str"),
        _c("NIR_RET", "str"),
        _c("NAI_RET", "str"),
        _c("SEX_RET", "str"),
        _c("SEJ_RET", "str"),
        _c("FHO_RET", "str"),
        _c("PMS_RET", "str"),
        _c("DAT_RET", "str"),
        _c("ENT_DAT", "date", "dmy"),
        _c("SOR_DAT", "date", "dmy"),
        _c("EXE_SOI_DTD", "date", "sas_datetime"),
        _c("EXE_SOI_DTF", "date", "sas_datetime"),
        _c("SEJ_NUM", "int"),
    ),
    primary_key=("ETA_NUM", "RSA_NUM"),
    month_from="SOR_DAT",
    person_keys=("NIR_ANO_17",),
    group="PMSI",
)

T_MCOaaD = Table(
    "T_MCOaaD",
    (
        _key("ETA_NUM", "str"),
        _key("RSA_NUM", "int"),
        _key("ASS_DGN", "str"),
        _key("DGN_ASS_NUM", "int"),
    ),
    primary_key=("ETA_NUM", "RSA_NUM", "DGN_ASS_NUM"),
    group="PMSI",
)

KI_CCI_R = Table(
    "KI_CCI_R",
    (
        _key("BEN_IDT_ANO", "str"),
        _c("BEN_NIR_ANO", "str"),
        _key("BEN_DCD_DTE", "date", "sas_datetime"),
        _key("DCD_CIM_COD", "str"),
        _c("BEN_NAI_ANN", "year"),
        _c("BEN_SEX_COD", "int", values=SEX),
        _c("DCD_DPT_COD", "str"),
    ),
    primary_key=("BEN_IDT_ANO",),
    month_from="BEN_DCD_DTE",
    person_keys=("BEN_IDT_ANO", "BEN_NIR_ANO"),
    group="CAUSES_OF_DEATH",
)


def _with_checks() -> dict[str, Table]:
    """Attach the code checks (ICD-10 patterns, referential links) to the columns that need them."""
    from dataclasses import replace

    extra = {
        ("T_MCOaaB", "DGN_PAL"): dict(pattern=ICD10),
        ("T_MCOaaB", "DGN_REL"): dict(pattern=ICD10),
        ("T_MCOaaD", "ASS_DGN"): dict(pattern=ICD10),
        ("IR_IMB_R", "MED_MTF_COD"): dict(pattern=ICD10),
        ("KI_CCI_R", "DCD_CIM_COD"): dict(pattern=ICD10),
        ("ER_PHA_F", "PHA_PRS_C13"): dict(references=("IR_PHA_R", "PHA_CIP_C13")),
        # a FINESS number with its key, as ETA_NUM (the catalogue publishes 8 characters: the
        # number without its key); the other text columns take the catalogue's length
        ("ER_PRS_F", "ETB_PRE_FIN"): dict(length=9),
    }
    tables = {}
    for table in (IR_BEN_R, ER_PRS_F, ER_PHA_F, ER_BIO_F, IR_PHA_R, IR_IMB_R,
                  T_MCOaaB, T_MCOaaC, T_MCOaaD, KI_CCI_R):
        columns = tuple(replace(c, **extra.get((table.name, c.name), {})) for c in table.columns)
        tables[table.name] = replace(table, columns=columns)
    return tables


#: Every table of the profile, by name, in load order (referentials first).
TABLES: dict[str, Table] = _with_checks()


def table(name: str) -> Table:
    """The profile of table ``name``; raises ``KeyError`` for an unknown table."""
    return TABLES[name]


def check_against_published_schema() -> list[str]:
    """Columns of the profile that the published SNDS schema does not know (should be empty)."""
    problems = []
    for t in TABLES.values():
        published = source_table(t.name)
        for c in t.columns:
            if c.name not in published.columns:
                problems.append(f"{t.name}.{c.name}")
    return problems


def polars_type(lake_type: LakeType):
    """The Parquet/polars type of a lake type: the one mapping every reader and writer uses."""
    import polars as pl

    return {
        "str": pl.String,
        "int": pl.Int64,
        "float": pl.Float64,
        "date": pl.Date,
        "year": pl.Int16,
        "month": pl.Int8,
        "bool": pl.Boolean,
    }[lake_type]


def lake_schema(name: str) -> dict:
    """``{column: polars type}`` of table ``name`` in the lake, in profile order."""
    return {c.name: polars_type(c.type) for c in table(name).columns}


def file_name(name: str, month: str | None = None) -> str:
    """Name of a delivered file: ``NAME_YYYYMM.csv`` (monthly tables) or ``NAME.csv`` (snapshots)."""
    t = table(name)
    if t.split == "snapshot":
        return f"{t.name}.csv"
    if month is None or not re.fullmatch(r"[0-9]{6}", month):
        raise ValueError(f"monthly table {name} needs a YYYYMM month, got {month!r}")
    return f"{t.name}_{month}.csv"


_FILE = re.compile(r"^(?P<table>[A-Za-z_]+?)(?:_(?P<month>[0-9]{6}))?\.csv$")


def parse_file_name(file: str, years: Years | None = None) -> tuple[str, str | None]:
    """``(table, month)`` of a delivered file name of the profile; ``ValueError`` when it is not
    one of ours or its year is outside ``years`` (a :class:`.periods.Years`, default
    :func:`.periods.plausible_years`). The ingestion reads names with
    :func:`.file_names.parse_delivery_name` (the catalogue's tables and yearly names too)."""
    m = _FILE.fullmatch(file)  # not match: ``$`` also matches before a final line feed
    if not m or m.group("table") not in TABLES:
        raise ValueError(f"{file!r} is not a delivery file name (expected NAME_YYYYMM.csv or NAME.csv)")
    t = TABLES[m.group("table")]
    month = m.group("month")
    if (t.split == "snapshot") != (month is None):
        raise ValueError(f"{file!r}: table {t.name} is delivered "
                         + ("as one snapshot file NAME.csv" if t.split == "snapshot" else "per month as NAME_YYYYMM.csv"))
    if month is not None:
        if not 1 <= int(month[4:]) <= 12:
            raise ValueError(f"{file!r}: bad month {month}")
        (years or plausible_years()).check(file, month[:4])
    return t.name, month
