"""The years a delivered file may name: from ``ingest.earliest_year`` to the year after today's.

A file name carries its period (``ER_UCD_F_202301.csv``, ``T_MCO23B.csv``, ``CT_DEP_2021_GN.csv``)
and the lake partitions the file's rows by it. A name outside these years is a mistake of the
delivery (``ER_UCD_F_189912.csv``, ``T_MCO99B.csv``, which reads as 2099), never data: it is
refused with the reason, instead of loading silently into a partition no study asks for.

* The earliest year is the setting ``ingest.earliest_year`` (default :data:`EARLIEST_YEAR`, before
  the SNDS's first data: the oldest tables of the catalogue start in 2005, the PMSI's); lower it
  to load older data, never below :data:`FIRST_PARSABLE_YEAR` (no date before it loads).
* The latest year is the year after today's: a delivery holds no period from the future (one
  year of margin for a delivery made at the turn of the year, or a clock a little behind).
* A two-digit year (``aa`` in ``T_MCOaaB``) is ``20aa``, and refused when that is outside the
  years: ``T_MCO99B.csv`` is not silently 2099 (nor 1999).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..errors import InvalidInput

#: Default of ``ingest.earliest_year``: before the SNDS's first data (the catalogue's oldest
#: tables, the PMSI's, start in 2005; the DCIR in 2006).
EARLIEST_YEAR = 2000
#: No date before this year loads (``pds_kernel.ingest.checks.EARLIEST_DATE``), and the month
#: check of a period of the year 0000 (``KI_CCI_R_000012.csv``) crashed the run building its first
#: day: the earliest year can never be set below it.
FIRST_PARSABLE_YEAR = 1000


@dataclass(frozen=True)
class Years:
    """The years ``first`` to ``last`` (both included) a delivered file may name."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not FIRST_PARSABLE_YEAR <= self.first <= self.last <= 9999:
            raise InvalidInput(f"setting ingest.earliest_year must be between {FIRST_PARSABLE_YEAR} and "
                               f"{self.last} (the year after this one), got {self.first}")

    def check(self, file: str, year: str, two_digits: bool = False) -> None:
        """Raise ``ValueError`` naming ``file`` when ``year`` (``YYYY``) is outside these years;
        ``two_digits``: the name holds the year's last two digits only."""
        value = int(year)
        if self.first <= value <= self.last:
            return
        said = f"year {year[2:]} reads as {year}, which is" if two_digits else f"year {year} is"
        if value < self.first:
            raise ValueError(f"{file!r}: {said} before {self.first}, the earliest year a delivery "
                             "may hold: fix the file's name (to load older data, lower the setting "
                             "ingest.earliest_year)")
        raise ValueError(f"{file!r}: {said} after {self.last}, the latest year a delivery may hold "
                         "(the year after this one): fix the file's name"
                         + (" (a two-digit year aa is 20aa: T_MCO23B.csv is 2023)" if two_digits else ""))


def plausible_years(earliest_year: int = EARLIEST_YEAR, today: date | None = None) -> Years:
    """From ``earliest_year`` (the setting ``ingest.earliest_year``) to the year after ``today``'s
    (default: the machine's date). ``InvalidInput`` when ``earliest_year`` is below
    :data:`FIRST_PARSABLE_YEAR` or after that year."""
    return Years(earliest_year, (today or date.today()).year + 1)


#: Every year a date can be, for the names the generator writes itself (it tells its files from
#: the others in a folder by their names, whatever their years): the syntax only.
ANY_YEAR = Years(FIRST_PARSABLE_YEAR, 9999)
