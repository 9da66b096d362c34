"""Every table of the SNDS catalogue is ingestible from its metadata: real file names, types and
date formats from the schema, primary keys, nomenclature codes and foreign keys in the report."""

from __future__ import annotations

import json

import pytest
from delivery_factory import fresh_runtime

from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.snds.catalogue import entries, ingestible_names, ingestible_table
from pds_kernel.snds.file_names import parse_delivery_name
from pds_kernel.snds.schema_generator import generate_catalogue, generate_table


def test_the_catalogue_holds_every_published_table_and_nomenclature():
    from pds_kernel.snds.catalogue import nomenclature_codes, nomenclatures

    assert len(entries()) == 186 and len(nomenclatures()) == 502
    assert {"ER_UCD_F", "T_MCOaaB", "T_SSRaaB", "T_HADaaB", "NS_PRS_F", "CT_DEP_AAAA_GN"} <= set(entries())
    assert "E119" in nomenclature_codes("IR_CIM_V")  # ICD-10: type 2 diabetes without complication


@pytest.mark.parametrize(("name", "expected"), [
    ("T_MCO23B.csv", ("T_MCOaaB", "2023")),
    ("T_SSR19B.csv", ("T_SSRaaB", "2019")),
    ("ER_UCD_F_202301.csv", ("ER_UCD_F", "202301")),
    ("NS_PRS_F_202212.csv", ("NS_PRS_F", "202212")),
    ("BE_IDE_R.csv", ("BE_IDE_R", None)),
    ("CT_DEP_2021_GN.csv", ("CT_DEP_AAAA_GN", "2021")),
    ("ER_PRS_F_202301.csv", ("ER_PRS_F", "202301")),  # the profile's names are unchanged
    ("T_MCOaaB_202301.csv", ("T_MCOaaB", "202301")),
])
def test_real_file_names(name, expected):
    assert parse_delivery_name(name) == expected


@pytest.mark.parametrize("name", ["ER_UCD_F.csv", "T_MCOaaFA.csv", "BE_IDE_R_202301.csv", "NOPE_202301.csv"])
def test_misnamed_files_are_refused_with_a_reason(name):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        parse_delivery_name(name)


def test_types_formats_and_keys_come_from_the_schema():
    ucd = ingestible_table("ER_UCD_F")
    assert ucd.split == "monthly" and ucd.group == "DCIR"
    assert ucd.column("FLX_DIS_DTD").type == "date" and ucd.column("FLX_DIS_DTD").fmt == "sas_datetime"
    assert ucd.column("UCD_UCD_COD").nomenclature is not None
    assert ucd.foreign_keys and ucd.foreign_keys[0][1] == "ER_PRS_F"
    fa = ingestible_table("T_MCOaaFA")
    assert fa.split == "yearly" and fa.column("ETA_NUM").type == "str"
    stays = ingestible_table("T_MCOaaCSTC")
    assert stays.column("ENT_DAT").fmt == "dmy" and stays.column("EXE_SOI_DTD").fmt == "sas_datetime"
    mco_b = ingestible_table("T_MCOaaB")  # the profile's definition, with the published nomenclature
    assert mco_b.column("DGN_PAL").nomenclature == ("MS_CIM_V", "CIM_COD")
    keyed = [n for n in entries() if ingestible_table(n).primary_key]
    assert keyed and all(not ingestible_table(n).column(k).nullable
                         for n in keyed for k in ingestible_table(n).primary_key)


def test_every_catalogued_table_generates_and_loads_without_quarantine(tmp_path):
    files = generate_catalogue(tmp_path / "delivery", rows=3, seed=5)
    assert {f.table for f in files} == set(ingestible_names())
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, tmp_path / "delivery", actor="t")
    bad = [f for f in result.files if f.status != Status.LOADED or f.rows_quarantined]
    assert not bad, bad[:5]
    assert len(result.files) == len(files) and result.totals()["rows_loaded"] == 3 * len(files)
    report = json.loads(result.report_json.read_text())
    assert set(report["tables"]) == set(ingestible_names())
    # generated codes come from the nomenclatures: none unknown
    unknown = {(t, c): info["unknown_codes"] for t, s in report["tables"].items()
               for c, info in s["columns"].items() if info.get("unknown_codes")}
    assert not unknown, unknown
    fks = [i for i in report["integrity"] if i["name"].startswith("fk_")]
    assert fks and all("foreign key" in i["meaning"] for i in fks)


def test_unknown_nomenclature_codes_are_reported_not_quarantined(tmp_path):
    generated = generate_table(tmp_path / "d", "T_MCOaaD", rows=4, period="2023", seed=1)
    lines = generated.path.read_text(encoding="latin-1").splitlines()
    header = lines[0].split(";")
    fields = lines[1].split(";")
    fields[header.index("ASS_DGN")] = "Z9999"  # matches the ICD-10 pattern, not in MS_CIM_V
    lines[1] = ";".join(fields)
    generated.path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, tmp_path / "d", actor="t")
    [loaded] = result.files
    assert loaded.name == "T_MCO23D.csv" and loaded.status == Status.LOADED and loaded.rows_quarantined == 0
    report = json.loads(result.report_json.read_text())
    column = report["tables"]["T_MCOaaD"]["columns"]["ASS_DGN"]
    assert column["unknown_codes"] == 1 and column["nomenclature"] == "MS_CIM_V:CIM_COD"
    assert (runtime.settings.paths.lake / "T_MCOaaD" / "year=2023" / "T_MCO23D.parquet").is_file()
