"""Every table of the SNDS catalogue is ingestible from its metadata: real file names, types and
date formats from the schema, primary keys, nomenclature codes and foreign keys in the report."""

from __future__ import annotations

import json

import polars as pl
import pytest
from delivery_factory import fresh_runtime

from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.lake import scan_table
from pds_kernel.snds.catalogue import entries, ingestible_names, ingestible_table, nomenclature_codes, schema
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


#: The date text formats (pds_kernel.ingest.checks.DATE_FORMATS) a published date may be read with.
_DATE_TEXT = {"sas_datetime", "dmy"}


def test_no_published_date_or_datetime_loads_as_text():
    """Scans every column of the catalogue: T_RIPaaC's EXE_SOI_DTD and EXE_SOI_DTF, published as
    ``datetime``, loaded as text (any value loaded, a date stayed its SAS text)."""
    published = {"date": 0, "datetime": 0}
    wrong = []
    for name in entries():
        table = ingestible_table(name)  # the profile's definition for its 10 tables
        for field in schema(name)["fields"]:
            if field["type"] not in published or field["name"] not in table.column_names:
                continue
            published[field["type"]] += 1
            column = table.column(field["name"])
            month = field["type"] == "date" and field.get("format") == "%m"
            if (column.type, column.fmt in _DATE_TEXT) != (("month", False) if month else ("date", True)):
                wrong.append((name, column.name, field["type"], field.get("format"), column.type, column.fmt))
            if field["type"] == "datetime" and column.fmt != "sas_datetime":
                wrong.append((name, column.name, "a datetime is written as a SAS datetime", column.fmt))
    assert not wrong, wrong
    assert published == {"date": 330, "datetime": 4}  # datetimes: the dates of care of T_MCOaaC, T_RIPaaC
    rip = ingestible_table("T_RIPaaC")
    assert [(rip.column(c).type, rip.column(c).fmt) for c in ("EXE_SOI_DTD", "EXE_SOI_DTF")] == [
        ("date", "sas_datetime")] * 2


def test_every_year_column_of_the_catalogue_is_placed_as_care_or_not():
    """A year or year-month column is of care (its early values are counted in the quality report)
    or not (a birth, a death, an accident, a prescription...: may be decades old), never neither: a
    new one brought by a catalogue update is named here until someone places it."""
    from pds_kernel.ingest.checks import is_year_column
    from pds_kernel.ingest.stats import CARE_YEARS, OTHER_YEARS, care_year_columns

    assert not CARE_YEARS & OTHER_YEARS
    found = {c.name for t in ingestible_names() for c in ingestible_table(t).columns if is_year_column(c)}
    assert found - CARE_YEARS - OTHER_YEARS == set(), "year columns neither of care nor in OTHER_YEARS"
    assert (CARE_YEARS | OTHER_YEARS) - found == set(), "names of no catalogue column"
    assert care_year_columns("T_MCOaaB") == ["SOR_ANN"] and care_year_columns("IR_BEN_R") == []


def test_a_published_datetime_loads_as_a_date(tmp_path):
    made = generate_table(tmp_path / "delivery", "T_RIPaaC", rows=3, period="202301")
    lines = made.path.read_text(encoding="latin-1").splitlines()
    header = lines[0].split(";")
    row = lines[1].split(";")
    row[header.index("EXE_SOI_DTD")], row[header.index("EXE_SOI_DTF")] = "02JAN2023:00:00:00", "not a date"
    made.path.write_text("\n".join([lines[0], ";".join(row), *lines[2:]]) + "\n", encoding="latin-1")
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, tmp_path / "delivery", actor="t")
    (file,) = result.files
    assert (file.status, file.rows_loaded, file.rows_quarantined) == (Status.LOADED, 2, 1)
    lake = scan_table(runtime.settings.paths.lake, "T_RIPaaC").collect()
    assert lake.schema["EXE_SOI_DTD"] == pl.Date and lake.schema["EXE_SOI_DTF"] == pl.Date


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
    # generated codes come from the nomenclatures: none unknown, but where the catalogue gives a
    # column a length shorter than every code of its nomenclature (ORG_CAI_NUM: 3 characters,
    # IR_CAI_V's codes 6): the generator keeps to the length, or the rows would be quarantined
    unknown = {(t, c): info["unknown_codes"] for t, s in report["tables"].items()
               for c, info in s["columns"].items() if info.get("unknown_codes") and _codes_fit(t, c)}
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


#: An ingest as before the fix (published datetimes as text), in a process of its own: the
#: catalogue's types are cached in many places, and none of them may leak into other tests.
_OLD_TYPES_INGEST = """
import sys
from pathlib import Path
from pds_kernel.snds import catalogue
new = catalogue._lake_type
catalogue._lake_type = lambda field: ("str", None) if field["type"] == "datetime" else new(field)
from delivery_factory import fresh_runtime
from pds_kernel.ingest import ingest_delivery
result = ingest_delivery(fresh_runtime(Path(sys.argv[1])), Path(sys.argv[2]), actor="t")
assert [f.status for f in result.files] == ["loaded"], result.files
"""


def test_a_table_loaded_with_the_old_types_refuses_files_of_the_new_ones(tmp_path):
    """A lake that holds T_RIPaaC loaded before the fix (its dates as text): a new year's file,
    typed as dates now, made the whole table unreadable ("data type mismatch"). It is refused
    with the reason, the other tables load, and the table stays readable."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pds_kernel.lake import versions

    generate_table(tmp_path / "d2023", "T_RIPaaC", rows=3, period="202301")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    subprocess.run([sys.executable, "-c", _OLD_TYPES_INGEST, str(tmp_path), str(tmp_path / "d2023")],
                   check=True, env=env, timeout=300)
    runtime = fresh_runtime(tmp_path)
    lake = runtime.settings.paths.lake
    assert scan_table(lake, "T_RIPaaC").collect().schema["EXE_SOI_DTD"] == pl.String
    assert versions.type_changes(lake, "T_RIPaaC") == [
        "EXE_SOI_DTD: string in the lake, date now", "EXE_SOI_DTF: string in the lake, date now"]
    made = generate_table(tmp_path / "d2022", "T_RIPaaC", rows=3, period="202201")
    other = generate_table(tmp_path / "d2022", "T_MCOaaB", rows=3, period="202201")
    result = {f.name: f for f in ingest_delivery(runtime, tmp_path / "d2022", actor="t").files}
    refused = result[made.path.name]
    assert refused.status == Status.REFUSED and "EXE_SOI_DTD: string in the lake, date now" in refused.reason
    assert "rebuild the table" in refused.reason
    assert result[other.path.name].status == Status.LOADED
    assert scan_table(lake, "T_RIPaaC").collect().height == 3  # still readable: the 2023 rows
    assert versions.type_changes(lake, "T_MCOaaB") == versions.type_changes(lake, "IR_BEN_R") == []
    again = ingest_delivery(runtime, tmp_path / "d2023", actor="t").files[0]
    assert again.status == Status.SKIPPED  # a file already loaded is skipped, as before


def _codes_fit(table: str, column: str) -> bool:
    """True when a code of the column's nomenclature fits within the column's published length."""
    col = ingestible_table(table).column(column)
    codes = nomenclature_codes(*col.nomenclature)
    return col.length is None or any(len(code) <= col.length for code in codes)
