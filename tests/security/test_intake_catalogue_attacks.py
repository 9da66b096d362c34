"""The parsers' differential attack extended to every table of the SNDS catalogue.

:mod:`test_intake_parser_differential` attacked two tables of the profile. Here every ingestible
table (profile and catalogue, 188) is generated from its schema (:mod:`pds_kernel.snds.schema_generator`)
and parsed by both parsers (the streamed one forced by a threshold of 0, the block one by a
threshold out of reach): each must load every generated row, with the same outcome. Then, per
column type and text format the catalogue uses (integers, closed sets and booleans, months,
years, numbers, SAS and PMSI dates, ``YYYYMM`` texts, ICD-10, ATC and GHM patterns, codes of a
nomenclature, a reference to a referential, the month of the file, required keys), one
representative column gets edge values: both parsers must agree, and a value is loaded only as
what its text means, or quarantined for the expected check. Last, delivered file names of each
family (monthly DCIR, yearly PMSI, snapshots) at their edges: the right table and period, or a
refusal with its reason.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from intake_damage_support import fresh_runtime, ingest, make_rows, write_table
from test_intake_parser_differential import _lake_text
from test_streamed_parse import _assert_same, _edit, _join, _parse

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import Status, streamed
from pds_kernel.ingest.checks import Check
from pds_kernel.ingest.manifest import Manifest
from pds_kernel.ingest.quarantine import read_quarantine
from pds_kernel.snds.catalogue import ingestible_names, ingestible_table, nomenclature_codes
from pds_kernel.snds.file_names import example_name, parse_delivery_name
from pds_kernel.snds.schema_generator import generate_catalogue

pytestmark = pytest.mark.slow

ROWS = 12  #: generated rows per file
LINE = 4  #: the line each edge value is written on (1: the header)
UNPARSABLE, MISSING, NOT_IN_SET = Check.UNPARSABLE, Check.MISSING, Check.NOT_IN_SET
PATTERN, REFERENCE, WRONG_MONTH = Check.PATTERN, Check.REFERENCE, Check.WRONG_MONTH
BLANK = Check.BLANK  #: a blank around a code: before its pattern or set (red team 15A)


def _referenced(name: str) -> list[str]:
    """The tables ``name`` references (generated first, so that its references resolve)."""
    return [c.references[0] for c in ingestible_table(name).columns if c.references]


def _generate(folder: Path, name: str) -> tuple[Path, str | None, dict]:
    """A generated file of ``name`` (``ROWS`` rows), its period and the references of its job."""
    files = generate_catalogue(folder, rows=ROWS, seed=7, tables=[*_referenced(name), name])
    made = {f.table: f for f in files}
    table, references = ingestible_table(name), {}
    for column in table.columns:
        if column.references:
            ref_table, ref_column = column.references
            text = pl.read_csv(made[ref_table].path, separator=";", infer_schema=False)[ref_column]
            references[column.name] = text.cast(pl.Int64 if column.type == "int" else pl.String).to_list()
    return made[name].path, made[name].period, references


def _both(source: Path, tmp_path: Path, monkeypatch, table: str, period: str | None, references: dict):
    """Both parsers' outcomes of ``source``, checked to be the same (lake values as text too)."""
    blocks, by = _parse(source, tmp_path / "blocks", 1 << 60, monkeypatch, table, period, references=references)
    assert by == "blocks"
    candidate, by = _parse(source, tmp_path / "streamed", 0, monkeypatch, table, period, references=references)
    assert by == "streamed"
    _assert_same(blocks, candidate)
    if blocks.parquet:
        assert _lake_text(blocks.parquet).equals(_lake_text(candidate.parquet))
    return blocks


