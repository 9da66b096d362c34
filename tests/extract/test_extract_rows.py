"""The rows of a built extract obey the standard SNDS filters and the spec's years and period.

Checked on the published files themselves (not on the cohort): no information line, no error stay,
no stay with a failed linkage, no event outside the period, and exactly the rows a brute-force
computation over the same small lake expects. The care-date generalisation is off, so the dates
are the lake's own."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from extract_lake import lake_numbers, unkeyed

from pds_kernel.extract.build import run_build
from pds_kernel.extract.cohort import RETURN_CODES
from pds_kernel.extract.layout import read_tables
from pds_kernel.extract.spec import PERSON_ID, parse_spec
from pds_kernel.pseudo import KeyStore, pseudonym
from pds_kernel.snds.tables import MISSING_DATE

START, END = date(2022, 3, 1), date(2023, 10, 31)
YEARS_START, YEARS_END = date(2022, 1, 1), date(2023, 12, 31)
ROWS_SPEC = f"""
project: diab-study
years: [2022, 2023]
period: {{from: {START}, to: {END}}}
include: [{{care: {{from: {START}, to: {END}}}}}]
tables:
  IR_BEN_R: all
  ER_PRS_F: all
  ER_PHA_F: all
  IR_IMB_R: all
  T_MCOaaB: all
  T_MCOaaC: all
  T_MCOaaD: all
  KI_CCI_R: all
