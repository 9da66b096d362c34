"""No silent damage: mis-declared encodings, byte order marks, a cut last line, NUL bytes, empty
files and empty deliveries are refused, quarantined or reported with a reason, never loaded as
they are."""

from __future__ import annotations

import polars as pl
import pytest
from delivery_factory import fresh_runtime, make_rows, write_delivery, write_table

from pds_kernel import lake as lake_mod
from pds_kernel.errors import InvalidInput
from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.ingest.manifest import Manifest
from pds_kernel.ingest.quarantine import read_quarantine

DRUG_NAME = "MÉTFORMINE"


def _referential(directory, encoding="latin-1", name=DRUG_NAME):
    """A delivery of IR_PHA_R alone whose first drug is named ``name``."""
    rows = make_rows(persons=2, months=())["IR_PHA_R"]
    for row in rows:  # é (C3 A9 in UTF-8) is left in the labels; É (C3 89) only where asked
        row["PHA_MED_NOM"] = row["PHA_MED_NOM"].replace("É", "E")
    rows[0]["PHA_MED_NOM"] = name
    directory.mkdir(parents=True, exist_ok=True)
    return write_table(directory / "IR_PHA_R.csv", "IR_PHA_R", rows, encoding=encoding)


def _only(result, name):
    [found] = [f for f in result.files if f.name == name]
    return found


def _assert_not_in_lake(runtime, name):
    assert Manifest(runtime.settings.paths.lake).get(name) is None


def test_latin1_text_loads_with_its_accents(tmp_path):
    runtime = fresh_runtime(tmp_path)
    _referential(tmp_path / "d")
    result = ingest_delivery(runtime, tmp_path / "d", actor="t")
    assert _only(result, "IR_PHA_R.csv").status == Status.LOADED
    names = lake_mod.scan_table(runtime.settings.paths.lake, "IR_PHA_R").collect()["PHA_MED_NOM"]
    assert DRUG_NAME in names.to_list()


@pytest.mark.parametrize(("encoding", "text", "expected"), [
    ("latin-1", ("utf-8", DRUG_NAME), "byte 0x89 decodes to a C1 control character"),
    ("latin-1", ("utf-8", "MEDICAMENT dosé"), "the text is UTF-8"),  # no C1 byte: é is C3 A9
    ("latin-1", ("cp1252", "INSULINE D’ACTION"), "byte 0x92 decodes to a C1 control character"),
    ("utf-8", ("latin-1", DRUG_NAME), "not valid utf-8 text"),
    ("utf-8", ("utf-8", "MÃ\x89TFORMINE"), "U+0089 decodes to a C1 control character"),
])
def test_a_misdeclared_encoding_is_refused_with_the_line(tmp_path, encoding, text, expected):
    runtime = fresh_runtime(tmp_path, encoding=encoding)
    written_as, name = text
    _referential(tmp_path / "d", encoding=written_as, name=name)
    result = ingest_delivery(runtime, tmp_path / "d", actor="t")
    refused = _only(result, "IR_PHA_R.csv")
    assert refused.status == Status.REFUSED and not result.clean
    assert expected in refused.reason and refused.reason.startswith("line 2:"), refused.reason
    assert "ingest.encoding" in refused.reason
    _assert_not_in_lake(runtime, "IR_PHA_R.csv")


def test_utf8_declared_as_such_loads(tmp_path):
    runtime = fresh_runtime(tmp_path, encoding="utf-8")
    _referential(tmp_path / "d", encoding="utf-8", name="INSULINE D’ACTION")
    result = ingest_delivery(runtime, tmp_path / "d", actor="t")
    assert result.clean
    names = lake_mod.scan_table(runtime.settings.paths.lake, "IR_PHA_R").collect()["PHA_MED_NOM"]
    assert "INSULINE D’ACTION" in names.to_list()


@pytest.mark.parametrize(("encoding", "bom", "named"), [
    ("latin-1", b"\xef\xbb\xbf", "UTF-8 byte order mark (BOM, bytes EF BB BF)"),
    ("latin-1", b"\xff\xfe", "UTF-16 byte order mark"),
    ("utf-8", b"\xff\xfe", "UTF-16 byte order mark"),
])
def test_a_byte_order_mark_is_named(tmp_path, encoding, bom, named):
    runtime = fresh_runtime(tmp_path, encoding=encoding)
    path = _referential(tmp_path / "d", name="PLAIN")
    path.write_bytes(bom + path.read_bytes())
    refused = _only(ingest_delivery(runtime, tmp_path / "d", actor="t"), "IR_PHA_R.csv")
    assert refused.status == Status.REFUSED and named in refused.reason, refused.reason


def test_a_utf8_bom_is_dropped_when_utf8_is_declared(tmp_path):
    runtime = fresh_runtime(tmp_path, encoding="utf-8")
    path = _referential(tmp_path / "d", encoding="utf-8")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert ingest_delivery(runtime, tmp_path / "d", actor="t").clean


