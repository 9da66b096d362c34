"""The SNDS catalogue: the 186 published tables and 502 nomenclatures shipped in ``catalogue/``
(see ``catalogue/ATTRIBUTION.md``), and the ingestible :class:`~.tables.Table` of each table.

The 10 tables of the delivery profile (:mod:`.tables`) keep their hand-written definitions (they
carry the project's decisions: ``ETA_NUM`` as text, month checks, person keys); every other
catalogued table is built from its schema by :func:`catalogue_table`:

* lake types from the Table Schema types: ``string`` → text, ``integer`` → 64-bit integer (text
  when longer than 18 digits; ``ETA_NUM`` always text and ``RSA_NUM`` always an integer, as in
  the profile), ``number`` →
  float, ``date`` and ``datetime`` → date (the lake has no datetime: the SNDS's datetimes are
  dates written at midnight, as the profile's ``EXE_SOI_DTD``), ``year`` → year, ``yearmonth`` →
  ``YYYYMM`` text, a date of format ``%m`` → month, ``boolean`` → 0/1; no published date or
  datetime loads as text (``tests/ingest/test_catalogue.py`` scans the catalogue);
* date text formats from the product: PMSI dates are ``%d%m%Y`` (except the dates of care chained
  from the DCIR, ``EXE_SOI_DTD``/``EXE_SOI_DTF``), every other product writes SAS datetimes
  (``01JAN2023:00:00:00``), and so does every ``datetime`` column;
* closed value sets from ``constraints.enum``; primary key columns are required;
* the ``length`` of a text column: a longer value is quarantined (red team 15A);
* the nomenclature of a text or integer column (``MS_CIM_V:CIM_COD``) is recorded: the ingestion
  counts the codes it does not know and the quality report shows them (never a reason to
  quarantine; the dates and amounts the schema links to a list are not compared);
* foreign keys from ``foreignKeys`` (checked in the quality report);
* how the table is delivered (:func:`split_of`): yearly when its name holds a year marker
  (``aa``, ``AAAA``: ``T_MCO23B.csv``), a snapshot for referentials (``_R``) and the products
  that are not monthly, one file per month (``ER_UCD_F_202301.csv``) for DCIR, DCIRS, EGB, DAMIR.
* the month a monthly file holds (DCIR, DCIRS, EGB, DAMIR) is decided by its flux date
  ``FLX_DIS_DTD``, else its flux year-month ``FLX_ANN_MOI`` (OPEN_DAMIR), as for the profile's
  claims tables (:data:`FLUX_COLUMNS`); EB_HMV_F and EB_INB_F publish neither and are not checked.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

from .tables import TABLES, YEARMONTH, Column, LakeType, Table, TextFormat

if TYPE_CHECKING:
    import polars as pl

#: Products delivered one file per month (the others are snapshots, or yearly by name).
MONTHLY_PRODUCTS = ("DCIR", "DCIRS", "EGB", "DAMIR")
#: The columns that say which month a row of a monthly file belongs to, the first published one
#: decides: the flux date (the month the claim was made available, as the profile's ER_PRS_F,
#: ER_PHA_F and ER_BIO_F), else the flux year-month (``YYYYMM`` text, OPEN_DAMIR). A row of another
#: month is quarantined (``wrong_month``) instead of loading into the wrong month's partition (red
#: team 19C: EGB, DCIRS and DAMIR rows of any month loaded). The catalogue copy has no
#: descriptions: a table with neither column (EB_HMV_F, EB_INB_F) has no month check.
FLUX_COLUMNS = ("FLX_DIS_DTD", "FLX_ANN_MOI")
#: Integers longer than this are kept as text (Int64 holds 18 digits).
_MAX_INT_DIGITS = 18
#: Columns whose published type disagrees between tables: one type everywhere, as in the profile
#: (FINESS numbers hold 2A/2B; stay numbers are integers).
_TEXT_COLUMNS = ("ETA_NUM",)
_INT_COLUMNS = ("RSA_NUM",)
#: Dates of care chained from the DCIR into the PMSI linkage tables: SAS datetimes there too, as
#: in the profile's T_MCOaaC.
_SAS_DATES_IN_PMSI = ("EXE_SOI_DTD", "EXE_SOI_DTF")


@dataclass(frozen=True)
class CatalogueEntry:
    """Where a catalogued table's schema is, and its product."""

    name: str
    product: str  #: top folder of the schema (``DCIR``, ``PMSI``, ``BENEFICIAIRE``...)
    family: str  #: sub-folder for PMSI (``PMSI_MCO``...), else the product
    resource: tuple[str, ...]  #: path under ``catalogue/``


