"""Red team 19C: silent damage at intake, the residuals of red team 15A (issue #17).

Each test delivers crafted files to the real ingestion (``ingest_delivery``, what ``pds ingest``
calls, on a real lake in ``tmp_path``) and asserts that the attack fails: the damaged rows are
quarantined with their check, column and reason, every file keeps rows read = loaded +
quarantined, and the rows meant to load do. Both parsers are played where a clean file could
reach the streamed one. 12 attacks, 11 got through before the fixes:

* monthly files of the catalogue's other monthly products were not checked against their month:
  a row of another flux month loaded into the file's partition in EGB (EB_PRS_F, EB_UCD_F...),
  DCIRS (NS_PRS_F...) and DAMIR (MA_REM_FT by ``FLX_DIS_DTD``, OPEN_DAMIR by its year-month
  ``FLX_ANN_MOI``), with both parsers (4 attacks);
* a date of the far past after the year 1000 loaded: a date of care on ``01JAN1601`` (one year
  off the SNDS's missing date), ``30DEC1899`` (the zero date of spreadsheets and ODBC drivers),
  ``31DEC1899``, an end of care on ``01JAN1601``, a PMSI stay entry on ``01011601``, an ALD
  starting and one ending in 1899 (7 attacks).

Did not get through: a code of the right shape missing from its nomenclature (``Z9999`` in
MS_CIM_V) was counted; it still loads (a nomenclature copy is older or newer than the data), and
the quality report now names it in a section of its own.

The fixes: every monthly table of the four monthly products whose schema publishes the flux
date (``FLX_DIS_DTD``, else the flux year-month ``FLX_ANN_MOI``) is checked against its file's
month (``wrong_month``); the two EGB tables without one (EB_HMV_F, EB_INB_F) are not, and the
catalogue test below keeps that list honest. A date before 1900-01-01, other than the missing
date 1600-01-01, is quarantined (``date_too_old``), end dates included. Controls that must load,
and do: a generated month of every monthly table of EGB, DCIRS and DAMIR, the missing date in
both date formats, 01JAN1900 itself, a birth year 1905 and an ALD opened in 1975 with its open
end 31DEC9999.
"""

from __future__ import annotations

from datetime import date

import pytest
from intake_damage_support import (
    edit_fields,
    fresh_runtime,
    ingest,
    lake_values,
    make_rows,
    quarantined_checks,
    use_parser,
    write_delivery,
    write_table,
)

from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.ingest.checks import OLDEST_DATE
from pds_kernel.snds.catalogue import MONTHLY_PRODUCTS, entries, ingestible_table
from pds_kernel.snds.schema_generator import generate_table
from pds_kernel.snds.tables import MISSING_DATE

MONTH = "202301"
#: Monthly tables of EGB, DCIRS and DAMIR without a published flux date or month: no column
#: says which month their file holds (their dates are updates, affiliation ends and deaths).
WITHOUT_FLUX = {"EB_HMV_F", "EB_INB_F"}


def _other_monthly_tables() -> list[str]:
    """The monthly tables of the catalogue's monthly products other than the DCIR."""
    return [name for name, entry in entries().items()
            if entry.product in MONTHLY_PRODUCTS and entry.product != "DCIR"
            and ingestible_table(name).split == "monthly"]


def _flux_column(name: str) -> str | None:
    """The flux date of table ``name``, else its flux year-month (None: neither is published)."""
    names = ingestible_table(name).column_names
    return next((c for c in ("FLX_DIS_DTD", "FLX_ANN_MOI") if c in names), None)


# -- 1. the month of EGB, DCIRS and DAMIR files ----------------------------------------------------

def test_the_catalogue_names_the_month_column_of_every_other_monthly_table():
    """Which column decides the month: the flux date where the schema publishes it, else the
    flux year-month; the tables with neither are the known list (documented), never a guess."""
    tables = _other_monthly_tables()
    assert len(tables) == 26
    decided = {name: ingestible_table(name).month_from for name in tables}
    assert decided == {name: _flux_column(name) for name in tables}
    assert {n for n, column in decided.items() if column is None} == WITHOUT_FLUX
    assert decided["OPEN_DAMIR"] == "FLX_ANN_MOI"
    assert {column for n, column in decided.items() if column not in (None, "FLX_ANN_MOI")} == {"FLX_DIS_DTD"}


