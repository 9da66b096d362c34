"""The synthetic SNDS delivery: coherent, quirky, streamed, reproducible to the byte. No real data.

:func:`generate` writes one CSV per table and month in the delivery profile of
:mod:`pds_kernel.snds.tables` (``;``-separated, header row, no quoting, Latin-1, SAS dates), and the
catalogue tables of medical acts and hospital drugs (:mod:`.synthetic.hospital`): ER_CAM_F and
ER_UCD_F per month, T_MCOaaA and T_MCOaaMED per year (``T_MCO22A.csv``), as the SNDS delivers them.

How it works, and why:

* **Population first.** Every person (age, sex, department, chronic conditions, the drugs they take,
  a possible myocardial infarction, death) is drawn once, vectorised, from the generator of
  ``(seed, "IR_BEN_R")``. This is the only state kept for the whole run: O(patients).
* **Then month by month.** DCIR claims are drawn per *care* month from the generator of
  ``(seed, "ER_PRS_F", month)``; each claim gets a reporting delay (1 month for most, 6 to 12 months
  for a few percent) that decides its *flux* month, the month of the file it lands in. Claims wait in
  a small buffer until their flux month is complete, then the month is written and forgotten, so
  memory stays bounded whatever the number of months. PMSI stays (by exit month) and causes of
  death (by death month) are drawn from their own ``(seed, table, month)`` generators.
* **Before the window.** Claims of care months before the first year that are reported inside the
  window are drawn too (thinned by the probability of such a late report), so January is not empty
  of late claims; claims reported after the last month are not written, as in a real extraction.
* **Determinism.** Only seeded numpy generators, no clock, no hash randomisation, stable
  concatenation order, polars' deterministic CSV writer: the same arguments give the same bytes.

Coherence guarantees are listed in ``docs/synthetic-data.md`` and checked by ``tests/snds/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InvalidInput
from .catalogue import ingestible_table
from .file_names import parse_delivery_name
from .periods import ANY_YEAR, plausible_years
from .synthetic.calendar import CATALOGUE_TABLES, _DateText
from .synthetic.dcir import _dcir_month
from .synthetic.pmsi import _deaths_month, _pmsi_month
from .synthetic.population import _MAX_DELAY, _build_population
from .synthetic.referentials import _beneficiaries, _drug_referential, _long_term_illnesses
from .synthetic.writer import _Writer
from .tables import TABLES

#: Every table the generator writes: the profile's, then acts and hospital drugs of the catalogue.
GENERATED_TABLES: tuple[str, ...] = (*TABLES, *CATALOGUE_TABLES)

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote: data rows per file name, and the population size."""

    files: dict[str, int]
    patients: int
    years: tuple[int, int] = (0, 0)
    seed: int = 0
    beneficiary_rows: int = 0  #: IR_BEN_R rows: a few people have a second identifier

    def rows(self, table: str) -> int:
        """Total data rows of ``table`` over all its files."""
        return sum(n for f, n in self.files.items() if parse_delivery_name(f, ANY_YEAR)[0] == table)


# ---------------------------------------------------------------------------------------------
# The entry point.


def check_arguments(patients: int, years: tuple[int, int], seed: int) -> None:
    """Refuse arguments the generator cannot honour, with one sentence for the user."""
    if not isinstance(patients, int) or patients < 1:
        raise InvalidInput(f"patients must be a positive integer, got {patients!r}")
    if patients > 50_000_000:
        raise InvalidInput(f"at most 50,000,000 patients, got {patients:,}")
    start, end = years
    # what pds ingest accepts by default, the files must load: years a delivery may name, and
    # past ones only (a date after the ingest is quarantined, and this year's end is ahead)
    first, last = plausible_years().first, date.today().year - 1
    if not (first <= start <= end <= last):
        raise InvalidInput(f"years must be a range like 2022-2023 within {first}-{last} "
                           f"(past years a delivery may hold), got {start}-{end}")
    if not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")


def generate(out: Path, *, patients: int, years: tuple[int, int], seed: int,
             progress: Progress | None = None) -> GenerationSummary:
    """Write a synthetic SNDS delivery of ``patients`` people over ``years`` into ``out``.

    Existing delivery files of the same names are replaced (each file is written to ``.part`` and
    renamed, so a reader never sees half a file); other files in ``out`` are left alone.
    ``progress(done, total, what)`` is called after every step.
    """
    check_arguments(patients, years, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first_care = years[0] * 12 - _MAX_DELAY
    last_month = years[1] * 12 + 11
    total = 1 + (last_month - first_care)
    report = progress or (lambda done, total, what: None)

    pop = _build_population(patients, years, seed)
    writer = _Writer(out, pop, _DateText(1990, years[1] + 11))
    writer.write("IR_PHA_R", _drug_referential())
    writer.write("IR_BEN_R", _beneficiaries(pop, seed))
    writer.write("IR_IMB_R", _long_term_illnesses(pop, seed))
    report(1, total, "referentials")

    pending: dict[int, dict[str, list[pl.DataFrame]]] = {}
    dcir = ("ER_PRS_F", "ER_PHA_F", "ER_BIO_F", "ER_CAM_F", "ER_UCD_F")
    yearly: dict[str, list[pl.DataFrame]] = {}  # the PMSI catalogue tables: one file per year
    for step, care in enumerate(range(first_care, last_month), start=2):
        drawn = _dcir_month(pop, care, seed)
        for table, (frame, flux) in drawn.items():
            months, starts = np.unique(flux, return_index=True)
            ends = np.r_[starts[1:], flux.size]
            for flux_month, a, b in zip(months, starts, ends):
                # the next month is written now: a view is enough; later months are copied, so
                # that the month's frame is freed at the end of this step (bounded memory)
                part = frame.slice(a, b - a) if flux_month == care + 1 else frame[np.arange(a, b)]
                pending.setdefault(int(flux_month), {t: [] for t in dcir})[table].append(part)
        month = care + 1  # every claim of flux month ``month`` has a care month before it: complete
        if month >= years[0] * 12:
            ready = pending.pop(month, {t: [] for t in dcir})
            for table in dcir:
                parts = ready[table]
                frame = pl.concat(parts) if parts else drawn[table][0].clear()  # header only
                writer.write(table, frame, month)
            for table, frame in _pmsi_month(pop, month, seed).items():
                if ingestible_table(table).split == "yearly":
                    yearly.setdefault(table, []).append(frame)
                else:
                    writer.write(table, frame, month)
            if month % 12 == 11:
                for table, frames in yearly.items():
                    writer.write(table, pl.concat(frames), month)
                yearly.clear()
            writer.write("KI_CCI_R", _deaths_month(pop, month), month)
        report(step, total, f"{month // 12}-{month % 12 + 1:02d}")
    return GenerationSummary(files=dict(writer.files), patients=patients, years=tuple(years), seed=seed,
                             beneficiary_rows=int(pop.row_person.size))

