"""Bad specs give one clear error naming the place of the mistake."""

from __future__ import annotations

import json

import pytest
from extract_lake import DIABETES_SPEC, write_spec

from pds_kernel.errors import InvalidInput
from pds_kernel.extract.spec import PERSON_ID, check_against_lake, load_spec, parse_spec

BASE = """
project: diab-study
years: [2022, 2023]
include:
  - drug: {atc: [A10]}
tables:
  ER_PRS_F: [EXE_SOI_DTD]
"""


def test_full_spec_parses():
    spec = parse_spec(DIABETES_SPEC)
    assert spec.project == "diab-study"
    assert [c.kind for c in spec.include] == ["drug"] and spec.include[0].codes == ("A10",)
    assert spec.generalise.birth_year and spec.generalise.departement and spec.generalise.care_month
    # person keys become PERSON_ID, the birth month goes with birth_date: year
    assert spec.output_columns("IR_BEN_R") == (PERSON_ID, "BEN_NAI_ANN", "BEN_SEX_COD", "BEN_RES_DPT", "BEN_RES_COM")
    assert spec.output_columns("IR_PHA_R")[0] == "PHA_CIP_C13"
    assert len(spec.sha256) == 64


@pytest.mark.parametrize("change, message", [
    ("tables: {ER_PRS_X: all}", "unknown table 'ER_PRS_X'"),
    ("tables: {ER_PRS_F: [NOPE]}", r"tables.ER_PRS_F\[0\]: unknown column 'NOPE'"),
    ("include: [{drug: {atc: [A1O]}}]", r"include\[0\].drug.atc\[0\]: 'A1O' is not an ATC"),
    ("include: [{diagnosis: {icd10: [I21, '21I']}}]", r"include\[0\].diagnosis.icd10\[1\]: '21I' is not an ICD-10"),
    ("include: [{diagnosis: {icd10: [I21], where: [main]}}]", r"where\[0\]: 'main'"),
    ("include: [{biology: {nabm: [HBA1C]}}]", r"include\[0\].biology.nabm\[0\]: 'HBA1C' is not a NABM"),
    ("include: [{biology: {nabm: [15770]}}]", r"include\[0\].biology.nabm\[0\]: 15770 is not a NABM"),
    ("include: [{biology: {nabm: [true]}}]", r"include\[0\].biology.nabm\[0\]: True is not a NABM"),
    ("include: [{smoker: true}]", "unknown criterion 'smoker'"),
    ("include: []", "at least one inclusion criterion"),
    ("years: [2021, 2023]", "consecutive"),
    ("period: {from: 2021-01-01, to: 2022-06-30}", "must lie within the years"),
    ("generalise: {birth_date: day}", "only 'year'"),
    ("colour: blue", "unknown key"),
    ("quasi_identifiers: [BEN_NIR_PSA]", "not a \\(non-identifier\\) column"),
    ("linkage: {file: c.csv, source_id: NIR_ANO_17, subject_id: SUBJECT}", "linkage.source_id"),
    ("project: ../etc", "invalid project id"),
])
def test_bad_specs(change, message):
    key = change.split(":")[0]
    # include and tables are written out again whole (a spec with a key given twice is refused)
    lines = [line for line in BASE.strip().splitlines() if not line.startswith(key) and not
             (key in ("include", "tables") and line.startswith(("  ", "include", "tables")))]
    if key == "include":
        lines.append("tables: {ER_PRS_F: [EXE_SOI_DTD]}")
    if key == "tables":
        lines.append("include: [{drug: {atc: [A10]}}]")
    text = "\n".join(lines + [change])
    with pytest.raises(InvalidInput, match=message):
        parse_spec(text, "spec.yaml")


def test_dates_outside_the_lake(small_lake, tmp_path):
    spec = load_spec(write_spec(tmp_path, BASE.replace("[2022, 2023]", "[2023, 2024]")))
    with pytest.raises(InvalidInput, match="years 2024 are outside the lake's data"):
        check_against_lake(spec, small_lake.path)
    check_against_lake(load_spec(write_spec(tmp_path, BASE)), small_lake.path)


def test_missing_table_in_lake(small_lake, tmp_path):
    import shutil

    shutil.rmtree(small_lake.path / "KI_CCI_R")
    manifest_path = small_lake.path / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if v["table"] != "KI_CCI_R"}
    manifest_path.write_text(json.dumps(manifest))
    spec = load_spec(write_spec(tmp_path, BASE.replace("ER_PRS_F: [EXE_SOI_DTD]", "KI_CCI_R: all")))
    with pytest.raises(InvalidInput, match="needs table\\(s\\) KI_CCI_R"):
        check_against_lake(spec, small_lake.path)


def test_linkage_file_is_resolved_next_to_the_spec(tmp_path):
    path = write_spec(tmp_path, BASE + "linkage: {file: cohort.csv, source_id: BEN_NIR_PSA, subject_id: SUBJECT}\n")
    assert load_spec(path).linkage.file == (tmp_path / "cohort.csv").resolve()


def _cut_lake_after(lake, last_month: str) -> None:
    """Leave only the monthly partitions up to ``last_month`` committed in the lake's manifest (the
    later files stay on disk, uncommitted: the lake never reads them)."""
    manifest_path = lake / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items()
                         if "/month=" not in k or k.split("/month=")[1][:6] <= last_month}
    manifest_path.write_text(json.dumps(manifest))


def test_period_outside_the_lakes_months(small_lake, tmp_path):
    """Years the lake holds, but a period past its last month: refused, naming the lake's range."""
    _cut_lake_after(small_lake.path, "202306")
    late = BASE.replace("[2022, 2023]", "[2023]") + "period: {from: 2023-08-01, to: 2023-12-31}\n"
    spec = load_spec(write_spec(tmp_path, late))
    with pytest.raises(InvalidInput, match=r"period 2023-08-01\.\.2023-12-31 is outside the lake's data "
                                           r"\(2021-01 to 2023-06\)"):
        check_against_lake(spec, small_lake.path)
    # the last day of the lake's last month is still inside; a period overlapping the lake is fine
    for period in ("{from: 2023-06-30, to: 2023-12-31}", "{from: 2023-01-01, to: 2023-12-31}"):
        check_against_lake(load_spec(write_spec(tmp_path, BASE.replace("[2022, 2023]", "[2023]")
                                                + f"period: {period}\n")), small_lake.path)