"""
EVENT_TABLES = ("ER_PRS_F", "ER_PHA_F", "T_MCOaaB", "T_MCOaaC", "T_MCOaaD", "KI_CCI_R")


@pytest.fixture
def extract(runtime, registry, small_lake):
    """(tables of the published extract, the cohort's raw BEN_NIR_PSA, the lake's rows)."""
    result = run_build(runtime, "diab-study", parse_spec(ROWS_SPEC), actor="root")
    key = KeyStore.from_runtime(runtime).get("diab-study")
    nir_of = {pseudonym(key, r["BEN_NIR_PSA"]): r["BEN_NIR_PSA"] for r in small_lake.rows["IR_BEN_R"]}
    numbers = lake_numbers(small_lake.rows)  # claim and stay numbers back to the lake's (they are keyed)
    tables = {name: unkeyed(df, key, numbers) for name, df in read_tables(result.path).items()}
    cohort = {nir_of[pid] for pid in tables["COHORT"][PERSON_ID]}
    assert 0 < len(cohort) < len(nir_of)
    return tables, cohort, small_lake.rows


def _stay_keys(df: pl.DataFrame) -> set[tuple]:
    return set(df.select("ETA_NUM", "RSA_NUM").iter_rows())


def test_no_information_line_and_exactly_the_care_lines(extract):
    tables, cohort, rows = extract
    prs = tables["ER_PRS_F"]
    assert prs.height > 0
    assert prs.filter(pl.col("DPN_QLF") == 71).is_empty()
    in_scope = [r for r in rows["ER_PRS_F"] if r["BEN_NIR_PSA"] in cohort and START <= r["EXE_SOI_DTD"] <= END]
    information = {r["DCT_ORD_NUM"] for r in in_scope if r["DPN_QLF"] == 71}
    assert information, "the fixture should give the cohort information lines in the period"
    care = {r["DCT_ORD_NUM"] for r in in_scope if r["DPN_QLF"] != 71}
    assert set(prs["DCT_ORD_NUM"]) == care
    # pharmacy lines follow their claim: none hangs from an information line
    pha = set(tables["ER_PHA_F"]["DCT_ORD_NUM"])
    assert pha and pha <= care
    assert pha == {r["DCT_ORD_NUM"] for r in rows["ER_PHA_F"] if r["DCT_ORD_NUM"] in care}
    assert {r["DCT_ORD_NUM"] for r in rows["ER_PHA_F"]} & information, \
        "the fixture should have pharmacy lines on information lines, which must stay out"


def test_no_error_stay_and_no_failed_linkage_in_pmsi_tables(extract):
    tables, cohort, rows = extract
    ghm = {(r["ETA_NUM"], r["RSA_NUM"]): r["GRG_GHM"] for r in rows["T_MCOaaB"]}
    linked = {(r["ETA_NUM"], r["RSA_NUM"]): all(r[c] == "0" for c in RETURN_CODES) for r in rows["T_MCOaaC"]}
    # the filters are read from the files' own columns where the table has them...
    assert tables["T_MCOaaB"]["GRG_GHM"].str.starts_with("90").sum() == 0
    for code in RETURN_CODES:
        assert (tables["T_MCOaaC"][code] == "0").all(), code
    # ...and through the stay keys for every PMSI table (D has neither column)
    for table in ("T_MCOaaB", "T_MCOaaC", "T_MCOaaD"):
        keys = _stay_keys(tables[table])
        assert keys, table
        assert not [k for k in keys if ghm[k].startswith("90")], f"{table} holds an error stay"
        assert all(linked[k] for k in keys), f"{table} holds a stay whose linkage failed"
    in_scope = [r for r in rows["T_MCOaaC"] if r["NIR_ANO_17"] in cohort and START <= r["EXE_SOI_DTD"] <= END]
    keys = {(r["ETA_NUM"], r["RSA_NUM"]) for r in in_scope}
    valid = {k for k in keys if linked[k] and not ghm[k].startswith("90")}
    assert valid < keys, "the fixture should give the cohort error stays or failed linkage in the period"
    assert _stay_keys(tables["T_MCOaaC"]) == valid
    assert _stay_keys(tables["T_MCOaaB"]) == valid
    assert _stay_keys(tables["T_MCOaaD"]) == {(r["ETA_NUM"], r["RSA_NUM"]) for r in rows["T_MCOaaD"]
                                              if (r["ETA_NUM"], r["RSA_NUM"]) in valid}


def test_no_event_outside_the_period_and_no_date_outside_the_years(extract):
    tables, cohort, rows = extract
    # the dates that select an event lie in the period
    for table, column in (("ER_PRS_F", "EXE_SOI_DTD"), ("T_MCOaaC", "EXE_SOI_DTD"), ("KI_CCI_R", "BEN_DCD_DTE")):
        dates = tables[table][column]
        assert dates.len() > 0, table
        assert dates.min() >= START and dates.max() <= END, f"{table}.{column}"
    # every date of an event table lies in the years (a claim's processing date, a stay's end)
    for table in EVENT_TABLES:
        for column, dtype in tables[table].schema.items():
            if dtype == pl.Date:
                values = tables[table][column].drop_nulls()
                assert values.min() >= YEARS_START and values.max() <= YEARS_END, f"{table}.{column}"
    # long-term illnesses: those open at some point of the period, and only those
    imb = tables["IR_IMB_R"]
    assert imb.height > 0
    for started, ended in imb.select("IMB_ALD_DTD", "IMB_ALD_DTF").iter_rows():
        assert started <= END and (ended == MISSING_DATE or START <= ended <= END)
    theirs = [r for r in rows["IR_IMB_R"] if r["BEN_NIR_PSA"] in cohort]
    open_in_period = [r for r in theirs if r["IMB_ALD_DTD"] <= END
                      and (r["IMB_ALD_DTF"] == MISSING_DATE or r["IMB_ALD_DTF"] >= START)]
    assert imb.height == len(open_in_period) < len(theirs), "an ALD closed before the period stays out"
    # an ALD that ended after the period reads "no end": the project does not learn when it ended
    ended_later = [r for r in open_in_period if r["IMB_ALD_DTF"] > END]
    assert ended_later, "the lake must hold an ALD ending after the period"
    as_published = sorted((r["IMB_ALD_DTD"], MISSING_DATE if r["IMB_ALD_DTF"] > END else r["IMB_ALD_DTF"])
                          for r in open_in_period)
    assert sorted(imb.select("IMB_ALD_DTD", "IMB_ALD_DTF").iter_rows()) == as_published
    # not vacuous: the cohort has claims and deaths outside the period, and the dates are not generalised
    assert [r for r in rows["ER_PRS_F"] if r["BEN_NIR_PSA"] in cohort and not START <= r["EXE_SOI_DTD"] <= END]
    assert [r for r in rows["KI_CCI_R"] if not START <= r["BEN_DCD_DTE"] <= END]
    assert (tables["ER_PRS_F"]["EXE_SOI_DTD"].dt.day() != 1).any()
