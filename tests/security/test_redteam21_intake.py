"""Red team 21, silent damage at intake (years of care before the SNDS, a residual of red team 20D).

Each test delivers crafted files to the real ingestion (``ingest_delivery``, what ``pds ingest``
calls, on a real lake in ``tmp_path``) and reads the quality report it writes. 1 attack, which got
through before its fix:

* a year of care between 1900 and the SNDS's start loaded without a word in the quality report,
  where a date of care of that age was counted (red team 20D): an exit year ``SOR_ANN`` of
  ``1923`` for ``2023`` in a HAD stay, held as a number, and an exit year-month
  ``MOI_ANN_SOR_SEJ`` of ``192301`` in an SSR stay, held as text.

The fix: the years and year-months of care, of a stay and of a flux
(``pds_kernel.ingest.stats.CARE_YEARS``) are counted per column in the report's section "Care
dates before the SNDS or after their file", as care dates are; they still load (a year older than
1900 is quarantined, ``year_out_of_range``). Controls: the same files with the generator's years
(not counted), and a birth year ``1923`` and a death year-month ``192301`` (not years of care:
not counted).
"""

from __future__ import annotations

import json

from intake_damage_support import edit_fields, fresh_runtime, lake_values, make_rows, write_delivery

from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.snds.schema_generator import generate_table

SECTION = "Care dates before the SNDS or after their file"


def _ingest(tmp_path, delivery) -> tuple:
    """Ingest ``delivery`` (every row loaded); the runtime, the run's report.json (as data) and
    the HTML of its section on care dates."""
    runtime = fresh_runtime(tmp_path)
    result = ingest_delivery(runtime, delivery, actor="attacker")
    assert {(f.status, f.rows_quarantined) for f in result.files} == {(Status.LOADED, 0)}, result.files
    page = result.report_html.read_text(encoding="utf-8")
    section = page[page.index(f"<h2>{SECTION}</h2>"):]
    return (runtime, json.loads(result.report_json.read_text(encoding="utf-8")),
            section[:section.index("<h2>", 5)])


def _counted(report: dict) -> dict:
    return {(table, column): info["early_dates"] for table, stats in report["tables"].items()
            for column, info in stats["columns"].items() if info.get("early_dates")}


def _stays(delivery):
    """A yearly HAD stays file and SSR stays file of 2023, generated (their years are 2023's)."""
    return (generate_table(delivery, "T_HADaaB", rows=3, period="2023", seed=21),
            generate_table(delivery, "T_SSRaaB", rows=3, period="2023", seed=21))


def test_exit_years_before_the_snds_load_and_are_counted_in_the_report(tmp_path):
    """Got through: a HAD stay that exited in 1923 and an SSR stay that exited in January 1923
    loaded and the report said nothing of them. They load and are counted per column."""
    had, ssr = _stays(tmp_path / "d")
    edit_fields(had.path, {0: {"SOR_ANN": "1923"}})
    edit_fields(ssr.path, {1: {"MOI_ANN_SOR_SEJ": "192301"}})
    runtime, report, section = _ingest(tmp_path, tmp_path / "d")
    assert 1923 in lake_values(runtime, "T_HADaaB", "SOR_ANN")
    assert _counted(report) == {("T_HADaaB", "SOR_ANN"): 1, ("T_SSRaaB", "MOI_ANN_SOR_SEJ"): 1}
    assert "<code>SOR_ANN</code>" in section and "<code>MOI_ANN_SOR_SEJ</code>" in section
    assert "dates (or years) from 1900 to before 2000-01-01" in section and "loaded, not quarantined" in section


def test_control_the_generators_years_are_not_counted(tmp_path):
    """Control: the same files with the years the generator writes (2023, and 2000, the SNDS's
    start as the ingestion sees it): nothing counted."""
    had, ssr = _stays(tmp_path / "d")
    edit_fields(had.path, {0: {"SOR_ANN": "2000"}})
    edit_fields(ssr.path, {1: {"MOI_ANN_SOR_SEJ": "200001"}})
    _, report, section = _ingest(tmp_path, tmp_path / "d")
    assert _counted(report) == {}
    assert "No date of care, stay or flux before 2000-01-01" in section


def test_control_a_birth_year_and_a_death_year_month_of_1923_are_not_counted(tmp_path):
    """Control: a person born in 1923 (in IR_BEN_R and in a DAMIR claim) and a death year-month
    of January 1923 (EB_INB_F) are not years of care: they load and are not counted."""
    rows = make_rows(persons=5, months=())
    rows["IR_BEN_R"][0] = dict(rows["IR_BEN_R"][0], BEN_NAI_ANN=1923)
    delivery = write_delivery(tmp_path / "d", rows)
    damir = generate_table(delivery, "MA_REM_FT", rows=2, period="202301", seed=21)
    edit_fields(damir.path, {0: {"BEN_NAI_ANN": "1923"}})
    inb = generate_table(delivery, "EB_INB_F", rows=2, period="202301", seed=21)
    edit_fields(inb.path, {0: {"BEN_DCD_AME": "192301"}})
    runtime, report, section = _ingest(tmp_path, delivery)
    assert 1923 in lake_values(runtime, "IR_BEN_R", "BEN_NAI_ANN")
    assert _counted(report) == {}
    assert "BEN_NAI_ANN" not in section and "BEN_DCD_AME" not in section