@pytest.mark.parametrize("batch_rows", [5, 100_000])
def test_a_cut_last_line_is_quarantined_not_shortened(tmp_path, batch_rows):
    runtime = fresh_runtime(tmp_path, batch_rows=batch_rows)
    rows = make_rows(months=("202301",))
    rows[("ER_PRS_F", "202301")][-1]["ETB_PRE_FIN"] = "8533"  # the last field of the last line
    delivery = write_delivery(tmp_path / "d", rows)
    prs = delivery / "ER_PRS_F_202301.csv"
    data = prs.read_bytes()
    lines = data.rstrip(b"\n").split(b"\n")
    assert lines[-1].endswith(b";8533")
    prs.write_bytes(data[:-3])  # the transfer stops inside the last value: "8533" -> "85"
    result = ingest_delivery(runtime, delivery, actor="t")
    prs_result = _only(result, "ER_PRS_F_202301.csv")
    assert prs_result.rows_read == len(lines) - 1
    assert prs_result.rows_quarantined == 1
    assert prs_result.rows_loaded + prs_result.rows_quarantined == prs_result.rows_read
    quarantine = read_quarantine(runtime.settings.paths.lake / "_quarantine" / "ER_PRS_F" / "ER_PRS_F_202301.csv")
    [row] = quarantine.iter_rows(named=True)
    assert row["line"] == len(lines) and row["check"] == "last_line_cut"
    assert "no line end" in row["reason"] and row["raw"].endswith(";85")
    loaded = lake_mod.scan_table(runtime.settings.paths.lake, "ER_PRS_F").collect()
    assert loaded.height == len(lines) - 2


@pytest.mark.parametrize("batch_rows", [5, 100_000])
def test_nul_bytes_in_a_field_are_quarantined(tmp_path, batch_rows):
    runtime = fresh_runtime(tmp_path, batch_rows=batch_rows)
    delivery = write_delivery(tmp_path / "d", make_rows(months=("202301",)))
    prs = delivery / "ER_PRS_F_202301.csv"
    lines = prs.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b";751234567;", b";7512\x00\x00567;")
    lines[6] = lines[6].replace(b";075;", b";0\x0175;")  # another C0 control
    prs.write_bytes(b"\n".join(lines))
    result = _only(ingest_delivery(runtime, delivery, actor="t"), "ER_PRS_F_202301.csv")
    assert result.rows_quarantined == 2 and result.rows_read == len(lines) - 2
    quarantine = read_quarantine(runtime.settings.paths.lake / "_quarantine" / "ER_PRS_F" / "ER_PRS_F_202301.csv")
    assert quarantine["line"].to_list() == [4, 7]
    assert set(quarantine["check"]) == {"control_character"}
    assert "\x00" in quarantine["raw"][0]  # the raw line is kept verbatim
    loaded = lake_mod.scan_table(runtime.settings.paths.lake, "ER_PRS_F").collect()
    assert not loaded.select(pl.col(pl.String).str.contains("[\x00-\x1f]").any()).row(0)[0]


def test_a_header_only_file_is_reported_empty_and_leaves_its_month_open(tmp_path):
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=("202301",))
    complete = write_delivery(tmp_path / "complete", rows)
    early = write_delivery(tmp_path / "early", {k: v for k, v in rows.items() if isinstance(k, str)})
    write_table(early / "ER_PRS_F_202301.csv", "ER_PRS_F", [])
    write_table(early / "IR_BEN_R.csv", "IR_BEN_R", [])  # an empty referential replaces nothing
    first = ingest_delivery(runtime, early, actor="t")
    empty = _only(first, "ER_PRS_F_202301.csv")
    assert empty.status == Status.EMPTY and "month stays open" in empty.reason
    assert _only(first, "IR_BEN_R.csv").status == Status.EMPTY
    _assert_not_in_lake(runtime, "ER_PRS_F_202301.csv")
    _assert_not_in_lake(runtime, "IR_BEN_R.csv")
    second = ingest_delivery(runtime, complete, actor="t")
    assert _only(second, "ER_PRS_F_202301.csv").status == Status.LOADED
    assert _only(second, "ER_PRS_F_202301.csv").rows_loaded == len(rows[("ER_PRS_F", "202301")]) > 0
    report = second.report_json.read_text()
    assert '"empty": 0' in report
    assert '"empty": 2' in first.report_json.read_text()


def test_an_empty_delivery_is_an_error(tmp_path):
    runtime = fresh_runtime(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".partial").write_text("transfer leftover")
    with pytest.raises(InvalidInput, match="holds no file: nothing to ingest"):
        ingest_delivery(runtime, tmp_path / "d", actor="t")
