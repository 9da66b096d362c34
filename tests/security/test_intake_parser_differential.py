"""Differential attacks on the two CSV parsers of the intake (block and streamed).

A file with clean bytes (ASCII, ``\\n`` line ends, one field per column) is parsed by the streamed
parser of :mod:`pds_kernel.ingest.streamed` once it is large enough, by the block parser of
:mod:`pds_kernel.ingest.parse` otherwise; both must load the same rows with the same values and
report the same figures. Each file below is crafted with values at the edges of a typed column
(numbers, dates, codes, keys, headers) and parsed both ways (the size threshold set to 0, then out
of reach): the outcomes must be the same (``_assert_same`` of the streamed parser's tests, plus the
lake values compared as text, so that ``-0.0`` and ``0.0`` or two NaNs differ), and the edited row
must be loaded with the value it states, or quarantined for the expected check: never loaded
damaged (a number overflowed, a date misread).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from intake_damage_support import fresh_runtime, ingest, make_rows, write_table
from test_streamed_parse import _assert_same, _edit, _join, _parse

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import Status, streamed
from pds_kernel.ingest.checks import Check
from pds_kernel.ingest.manifest import Manifest
from pds_kernel.ingest.quarantine import read_quarantine

PRS, MCO, MONTH = "ER_PRS_F", "T_MCOaaC", "202301"
LINE = 5  #: the line each case edits (1: the header)


def ok(text: str) -> tuple:
    """The edited row is loaded, its value reading ``text`` (polars' text of the lake value)."""
    return ("loaded", text)


def bad(check: str) -> tuple:
    """The edited row is quarantined for ``check`` (on the edited column)."""
    return ("quarantined", check)


UNPARSABLE, MISSING, NOT_IN_SET, QUOTE = Check.UNPARSABLE, Check.MISSING, Check.NOT_IN_SET, Check.QUOTE

#: (table, column, value written, expected outcome of its row)
VALUES = [
    # integers (Int64)
    (PRS, "PRS_ORD_NUM", "+5", ok("5")), (PRS, "PRS_ORD_NUM", "007", ok("7")),
    (PRS, "PRS_ORD_NUM", "-0", ok("0")), (PRS, "PRS_ORD_NUM", "0000000000000000000000001", ok("1")),
    (PRS, "PRS_ORD_NUM", "9223372036854775807", ok("9223372036854775807")),
    (PRS, "PRS_ORD_NUM", "9223372036854775808", bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", "-9223372036854775809", bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", "1" + "0" * 40, bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", "1e5", bad(UNPARSABLE)), (PRS, "PRS_ORD_NUM", "5.", bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", ".5", bad(UNPARSABLE)), (PRS, "PRS_ORD_NUM", "1.0", bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", "0x10", bad(UNPARSABLE)), (PRS, "PRS_ORD_NUM", "NaN", bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", "inf", bad(UNPARSABLE)), (PRS, "PRS_ORD_NUM", "1_000", bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", " 5", bad(UNPARSABLE)), (PRS, "PRS_ORD_NUM", "5 ", bad(UNPARSABLE)),
    (PRS, "PRS_ORD_NUM", "--1", bad(UNPARSABLE)), (PRS, "PRS_ORD_NUM", "", bad(MISSING)),
    (PRS, "PRS_ORD_NUM", " ", bad(UNPARSABLE)), (PRS, "PRS_ORD_NUM", '"5"', bad(QUOTE)),
    (PRS, "DPN_QLF", "", ok(None)), (PRS, "DPN_QLF", "  ", bad(UNPARSABLE)),
    # closed set {0, 1, 2, 9}
    (PRS, "BEN_SEX_COD", "02", ok("2")), (PRS, "BEN_SEX_COD", "+9", ok("9")),
    (PRS, "BEN_SEX_COD", "3", bad(NOT_IN_SET)), (PRS, "BEN_SEX_COD", "1.0", bad(UNPARSABLE)),
    # year (Int16): values past its range must not wrap or load as null
    (PRS, "BEN_NAI_ANN", "32767", bad(Check.YEAR_RANGE)), (PRS, "BEN_NAI_ANN", "32768", bad(UNPARSABLE)),
    (PRS, "BEN_NAI_ANN", "70000", bad(UNPARSABLE)), (PRS, "BEN_NAI_ANN", "-32769", bad(UNPARSABLE)),
    (PRS, "BEN_NAI_ANN", "01980", ok("1980")), (PRS, "BEN_NAI_ANN", "1980.0", bad(UNPARSABLE)),
    # floats
    (PRS, "PRS_PAI_MNT", "+5", ok("5.0")), (PRS, "PRS_PAI_MNT", "-0", ok("-0.0")),
    (PRS, "PRS_PAI_MNT", "1e5", ok("100000.0")), (PRS, "PRS_PAI_MNT", "1E-2", ok("0.01")),
    (PRS, "PRS_PAI_MNT", ".5", ok("0.5")), (PRS, "PRS_PAI_MNT", "5.", ok("5.0")),
    (PRS, "PRS_PAI_MNT", "0012.50", ok("12.5")), (PRS, "PRS_PAI_MNT", "12,50", bad(UNPARSABLE)),
    (PRS, "PRS_PAI_MNT", "0.1000000000000000055511151231257827", ok("0.1")),
    (PRS, "PRS_PAI_MNT", "9223372036854775808", ok("9.223372036854776e+18")),
    (PRS, "PRS_PAI_MNT", "0x10", bad(UNPARSABLE)), (PRS, "PRS_PAI_MNT", " 12.5", bad(UNPARSABLE)),
    (PRS, "PRS_PAI_MNT", "12.5 ", bad(UNPARSABLE)),
    # not an amount: a NaN or an infinity would load as a figure (and poison every sum)
    (PRS, "PRS_PAI_MNT", "NaN", bad(UNPARSABLE)), (PRS, "PRS_PAI_MNT", "inf", bad(UNPARSABLE)),
    (PRS, "PRS_PAI_MNT", "-Infinity", bad(UNPARSABLE)),
    (PRS, "PRS_PAI_MNT", "1e400", bad(UNPARSABLE)),  # overflows to inf
    (PRS, "PRS_PAI_MNT", "1" + "0" * 400, bad(UNPARSABLE)),  # overflows to inf
    # SAS datetimes (DDMONYYYY:HH:MM:SS)
    (PRS, "EXE_SOI_DTD", "29FEB2024:00:00:00", ok("2024-02-29")),
    (PRS, "EXE_SOI_DTD", "30FEB2023:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "29FEB2023:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "31APR2023:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTF", "31DEC9999:23:59:59", ok("9999-12-31")),  # an end date: may be open
    (PRS, "EXE_SOI_DTD", "31DEC9999:23:59:59", bad(Check.FUTURE)),  # after the ingest (red team 15A)
    (PRS, "EXE_SOI_DTD", "01JAN1600:00:00:00", ok("1600-01-01")),
    (PRS, "EXE_SOI_DTD", "01JAN0000:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "05jan2023:00:00:00", ok("2023-01-05")),
    (PRS, "EXE_SOI_DTD", "01JAN2023:24:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "01JAN2023:00:00:00 ", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "2023-1-5", bad(UNPARSABLE)), (PRS, "EXE_SOI_DTD", "2023-01-05", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "01JAN99999:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "", ok(None)), (PRS, "EXE_SOI_DTD", " ", bad(UNPARSABLE)),
    # a year of fewer than four digits, or negative, is not the year written: 23 is not 2023
    (PRS, "EXE_SOI_DTD", "05JAN23:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "05JAN223:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "05JAN-2023:00:00:00", bad(UNPARSABLE)),
    (PRS, "EXE_SOI_DTD", "05JAN+2023:00:00:00", ok("2023-01-05")),
    (PRS, "EXE_SOI_DTD", "5JAN2023:0:0:0", ok("2023-01-05")),
    (PRS, "FLX_DIS_DTD", "01JAN23:00:00:00", bad(UNPARSABLE)),
    (PRS, "FLX_DIS_DTD", "01FEB2023:00:00:00", bad(Check.WRONG_MONTH)),
    # PMSI dates (DDMMYYYY)
    (MCO, "ENT_DAT", "29022024", ok("2024-02-29")), (MCO, "ENT_DAT", "30022023", bad(UNPARSABLE)),
    (MCO, "ENT_DAT", "31129999", bad(Check.FUTURE)), (MCO, "ENT_DAT", "01011600", ok("1600-01-01")),
    (MCO, "ENT_DAT", "01010000", bad(UNPARSABLE)), (MCO, "ENT_DAT", "01010999", bad(UNPARSABLE)),
    (MCO, "ENT_DAT", "00012023", bad(UNPARSABLE)), (MCO, "ENT_DAT", "01132023", bad(UNPARSABLE)),
    (MCO, "ENT_DAT", "01012023 ", bad(UNPARSABLE)), (MCO, "ENT_DAT", "2023-1-5", bad(UNPARSABLE)),
    (MCO, "ENT_DAT", "01/01/2023", bad(UNPARSABLE)),
    # a day or month written without its leading zero: read as another date (0023-12-10)
    (MCO, "ENT_DAT", "1012023", bad(UNPARSABLE)), (MCO, "ENT_DAT", "010123", bad(UNPARSABLE)),
    (MCO, "RSA_NUM", "+00042", ok("42")), (MCO, "SEJ_NUM", "1e0", bad(UNPARSABLE)),
    # codes checked against a nomenclature (counted when unknown, never quarantined)
    (PRS, "BEN_RES_DPT", " 075", bad(Check.BLANK)), (PRS, "BEN_RES_DPT", "2a", ok("2a")),
    (PRS, "PSE_SPE_COD", "001", ok("1")), (PRS, "PSE_SPE_COD", "+98", ok("98")),
    (PRS, "ORG_CLE_NUM", "01c751000", ok("01c751000")),
    # text
    (PRS, "BEN_NIR_PSA", "", bad(MISSING)), (PRS, "PFS_EXE_NUM", "  ", bad(Check.BLANK)),
    # a required text of spaces only is missing (an optional code of spaces is blank, above)
    (PRS, "BEN_NIR_PSA", " ", bad(MISSING)), (PRS, "BEN_NIR_PSA", "     ", bad(MISSING)),
    (PRS, "ORG_CLE_NUM", "   ", bad(MISSING)), (PRS, "BEN_NIR_PSA", " x ", bad(Check.BLANK)),
]
#: columns whose codes in the base file are all in their nomenclature, and the values above that
#: their nomenclature lacks (IR_SPE_V has no 98; codes are compared as written: "2a" is not 2A)
CODED = {"BEN_RES_DPT", "PSE_SPE_COD", "ORG_CLE_NUM"}
UNKNOWN_CODES = {"2a", "+98", "01c751000"}


@pytest.fixture(scope="module")
def base_lines(tmp_path_factory) -> dict[str, list[bytes]]:
    """Clean lines (header first) of an ER_PRS_F and a T_MCOaaC file whose every row loads."""
    rows = make_rows(persons=120, months=(MONTH,))
    folder = tmp_path_factory.mktemp("base")
    return {table: write_table(folder / f"{table}.csv", table, rows[(table, MONTH)]).read_bytes().split(b"\n")[:-1]
            for table in (PRS, MCO)}


def _lake_text(path: str) -> pl.DataFrame:
    return pl.read_parquet(path).select(pl.all().cast(pl.String))


def _both(source: Path, tmp_path: Path, monkeypatch, table: str = PRS, **job) -> tuple:
    """The outcomes of the block parser and of the streamed parser (which must have taken the
    file), checked to be the same, the lake values compared as text too."""
    blocks, by = _parse(source, tmp_path / "blocks", 1 << 60, monkeypatch, table, MONTH, **job)
    assert by == "blocks"
    candidate, by = _parse(source, tmp_path / "streamed", 0, monkeypatch, table, MONTH, **job)
    # a quote sends the file to the block parser, which quarantines its line (red team 14B)
    assert by == ("blocks" if b'"' in source.read_bytes() else "streamed")
    _assert_same(blocks, candidate)
    if blocks.parquet:
        assert _lake_text(blocks.parquet).equals(_lake_text(candidate.parquet))
    return blocks, candidate


@pytest.mark.parametrize("table, column, value, expected", VALUES,
                         ids=[f"{c}={v if len(v) < 40 else v[:8] + f'...({len(v)} chars)'!r}"
                              for _, c, v, _ in VALUES])
def test_an_edge_value_gives_the_same_outcome_with_both_parsers(table, column, value, expected, base_lines,
                                                                 tmp_path, monkeypatch):
    lines = base_lines[table]
    source = tmp_path / f"{table}_{MONTH}.csv"
    source.write_bytes(_join(_edit(lines, LINE, column, value.encode())))
    outcome, _ = _both(source, tmp_path, monkeypatch, table)
    kind, what = expected
    if kind == "loaded":
        assert outcome.rows_quarantined == 0 and outcome.rows_loaded == len(lines) - 1
        assert pl.read_parquet(outcome.parquet).select(pl.col(column).cast(pl.String)).row(LINE - 2)[0] == what
        if column in CODED:  # the base file's codes there are all known
            assert outcome.stats.unknown_codes.get(column, 0) == (value in UNKNOWN_CODES)
    else:
        assert outcome.rows_quarantined == 1 and outcome.rows_loaded == len(lines) - 2
        entry = read_quarantine(Path(outcome.quarantine)).row(0, named=True)
        # a quote fails the whole line (red team 14B), before any column's check
        assert (entry["line"], entry["check"], entry["column"]) == (LINE, what, "" if what == QUOTE else column)
        assert entry["raw"] == _edit(lines, LINE, column, value.encode())[LINE - 1].decode()


@pytest.mark.parametrize("field, check", [(b"", MISSING), (b" ", UNPARSABLE), (b'""', QUOTE)])
def test_a_line_of_empty_fields_gives_the_same_outcome_with_both_parsers(field, check, base_lines, tmp_path,
                                                                          monkeypatch):
    lines = list(base_lines[PRS])
    lines[LINE - 1] = b";".join([field] * len(lines[0].split(b";")))
    source = tmp_path / f"{PRS}_{MONTH}.csv"
    source.write_bytes(_join(lines))
    outcome, _ = _both(source, tmp_path, monkeypatch)
    entry = read_quarantine(Path(outcome.quarantine)).row(0, named=True)
    assert outcome.rows_quarantined == 1 and (entry["line"], entry["check"], entry["column"]) == (
        LINE, check, "" if check == QUOTE else "DCT_ORD_NUM")
    assert entry["raw"] == lines[LINE - 1].decode()


def _reorder(lines: list[bytes]) -> list[bytes]:
    return [b";".join(reversed(line.split(b";"))) for line in lines]


def _drop(lines: list[bytes], column: bytes) -> list[bytes]:
    at = lines[0].split(b";").index(column)
    return [b";".join(f for i, f in enumerate(line.split(b";")) if i != at) for line in lines]


#: header variants: (how the lines are changed, whether the file is refused)
HEADERS = {
    "columns in another order": (_reorder, False),
    "optional column left out": (lambda ls: _drop(ls, b"ETB_PRE_FIN"), False),
    "required column left out": (lambda ls: _drop(ls, b"BEN_NIR_PSA"), True),
    "repeated column": (lambda ls: [ls[0] + b";PRS_PAI_MNT"] + [x + b";1" for x in ls[1:]], True),
    "extra column": (lambda ls: [ls[0] + b";EXTRA"] + [x + b";1" for x in ls[1:]], True),
    "column name with a trailing space": (lambda ls: [ls[0].replace(b"PRS_PAI_MNT", b"PRS_PAI_MNT ")] + ls[1:],
                                          True),
    "header with a trailing separator": (lambda ls: [ls[0] + b";"] + [x + b";" for x in ls[1:]], True),
    "lower-case column name": (lambda ls: [ls[0].replace(b"PRS_PAI_MNT", b"prs_pai_mnt")] + ls[1:], True),
}


@pytest.mark.parametrize("variant", list(HEADERS))
def test_a_header_variant_gives_the_same_outcome_with_both_parsers(variant, base_lines, tmp_path, monkeypatch):
    change, refused = HEADERS[variant]
    lines = base_lines[PRS]
    source = tmp_path / f"{PRS}_{MONTH}.csv"
    source.write_bytes(_join(change(lines)))
    if refused:  # refused before either parser reads a row
        blocks, _ = _parse(source, tmp_path / "blocks", 1 << 60, monkeypatch)
        candidate, _ = _parse(source, tmp_path / "streamed", 0, monkeypatch)
        _assert_same(blocks, candidate)
        assert "header does not match" in blocks.refused and not blocks.parquet
        return
    outcome, _ = _both(source, tmp_path, monkeypatch)
    plain = tmp_path / "plain.csv"
    plain.write_bytes(_join(lines))
    reference, _ = _both(plain, tmp_path / "plain", monkeypatch)
    expected = _lake_text(reference.parquet)
    if variant == "optional column left out":
        expected = expected.with_columns(pl.lit(None, dtype=pl.String).alias("ETB_PRE_FIN"))
    assert outcome.rows_loaded == len(lines) - 1 and _lake_text(outcome.parquet).equals(expected)


def test_a_utf8_byte_order_mark_before_the_header_gives_the_same_rows(base_lines, tmp_path, monkeypatch):
    """The streamed query reads the file from its first byte, the block parser after the header."""
    source = tmp_path / f"{PRS}_{MONTH}.csv"
    source.write_bytes(b"\xef\xbb\xbf" + _join(_edit(base_lines[PRS], LINE, "PRS_PAI_MNT", b"1e5")))
    outcome, _ = _both(source, tmp_path, monkeypatch, encoding="utf-8")
    assert outcome.rows_loaded == len(base_lines[PRS]) - 1 and not outcome.refused
    assert pl.read_parquet(outcome.parquet)["DCT_ORD_NUM"].to_list() == [
        int(line.split(b";")[0]) for line in base_lines[PRS][1:]]


def test_blocks_read_typed_and_as_text_in_one_file_give_the_streamed_values(base_lines, tmp_path, monkeypatch):
    """A blank in the first block only: the block parser reads the later blocks' numbers typed, the
    streamed parser the whole file as text; the edge numbers of the last block load the same."""
    lines = _edit(base_lines[PRS], 3, "PFS_EXE_NUM", b"751 234")
    for number, value in enumerate((b"+5", b"-0", b"1e5", b".5", b"5.", b"007"), start=len(lines) - 5):
        lines = _edit(lines, number, "PRS_PAI_MNT", value)
        lines = _edit(lines, number, "PRS_ORD_NUM", value if b"." not in value and b"e" not in value else b"01")
    source = tmp_path / f"{PRS}_{MONTH}.csv"
    source.write_bytes(_join(lines))
    outcome, _ = _both(source, tmp_path, monkeypatch, batch_rows=20)
    assert outcome.rows_loaded == len(lines) - 1
    assert _lake_text(outcome.parquet)["PRS_PAI_MNT"].to_list()[-6:] == ["5.0", "-0.0", "100000.0", "0.5",
                                                                         "5.0", "7.0"]


def _ingest_both(tmp_path: Path, data: bytes, monkeypatch) -> list[dict]:
    """Ingest a delivery of one ER_PRS_F file with each parser: per parser, what the run says
    (statuses, figures, report) and what the lake holds (rows, quarantine entries)."""
    runs = []
    for name, threshold in (("blocks", 1 << 60), ("streamed", 0)):
        monkeypatch.setattr(streamed, "MIN_BYTES", threshold)
        delivery = tmp_path / name / "delivery"
        delivery.mkdir(parents=True)
        (delivery / f"{PRS}_{MONTH}.csv").write_bytes(data)
        runtime = fresh_runtime(tmp_path / name)
        results = ingest(runtime, delivery)
        lake = runtime.settings.paths.lake
        entry = Manifest(lake).get(f"{PRS}_{MONTH}.csv")
        report = json.loads(next(runtime.settings.paths.reports.rglob("report.json")).read_text())
        runs.append({
            "files": sorted((f.name, f.status, f.reason, f.rows_read, f.rows_loaded, f.rows_quarantined)
                            for f in results.values()),
            "lake": lake_mod.scan_table(lake, PRS).collect().select(pl.all().cast(pl.String)).rows(),
            "quarantine": read_quarantine(lake / entry.quarantine).rows() if entry.quarantine else [],
            "report": {k: report[k] for k in ("run_totals", "run_status", "tables", "quarantine", "integrity")},
        })
    return runs


def test_a_delivery_of_every_edge_value_gives_the_same_lake_and_report(base_lines, tmp_path, monkeypatch):
    lines = base_lines[PRS]
    cases = [(c, v, e) for t, c, v, e in VALUES if t == PRS]
    assert len(lines) > len(cases) + 2
    for number, (column, value, _) in enumerate(cases, start=2):
        lines = _edit(lines, number, column, value.encode())
    blocks, candidate = _ingest_both(tmp_path, _join(lines), monkeypatch)
    assert blocks == candidate
    quarantined = {line: check for line, check, *_ in blocks["quarantine"]}
    assert quarantined == {n: e[1] for n, (_, _, e) in enumerate(cases, start=2) if e[0] == "quarantined"}
    assert blocks["files"][0][1] == Status.LOADED
    assert blocks["files"][0][4] == len(lines) - 1 - len(quarantined)


@pytest.mark.parametrize("twin, duplicate", [
    (b"0099999", True), (b"+99999", True), (b"99999", True), (b" 99999", False),  # " 99999": unparsable
])
def test_keys_differing_only_in_their_text_are_duplicates_with_both_parsers(twin, duplicate, base_lines,
                                                                           tmp_path, monkeypatch):
    lines = _edit(base_lines[PRS], 3, "DCT_ORD_NUM", b"99999")  # an order number no other row has
    copy = _edit(lines, 3, "DCT_ORD_NUM", twin)[2]
    lines = lines[:6] + [copy] + lines[6:]
    # the same key but for blanks around a text key field: quarantined (red team 15A; it loaded
    # as a distinct key before)
    lines = lines[:8] + [_edit(lines, 3, "ORG_CLE_NUM", b" 01C751000")[2]] + lines[8:]
    blocks, candidate = _ingest_both(tmp_path, _join(lines), monkeypatch)
    assert blocks == candidate
    checks = {line: check for line, check, *_ in blocks["quarantine"]}
    assert checks == {7: Check.DUPLICATE if duplicate else Check.UNPARSABLE, 9: Check.BLANK}
    assert blocks["files"][0][4] == len(lines) - 3
