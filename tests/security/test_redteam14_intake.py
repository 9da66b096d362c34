"""Red team 14B: silent damage at intake, played by a faulty or hostile delivery.

Each test delivers crafted files to the real ingestion (a real lake in ``tmp_path``) and asserts
that the attack fails: the file is refused with its reason, or the damaged lines are quarantined
with their check, and the lake holds exactly the values the delivery meant, no more rows and no
fewer. The attacks that got through before the fixes of this round are marked "got through".
"""

from __future__ import annotations

import gzip
import json
import os
import zipfile

import polars as pl
import pytest
from intake_damage_support import (
    fresh_runtime,
    ingest,
    lake_values,
    make_rows,
    quarantine_of,
    write_delivery,
    write_table,
)

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import Status, streamed
from pds_kernel.ingest.manifest import Manifest
from pds_kernel.snds.catalogue import ingestible_names
from pds_kernel.snds.file_names import _yearly_patterns, example_name, parse_delivery_name

#: T_HADaaD: seven text columns, no pattern, no closed set and no required column. No typed
#: column refuses a line of column names there, and a line of empty fields is a row of nulls.
HAD = "T_HADaaD"
HAD_FILE = "T_HAD23D.csv"
HAD_COLUMNS = ("DGN_ASS", "ETA_NUM_EPMSI", "ETA_NUM_GEO", "RHAD_NUM", "SEQ_NUM", "SSEQ_NUM", "ETA_NUM_TWO")


def _had_line(i: int, first: str | None = None) -> bytes:
    values = [first or f"C{50 + i}", "2A0000022", "2A0000023", f"{i:05d}", f"{i}", "1", "750000001"]
    return ";".join(values).encode("latin-1")


