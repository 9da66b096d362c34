"""Red team 20D: silent damage at intake, the residuals of red team 19C.

Each test delivers crafted files to the real ingestion (``ingest_delivery``, what ``pds ingest``
calls, on a real lake in ``tmp_path``) and asserts that the attack fails: the damaged rows are
quarantined with their check and column, or loaded and counted in the quality report, and every
file keeps rows read = loaded + quarantined. Both parsers are played where a clean file could
reach the streamed one. 9 attacks, 7 got through before the fixes:

* years out of range loaded as years: a birth year ``BEN_NAI_ANN`` of ``1601``, ``2999``, ``0000``
  or ``1869`` (both parsers, 2 attacks); care years of the catalogue's stay and claims tables,
  held as numbers (``ENT_ANN`` ``0000`` and ``2999``, ``SOI_ANN`` ``1601``) or as year-month text
  (``EXD_ANN_MOI`` ``000012``, ``MOI_ANN_SOR_SEJ`` ``299901``);
* dates of care between 1900 and the SNDS's start (``EXE_SOI_DTD`` and ``EXE_SOI_DTF`` of
  ``1950``, a PMSI stay entered ``01011950``) loaded without a word in the quality report, and so
  did dates of care after their file's month but before the ingest (a care in June in the January
  flux file, a January stay entered in March), both parsers (3 attacks);
* the quarantine of a DCIRS month extracted by month of care (its rows of the next flux month)
  said only ``FLX_DIS_DTD is not in the month of the file``: not what to do about it.

Did not get through: a date of care after the ingest (``01JAN2999``, and the ingest's day and
eight days) was quarantined (``future_date``, red team 15A), with both parsers (2 attacks).

The fixes: a year outside its range is quarantined (``year_out_of_range``): a birth year from 1870
(nobody born earlier lived into the SNDS's years), any other year from 1900, both to the ingest's
year, the missing date's year 1600 excepted (see ``pds_kernel.ingest.checks.year_bounds`` for why
both are quarantined); a date of care, of a stay or of a flux from 1900 to before 2000 loads and
is counted per column in a section of its own of the quality report, "Care dates before the SNDS
or after their file" (it can be real: a late claim, a long psychiatric stay), and so is a start or
end of care or a stay's entry after the month (or year) of its file; a ``wrong_month`` reason
names the column compared, the row's month and the file's, the file to deliver the row in, and for a flux
column the re-extraction split by flux month. Controls that must load, and do: birth years 1870,
1900, 1905 and 2024, an empty one and 1600; care years 1975 and 1600, an ALD opened in 1975 and a
birth in 1905 (not care dates: not counted), a care date of 2000-01-01 (the bound, not counted),
and the demo generator's delivery (no quarantine, no date counted).
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from intake_damage_support import (
    edit_fields,
    fresh_runtime,
    ingest,
    lake_values,
    make_rows,
    quarantine_of,
    quarantined_checks,
    use_parser,
    write_delivery,
    write_table,
)

from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.ingest.checks import OLDEST_BIRTH_YEAR
from pds_kernel.ingest.stats import SNDS_START
from pds_kernel.snds.schema_generator import generate_table

MONTH = "202301"
YEAR_RANGE = "year_out_of_range"


def _report(result) -> tuple[dict, str]:
    """The run's report.json (as data) and report.html (as text)."""
    return (json.loads(result.report_json.read_text(encoding="utf-8")),
            result.report_html.read_text(encoding="utf-8"))


def _section(page: str, title: str) -> str:
    """The HTML of the report's section ``title``, up to the next one."""
    section = page[page.index(f"<h2>{title}</h2>"):]
    return section[:section.index("<h2>", 5)]


# -- 1. years out of range -------------------------------------------------------------------------