@pytest.mark.parametrize("name", ingestible_names())
def test_every_table_loads_its_generated_file_the_same_with_both_parsers(name, tmp_path, monkeypatch):
    source, period, references = _generate(tmp_path / "delivery", name)
    assert parse_delivery_name(source.name) == (name, period)
    outcome = _both(source, tmp_path, monkeypatch, name, period, references)
    assert not outcome.refused and not outcome.quarantine
    assert outcome.rows_read == outcome.rows_loaded == ROWS
    # generated codes come from the nomenclatures, within the column's length (none of COD_UCD's 7
    # characters fits NU_UCD_R's 13: the generator writes a text that fits, unknown to the list)
    assert not {c for c in outcome.stats.unknown_codes if _codes_fit(name, c)}
    lake = pl.read_parquet(outcome.parquet)
    assert lake.columns == list(ingestible_table(name).column_names) and lake.height == ROWS


def _codes_fit(table: str, column: str) -> bool:
    """True when a code of the column's nomenclature fits within the column's published length."""
    col = ingestible_table(table).column(column)
    return col.length is None or any(len(code) <= col.length for code in nomenclature_codes(*col.nomenclature))


def _damaged_catalogue(folder: Path) -> list:
    """Every table's generated file, with on line ``LINE`` an unparsable value in its first
    optional typed column and a code unknown to its nomenclature in its first coded text one."""
    files = generate_catalogue(folder, rows=ROWS, seed=11)
    for made in files:
        columns = ingestible_table(made.table).columns
        lines = made.path.read_bytes().split(b"\n")[:-1]
        typed = next((c for c in columns if c.nullable and c.type != "str" and not c.references), None)
        coded = next((c for c in columns if c.nullable and c.type == "str" and c.nomenclature
                      and not c.pattern and (c.length or 4) >= 4), None)  # ZZZ9 within its length
        for column, value in ((typed, b"?"), (coded, b"ZZZ9")):
            if column is not None:
                lines = _edit(lines, LINE, column.name, value)
        made.path.write_bytes(_join(lines))
    return files


def test_a_delivery_of_every_table_gives_the_same_lake_quarantine_and_report(tmp_path, monkeypatch):
    files = _damaged_catalogue(tmp_path / "delivery")
    runs = []
    for name, threshold in (("blocks", 1 << 60), ("streamed", 0)):
        monkeypatch.setattr(streamed, "MIN_BYTES", threshold)
        runtime = fresh_runtime(tmp_path / name)
        results = ingest(runtime, tmp_path / "delivery")
        lake, manifest = runtime.settings.paths.lake, Manifest(runtime.settings.paths.lake)
        report = json.loads(next(runtime.settings.paths.reports.rglob("report.json")).read_text())
        runs.append({
            "files": sorted((f.name, f.status, f.reason, f.rows_read, f.rows_loaded, f.rows_quarantined, f.sha256)
                            for f in results.values()),
            "lake": {t: lake_mod.scan_table(lake, t).collect().select(pl.all().cast(pl.String)).rows()
                     for t in ingestible_names()},
            "quarantine": {f.path.name: read_quarantine(lake / manifest.get(f.path.name).quarantine).rows()
                           for f in files if manifest.get(f.path.name).quarantine},
            "report": {k: report[k] for k in ("run_totals", "run_status", "tables", "quarantine", "integrity")},
        })
    blocks, candidate = runs
    assert blocks == candidate
    assert len(blocks["files"]) == len(files)
    assert [f for f in blocks["files"] if f[1] != Status.LOADED] == []
    edited = [f for f in files if any(c.nullable and c.type != "str" and not c.references
                                      for c in ingestible_table(f.table).columns)]
    assert edited and {f.path.name for f in edited} == set(blocks["quarantine"])
    # ER_PHA_F's line refers to IR_PHA_R's quarantined line: it fails its reference first
    odd = {n: rows for n, rows in blocks["quarantine"].items() if len(rows) != 1 or rows[0][:2] != (
        LINE, REFERENCE if n.startswith("ER_PHA_F") else UNPARSABLE)}
    assert not odd, odd
    unknown = {t for t, s in blocks["report"]["tables"].items()
               if any(info.get("unknown_codes") for info in s["columns"].values())}
    assert unknown and unknown <= {f.table for f in files}


def ok(text: str | None) -> tuple:
    return ("loaded", text)


def bad(check: str) -> tuple:
    return ("quarantined", check)


