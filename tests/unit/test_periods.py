"""The years a delivered file may name (``pds_kernel.snds.periods``): from ``ingest.earliest_year``
to the year after today's; a file name outside them is refused with what is wrong and what to do."""

from __future__ import annotations

import re
from datetime import date

import pytest

from pds_kernel.errors import InvalidInput
from pds_kernel.ingest.delivery import discover
from pds_kernel.settings import load_settings
from pds_kernel.snds.file_names import example_name, parse_delivery_name
from pds_kernel.snds.generator import check_arguments
from pds_kernel.snds.periods import ANY_YEAR, EARLIEST_YEAR, Years, plausible_years
from pds_kernel.snds.tables import parse_file_name

TODAY = date(2026, 5, 14)
YEARS = plausible_years(today=TODAY)  # 2000-2027


def test_the_window_runs_from_the_setting_to_the_year_after_today():
    assert YEARS == Years(2000, 2027) and EARLIEST_YEAR == 2000
    assert plausible_years(1990, date(2031, 1, 1)) == Years(1990, 2032)
    assert plausible_years().last == date.today().year + 1  # the machine's date by default


@pytest.mark.parametrize(("name", "expected"), [
    ("ER_UCD_F_200001.csv", ("ER_UCD_F", "200001")), ("ER_UCD_F_202712.csv", ("ER_UCD_F", "202712")),
    ("T_MCO00B.csv", ("T_MCOaaB", "2000")), ("T_MCO27B.csv", ("T_MCOaaB", "2027")),
    ("CT_DEP_2000_GN.csv", ("CT_DEP_AAAA_GN", "2000")), ("T_MCOaaC_202601.csv", ("T_MCOaaC", "202601")),
    ("IR_BEN_R.csv", ("IR_BEN_R", None)),  # a snapshot has no period
])
def test_names_at_the_edges_of_the_window_load(name, expected):
    assert parse_delivery_name(name, YEARS) == expected


@pytest.mark.parametrize(("name", "reason"), [
    ("ER_UCD_F_189912.csv", "year 1899 is before 2000, the earliest year a delivery may hold: fix the "
                            "file's name (to load older data, lower the setting ingest.earliest_year)"),
    ("ER_UCD_F_199912.csv", "year 1999 is before 2000"),
    ("ER_UCD_F_202801.csv", "year 2028 is after 2027, the latest year a delivery may hold (the year "
                            "after this one): fix the file's name"),
    ("ER_PRS_F_000012.csv", "year 0000 is before 2000"), ("ER_PRS_F_999912.csv", "year 9999 is after 2027"),
    ("CT_DEP_1899_GN.csv", "year 1899 is before 2000"), ("CT_DEP_2028_GN.csv", "year 2028 is after 2027"),
    # a two-digit year is 20aa, never silently 2099 (nor 1999)
    ("T_MCO99B.csv", "year 99 reads as 2099, which is after 2027"), ("T_MCO28B.csv", "reads as 2028"),
    ("T_MCO99B.csv", "a two-digit year aa is 20aa: T_MCO23B.csv is 2023"),
    ("T_MCO28GV01.csv", "year 28 reads as 2028"),
    ("ER_UCD_F_202313.csv", "bad month 202313"),  # the month is checked first
])
def test_a_name_outside_the_window_is_refused_with_what_to_do(name, reason):
    with pytest.raises(ValueError, match=re.escape(reason)) as refused:
        parse_delivery_name(name, YEARS)
    assert str(refused.value).startswith(repr(name))


def test_the_earliest_year_is_a_setting_and_a_two_digit_year_never_goes_back_a_century():
    older = plausible_years(1990, TODAY)
    assert parse_delivery_name("ER_UCD_F_199912.csv", older) == ("ER_UCD_F", "199912")
    assert parse_delivery_name("CT_DEP_1995_GN.csv", older) == ("CT_DEP_AAAA_GN", "1995")
    with pytest.raises(ValueError, match="reads as 2099"):
        parse_delivery_name("T_MCO99B.csv", older)  # not 1999: the PMSI's names are 20aa
    later = plausible_years(2005, TODAY)
    with pytest.raises(ValueError, match=re.escape("year 04 reads as 2004, which is before 2005")):
        parse_delivery_name("T_MCO04B.csv", later)