def _write(path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")


def _quarantined(runtime, name: str) -> dict[int, str]:
    """``{line: check}`` of the quarantine of file ``name``, every entry with a reason."""
    frame = quarantine_of(runtime, name)
    return {} if frame is None else dict(zip(frame["line"].to_list(), frame["check"].to_list(), strict=True))


def _report(runtime) -> dict:
    return json.loads((runtime.settings.paths.reports / "latest" / "report.json").read_text())


def _had_rows(runtime) -> list[tuple]:
    lake = runtime.settings.paths.lake
    if not Manifest(lake).of_table(HAD):
        return []
    return lake_mod.scan_table(lake, HAD).select(HAD_COLUMNS).collect().rows()


def _expected(*lines: bytes) -> list[tuple]:
    return [tuple(line.decode("latin-1").split(";")) for line in lines]


@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_quotes_lone_cr_header_lines_and_empty_rows_in_a_text_table(parser, tmp_path, monkeypatch):
    """Got through: a quoted field loaded with its quotes (a quote-all export, and doubled
    quotes with theirs), a lone carriage return loaded inside a value, a second header line (two files
    concatenated) loaded as a row of column names, a line of separators as a row of nulls."""
    monkeypatch.setattr(streamed, "MIN_BYTES", 0 if parser == "streamed" else 1 << 60)
    runtime = fresh_runtime(tmp_path)
    header = ";".join(HAD_COLUMNS).encode()
    good = [_had_line(i) for i in range(3)]
    lines = [header, good[0],
             _had_line(10, '"C60"'),                    # 3: quote-all export
             _had_line(11, 'C6"1'),                     # 4: a quote inside a value
             b'"C62;X";' + _had_line(12)[4:],           # 5: a quoted separator: one field more
             _had_line(13, '"say ""x"" "'),             # 6: doubled quotes
             header,                                    # 7: a second header (concatenated files)
             b";".join(reversed(header.split(b";"))),   # 8: the same, another column order
             b";" * (len(HAD_COLUMNS) - 1),             # 9: a line of separators only
             _had_line(14, "C6\r4"),                    # 10: a lone carriage return in a value
             good[1], b"", good[2],                     # 12: an empty line
             b'"C6', b'5";' + _had_line(15)[4:],        # 14, 15: a quoted line feed
             header.lower()]                            # 16: a header line in lower case
    _write(tmp_path / "d" / HAD_FILE, lines)
    result = ingest(runtime, tmp_path / "d")[HAD_FILE]
    assert result.status == Status.LOADED and (result.rows_loaded, result.rows_quarantined) == (3, 12)
    assert _quarantined(runtime, HAD_FILE) == {
        3: "quote", 4: "quote", 5: "quote", 6: "quote", 7: "header_line", 8: "header_line",
        9: "empty_row", 10: "control_character", 12: "column_count", 14: "quote", 15: "quote",
        16: "header_line"}
    assert _had_rows(runtime) == _expected(*good)
    checks = {q["check"] for q in _report(runtime)["quarantine"]}
    assert {"quote", "header_line", "empty_row", "control_character"} <= checks


@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_a_file_of_separators_only_loads_no_row(parser, tmp_path, monkeypatch):
    """Got through: 50 lines of ';;;;;;' loaded as 50 rows of nulls, exit 0, a clean report."""
    monkeypatch.setattr(streamed, "MIN_BYTES", 0 if parser == "streamed" else 1 << 60)
    runtime = fresh_runtime(tmp_path)
    _write(tmp_path / "d" / HAD_FILE, [";".join(HAD_COLUMNS).encode()] + [b";" * 6] * 50)
    result = ingest(runtime, tmp_path / "d")[HAD_FILE]
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (50, 0, 50)
    assert set(_quarantined(runtime, HAD_FILE).values()) == {"empty_row"}
    assert _had_rows(runtime) == []


@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_a_quoted_claims_file_does_not_load_its_quotes(parser, tmp_path, monkeypatch):
    """Got through: a claims file exported with its text quoted ('"751234567"') loaded the
    quotes into the practitioner number, through either parser (clean ASCII bytes)."""
    monkeypatch.setattr(streamed, "MIN_BYTES", 0 if parser == "streamed" else 1 << 60)
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=("202301",))
    delivery = write_delivery(tmp_path / "d", {k: v for k, v in rows.items() if k in (
        "IR_BEN_R", "IR_PHA_R", ("ER_PRS_F", "202301"))})
    prs = delivery / "ER_PRS_F_202301.csv"
    lines = prs.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b";751234567;", b';"751234567";')
    prs.write_bytes(b"\n".join(lines))
    result = ingest(runtime, delivery)["ER_PRS_F_202301.csv"]
    total = len(rows[("ER_PRS_F", "202301")])
    assert (result.rows_loaded, result.rows_quarantined) == (total - 1, 1)
    assert _quarantined(runtime, "ER_PRS_F_202301.csv") == {4: "quote"}
    assert set(lake_values(runtime, "ER_PRS_F", "PFS_EXE_NUM")) == {"751234567"}