#: kind of column -> (table, column, [(value, expected outcome of its row)])
KINDS = {
    "integer": ("ER_UCD_F", "UCD_DLV_NBR", [
        ("+5", ok("5")), ("007", ok("7")), ("-0", ok("0")), ("9223372036854775807", ok("9223372036854775807")),
        ("9223372036854775808", bad(UNPARSABLE)), ("1e3", bad(UNPARSABLE)), ("1.0", bad(UNPARSABLE)),
        ("1,0", bad(UNPARSABLE)), ("5 ", bad(UNPARSABLE)), ("0x1F", bad(UNPARSABLE)), ("", ok(None))]),
    "integer key": ("CT_IDE_AAAA_GN", "ben_rng_gem", [
        ("01", ok("1")), ("", bad(MISSING)), (" ", bad(UNPARSABLE)), ("NULL", bad(UNPARSABLE))]),
    "integer coded (nomenclature)": ("ER_UCD_F", "UCD_TOP_UCD", [
        ("00", ok("0")), ("+1", ok("1")), ("987654", ok("987654")), ("1.5", bad(UNPARSABLE))]),
    "boolean (0/1)": ("T_HADaaC", "NIR_RET", [
        ("0", ok("0")), ("1", ok("1")), ("01", ok("1")), ("+1", ok("1")), ("-0", ok("0")), ("", ok(None)),
        ("2", bad(NOT_IN_SET)), ("-1", bad(NOT_IN_SET)), ("9223372036854775807", bad(NOT_IN_SET)),
        ("true", bad(UNPARSABLE)), ("True", bad(UNPARSABLE)), ("O", bad(UNPARSABLE)), ("N", bad(UNPARSABLE)),
        ("T", bad(UNPARSABLE)), ("1.0", bad(UNPARSABLE)), (" 1", bad(UNPARSABLE)), ("1 ", bad(UNPARSABLE))]),
    "month (Int8)": ("T_HADaaC", "ENT_MOI", [
        ("1", ok("1")), ("01", ok("1")), ("12", ok("12")), ("+12", ok("12")), ("0", bad(NOT_IN_SET)),
        ("13", bad(NOT_IN_SET)), ("-1", bad(NOT_IN_SET)), ("127", bad(NOT_IN_SET)),
        # past Int8: must not wrap to a month (257 is 1, 268 is 12 modulo 256)
        ("128", bad(UNPARSABLE)), ("257", bad(UNPARSABLE)), ("268", bad(UNPARSABLE)), ("-255", bad(UNPARSABLE)),
        ("JAN", bad(UNPARSABLE)), ("1.0", bad(UNPARSABLE)), ("012023", bad(UNPARSABLE))]),
    "year (Int16)": ("T_HADaaC", "ENT_ANN", [
        ("2023", ok("2023")), ("02023", ok("2023")), ("+2023", ok("2023")), ("32767", bad(Check.YEAR_RANGE)),
        ("32768", bad(UNPARSABLE)), ("67303", bad(UNPARSABLE)), ("2023.0", bad(UNPARSABLE)),
        ("23", bad(Check.YEAR_RANGE)),  # red team 20D: a year of two digits, or of the far future
        ("MMXXIII", bad(UNPARSABLE))]),
    "number": ("ER_UCD_F", "UCD_ACH_PRU", [
        ("1e5", ok("100000.0")), (".5", ok("0.5")), ("-0", ok("-0.0")), ("12,50", bad(UNPARSABLE)),
        ("NaN", bad(UNPARSABLE)), ("-inf", bad(UNPARSABLE)), ("1e309", bad(UNPARSABLE)), ("1e-400", ok("0.0")),
        ("0x1p3", bad(UNPARSABLE)), ("1_0", bad(UNPARSABLE)), ("1.5e", bad(UNPARSABLE)), ("", ok(None))]),
    "SAS datetime": ("ER_UCD_F", "FLX_DIS_DTD", [
        ("01JAN2023:00:00:00", ok("2023-01-01")), ("1jan2023:0:0:0", ok("2023-01-01")),
        ("29FEB2023:00:00:00", bad(UNPARSABLE)), ("01JAN2023", bad(UNPARSABLE)),
        ("01JANV2023:00:00:00", bad(UNPARSABLE)), ("01JAN2023:00:00:00.000", bad(UNPARSABLE)),
        ("01JAN0999:00:00:00", bad(UNPARSABLE)), ("01JAN23:00:00:00", bad(UNPARSABLE)),
        ("01JAN2023:25:00:00", bad(UNPARSABLE)), ("2023-01-01", bad(UNPARSABLE)), ("", ok(None)),
        ("01 JAN2023:00:00:00", bad(UNPARSABLE)), ("01-JAN-2023:00:00:00", bad(UNPARSABLE)),
        ("01JAN2023:00:00", bad(UNPARSABLE)), ("01JAN2023:00:00:00:00", bad(UNPARSABLE)),
        # a DCIR file holds one flux month, as the profile's ER_PRS_F does (catalogue.FLUX_COLUMNS)
        ("01FEB2023:00:00:00", bad(WRONG_MONTH)), ("31DEC2022:00:00:00", bad(WRONG_MONTH)),
        ("31JAN2023:00:00:00", ok("2023-01-31"))]),
    "PMSI date (DDMMYYYY)": ("T_HADaaC", "ENT_DAT", [
        ("01012023", ok("2023-01-01")), ("01011600", ok("1600-01-01")), ("29022023", bad(UNPARSABLE)),
        ("1012023", bad(UNPARSABLE)), ("0101202", bad(UNPARSABLE)), ("00002023", bad(UNPARSABLE)),
        ("13132023", bad(UNPARSABLE)), ("01-01-2023", bad(UNPARSABLE)), ("01JAN2023:00:00:00", bad(UNPARSABLE)),
        ("010120230", bad(UNPARSABLE)), ("01 12023", bad(UNPARSABLE)), ("+1012023", bad(UNPARSABLE)),
        ("", ok(None))]),
    # published as datetime: loaded as text before ("hello" loaded, a date stayed its SAS text)
    "published datetime (SAS, in the PMSI)": ("T_RIPaaC", "EXE_SOI_DTD", [
        ("01JAN2023:00:00:00", ok("2023-01-01")), ("31DEC2023:23:59:59", ok("2023-12-31")),
        ("01JAN1600:00:00:00", ok("1600-01-01")), ("hello", bad(UNPARSABLE)), ("01012023", bad(UNPARSABLE)),
        ("2023-01-01T00:00:00", bad(UNPARSABLE)), ("01JAN23:00:00:00", bad(UNPARSABLE)), ("", ok(None))]),
    "YYYYMM text": ("EB_INB_F", "BEN_DCD_AME", [
        ("202301", ok("202301")), ("202312", ok("202312")), ("202300", bad(PATTERN)), ("202313", bad(PATTERN)),
        ("20231", bad(PATTERN)), ("2023-01", bad(PATTERN)), ("2023010", bad(PATTERN)), (" 202301", bad(BLANK)),
        ("202301 ", bad(BLANK)), ("", ok(None))]),
    "ICD-10 code": ("T_MCOaaD", "ASS_DGN", [
        ("E119", ok("E119")), ("C50+", ok("C50+")), ("e119", bad(PATTERN)), ("E11.9", bad(PATTERN)),
        ("E119 ", bad(BLANK)), (" E119", bad(BLANK)), ("E1", bad(PATTERN)), ("E119999", bad(PATTERN)),
        ("", bad(MISSING)), ("   ", bad(MISSING))]),
    "GHM code": ("T_MCOaaB", "GRG_GHM", [
        ("05M092", ok("05M092")), ("05m092", bad(PATTERN)), ("5M092", bad(PATTERN)), ("05M0921", bad(PATTERN)),
        ("05M09 ", bad(BLANK))]),
    "ATC code (7)": ("IR_PHA_R", "PHA_ATC_C07", [
        ("A10BA02", ok("A10BA02")), ("a10ba02", bad(PATTERN)), ("A10BA2", bad(PATTERN)),
        ("A10BA02 ", bad(BLANK))]),
    "ATC code (3)": ("IR_PHA_R", "PHA_ATC_C03", [("A10", ok("A10")), ("A1", bad(PATTERN)), ("A10B", bad(PATTERN))]),
    "two-digit code": ("IR_BEN_R", "BEN_CDI_NIR", [
        ("00", ok("00")), ("0", bad(PATTERN)), ("000", bad(PATTERN)), ("0 ", bad(BLANK))]),
    "closed set of texts": ("T_MCOaaB", "COD_SEX", [
        ("1", ok("1")), ("2", ok("2")), ("01", bad(NOT_IN_SET)), ("1 ", bad(BLANK)), ("+1", bad(NOT_IN_SET)),
        ("9", bad(NOT_IN_SET)), ("", ok(None))]),
    "text key": ("DA_PRA_R", "PFS_PFS_NUM", [
        ("", bad(MISSING)), ("  ", bad(MISSING)), (" K9 ", bad(BLANK)), ("'K9'", ok("'K9'"))]),
    "text coded (nomenclature)": ("EB_INB_F", "BEN_RES_DPT", [("075", ok("075")), ("2a", ok("2a"))]),
    "reference to a referential": ("ER_PHA_F", "PHA_PRS_C13", [
        ("{ref}", ok("{ref}")), ("00{ref}", ok("{ref}")), ("99999999", bad(REFERENCE)), ("", bad(MISSING))]),
    "month of the file": ("KI_CCI_R", "BEN_DCD_DTE", [
        ("31JAN2023:00:00:00", ok("2023-01-31")), ("01FEB2023:00:00:00", bad(WRONG_MONTH)),
        ("31DEC2022:00:00:00", bad(WRONG_MONTH)), ("01JAN1600:00:00:00", bad(WRONG_MONTH)),
        ("", bad(MISSING))]),
}
CASES = [(kind, value, expected) for kind, (_, _, values) in KINDS.items() for value, expected in values]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    """The generated lines, period and references of each table KINDS edits."""
    found = {}
    for table in {t for t, _, _ in KINDS.values()}:
        source, period, references = _generate(tmp_path_factory.mktemp(table), table)
        found[table] = (source.read_bytes().split(b"\n")[:-1], period, references, source.name)
    return found