@pytest.mark.parametrize("earliest", [999, 0, -5, 2028, 3000])
def test_an_earliest_year_no_date_can_hold_or_after_next_year_is_refused(earliest):
    with pytest.raises(InvalidInput, match=f"setting ingest.earliest_year must be between 1000 and 2027.*got {earliest}"):
        plausible_years(earliest, TODAY)


def test_the_setting_is_read_from_the_file_and_the_environment(tmp_path):
    assert load_settings(environ={}).ingest.earliest_year == EARLIEST_YEAR
    assert load_settings(environ={"PDS_INGEST__EARLIEST_YEAR": "1990"}).ingest.earliest_year == 1990
    config = tmp_path / "pds.yaml"
    config.write_text("ingest:\n  earliest_year: 1995\n")
    assert load_settings(config, environ={}).ingest.earliest_year == 1995


def test_the_default_window_is_today_s():
    next_year = date.today().year + 1
    assert parse_delivery_name(f"ER_UCD_F_{next_year}12.csv")[1] == f"{next_year}12"
    with pytest.raises(ValueError, match=f"year {next_year + 1} is after {next_year}"):
        parse_delivery_name(f"ER_UCD_F_{next_year + 1}01.csv")


def test_the_profile_name_parser_checks_the_same_window():
    assert parse_file_name("ER_PRS_F_202301.csv", YEARS) == ("ER_PRS_F", "202301")
    for name in ("ER_PRS_F_189912.csv", "ER_PRS_F_209901.csv"):
        with pytest.raises(ValueError, match="the (earliest|latest) year a delivery may hold"):
            parse_file_name(name, YEARS)


def test_any_year_checks_the_syntax_only():
    assert parse_delivery_name("T_MCO99B.csv", ANY_YEAR) == ("T_MCOaaB", "2099")
    assert parse_delivery_name("ER_UCD_F_189912.csv", ANY_YEAR) == ("ER_UCD_F", "189912")
    with pytest.raises(ValueError, match="year 0999 is before 1000"):
        parse_delivery_name("ER_UCD_F_099912.csv", ANY_YEAR)


def test_a_delivery_lists_an_implausible_name_as_refused_beside_its_other_files(tmp_path):
    for name in ("ER_PRS_F_202301.csv", "ER_PRS_F_189912.csv", "T_MCO99B.csv", "IR_BEN_R.csv"):
        (tmp_path / name).write_text("x\n")
    files, refused = discover(tmp_path, YEARS)
    assert [f.name for f in files] == ["IR_BEN_R.csv", "ER_PRS_F_202301.csv"]
    assert {r.name: r.reason.split(":")[1].strip() for r in refused} == {
        "ER_PRS_F_189912.csv": "year 1899 is before 2000, the earliest year a delivery may hold",
        "T_MCO99B.csv": "year 99 reads as 2099, which is after 2027, the latest year a delivery may hold "
                        "(the year after this one)"}


def test_the_generators_write_names_the_window_accepts():
    for table in ("T_MCOaaB", "ER_UCD_F", "CT_DEP_AAAA_GN", "IR_BEN_R"):
        for period in ("2005", "2023", "200501", "202312"):
            assert parse_delivery_name(example_name(table, period), YEARS)[0] == table
    check_arguments(10, (2005, 2023), 0)
    this_year = date.today().year  # its end is ahead: its dates would be after the ingest
    with pytest.raises(InvalidInput, match=f"within 2000-{this_year - 1} \\(past years a delivery may hold\\)"):
        check_arguments(10, (2022, this_year), 0)