def _root() -> Traversable:
    return resources.files("pds_kernel.snds") / "catalogue"


@cache
def entries() -> dict[str, CatalogueEntry]:
    """Every catalogued table by name, sorted by name."""
    found: dict[str, CatalogueEntry] = {}

    def walk(folder: Traversable, parts: tuple[str, ...]) -> None:
        for item in folder.iterdir():
            if item.is_dir():
                walk(item, parts + (item.name,))
            elif item.name.endswith(".json"):
                name = item.name[: -len(".json")]
                found[name] = CatalogueEntry(name, parts[0], parts[-1], ("schemas", *parts, item.name))

    walk(_root() / "schemas", ())
    return dict(sorted(found.items()))


@cache
def schema(name: str) -> dict:
    """The published Table Schema of catalogued table ``name`` (``KeyError`` when unknown)."""
    entry = entries()[name]
    path = _root().joinpath(*entry.resource)
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def nomenclatures() -> dict[str, tuple[str, str]]:
    """Every nomenclature whose code list is shipped, by name: ``(source folder, name)`` (three
    are described without their list: IR_PHA_R, IR_PTF_R, IR_MIR_D; see ATTRIBUTION.md)."""
    found = {}
    for source in (_root() / "nomenclatures").iterdir():
        if source.is_dir():
            names = {item.name for item in source.iterdir()}
            for name in names:
                stem = name[: -len(".json")]
                if name.endswith(".json") and f"{stem}.csv.gz" in names:
                    found[stem] = (source.name, stem)
    return dict(sorted(found.items()))


@cache
def nomenclature_schema(name: str) -> dict:
    source, stem = nomenclatures()[name]
    return json.loads((_root() / "nomenclatures" / source / f"{stem}.json").read_text(encoding="utf-8"))


def code_column(name: str) -> str:
    """The code column of nomenclature ``name`` (role ``code``, else its primary key)."""
    data = nomenclature_schema(name)
    for f in data["fields"]:
        if f.get("role") == "code":
            return f["name"]
    pk = data.get("primaryKey") or [data["fields"][0]["name"]]
    return pk[0] if isinstance(pk, list) else pk


@cache
def nomenclature_codes(name: str, column: str | None = None) -> tuple[str, ...]:
    """The codes of nomenclature ``name`` (column ``column``, default its code column), as text,
    sorted and distinct."""
    return tuple(nomenclature_series(name, column).to_list())


def nomenclature_series(name: str, column: str | None = None) -> pl.Series:
    """The codes of :func:`nomenclature_codes` as a polars series of text, built at each call: the
    intake keeps them so (ICD-10's and the drug codes' ~110,000 codes held 10 MiB as Python
    strings and sets, under 2 MiB as a series). The files are published in UTF-8 or latin-1:
    both are accepted."""
    import polars as pl

    source, stem = nomenclatures()[name]
    raw = gzip.decompress((_root() / "nomenclatures" / source / f"{stem}.csv.gz").read_bytes())
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raw = raw.decode("latin-1").encode("utf-8")
    column = column or code_column(name)
    header = raw[: raw.find(b"\n")].decode("utf-8").rstrip("\r").split(";")
    if column not in (field.strip('"') for field in header):
        return pl.Series(column, [], dtype=pl.String)
    # only the code column is built: a big nomenclature (IR_ORG_V, 60,000 rows and 40 columns)
    # read whole held 35 MiB for the 60,000 codes wanted
    frame = pl.read_csv(raw, separator=";", infer_schema=False, quote_char='"',
                        truncate_ragged_lines=True, columns=[column])
    return frame.get_column(column).drop_nulls().str.strip_chars().unique().sort()


def split_of(name: str, product: str) -> str:
    """How catalogued table ``name`` is delivered: ``yearly``, ``monthly`` or ``snapshot``."""
    if "aa" in name or "AAAA" in name:
        return "yearly"
    if name.endswith("_R") or product not in MONTHLY_PRODUCTS:
        return "snapshot"
    return "monthly"


def _lake_type(field: dict) -> tuple[LakeType, str | None]:
    """Lake type and pattern of a published column."""
    kind, fmt = field["type"], field.get("format", "default")
    length = str(field.get("length") or "").split(",")[0].strip()
    if field["name"] in _TEXT_COLUMNS:
        return "str", None
    if field["name"] in _INT_COLUMNS:
        return "int", None
    if kind == "integer":
        return ("str", r"^-?[0-9]+$") if length.isdigit() and int(length) > _MAX_INT_DIGITS else ("int", None)
    if kind == "number":
        return "float", None
    if kind == "date":
        return ("month", None) if fmt == "%m" else ("date", None)
    if kind == "datetime":  # T_RIPaaC's EXE_SOI_DTD/EXE_SOI_DTF loaded as text before
        return "date", None
    if kind == "year":
        return "year", None
    if kind == "yearmonth":
        return "str", YEARMONTH
    if kind == "boolean":
        return "int", None
    return "str", None