@pytest.mark.parametrize("kind, value, expected", CASES, ids=[f"{k}={v!r}" for k, v, _ in CASES])
def test_an_edge_value_of_each_column_kind_loads_as_it_reads_or_is_quarantined(kind, value, expected, generated,
                                                                               tmp_path, monkeypatch):
    table, column, _ = KINDS[kind]
    lines, period, references, name = generated[table]
    if "{ref}" in value:  # a code of the referential generated with the file
        value, expected = (x.replace("{ref}", str(references[column][0])) for x in (value, expected[1]))
        expected = ok(expected)
    lines = _edit(lines, LINE, column, value.encode("latin-1"))
    source = tmp_path / name
    source.write_bytes(_join(lines))
    outcome = _both(source, tmp_path, monkeypatch, table, period, references)
    state, what = expected
    assert not outcome.refused
    if state == "loaded":
        assert (outcome.rows_loaded, outcome.rows_quarantined) == (ROWS, 0)
        assert _lake_text(outcome.parquet)[column][LINE - 2] == what
    else:
        assert (outcome.rows_loaded, outcome.rows_quarantined) == (ROWS - 1, 1)
        entry = read_quarantine(Path(outcome.quarantine)).row(0, named=True)
        assert (entry["line"], entry["check"], entry["column"]) == (LINE, what, column)
        assert entry["raw"] == lines[LINE - 1].decode("latin-1")