@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_rows_of_another_month_are_quarantined_in_egb_dcirs_and_damir(parser, tmp_path, monkeypatch):
    """Got through: a month of every monthly table of EGB, DCIRS and DAMIR, its first row of the
    next flux month and its second of the month before, loaded both into the file's partition.
    The tables without a flux column load whole (controls), as do the other rows."""
    use_parser(monkeypatch, parser)
    runtime = fresh_runtime(tmp_path)
    delivery = tmp_path / "d"
    expected = {}
    for name in _other_monthly_tables():
        generated = generate_table(delivery, name, rows=4, period=MONTH, seed=19)
        column = _flux_column(name)
        if column is None:
            continue
        if column == "FLX_ANN_MOI":
            edits = {0: {column: "202302"}, 1: {column: "202212"}}
        else:
            edits = {0: {column: "01FEB2023:00:00:00"}, 1: {column: "31DEC2022:00:00:00"}}
        edit_fields(generated.path, edits)
        expected[generated.path.name] = {2: ("wrong_month", column), 3: ("wrong_month", column)}
    results = ingest(runtime, delivery)
    assert len(results) == 26 and len(expected) == 24
    for name, result in results.items():
        assert result.status == Status.LOADED, (name, result)
        assert quarantined_checks(runtime, name) == expected.get(name, {}), name
        assert result.rows_loaded == 4 - len(expected.get(name, {})), name
    assert lake_values(runtime, "OPEN_DAMIR", "FLX_ANN_MOI") == [MONTH, MONTH]


# -- 2. dates of the far past ----------------------------------------------------------------------

@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_dates_of_the_far_past_are_quarantined_and_the_missing_date_loads(parser, tmp_path, monkeypatch):
    """Got through: dates of care on 01JAN1601, 30DEC1899 and 31DEC1899, and an end of care in
    1601, loaded as dates. The SNDS's missing date 01JAN1600 and 01JAN1900 (the bound) load."""
    use_parser(monkeypatch, parser)
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(persons=12, months=(MONTH,))[("ER_PRS_F", MONTH)]
    delivery = write_delivery(tmp_path / "d", {("ER_PRS_F", MONTH): rows})
    name = f"ER_PRS_F_{MONTH}.csv"
    edit_fields(delivery / name, {
        0: {"EXE_SOI_DTD": "01JAN1601:00:00:00"}, 1: {"EXE_SOI_DTD": "30DEC1899:00:00:00"},
        2: {"EXE_SOI_DTD": "31DEC1899:00:00:00"}, 3: {"EXE_SOI_DTF": "01JAN1601:00:00:00"},
        4: {"EXE_SOI_DTD": "01JAN1600:00:00:00", "EXE_SOI_DTF": "01JAN1600:00:00:00"},
        5: {"EXE_SOI_DTD": "01JAN1900:00:00:00"}})
    result = ingest(runtime, delivery)[name]
    assert (result.rows_loaded, result.rows_quarantined) == (len(rows) - 4, 4)
    assert quarantined_checks(runtime, name) == {2: ("date_too_old", "EXE_SOI_DTD"), 3: ("date_too_old", "EXE_SOI_DTD"),
                                           4: ("date_too_old", "EXE_SOI_DTD"), 5: ("date_too_old", "EXE_SOI_DTF")}
    care = lake_values(runtime, "ER_PRS_F", "EXE_SOI_DTD")
    assert min(care) == MISSING_DATE and sorted(set(care))[1] == OLDEST_DATE == date(1900, 1, 1)