@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_birth_years_out_of_range_are_quarantined_and_real_ones_load(parser, tmp_path, monkeypatch):
    """Got through: birth years 1601 (a slip of the missing year), 2999 (a placeholder), 0000 (a
    null written as a number) and 1869 loaded. Real ones load: 1870 (the bound), 1900, 1905, 2024,
    an empty year and 1600, the missing date's year."""
    use_parser(monkeypatch, parser)
    runtime = fresh_runtime(tmp_path)
    people = make_rows(persons=10, months=())["IR_BEN_R"]
    (tmp_path / "d").mkdir()
    path = write_table(tmp_path / "d" / "IR_BEN_R.csv", "IR_BEN_R", people)
    years = ["1601", "2999", "0000", "1869", str(OLDEST_BIRTH_YEAR), "1900", "1905", "2024", "", "1600"]
    edit_fields(path, {row: {"BEN_NAI_ANN": year} for row, year in enumerate(years)})
    result = ingest(runtime, tmp_path / "d")["IR_BEN_R.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (6, 4)
    assert quarantined_checks(runtime, "IR_BEN_R.csv") == {line: (YEAR_RANGE, "BEN_NAI_ANN") for line in (2, 3, 4, 5)}
    reasons = quarantine_of(runtime, "IR_BEN_R.csv")["reason"].to_list()
    assert all("birth year out of range in BEN_NAI_ANN (expected 1870 to" in r for r in reasons)
    assert "an unknown birth year is delivered empty" in reasons[2] and "'0000'" in reasons[2]
    assert sorted(lake_values(runtime, "IR_BEN_R", "BEN_NAI_ANN"), key=lambda y: y or 0) == [
        None, 1600, 1870, 1900, 1905, 2024]


def test_care_years_out_of_range_are_quarantined_as_numbers_and_as_text(tmp_path):
    """Got through: a HAD stay entered in the year 0000 and one in 2999, a DAMIR year of care 1601,
    a DAMIR year-month of care 000012 and an SSR exit year-month 299901 loaded. A stay entered in
    1975 (a long one: it loads, as a 1975 date does) and in 1600 (the missing year) load."""
    delivery = tmp_path / "d"
    had = generate_table(delivery, "T_HADaaC", rows=4, period="2023", seed=20)
    edit_fields(had.path, {0: {"ENT_ANN": "0000"}, 1: {"ENT_ANN": "2999"}, 2: {"ENT_ANN": "1975"},
                     3: {"ENT_ANN": "1600"}})
    damir = generate_table(delivery, "MA_REM_FT", rows=3, period=MONTH, seed=20)
    edit_fields(damir.path, {0: {"SOI_ANN": "1601"}, 1: {"EXD_ANN_MOI": "000012"}})
    ssr = generate_table(delivery, "T_SSRaaB", rows=2, period="2023", seed=20)
    edit_fields(ssr.path, {0: {"MOI_ANN_SOR_SEJ": "299901"}})
    runtime = fresh_runtime(tmp_path)
    results = ingest(runtime, delivery)
    assert {name: r.status for name, r in results.items()} == dict.fromkeys(results, Status.LOADED)
    assert quarantined_checks(runtime, had.path.name) == {2: (YEAR_RANGE, "ENT_ANN"), 3: (YEAR_RANGE, "ENT_ANN")}
    assert quarantined_checks(runtime, damir.path.name) == {2: (YEAR_RANGE, "SOI_ANN"), 3: (YEAR_RANGE, "EXD_ANN_MOI")}
    assert quarantined_checks(runtime, ssr.path.name) == {2: (YEAR_RANGE, "MOI_ANN_SOR_SEJ")}
    assert sorted(lake_values(runtime, "T_HADaaC", "ENT_ANN")) == [1600, 1975]
    assert results[damir.path.name].rows_loaded == 1 and results[ssr.path.name].rows_loaded == 1


# -- 2. dates of care before the SNDS, and after the delivery --------------------------------------

def test_care_dates_before_the_snds_load_and_are_counted_in_the_report(tmp_path):
    """Got through: two claims with a date of care in 1950, one with an end of care in 1950, and a
    PMSI stay entered on 01011950 loaded, and the report said nothing of them. They load (a late
    claim or a long stay can be that old) and the report counts them per column. Not counted: a
    care date of 2000-01-01 (the SNDS's start as the ingestion sees it), an ALD opened in 1975 and
    a birth in 1905 (not dates of care)."""
    rows = make_rows(persons=60, months=(MONTH,))
    prs, mco = rows[("ER_PRS_F", MONTH)], rows[("T_MCOaaC", MONTH)]
    rows[("ER_PRS_F", MONTH)] = [dict(prs[0], EXE_SOI_DTD=date(1950, 3, 2)), dict(prs[1], EXE_SOI_DTD=date(1950, 3, 2)),
                                 dict(prs[2], EXE_SOI_DTF=date(1950, 3, 9)), dict(prs[3], EXE_SOI_DTD=SNDS_START),
                                 *prs[4:]]
    rows[("T_MCOaaC", MONTH)] = [dict(mco[0], ENT_DAT=date(1950, 1, 1)), *mco[1:]]
    rows["IR_BEN_R"][0] = dict(rows["IR_BEN_R"][0], BEN_NAI_ANN=1905)
    delivery = write_delivery(tmp_path / "d", rows)
    write_table(delivery / "IR_IMB_R.csv", "IR_IMB_R", [dict(
        BEN_NIR_PSA="NIR00000000000001", BEN_RNG_GEM=1, IMB_ALD_NUM=1, IMB_ETM_NAT=41, MED_MTF_COD="E11",
        IMB_ALD_DTD=date(1975, 5, 1), IMB_ALD_DTF=date(9999, 12, 31))])
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, delivery, actor="attacker")
    assert {(f.status, f.rows_quarantined) for f in result.files} == {(Status.LOADED, 0)}
    assert date(1950, 3, 2) in lake_values(runtime, "ER_PRS_F", "EXE_SOI_DTD")
    report, page = _report(result)
    counted = {(table, column): info["early_dates"] for table, stats in report["tables"].items()
               for column, info in stats["columns"].items() if info.get("early_dates")}
    assert counted == {("ER_PRS_F", "EXE_SOI_DTD"): 2, ("ER_PRS_F", "EXE_SOI_DTF"): 1, ("T_MCOaaC", "ENT_DAT"): 1}
    assert "IMB_ALD_DTD" not in report["tables"]["IR_IMB_R"]["columns"] or not (
        report["tables"]["IR_IMB_R"]["columns"]["IMB_ALD_DTD"].get("early_dates"))
    section = _section(page, "Care dates before the SNDS or after their file")
    assert "<code>ER_PRS_F</code>" in section and "<code>EXE_SOI_DTD</code>" in section
    assert "<code>T_MCOaaC</code>" in section and "<code>ENT_DAT</code>" in section
    assert "loaded, not quarantined" in section and "IMB_ALD_DTD" not in section