#: The latest year a delivery may hold (pds_kernel.snds.periods)
NEXT_YEAR = date.today().year + 1
#: (file name, (table, period) it feeds, or a piece of the reason it is refused)
NAMES = [
    # monthly (DCIR, EGB, DCIRS, DAMIR...)
    ("ER_UCD_F_202301.csv", ("ER_UCD_F", "202301")), ("ER_UCD_F_202312.csv", ("ER_UCD_F", "202312")),
    ("ER_UCD_F_202313.csv", "bad month 202313"), ("ER_UCD_F_202300.csv", "bad month 202300"),
    ("ER_UCD_F_000001.csv", "year 0000 is before 2000"), ("ER_PRS_F_000012.csv", "year 0000 is before 2000"),
    # implausible periods: loaded silently into partitions of 1899 or 2099 before
    ("ER_UCD_F_189912.csv", "year 1899 is before 2000, the earliest year a delivery may hold"),
    ("ER_UCD_F_199912.csv", "lower the setting ingest.earliest_year"), ("ER_UCD_F_200001.csv", ("ER_UCD_F", "200001")),
    (f"ER_UCD_F_{NEXT_YEAR}12.csv", ("ER_UCD_F", f"{NEXT_YEAR}12")),
    (f"ER_UCD_F_{NEXT_YEAR + 1}01.csv", f"year {NEXT_YEAR + 1} is after {NEXT_YEAR}, the latest year"),
    ("ER_PRS_F_999912.csv", "year 9999 is after"),
    ("er_ucd_f_202301.csv", "not a delivery file name"), ("ER_UCD_F_202301.CSV", "not a delivery file name"),
    ("ER_UCD_F_202301.csv.gz", "not a delivery file name"), ("ER_UCD_F_202301_v2.csv", "not a delivery"),
    ("ER_UCD_F_2023011.csv", "not a delivery file name"), ("ER_UCD_F_2023-01.csv", "not a delivery file name"),
    ("ER_UCD_F__202301.csv", "not a delivery file name"), ("ER_UCD_F_202301 .csv", "not a delivery file name"),
    ("ER_UCD_F.csv", "per month as NAME_YYYYMM.csv"), ("ER_UCD_F_\uff12\uff10\uff12\uff13\uff10\uff11.csv", "not a delivery"),
    # "$" matched before a final line feed: these were loaded as the month (or year) they name
    ("ER_PRS_F_202301.csv\n", "not a delivery file name"), ("T_MCO23B.csv\n", "not a delivery file name"),
    ("IR_BEN_R.csv\n", "not a delivery file name"),
    # yearly (PMSI: two-digit year; cartography: four digits; xx: any two letters or digits)
    ("T_SSR19B.csv", ("T_SSRaaB", "2019")), ("T_MCO99B.csv", "year 99 reads as 2099, which is after"),
    ("T_MCO00B.csv", ("T_MCOaaB", "2000")), (f"T_MCO{NEXT_YEAR % 100:02d}B.csv", ("T_MCOaaB", str(NEXT_YEAR))),
    (f"T_MCO{(NEXT_YEAR + 1) % 100:02d}B.csv", f"reads as {NEXT_YEAR + 1}"),
    ("T_MCO99GV01.csv", "year 99 reads as 2099"),
    ("T_MCO23GV01.csv", ("T_MCOaaGVxx", "2023")), ("T_MCO23GVzz.csv", "not a delivery file name"),
    ("T_MCO23b.csv", "not a delivery file name"), ("t_mco23B.csv", "not a delivery file name"),
    ("T_MCO2023B.csv", "not a delivery file name"), ("T_MCO3B.csv", "not a delivery file name"),
    ("T_MCO23B_202301.csv", "not a delivery file name"), ("T_MCOaaFA.csv", "delivered once a year"),
    ("T_MCOaaB.csv", "per month as NAME_YYYYMM.csv"), ("T_MCOaaB_202301.csv", ("T_MCOaaB", "202301")),
    ("CT_DEP_2021_GN.csv", ("CT_DEP_AAAA_GN", "2021")), ("CT_DEP_1899_GN.csv", "year 1899 is before 2000"),
    ("CT_DEP_0000_GN.csv", "year 0000 is before 2000"), ("CT_DEP_21_GN.csv", "not a delivery file name"),
    ("CT_DEP_AAAA_GN.csv", "delivered once a year"),
    # snapshots (referentials)
    ("IR_BEN_R.csv", ("IR_BEN_R", None)), ("BE_IDE_R.csv", ("BE_IDE_R", None)),
    ("IR_BEN_R_202301.csv", "as one snapshot file NAME.csv"), ("IR_BEN_R.csv.csv", "not a delivery file name"),
    ("IR_BEN_R .csv", "not a delivery file name"), (".csv", "not a delivery file name"),
]


