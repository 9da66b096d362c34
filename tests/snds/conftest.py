"""One small synthetic delivery per test session, read back as text exactly as a loader would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from snds_helpers import PATIENTS, SEED, YEARS

from pds_kernel.snds.file_names import parse_delivery_name
from pds_kernel.snds.generator import GenerationSummary, generate
from pds_kernel.snds.tables import TABLES


@dataclass
class Delivery:
    path: Path
    summary: GenerationSummary
    tables: dict[str, pl.DataFrame]  #: every file of a table, concatenated, all columns as text
    month_of_row: dict[str, pl.Series]  #: the YYYYMM of the file each row came from


def read_delivery(path: Path) -> Delivery:
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in TABLES}
    for file in sorted(path.glob("*.csv")):  # the profile's tables and the catalogue's (ER_CAM_F...)
        table, period = parse_delivery_name(file.name)
        frame = pl.read_csv(file, separator=";", infer_schema=False, encoding="latin1", quote_char=None)
        parts.setdefault(table, []).append(frame.with_columns(pl.lit(period).alias("_file_month")))
    tables, months = {}, {}
    for name, frames in parts.items():
        frame = pl.concat(frames)
        months[name] = frame["_file_month"]
        tables[name] = frame.drop("_file_month")
    return Delivery(path, None, tables, months)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def delivery(tmp_path_factory) -> Delivery:
    out = tmp_path_factory.mktemp("delivery")
    summary = generate(out, patients=PATIENTS, years=YEARS, seed=SEED)
    d = read_delivery(out)
    d.summary = summary
    return d