@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_a_date_of_care_after_the_delivery_stays_quarantined(parser, tmp_path, monkeypatch):
    """Did not get through (red team 15A's ``future_date``): a date of care in 2999, and one a
    week and a day after the ingest's day, are quarantined; the ingest's day itself loads."""
    use_parser(monkeypatch, parser)
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(persons=12, months=(MONTH,))[("ER_PRS_F", MONTH)]
    delivery = write_delivery(tmp_path / "d", {("ER_PRS_F", MONTH): rows})
    name = f"ER_PRS_F_{MONTH}.csv"
    soon = date.today() + timedelta(days=8)
    edit_fields(delivery / name, {0: {"EXE_SOI_DTD": "01JAN2999:00:00:00"},
                            1: {"EXE_SOI_DTD": f"{soon.day:02d}{soon.strftime('%b').upper()}{soon.year}:00:00:00"},
                            2: {"EXE_SOI_DTD": date.today().strftime("%d%b%Y:00:00:00").upper()}})
    result = ingest(runtime, delivery)[name]
    assert quarantined_checks(runtime, name) == {2: ("future_date", "EXE_SOI_DTD"), 3: ("future_date", "EXE_SOI_DTD")}
    assert result.rows_loaded == len(rows) - 2


@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_care_dates_after_their_files_month_load_and_are_counted_in_the_report(parser, tmp_path, monkeypatch):
    """Got through: in the January flux file, a claim's care in June and an end of care in
    March, and a January stay entered in March (after its exit), loaded without a word: before the
    ingest, no check sees them. They load (a claim paid in advance can be real) and the report
    counts them per column; the processing date (``FLX_TRT_DTD``, which may follow its flux
    month) and the care of the month's last day are not counted."""
    use_parser(monkeypatch, parser)
    rows = make_rows(persons=60, months=(MONTH,))
    prs, mco = rows[("ER_PRS_F", MONTH)], rows[("T_MCOaaC", MONTH)]
    rows[("ER_PRS_F", MONTH)] = [dict(prs[0], EXE_SOI_DTD=date(2023, 6, 15)), dict(prs[1], EXE_SOI_DTF=date(2023, 3, 2)),
                                 dict(prs[2], EXE_SOI_DTD=date(2023, 1, 31), FLX_TRT_DTD=date(2023, 2, 3)), *prs[3:]]
    rows[("T_MCOaaC", MONTH)] = [dict(mco[0], ENT_DAT=date(2023, 3, 1)), *mco[1:]]
    delivery = write_delivery(tmp_path / "d", rows)
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, delivery, actor="attacker")
    assert {(f.status, f.rows_quarantined) for f in result.files} == {(Status.LOADED, 0)}
    report, page = _report(result)
    counted = {(table, column): info["late_dates"] for table, stats in report["tables"].items()
               for column, info in stats["columns"].items() if info.get("late_dates")}
    assert counted == {("ER_PRS_F", "EXE_SOI_DTD"): 1, ("ER_PRS_F", "EXE_SOI_DTF"): 1, ("T_MCOaaC", "ENT_DAT"): 1}
    section = _section(page, "Care dates before the SNDS or after their file")
    assert "<code>EXE_SOI_DTF</code>" in section and "<code>ENT_DAT</code>" in section
    assert "FLX_TRT_DTD" not in section