@pytest.mark.parametrize("name, expected", NAMES, ids=[repr(n) for n, _ in NAMES])
def test_a_file_name_feeds_its_table_and_period_or_is_refused_with_a_reason(name, expected):
    if isinstance(expected, tuple):
        assert parse_delivery_name(name) == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)) as refused:
            parse_delivery_name(name)
        assert repr(name) in str(refused.value)


def test_each_table_has_one_name_per_period_and_no_name_feeds_two_tables():
    for name in ingestible_names():
        split = ingestible_table(name).split
        for period in (("2000", "2023", str(NEXT_YEAR)) if split == "yearly"
                       else ("200001", "202312", f"{NEXT_YEAR}12") if split == "monthly" else (None,)):
            file = example_name(name, period or "202301")
            assert parse_delivery_name(file) == (name, period), file
            others = [n for n in ingestible_names() if n != name and _feeds(file, n)]
            assert not others, (file, others)


def _feeds(file: str, table: str) -> bool:
    """True when ``file`` could be read as a file of ``table`` (by its plain or its yearly name)."""
    from pds_kernel.snds.file_names import _yearly_patterns

    return any(p.fullmatch(file) for p, n in _yearly_patterns() if n == table) or bool(
        re.fullmatch(re.escape(table) + r"(_[0-9]{6})?\.csv", file))