def test_a_too_long_first_line_is_quarantined_not_a_crash(tmp_path):
    """Crashed the run (not silent): a first data line with one field too many made polars
    raise, and the whole delivery stopped; a long line after the first was quarantined."""
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=("202301",))
    delivery = write_delivery(tmp_path / "d", {k: v for k, v in rows.items() if k in ("IR_BEN_R", "IR_PHA_R")})
    ben = delivery / "IR_BEN_R.csv"
    lines = ben.read_bytes().split(b"\n")
    lines[1] += b";EXTRA"
    lines[4] = lines[4] + b";" + b"X" * (2 << 20)  # a huge line, too long by one field
    ben.write_bytes(b"\n".join(lines))
    result = ingest(runtime, delivery)["IR_BEN_R.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (len(rows["IR_BEN_R"]) - 2, 2)
    assert _quarantined(runtime, "IR_BEN_R.csv") == {2: "column_count", 5: "column_count"}
    expected = sorted(r["BEN_NIR_PSA"] for i, r in enumerate(rows["IR_BEN_R"]) if i not in (0, 3))
    assert sorted(lake_values(runtime, "IR_BEN_R", "BEN_NIR_PSA")) == expected


def _drugs(directory, first: str, second: str, encoding: str = "latin-1"):
    rows = make_rows(persons=2, months=())["IR_PHA_R"]
    rows[0]["PHA_MED_NOM"], rows[1]["PHA_MED_NOM"] = first, second
    directory.mkdir(parents=True, exist_ok=True)
    return write_table(directory / "IR_PHA_R.csv", "IR_PHA_R", rows, encoding=encoding)


def test_utf8_lines_inside_a_latin1_file_are_refused(tmp_path):
    """Got through: a latin-1 file (``é`` is E9) with one UTF-8 line (``crème`` is C3 A8, no C1
    byte): the block is not valid UTF-8 as a whole, so the line loaded as ``crÃ¨me``."""
    runtime = fresh_runtime(tmp_path)
    path = _drugs(tmp_path / "d", "DOSé", "PLACEHOLDER")
    path.write_bytes(path.read_bytes().replace(b"PLACEHOLDER", "CRèME à".encode()))
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "line 3" in result.reason and "C3 A8" in result.reason
    assert lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM") == []


def test_latin1_text_with_capital_a_accents_still_loads(tmp_path):
    """No false refusal: ``Ã`` and ``Â`` followed by letters are latin-1 text."""
    runtime = fresh_runtime(tmp_path)
    _drugs(tmp_path / "d", "SÃO PAULO", "ÂGÉ À DOSE")
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.LOADED and result.rows_quarantined == 0
    assert {"SÃO PAULO", "ÂGÉ À DOSE"} <= set(lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM"))


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_a_byte_order_mark_inside_the_file_is_refused(encoding, tmp_path):
    """Got through: two files concatenated, the second with its UTF-8 BOM, in a text table: the
    mark loaded glued to the first value of the line, as ``ï»¿`` in a latin-1 file (with an
    accent elsewhere), as an invisible U+FEFF in a UTF-8 one."""
    runtime = fresh_runtime(tmp_path, encoding=encoding)
    lines = [";".join(HAD_COLUMNS).encode(), _had_line(0, "C5é" if encoding == "latin-1" else "C50"),
             b"\xef\xbb\xbf" + _had_line(1)]
    _write(tmp_path / "d" / HAD_FILE, lines)
    result = ingest(runtime, tmp_path / "d")[HAD_FILE]
    assert result.status == Status.REFUSED and "line 3" in result.reason and "EF BB BF" in result.reason
    assert _had_rows(runtime) == []


def test_crlf_and_doubly_converted_line_ends_load_the_right_values(tmp_path):
    """Did not get through: CRLF, mixed CRLF/LF and CR CR LF (a CRLF file converted again) line
    ends load the values without any carriage return; CR-only line ends are refused."""
    runtime = fresh_runtime(tmp_path)
    header, good = ";".join(HAD_COLUMNS).encode(), [_had_line(i) for i in range(4)]
    ends = [b"\r\n", b"\n", b"\r\r\n", b"\r\n", b"\n"]
    path = tmp_path / "d" / HAD_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(line + end for line, end in zip([header, *good], ends, strict=True)))
    result = ingest(runtime, tmp_path / "d")[HAD_FILE]
    assert (result.status, result.rows_loaded, result.rows_quarantined) == (Status.LOADED, 4, 0)
    assert sorted(_had_rows(runtime)) == sorted(_expected(*good))
    cr_only = tmp_path / "cr" / "T_HAD22D.csv"
    cr_only.parent.mkdir()
    cr_only.write_bytes(b"\r".join([header, *good]) + b"\r")
    result = ingest(runtime, tmp_path / "cr")["T_HAD22D.csv"]
    assert result.status == Status.REFUSED and "header does not match" in result.reason


def test_compressed_files_and_a_fifo_under_delivery_names_are_refused(tmp_path):
    """Did not get through: a gzip and a zip named .csv, and a FIFO named like a file (the
    ingest must not block reading it)."""
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=("202301",))
    source = write_delivery(tmp_path / "src", rows)
    delivery = tmp_path / "d"
    delivery.mkdir()
    (delivery / "IR_PHA_R.csv").write_bytes(gzip.compress((source / "IR_PHA_R.csv").read_bytes()))
    with zipfile.ZipFile(delivery / "IR_BEN_R.csv", "w") as archive:
        archive.write(source / "IR_BEN_R.csv", "IR_BEN_R.csv")
    os.mkfifo(delivery / "ER_PRS_F_202301.csv")
    results = ingest(runtime, delivery)
    assert {n: f.status for n, f in results.items()} == {
        "IR_PHA_R.csv": Status.REFUSED, "IR_BEN_R.csv": Status.REFUSED, "ER_PRS_F_202301.csv": Status.REFUSED}
    assert all(f.reason for f in results.values())
    assert not Manifest(runtime.settings.paths.lake).entries


