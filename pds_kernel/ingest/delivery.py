"""A delivery on disk: which files it holds, which table and month each one feeds, in which order.

A delivery is a flat directory of ``NAME_YYYYMM.csv`` (monthly tables), ``NAME.csv`` (snapshot
tables, i.e. referentials) and yearly ``T_MCO23B.csv`` files of the tables of the profile and the
SNDS catalogue (see :mod:`pds_kernel.snds.file_names`). Anything else in it is refused with a reason rather than ignored,
so that a misnamed file is noticed; so is a name whose period is implausible (before
``ingest.earliest_year`` or after next year, :mod:`pds_kernel.snds.periods`). Referentials are loaded first because other tables are checked
against them (ER_PHA_F codes against IR_PHA_R).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import InvalidInput
from ..snds.catalogue import ingestible_names, ingestible_table
from ..snds.periods import Years, plausible_years


@dataclass(frozen=True)
class DeliveryFile:
    """One file of a delivery whose name maps to a table of the profile."""

    path: Path
    table: str
    month: str | None  #: ``YYYYMM`` (monthly), ``YYYY`` (yearly) or ``None`` (snapshot)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def is_snapshot(self) -> bool:
        return self.month is None

    def sort_key(self) -> tuple:
        """Snapshots (referentials) first, then tables in profile then catalogue order, then periods."""
        order = _load_order()[self.table]
        return (0 if self.is_snapshot else 1, order, self.month or "", self.name)


@cache
def _load_order() -> dict[str, int]:
    return {name: i for i, name in enumerate(ingestible_names())}


@dataclass(frozen=True)
class Unrecognised:
    """A directory entry that is not a delivery file, with the reason it is refused."""

    name: str
    reason: str


def discover(source: Path, years: Years | None = None) -> tuple[list[DeliveryFile], list[Unrecognised]]:
    """The delivery files of ``source`` in load order, and the entries refused by name or type
    (a name whose period is outside ``years`` included, default
    :func:`~pds_kernel.snds.periods.plausible_years`). A directory with no entry at all (hidden
    files aside) is refused: an empty delivery is a failed transfer or a wrong path, never a
    successful ingest of nothing."""
    from ..snds.file_names import parse_delivery_name

    years = years or plausible_years()
    if not source.is_dir():
        raise InvalidInput(f"delivery directory {source} does not exist or is not a directory")
    files: list[DeliveryFile] = []
    refused: list[Unrecognised] = []
    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue  # editor and transfer leftovers (.part, .DS_Store) are not deliveries
        if entry.is_symlink() or not entry.is_file():
            refused.append(Unrecognised(entry.name, "not a regular file (links and folders are refused)"))
            continue
        try:
            table, month = parse_delivery_name(entry.name, years)
        except ValueError as exc:
            refused.append(Unrecognised(entry.name, str(exc)))
            continue
        files.append(DeliveryFile(entry, table, month))
    if not files and not refused:
        raise InvalidInput(f"delivery directory {source} holds no file: nothing to ingest (expected "
                           "NAME_YYYYMM.csv and NAME.csv files; check the path and that the transfer "
                           "finished)")
    files.sort(key=DeliveryFile.sort_key)
    return files, refused


def check_header(table: str, header: list[str]) -> list[str]:
    """The columns of ``header`` to read; raises :class:`InvalidInput` naming every missing
    required column and every unexpected or repeated one. Optional columns may be left out."""
    profile = ingestible_table(table)
    known = set(profile.column_names)
    problems = []
    missing = [c for c in profile.required if c not in header]
    unexpected = [c for c in header if c not in known]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing:
        problems.append(f"missing required column(s) {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected column(s) {', '.join(repr(c) for c in unexpected)}")
    if repeated:
        problems.append(f"repeated column(s) {', '.join(repeated)}")
    if problems:
        raise InvalidInput(f"header does not match table {table}: " + "; ".join(problems))
    return header