@pytest.mark.parametrize("names", [("ER_PRS_F_202301.csv", "ER_PRS_F_202301.csv\n"), ("ER_PRS_F_000012.csv",),
                                   ("ER_PRS_F_999912.csv",),
                                   ("ER_PRS_F_202301.csv", "ER_PRS_F_189912.csv", "ER_PRS_F_209901.csv")],
                         ids=["line feed twin", "year 0000", "December 9999", "implausible years"])
def test_a_delivery_with_an_edge_name_never_crashes_the_run(names, tmp_path):
    """Each of the first three crashed the whole run (two files staged under one name; the first
    day of the year 0 or the day after 9999-12-31 built for the month check); the last two names
    of the fourth loaded silently into partitions of 1899 and 2099. Each is now refused by name,
    with its reason, and the other files load."""
    delivery = tmp_path / "delivery"
    delivery.mkdir()
    rows = make_rows(persons=20, months=("202301",))[("ER_PRS_F", "202301")]
    for name in names:
        write_table(delivery / name, "ER_PRS_F", rows)
    results = ingest(fresh_runtime(tmp_path), delivery)
    assert set(results) == set(names)
    for name, result in results.items():
        if name == "ER_PRS_F_202301.csv":
            assert result.status == "loaded" and result.rows_loaded == len(rows)
        else:
            assert result.status == "refused" and repr(name) in result.reason
            assert "the earliest year a delivery may hold" in result.reason or (
                "the latest year a delivery may hold" in result.reason) or "not a delivery file name" in result.reason


def test_the_month_check_of_the_last_month_a_date_can_have_is_still_built():
    """December 9999 no longer reaches the parser by name (refused above), but a job given that
    period directly still gets its month check, not a crash building 10000-01-01."""
    from pds_kernel.ingest.checks import build_month_check

    column = ingestible_table("ER_PRS_F").column("FLX_DIS_DTD")
    check = build_month_check(column, pl.col("raw"), pl.col("typed"), "999912")
    frame = pl.DataFrame({"raw": ["31DEC9999:00:00:00", "01JAN2023:00:00:00"],
                          "typed": [date(9999, 12, 31), date(2023, 1, 1)]})
    assert frame.select(check.bad).to_series().to_list() == [False, True]