def test_a_month_delivered_twice_under_two_names_is_not_loaded_twice(tmp_path):
    """Did not get through: T_MCOaaC_202301.csv and T_MCO23C.csv with the same stays in one
    delivery; the second file's stays are quarantined as duplicate keys, each stay is in the
    lake once."""
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(persons=30, months=("202301",))
    delivery = write_delivery(tmp_path / "d", {k: v for k, v in rows.items() if k in (
        "IR_BEN_R", "IR_PHA_R", ("T_MCOaaC", "202301"))})
    (delivery / "T_MCO23C.csv").write_bytes((delivery / "T_MCOaaC_202301.csv").read_bytes())
    results = ingest(runtime, delivery)
    stays = len(rows[("T_MCOaaC", "202301")])
    assert stays and sum(results[n].rows_loaded for n in ("T_MCOaaC_202301.csv", "T_MCO23C.csv")) == stays
    assert sum(results[n].rows_quarantined for n in ("T_MCOaaC_202301.csv", "T_MCO23C.csv")) == stays
    assert sorted(lake_values(runtime, "T_MCOaaC", "RSA_NUM")) == sorted(r["RSA_NUM"] for r in rows[(
        "T_MCOaaC", "202301")])
    assert pl.Series(lake_values(runtime, "T_MCOaaC", "RSA_NUM")).is_unique().all()


@pytest.mark.parametrize("encoding, mark", [("latin-1", "\u00ad"), ("utf-8", "\u200b"), ("utf-8", "\u202e")])
def test_an_invisible_character_cannot_hide_a_repeated_key(encoding, mark, tmp_path):
    """Got through: a beneficiary repeated with a soft hyphen (latin-1), a zero-width space or a
    direction override (UTF-8) inside the NIR: the same to the eye, another key to the
    duplicate check, so both rows loaded and the person counted twice."""
    runtime = fresh_runtime(tmp_path, encoding=encoding)
    rows = make_rows(persons=3, months=())["IR_BEN_R"]
    twin = dict(rows[1], BEN_NIR_PSA=rows[1]["BEN_NIR_PSA"][:6] + mark + rows[1]["BEN_NIR_PSA"][6:])
    (tmp_path / "d").mkdir()
    write_table(tmp_path / "d" / "IR_BEN_R.csv", "IR_BEN_R", [*rows, twin], encoding=encoding)
    result = ingest(runtime, tmp_path / "d")["IR_BEN_R.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (3, 1)
    assert _quarantined(runtime, "IR_BEN_R.csv") == {5: "invisible_character"}
    assert sorted(lake_values(runtime, "IR_BEN_R", "BEN_NIR_PSA")) == sorted(r["BEN_NIR_PSA"] for r in rows)


def test_a_non_breaking_space_in_a_label_still_loads(tmp_path):
    """No false quarantine: French labels put a non-breaking space before a colon."""
    runtime = fresh_runtime(tmp_path)
    (tmp_path / "d").mkdir()
    rows = make_rows(persons=2, months=())["IR_PHA_R"]
    rows[0]["PHA_MED_NOM"] = "DOSE\u00a0: 5 MG"
    write_table(tmp_path / "d" / "IR_PHA_R.csv", "IR_PHA_R", rows)
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert (result.status, result.rows_quarantined) == (Status.LOADED, 0)
    assert "DOSE\u00a0: 5 MG" in lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM")


def test_no_file_name_feeds_two_tables():
    """Did not get through: the example name of every table of the catalogue, monthly and yearly,
    parses to that table, and matches no other table's name pattern."""
    for name in ingestible_names():
        for period in ("2023", "202303"):
            file = example_name(name, period)
            assert parse_delivery_name(file)[0] == name
            assert [t for pattern, t in _yearly_patterns() if pattern.fullmatch(file)] in ([], [name])
