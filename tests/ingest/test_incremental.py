"""Re-runs load nothing twice, new months are appended, changed files are refused."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
from delivery_factory import make_rows, write_delivery, write_table

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import Status, ingest_delivery


def _manifest(runtime):
    return json.loads((runtime.settings.paths.lake / "_manifest.json").read_text())["files"]


def test_rerun_is_idempotent(runtime, delivery):
    first = ingest_delivery(runtime, delivery, actor="tester")
    before = lake_mod.scan_table(runtime.settings.paths.lake, "ER_PRS_F").collect()
    manifest = _manifest(runtime)
    second = ingest_delivery(runtime, delivery, actor="tester")
    assert {f.status for f in second.files} == {Status.SKIPPED}
    assert second.totals() == {"rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0}
    assert _manifest(runtime) == manifest
    assert lake_mod.scan_table(runtime.settings.paths.lake, "ER_PRS_F").collect().equals(before)
    assert first.run_id != second.run_id


def test_new_month_is_appended(runtime, tmp_path):
    rows = make_rows(months=("202301", "202302", "202303"))
    january = {k: v for k, v in rows.items() if isinstance(k, str) or k[1] == "202301"}
    ingest_delivery(runtime, write_delivery(tmp_path / "d1", january), actor="tester")
    lake = runtime.settings.paths.lake
    n1 = lake_mod.scan_table(lake, "ER_PRS_F").select(pl.len()).collect().item()
    result = ingest_delivery(runtime, write_delivery(tmp_path / "d2", rows), actor="tester")
    status = {f.name: f.status for f in result.files}
    assert status["ER_PRS_F_202301.csv"] == Status.SKIPPED
    assert status["ER_PRS_F_202303.csv"] == Status.LOADED
    total = sum(len(v) for k, v in rows.items() if k[0] == "ER_PRS_F" and not isinstance(k, str))
    assert lake_mod.scan_table(lake, "ER_PRS_F").select(pl.len()).collect().item() == total > n1
    assert set(_manifest(runtime)) >= {"ER_PRS_F_202301.csv", "ER_PRS_F_202302.csv", "ER_PRS_F_202303.csv"}


def test_changed_month_is_refused_not_replaced(runtime, delivery, rows):
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    target = lake / "ER_PRS_F" / "month=202301" / "ER_PRS_F_202301.parquet"
    before = target.read_bytes()
    write_table(delivery / "ER_PRS_F_202301.csv", "ER_PRS_F", rows[("ER_PRS_F", "202301")][:-1])
    result = ingest_delivery(runtime, delivery, actor="tester")
    f = next(f for f in result.files if f.name == "ER_PRS_F_202301.csv")
    assert f.status == Status.REFUSED and "SHA-256" in f.reason and "never replaced" in f.reason
    assert target.read_bytes() == before
    assert not result.clean


def test_new_snapshot_replaces_the_old_one(runtime, delivery, rows):
    ingest_delivery(runtime, delivery, actor="tester")
    write_table(delivery / "IR_BEN_R.csv", "IR_BEN_R", rows["IR_BEN_R"][:10])
    result = ingest_delivery(runtime, delivery, actor="tester")
    f = next(f for f in result.files if f.name == "IR_BEN_R.csv")
    assert f.status == Status.CORRECTED and "replaces" in f.reason
    assert f.correction["removed"] == len(rows["IR_BEN_R"]) - 10 and not f.correction["added"]
    lake = runtime.settings.paths.lake
    ben = lake_mod.scan_table(lake, "IR_BEN_R").collect()
    assert ben.height == 10
    entry = _manifest(runtime)["IR_BEN_R.csv"]
    assert entry["replaces"]
    # the earlier version is still readable, with every row it had
    assert lake_mod.scan_table(lake, "IR_BEN_R", entry["version"] - 1).collect().height == len(rows["IR_BEN_R"])


def _january_then_february_with_a_january_row(runtime, tmp_path, rows, table: str, **changes):
    """Ingest January's delivery, then ``table``'s February file holding one of its January rows
    again (last line), with ``changes``; the February file's result."""
    january = {k: v for k, v in rows.items() if isinstance(k, str) or k[1] == "202301"}
    ingest_delivery(runtime, write_delivery(tmp_path / "d1", january), actor="tester")
    d2 = tmp_path / "d2"
    d2.mkdir()
    again = dict(rows[(table, "202301")][0], **changes)
    write_table(d2 / f"{table}_202302.csv", table, rows[(table, "202302")] + [again])
    return ingest_delivery(runtime, d2, actor="tester").files[0]


def test_duplicate_key_against_an_earlier_run(runtime, tmp_path, rows):
    # a PMSI stay delivered again in a later month: same (ETA_NUM, RSA_NUM) key, its exit moved
    # into February (with its January exit, it fails the month check first)
    f = _january_then_february_with_a_january_row(runtime, tmp_path, rows, "T_MCOaaC", SOR_DAT=date(2023, 2, 10))
    assert (f.rows_loaded, f.rows_quarantined) == (len(rows[("T_MCOaaC", "202302")]), 1)
    from pds_kernel.ingest.quarantine import read_quarantine

    q = read_quarantine(runtime.settings.paths.lake / "_quarantine" / "T_MCOaaC" / "T_MCOaaC_202302.csv")
    assert q["check"].to_list() == ["duplicate_key"]
    assert "T_MCOaaC_202301.csv" in q["reason"][0]


def test_a_claim_repeated_in_a_later_month_is_caught_by_its_month(runtime, tmp_path, rows):
    """DCIR keys hold the flux date: a January claim sent again in February's file fails the month
    check (no cross-file key index is needed for these tables), and February's own rows load."""
    f = _january_then_february_with_a_january_row(runtime, tmp_path, rows, "ER_PRS_F")
    assert (f.rows_loaded, f.rows_quarantined) == (len(rows[("ER_PRS_F", "202302")]), 1)
    from pds_kernel.ingest.quarantine import read_quarantine

    q = read_quarantine(runtime.settings.paths.lake / "_quarantine" / "ER_PRS_F" / "ER_PRS_F_202302.csv")
    assert q.select("check", "column").rows() == [("wrong_month", "FLX_DIS_DTD")]
    assert q["line"].to_list() == [len(rows[("ER_PRS_F", "202302")]) + 2]