# -- 3. a DCIRS month extracted by month of care ---------------------------------------------------

def test_a_dcirs_month_split_by_care_month_says_what_to_do_in_the_quarantine_and_the_report(tmp_path):
    """Got through (unexplained): a DCIRS NS_PRS_F month extracted by month of care holds rows of
    the next flux month; they were quarantined with ``FLX_DIS_DTD is not in the month of the file``
    only. The reason, in the quarantine file and in the report's examples, now names the column
    compared, the file's month and the row's, the file to deliver it in, and the re-extraction."""
    generated = generate_table(tmp_path / "d", "NS_PRS_F", rows=4, period=MONTH, seed=20)
    edit_fields(generated.path, {0: {"FLX_DIS_DTD": "03FEB2023:00:00:00", "EXE_SOI_DTD": "28JAN2023:00:00:00"}})
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, tmp_path / "d", actor="attacker")
    [loaded] = result.files
    assert (loaded.rows_loaded, loaded.rows_quarantined) == (3, 1)
    assert quarantined_checks(runtime, generated.path.name) == {2: ("wrong_month", "FLX_DIS_DTD")}
    [reason] = quarantine_of(runtime, generated.path.name)["reason"].to_list()
    for said in ("FLX_DIS_DTD is not in the month of the file (2023-01): '03FEB2023:00:00:00'",
                 "the month of a row is that of its FLX_DIS_DTD", "deliver it in NS_PRS_F_202302.csv",
                 "pds ingest --correction", "extract it again split by FLX_DIS_DTD"):
        assert said in reason, said
    section = _section(_report(result)[1], "Quarantine")
    assert "wrong_month" in section and "deliver it in NS_PRS_F_202302.csv" in section
    assert "extract it again split by FLX_DIS_DTD" in section


# -- controls --------------------------------------------------------------------------------------

def test_the_demo_generators_delivery_loads_with_no_quarantine_and_no_date_counted(tmp_path):
    """Control: a delivery of the synthetic generator over the demo's years (``make run``'s) loads
    whole: no year out of range (its birth years go back to the 1920s), no wrong month, and no
    date of care counted before the SNDS."""
    from pds_kernel.demo import DemoOptions
    from pds_kernel.snds.generator import generate

    summary = generate(tmp_path / "g", patients=150, years=DemoOptions(tmp_path).years, seed=20)
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, tmp_path / "g", actor="tester")
    assert result.clean, [f for f in result.files if f.status != Status.LOADED or f.rows_quarantined]
    assert {f.name: f.rows_loaded for f in result.files} == dict(summary.files)
    report, page = _report(result)
    assert not [(t, c) for t, s in report["tables"].items() for c, info in s["columns"].items()
                if info.get("early_dates")]
    assert "No date of care, stay or flux before 2000-01-01, nor after its file" in page
    assert min(lake_values(runtime, "IR_BEN_R", "BEN_NAI_ANN")) >= OLDEST_BIRTH_YEAR
