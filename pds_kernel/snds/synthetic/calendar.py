"""Calendar of the synthetic delivery: day numbers, month indices, the random stream of each
(seed, table, month), and the text of dates in the profile's formats.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from ..tables import TABLES

_EPOCH = date(1970, 1, 1).toordinal()
MISSING_DAY = date(1600, 1, 1).toordinal() - _EPOCH  #: the SNDS "missing date", as a day number
_NEVER = np.int32(np.iinfo(np.int32).max)  #: day number of an event that does not happen

#: One stream number per table, so that ``(seed, table, month)`` names an independent generator.
#: The catalogue tables of acts and hospital drugs come after the profile's (whose numbers, and so
#: whose files, did not change when they were added).
CATALOGUE_TABLES = ("ER_CAM_F", "ER_UCD_F", "T_MCOaaA", "T_MCOaaMED")
_STREAM = {name: i + 1 for i, name in enumerate((*TABLES, *CATALOGUE_TABLES))}

# Calendar helpers: days are int day numbers since 1970-01-01, months are ``year * 12 + month - 1``.


def _day(y: int, m: int, d: int) -> int:
    return date(y, m, d).toordinal() - _EPOCH


def _month_first(months):
    """First day (day number) of each month index."""
    m = np.asarray(months, dtype=np.int64) - 1970 * 12
    return m.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _month_of(days):
    """Month index of each day number."""
    d = np.asarray(days, dtype=np.int64)
    return d.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + 1970 * 12


def _year_of(days):
    return _month_of(days) // 12


def _rng(seed: int, table: str, month: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[table], month])


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class _DateText:
    """Text of every day of a range in both profile formats, looked up by day number (fast)."""

    def __init__(self, first_year: int, last_year: int):
        self.base = _day(first_year, 1, 1)
        top = _day(last_year, 12, 31)
        days = [date.fromordinal(d + _EPOCH) for d in range(self.base, top + 1)]
        sas = ["01JAN1600:00:00:00"] + [f"{d.day:02d}{_MONTHS[d.month - 1]}{d.year}:00:00:00" for d in days]
        dmy = ["01011600"] + [f"{d.day:02d}{d.month:02d}{d.year}" for d in days]
        self.size = len(days)
        self.text = {"sas_datetime": pl.Series(sas, dtype=pl.String), "dmy": pl.Series(dmy, dtype=pl.String)}

    def render(self, days: pl.Series, fmt: str) -> pl.Series:
        d = days.to_numpy().astype(np.int64)
        idx = np.where(d == MISSING_DAY, 0, d - self.base + 1)
        if idx.size and (idx.min() < 0 or idx.max() > self.size):
            raise ValueError("date outside the generator's calendar")  # a bug, never user input
        return self.text[fmt].gather(idx)

