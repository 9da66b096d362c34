"""Bad rows go to quarantine with their line number and reason; nothing is lost."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest
from delivery_factory import write_table

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.ingest.quarantine import read_quarantine
from pds_kernel.snds.tables import TABLES

PRS_COLUMNS = list(TABLES["ER_PRS_F"].column_names)


def _lines(path):
    return path.read_text(encoding="latin-1").splitlines()


def _set_field(line: str, column: str, value: str, columns=PRS_COLUMNS) -> str:
    fields = line.split(";")
    fields[columns.index(column)] = value
    return ";".join(fields)


def _corrupt(delivery):
    """Append one bad line of each kind to ER_PRS_F_202301 (and ER_PHA_F); return expectations."""
    prs = delivery / "ER_PRS_F_202301.csv"
    lines = _lines(prs)
    good = lines[1]
    n = len(lines)  # the next appended line gets number n + 1
    bad = [
        ("column_count", "", "1;2;3"),
        ("unparsable", "FLX_TRT_DTD", _set_field(_set_field(good, "DCT_ORD_NUM", "900001"), "FLX_TRT_DTD", "32JAN2023:00:00:00")),
        ("unparsable", "PRS_PAI_MNT", _set_field(_set_field(good, "DCT_ORD_NUM", "900002"), "PRS_PAI_MNT", "12,3x")),
        ("unparsable", "BEN_RNG_GEM", _set_field(_set_field(good, "DCT_ORD_NUM", "900003"), "BEN_RNG_GEM", "A")),
        ("not_in_set", "BEN_SEX_COD", _set_field(_set_field(good, "DCT_ORD_NUM", "900004"), "BEN_SEX_COD", "5")),
        ("missing_value", "BEN_NIR_PSA", _set_field(_set_field(good, "DCT_ORD_NUM", "900005"), "BEN_NIR_PSA", "")),
        ("wrong_month", "FLX_DIS_DTD", _set_field(_set_field(good, "DCT_ORD_NUM", "900006"),
                                                   "FLX_DIS_DTD", "01FEB2023:00:00:00")),
        ("duplicate_key", "", good),
        ("column_count", "", good + ";extra"),
        ("column_count", "", ""),
    ]
    prs.write_text("\n".join(lines + [b[2] for b in bad]) + "\n", encoding="latin-1")
    expected = {n + 1 + i: (check, column) for i, (check, column, _) in enumerate(bad)}
    pha = delivery / "ER_PHA_F_202301.csv"
    pha_cols = list(TABLES["ER_PHA_F"].column_names)
    pha_lines = _lines(pha)
    pha_lines.append(_set_field(_set_field(pha_lines[1], "DCT_ORD_NUM", "999999", pha_cols),
                                "PHA_PRS_C13", "3400939999999", pha_cols))
    pha.write_text("\n".join(pha_lines) + "\n", encoding="latin-1")
    return expected, {len(pha_lines): ("unknown_reference", "PHA_PRS_C13")}


def test_each_bad_row_is_quarantined_with_line_and_reason(runtime, delivery):
    expected_prs, expected_pha = _corrupt(delivery)
    result = ingest_delivery(runtime, delivery, actor="tester")
    assert not result.clean
    lake = runtime.settings.paths.lake
    for table, stem, expected in (("ER_PRS_F", "ER_PRS_F_202301", expected_prs),
                                  ("ER_PHA_F", "ER_PHA_F_202301", expected_pha)):
        q = read_quarantine(lake / "_quarantine" / table / f"{stem}.csv")
        got = {row["line"]: (row["check"], row["column"] or "") for row in q.iter_rows(named=True)}
        assert got == expected
        source_lines = _lines(delivery / f"{stem}.csv")
        for row in q.iter_rows(named=True):
            assert row["raw"] == source_lines[row["line"] - 1], "raw line kept verbatim"
            assert row["reason"]
    q = read_quarantine(lake / "_quarantine" / "ER_PRS_F" / "ER_PRS_F_202301.csv")
    reasons = dict(zip(q["line"].to_list(), q["reason"].to_list()))
    dup_line = [line for line, (check, _) in expected_prs.items() if check == "duplicate_key"][0]
    assert "same key as line 2" in reasons[dup_line]
    assert "32JAN2023" in " ".join(reasons.values())
    assert any(r.startswith("FLX_DIS_DTD is not in the month of the file (2023-01): '01FEB2023:00:00:00'")
               for r in reasons.values())
    # the good rows of the corrupted files are all loaded
    prs = lake_mod.scan_table(lake, "ER_PRS_F").collect()
    assert not prs.filter(pl.col("DCT_ORD_NUM") >= 900000).height


def test_conservation_on_a_corrupted_delivery(runtime, delivery):
    _corrupt(delivery)
    result = ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    for f in result.files:
        assert f.rows_read == f.rows_loaded + f.rows_quarantined
        if f.status != Status.LOADED:
            continue
        data_lines = len(_lines(delivery / f.name)) - 1
        assert f.rows_read == data_lines, f.name
        in_lake = pl.scan_parquet(sorted(lake.glob(f"{f.table}/*/{f.name[:-4]}.parquet"))).select(pl.len()).collect().item()
        assert in_lake == f.rows_loaded
        q = lake / "_quarantine" / f.table / f"{f.name[:-4]}.csv"
        assert (read_quarantine(q).height if q.exists() else 0) == f.rows_quarantined
    totals = result.totals()
    assert totals["rows_quarantined"] == 11


def test_header_mismatch_refuses_the_whole_file(runtime, delivery, rows):
    cols = [c for c in PRS_COLUMNS if c != "FLX_EMT_NUM"] + ["SURPRISE"]
    write_table(delivery / "ER_PRS_F_202301.csv", "ER_PRS_F", rows[("ER_PRS_F", "202301")], columns=cols)
    result = ingest_delivery(runtime, delivery, actor="tester")
    refused = {f.name: f for f in result.files if f.status == Status.REFUSED}
    assert set(refused) == {"ER_PRS_F_202301.csv"}
    reason = refused["ER_PRS_F_202301.csv"].reason
    assert "FLX_EMT_NUM" in reason and "SURPRISE" in reason
    assert not (runtime.settings.paths.lake / "ER_PRS_F" / "month=202301").exists()


def test_optional_columns_may_be_left_out(runtime, delivery, rows):
    cols = [c for c in PRS_COLUMNS if c not in ("ETB_PRE_FIN", "PSE_SPE_COD")]
    write_table(delivery / "ER_PRS_F_202301.csv", "ER_PRS_F", rows[("ER_PRS_F", "202301")], columns=cols)
    result = ingest_delivery(runtime, delivery, actor="tester")
    assert result.clean
    prs = lake_mod.scan_table(runtime.settings.paths.lake, "ER_PRS_F").collect()
    assert prs.filter(pl.col("FLX_DIS_DTD").dt.month() == 1)["PSE_SPE_COD"].null_count() == len(rows[("ER_PRS_F", "202301")])


def test_badly_named_files_and_missing_referential_are_refused(runtime, delivery):
    (delivery / "notes.txt").write_text("hello")
    (delivery / "IR_PHA_R.csv").unlink()
    result = ingest_delivery(runtime, delivery, actor="tester")
    refused = {f.name: f.reason for f in result.files if f.status == Status.REFUSED}
    assert "not a delivery file name" in refused["notes.txt"]
    assert "IR_PHA_R" in refused["ER_PHA_F_202301.csv"]
    assert "ER_PRS_F_202301.csv" not in refused


@pytest.mark.parametrize("content", [b"", b"BEN_NIR_PSA\n"])
def test_empty_or_truncated_file(runtime, delivery, content):
    (delivery / "IR_BEN_R.csv").write_bytes(content)
    result = ingest_delivery(runtime, delivery, actor="tester")
    f = next(f for f in result.files if f.name == "IR_BEN_R.csv")
    assert f.status == Status.REFUSED and f.rows_read == 0


def test_the_report_sums_up_every_quarantine_file_of_the_lake(runtime, delivery):
    """The report's quarantine section: a group per table, check and column over every quarantine
    file of the lake (read in one query), each with its count and first examples by file and line."""
    expected_prs, expected_pha = _corrupt(delivery)
    result = ingest_delivery(runtime, delivery, actor="tester")
    summary = json.loads(result.report_json.read_text())["quarantine"]
    counts = {(s["table"], s["check"], s["column"]): s["count"] for s in summary}
    expected = Counter(("ER_PRS_F", *kind) for kind in expected_prs.values())
    expected.update(("ER_PHA_F", *kind) for kind in expected_pha.values())
    assert counts == dict(expected)
    for group in summary:
        lines = [(e["file"], e["line"]) for e in group["examples"]]
        assert lines == sorted(lines) and len(lines) == min(3, group["count"])
        source = delivery / lines[0][0]
        assert all(e["raw"] == _lines(source)[e["line"] - 1][:len(e["raw"])] for e in group["examples"])