def test_a_stay_entered_in_1601_isquarantined_checks(tmp_path):
    """Got through: a PMSI stay entry on 01011601 (%d%m%Y) loaded; its missing date 01011600
    loads."""
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(persons=60, months=(MONTH,))[("T_MCOaaC", MONTH)]
    assert len(rows) >= 3
    rows = [dict(rows[0], ENT_DAT=date(1601, 1, 1)), dict(rows[1], ENT_DAT=MISSING_DATE)] + rows[2:]
    delivery = write_delivery(tmp_path / "d", {("T_MCOaaC", MONTH): rows})
    name = f"T_MCOaaC_{MONTH}.csv"
    result = ingest(runtime, delivery)[name]
    assert (result.rows_loaded, result.rows_quarantined) == (len(rows) - 1, 1)
    assert quarantined_checks(runtime, name) == {2: ("date_too_old", "ENT_DAT")}
    assert MISSING_DATE in lake_values(runtime, "T_MCOaaC", "ENT_DAT")


def test_an_exoneration_of_1899_is_quarantined_and_real_old_values_load(tmp_path):
    """Got through: an ALD starting in 1899 and one ending in 1899 loaded. Controls: an ALD
    opened in 1975 with its open end 31DEC9999, a person born in 1905 (a year, not a date: not
    bounded) who has not died (the missing date)."""
    runtime = fresh_runtime(tmp_path)
    base = dict(BEN_NIR_PSA="NIR00000000000001", BEN_RNG_GEM=1, IMB_ALD_NUM=1, IMB_ETM_NAT=41, MED_MTF_COD="E11",
                IMB_ALD_DTD=date(1975, 5, 1), IMB_ALD_DTF=date(9999, 12, 31))
    alds = [base, dict(base, IMB_ALD_NUM=2, IMB_ALD_DTD=date(1899, 12, 31)),
            dict(base, IMB_ALD_NUM=3, IMB_ALD_DTF=date(1899, 1, 1))]
    people = make_rows(persons=2, months=())["IR_BEN_R"]
    people[0] = dict(people[0], BEN_NAI_ANN=1905, BEN_DCD_DTE=MISSING_DATE)
    (tmp_path / "d").mkdir()
    write_table(tmp_path / "d" / "IR_IMB_R.csv", "IR_IMB_R", alds)
    write_table(tmp_path / "d" / "IR_BEN_R.csv", "IR_BEN_R", people)
    results = ingest(runtime, tmp_path / "d")
    assert (results["IR_IMB_R.csv"].rows_loaded, results["IR_IMB_R.csv"].rows_quarantined) == (1, 2)
    assert quarantined_checks(runtime, "IR_IMB_R.csv") == {3: ("date_too_old", "IMB_ALD_DTD"),
                                                     4: ("date_too_old", "IMB_ALD_DTF")}
    assert lake_values(runtime, "IR_IMB_R", "IMB_ALD_DTD") == [date(1975, 5, 1)]
    assert lake_values(runtime, "IR_IMB_R", "IMB_ALD_DTF") == [date(9999, 12, 31)]
    assert results["IR_BEN_R.csv"].rows_quarantined == 0
    assert 1905 in lake_values(runtime, "IR_BEN_R", "BEN_NAI_ANN")


# -- 3. codes not in their nomenclature ------------------------------------------------------------

def test_a_code_outside_its_nomenclature_is_loaded_and_named_in_the_report(tmp_path):
    """Did not get through (counted since the catalogue's nomenclatures), now named clearly: an
    ICD-10 code of the right shape missing from MS_CIM_V loads (a nomenclature copy is often older
    or newer than the data: quarantining would drop real rows of new codes) and the quality
    report lists it in a section of its own, not only in a column of the collapsed null rates."""
    generated = generate_table(tmp_path / "d", "T_MCOaaD", rows=4, period="2023", seed=19)
    edit_fields(generated.path, {0: {"ASS_DGN": "Z9999"}})
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, tmp_path / "d", actor="attacker")
    [loaded] = result.files
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_quarantined) == (4, 4, 0)
    assert "Z9999" in lake_values(runtime, "T_MCOaaD", "ASS_DGN")
    page = result.report_html.read_text(encoding="utf-8")
    section = page[page.index("<h2>Codes not in their nomenclature</h2>"):]
    section = section[:section.index("<h2>", 5)]
    assert "<code>T_MCOaaD</code>" in section and "<code>ASS_DGN</code>" in section
    assert "<code>MS_CIM_V:CIM_COD</code>" in section and "loaded, not quarantined" in section
