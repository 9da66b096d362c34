"""Row checks as polars expressions, evaluated on small frames of text."""

from __future__ import annotations

import polars as pl
import pytest

from pds_kernel.ingest.checks import Check, build_table_checks, typed_name
from pds_kernel.snds.tables import TABLES


def _failures(table: str, column: str, values: list[str | None], month: str | None) -> list[str | None]:
    """The first failing check of each value of ``column`` (None: the value passes)."""
    typed, checks = build_table_checks(TABLES[table], {column}, month=month)
    frame = pl.DataFrame({column: values}, schema={column: pl.String}).with_columns(typed[column])
    first = pl.coalesce([pl.when(c.bad).then(pl.lit(c.check)) for c in checks])
    return frame.select(first.alias("check")).get_column("check").to_list()


@pytest.mark.parametrize("month, inside, outside", [
    ("202301", ["01JAN2023:00:00:00", "31JAN2023:00:00:00"], ["31DEC2022:00:00:00", "01FEB2023:00:00:00"]),
    ("202312", ["01DEC2023:00:00:00", "31DEC2023:00:00:00"], ["30NOV2023:00:00:00", "01JAN2024:00:00:00"]),
])
def test_the_month_column_must_fall_in_the_file_month(month, inside, outside):
    got = _failures("ER_PRS_F", "FLX_DIS_DTD", inside + outside + ["01JAN1600:00:00:00"], month)
    assert got == [None, None, Check.WRONG_MONTH, Check.WRONG_MONTH, Check.WRONG_MONTH]


def test_other_checks_come_first_and_snapshots_have_no_month():
    # a missing or unparsable flux date is reported as such, not as a wrong month
    assert _failures("ER_PRS_F", "FLX_DIS_DTD", [None, "31FEB2023:00:00:00"], "202302") == [
        Check.MISSING, Check.UNPARSABLE]
    # without a month (a snapshot, or a table without month_from) there is no month check
    assert _failures("ER_PRS_F", "FLX_DIS_DTD", ["01MAR2023:00:00:00"], None) == [None]
    assert _failures("KI_CCI_R", "BEN_DCD_DTE", ["15MAR2023:00:00:00"], "202303") == [None]
    assert _failures("KI_CCI_R", "BEN_DCD_DTE", ["15APR2023:00:00:00"], "202303") == [Check.WRONG_MONTH]


def test_reason_names_the_column_and_the_month():
    typed, checks = build_table_checks(TABLES["ER_PRS_F"], {"FLX_DIS_DTD"}, month="202302")
    check = next(c for c in checks if c.check == Check.WRONG_MONTH)
    frame = pl.DataFrame({"FLX_DIS_DTD": ["01MAR2023:00:00:00"]}).with_columns(typed["FLX_DIS_DTD"])
    assert typed_name("FLX_DIS_DTD") in frame.columns
    assert frame.select(check.reason).item() == (
        "FLX_DIS_DTD is not in the month of the file (2023-02): '01MAR2023:00:00:00' (the month of a "
        "row is that of its FLX_DIS_DTD); deliver it in ER_PRS_F_202303.csv (pds ingest --correction "
        "if that month is loaded). A monthly file holds one month of flux: an extraction split by "
        "another month (the month of care, EXE_SOI_DTD) is quarantined here, extract it again split "
        "by FLX_DIS_DTD")