def _text_length(field: dict) -> int | None:
    """The published length of a text column (``"13"``; ``"5,2"`` is a number's), if any."""
    length = str(field.get("length") or "").strip()
    return int(length) if length.isdigit() and int(length) > 0 else None


def _values(field: dict, lake_type: LakeType) -> frozenset | None:
    if field["type"] == "boolean":
        return frozenset({0, 1})
    enum = (field.get("constraints") or {}).get("enum")
    if not enum:
        return None
    if lake_type == "str":
        return frozenset(str(v) for v in enum)
    try:
        return frozenset(int(v) for v in enum) if lake_type in ("int", "year", "month") else None
    except (TypeError, ValueError):
        return None  # a published enum of another type than its column: not enforced


def _nomenclature(field: dict) -> tuple[str, str] | None:
    value = field.get("nomenclature") or "-"
    name, _, column = value.partition(":")
    if name not in nomenclatures():
        return None
    return name, column or code_column(name)


def source_foreign_keys(data: dict) -> tuple:
    keys = []
    for fk in data.get("foreignKeys") or ():
        fields = fk["fields"] if isinstance(fk["fields"], list) else [fk["fields"]]
        ref = fk["reference"]
        ref_fields = ref["fields"] if isinstance(ref["fields"], list) else [ref["fields"]]
        keys.append((tuple(fields), ref["resource"], tuple(ref_fields)))
    return tuple(keys)


def _month_column(columns: list[Column]) -> str | None:
    """The column whose month decides a monthly file's (:data:`FLUX_COLUMNS`), if published: a
    date, or a ``YYYYMM`` text."""
    for name in FLUX_COLUMNS:
        for c in columns:
            if c.name == name and (c.type == "date" or c.pattern == YEARMONTH):
                return name
    return None


@cache
def catalogue_table(name: str) -> Table:
    """The ingestible table ``name`` built from its published schema (see the module docstring).
    ``KeyError`` when it is not catalogued."""
    entry = entries()[name]
    data = schema(name)
    pk = data.get("primaryKey") or ()
    pk = (pk,) if isinstance(pk, str) else tuple(pk)
    fmt: TextFormat = "dmy" if entry.product == "PMSI" else "sas_datetime"
    columns = []
    for field in data["fields"]:
        lake_type, pattern = _lake_type(field)
        sas = field["name"] in _SAS_DATES_IN_PMSI or field["type"] == "datetime"
        date_fmt = "sas_datetime" if sas else fmt
        columns.append(Column(
            field["name"], lake_type, date_fmt if lake_type == "date" else "plain",
            nullable=field["name"] not in pk, values=_values(field, lake_type), pattern=pattern,
            nomenclature=_nomenclature(field) if lake_type in ("str", "int") and pattern is None else None,
            length=_text_length(field) if lake_type == "str" else None))
    names = {c.name for c in columns}
    split = split_of(name, entry.product)
    month_from = _month_column(columns) if split == "monthly" else None
    return Table(name, tuple(columns), primary_key=tuple(k for k in pk if k in names),
                 split=split, group=entry.product, foreign_keys=source_foreign_keys(data),
                 month_from=month_from)


def ingestible_names() -> list[str]:
    """Every table the ingestion accepts: the profile's (in load order), then the catalogue's."""
    return list(TABLES) + [n for n in entries() if n not in TABLES]


def ingestible_table(name: str) -> Table:
    """The table ``name`` as the ingestion loads it: the profile's definition when it has one
    (with the nomenclatures and foreign keys of the published schema added), else the
    catalogue's. ``KeyError`` when neither knows it."""
    if name in TABLES:
        return _profile_with_catalogue(name)
    return catalogue_table(name)


@cache
def _profile_with_catalogue(name: str) -> Table:
    from dataclasses import replace

    table = TABLES[name]
    if name not in entries():
        return table
    published = {c.name: c for c in catalogue_table(name).columns}
    columns = tuple(replace(c, nomenclature=published[c.name].nomenclature if c.references is None
                            else c.nomenclature, length=(c.length or published[c.name].length) if c.type == "str" else None)
                    if c.name in published and c.type in ("str", "int") else c for c in table.columns)
    return replace(table, columns=columns, foreign_keys=catalogue_table(name).foreign_keys)


def is_ingestible(name: str) -> bool:
    return name in TABLES or name in entries()
