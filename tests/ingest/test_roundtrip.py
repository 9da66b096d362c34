"""A clean delivery loads completely, with the right types and the same values."""

from __future__ import annotations

from datetime import date

import polars as pl

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.snds.tables import MISSING_DATE, TABLES, lake_schema


def _expected(rows: dict, table: str) -> pl.DataFrame:
    data = [r for key, part in rows.items() if (key if isinstance(key, str) else key[0]) == table for r in part]
    return pl.DataFrame(data, schema=lake_schema(table))


def test_round_trip_values_and_types(runtime, delivery, rows):
    result = ingest_delivery(runtime, delivery, actor="tester")
    assert result.clean
    assert {f.status for f in result.files} == {Status.LOADED}
    for f in result.files:
        assert f.rows_read == f.rows_loaded + f.rows_quarantined
        assert f.rows_quarantined == 0 and len(f.sha256) == 64
    lake = runtime.settings.paths.lake
    for table in ("IR_BEN_R", "IR_PHA_R", "ER_PRS_F", "ER_PHA_F", "T_MCOaaC"):
        got = lake_mod.scan_table(lake, table).collect()
        assert dict(got.schema) == lake_schema(table), table
        keys = list(TABLES[table].primary_key)
        expected = _expected(rows, table)
        assert got.sort(keys).equals(expected.sort(keys)), table


def test_special_values_survive(runtime, delivery):
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    ben = lake_mod.scan_table(lake, "IR_BEN_R").collect()
    assert (ben["BEN_DCD_DTE"] == MISSING_DATE).all(), "missing dates load as 1600-01-01, not null"
    assert "2A" in ben["BEN_RES_DPT"].to_list(), "Corsican department codes stay text"
    pha = lake_mod.scan_table(lake, "IR_PHA_R").collect()
    assert any(name.startswith("MÉDICAMENT") for name in pha["PHA_MED_NOM"]), "latin-1 decoded"
    mco = lake_mod.scan_table(lake, "T_MCOaaC").collect()
    assert mco["ENT_DAT"].dtype == pl.Date and mco["ENT_DAT"].min() >= date(2023, 1, 1)


def test_layout_manifest_and_reports(runtime, delivery):
    result = ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    assert (lake / "ER_PRS_F" / "month=202301" / "ER_PRS_F_202301.parquet").is_file()
    assert (lake / "IR_BEN_R" / "snapshot" / "IR_BEN_R.parquet").is_file()
    assert not (lake / "_staging").exists() or not any((lake / "_staging").iterdir())
    import json

    manifest = json.loads((lake / "_manifest.json").read_text())
    entry = manifest["files"]["ER_PRS_F_202301.csv"]
    assert entry["rows_read"] == entry["rows_loaded"] + entry["rows_quarantined"]
    assert result.report_html.is_file() and result.report_json.is_file()
    latest = runtime.settings.paths.reports / "latest"
    assert (latest / "report.html").read_bytes() == result.report_html.read_bytes()
    html = result.report_html.read_text()
    assert "<svg" in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    report = json.loads(result.report_json.read_text())
    assert report["tables"]["ER_PRS_F"]["rows_loaded"] == report["tables"]["ER_PRS_F"]["rows_in_lake"]
    assert {i["name"] for i in report["integrity"]} >= {"claims_without_beneficiary", "stays_without_beneficiary",
                                                       "drugs_without_referential"}


def test_small_batches_give_the_same_lake(tmp_path, delivery):
    """Streaming: a batch of 7 rows gives exactly the lake of one big batch."""
    from delivery_factory import fresh_runtime

    frames = []
    for batch in (7, 500_000):
        rt = fresh_runtime(tmp_path / f"b{batch}", batch_rows=batch)
        ingest_delivery(rt, delivery, actor="tester")
        frames.append(lake_mod.scan_table(rt.settings.paths.lake, "ER_PRS_F").collect())
        rt.close()
    assert frames[0].equals(frames[1])


def test_generator_delivery_loads_completely(runtime, tmp_path):
    """Round trip with the synthetic generator: every generated row is read and loaded."""
    from pds_kernel.snds.generator import generate

    summary = generate(tmp_path / "generated", patients=120, years=(2023, 2023), seed=9)
    result = ingest_delivery(runtime, tmp_path / "generated", actor="tester")
    assert result.clean, [f for f in result.files if f.status != Status.LOADED or f.rows_quarantined]
    assert {f.name: f.rows_read for f in result.files} == dict(summary.files)
    lake = runtime.settings.paths.lake
    raw = pl.read_csv(tmp_path / "generated" / "ER_PRS_F_202306.csv", separator=";", encoding="latin-1",
                      infer_schema=False)
    got = lake_mod.scan_table(lake, "ER_PRS_F").filter(pl.col("FLX_DIS_DTD") == date(2023, 6, 1)).collect()
    assert sorted(got["BEN_NIR_PSA"].to_list()) == sorted(raw["BEN_NIR_PSA"].to_list())
    assert abs(got["PRS_PAI_MNT"].sum() - raw["PRS_PAI_MNT"].cast(pl.Float64).sum()) < 1e-6


def _lake_figures(lake, table: str) -> dict:
    """Nulls and missing dates per column, counted on the lake files themselves."""
    frame = lake_mod.scan_table(lake, table).collect()
    figures = {}
    for c in TABLES[table].columns:
        info = {"nulls": frame.get_column(c.name).null_count()}
        if c.type == "date":
            info["missing_dates"] = int((frame.get_column(c.name) == MISSING_DATE).sum())
        figures[c.name] = info
    return figures


def test_report_figures_equal_a_scan_of_the_lake(runtime, delivery):
    """The null and missing-date counts recorded per file (duplicates removed after the parse
    included) add up to what a scan of the lake finds; a manifest written without them (by an
    older version) gives the same report, from a scan."""
    import json

    from test_quarantine import _corrupt

    from pds_kernel.ingest.manifest import Manifest
    from pds_kernel.ingest.report import build_table_stats

    _corrupt(delivery)  # holds a duplicate key, removed from the staged file at commit
    result = ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    report = json.loads(result.report_json.read_text())
    for table in ("IR_BEN_R", "ER_PRS_F", "ER_PHA_F", "T_MCOaaC"):
        got = {name: {k: v for k, v in info.items() if k in ("nulls", "missing_dates")}
               for name, info in report["tables"][table]["columns"].items()}
        assert got == _lake_figures(lake, table), table
    assert report["tables"]["ER_PRS_F"]["columns"]["DPN_QLF"]["nulls"] > 0
    assert report["tables"]["IR_BEN_R"]["columns"]["BEN_DCD_DTE"]["missing_dates"] > 0
    manifest = json.loads((lake / "_manifest.json").read_text())
    assert manifest["files"]["ER_PRS_F_202301.csv"]["nulls"]["DPN_QLF"] >= 0
    for entry in manifest["files"].values():
        del entry["nulls"], entry["missing_dates"]
    (lake / "_manifest.json").write_text(json.dumps(manifest))
    assert build_table_stats(lake, Manifest(lake)) == report["tables"]
