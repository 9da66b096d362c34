"""Reading the text of a delivery back into values, independently of the generator's code."""

from __future__ import annotations

from datetime import date

import polars as pl

from pds_kernel.snds.catalogue import ingestible_table

MISSING = date(1600, 1, 1)
PATIENTS = 2000  #: the session delivery of conftest.py
YEARS = (2022, 2023)
SEED = 11


def as_date(column: str, fmt: str = "sas_datetime") -> pl.Expr:
    pattern = "%d%b%Y:%H:%M:%S" if fmt == "sas_datetime" else "%d%m%Y"
    return pl.col(column).str.strptime(pl.Date, pattern, strict=True)


def typed(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Dates parsed, integers and floats cast: what a loader would produce (strictly)."""
    exprs = []
    for c in ingestible_table(table).columns:
        if c.type == "date":
            exprs.append(as_date(c.name, c.fmt))
        elif c.type in ("int", "year", "month"):
            exprs.append(pl.col(c.name).cast(pl.Int64, strict=True))
        elif c.type == "float":
            exprs.append(pl.col(c.name).cast(pl.Float64, strict=True))
        else:
            exprs.append(pl.col(c.name))
    return frame.select(exprs)
