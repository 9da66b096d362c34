"""The delivery follows the profile to the letter: names, headers, separators, encodings, dates."""

from __future__ import annotations

import re

import polars as pl
import pytest
from snds_helpers import YEARS, typed

from pds_kernel.errors import InvalidInput
from pds_kernel.snds.catalogue import ingestible_table
from pds_kernel.snds.file_names import example_name, parse_delivery_name
from pds_kernel.snds.generator import GENERATED_TABLES, generate

SAS = re.compile(r"^[0-9]{2}(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[0-9]{4}:00:00:00$")
DMY = re.compile(r"^(0[1-9]|[12][0-9]|3[01])(0[1-9]|1[0-2])[0-9]{4}$")


def test_one_file_per_table_and_month_and_the_summary_counts_their_rows(delivery):
    months = [f"{y}{m:02d}" for y in range(YEARS[0], YEARS[1] + 1) for m in range(1, 13)]
    expected = set()
    for name in GENERATED_TABLES:  # monthly, yearly (T_MCO22A.csv) or snapshot files
        expected |= {example_name(name, m) for m in months}
    on_disk = {f.name for f in delivery.path.iterdir()}
    assert on_disk == expected
    assert set(delivery.summary.files) == expected
    for name, rows in delivery.summary.files.items():
        lines = (delivery.path / name).read_bytes().count(b"\n")
        assert lines == rows + 1, name  # header + data rows, every line ends with \n


def test_headers_are_exactly_the_profile_columns(delivery):
    """The profile's columns, or the published columns of a catalogue table (ER_CAM_F...)."""
    for f in delivery.path.iterdir():
        table = parse_delivery_name(f.name)[0]
        header = f.read_bytes().split(b"\n", 1)[0].decode("latin-1")
        assert tuple(header.split(";")) == ingestible_table(table).column_names, f.name


def test_no_quoting_unix_line_ends_latin1_accents(delivery):
    raw = (delivery.path / "IR_PHA_R.csv").read_bytes()
    assert "MÉTFORMINE".encode("latin-1") in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # really Latin-1, not UTF-8
    for f in delivery.path.iterdir():
        data = f.read_bytes()
        assert b"\r" not in data and b'"' not in data, f.name
        data.decode("latin-1")


def test_every_value_has_the_profile_format(delivery):
    for name, frame in delivery.tables.items():
        table = ingestible_table(name)
        for col in table.columns:
            values = frame[col.name].drop_nulls()
            if not col.nullable:
                assert frame[col.name].null_count() == 0, (name, col.name)
            if col.fmt == "sas_datetime":
                assert values.str.contains(SAS.pattern).all(), (name, col.name)
            elif col.fmt == "dmy":
                assert values.str.contains(DMY.pattern).all(), (name, col.name)
            elif col.type == "month":
                assert values.cast(pl.Int64).is_between(1, 12).all(), (name, col.name)
                assert not values.str.starts_with("0").any(), (name, col.name)  # 1..12, not 01
            elif col.type == "year":
                assert values.str.contains(r"^[0-9]{4}$").all(), (name, col.name)
            elif col.type == "float":
                assert values.str.contains(r"^-?[0-9]+\.[0-9]+$").all(), (name, col.name)
            elif col.type == "int":
                assert values.str.contains(r"^-?[0-9]+$").all(), (name, col.name)
            if col.values is not None:
                allowed = {str(v) for v in col.values}
                assert set(values.unique()) <= allowed, (name, col.name)
            if col.pattern is not None:
                assert values.str.contains(col.pattern).all(), (name, col.name, col.pattern)
        typed(frame, name)  # every date, integer and float parses strictly


def test_missing_dates_are_written_as_1600(delivery):
    prs = delivery.tables["ER_PRS_F"]
    assert (prs["EXE_SOI_DTF"] == "01JAN1600:00:00:00").any()
    assert (delivery.tables["IR_BEN_R"]["BEN_DCD_DTE"] == "01JAN1600:00:00:00").any()
    assert delivery.tables["T_MCOaaC"]["ENT_DAT"].str.contains(r"^[0-9]{8}$").all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(patients=0, years=(2022, 2023), seed=1), "patients"),
    (dict(patients=10, years=(2024, 2023), seed=1), "years"),
    (dict(patients=10, years=(1800, 2023), seed=1), "years"),
    (dict(patients=10, years=(2022, 2023), seed=-1), "seed"),
])
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        generate(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_tiny_population_still_gives_every_file_with_its_header(tmp_path):
    summary = generate(tmp_path, patients=3, years=(2000, 2000), seed=0)
    assert len(summary.files) == 3 + 9 * 12 + 2  # 3 referentials, 9 monthly tables, 2 yearly
    empty = [name for name, rows in summary.files.items() if rows == 0]
    assert empty  # three people have months without claims, stays or deaths
    for name in empty:
        table = parse_delivery_name(name)[0]
        assert (tmp_path / name).read_text(encoding="latin-1") == ";".join(ingestible_table(table).column_names) + "\n"
