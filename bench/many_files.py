"""Deliveries of many small files for the ingest bench's "many files" section.

* :func:`demo_delivery`: the demo generator's delivery of 200 people over 2005-2023, the profile's
  tables only (1,599 files, 34 MB; the generator now also writes acts and hospital drugs of the
  catalogue, left out here): the delivery of issue #17, compared with DuckDB;
* :func:`scale_delivery`: ``files`` small files of the same shape (17 monthly tables, the
  profile's 7 and 10 more DCIR tables of the catalogue, one file per table and month going back
  from 2023-12, plus the 3 referentials; 20,000 files go back to 1925, so the bench's ingest lowers
  ``ingest.earliest_year``; with the profile's 7 tables alone they went back to 1785, and since red
  team 19C quarantines dates before 1900, 8,213 of the 20,000 files were quarantined whole),
  written by the schema-driven generator with disjoint keys, so that deliveries of 1,600 and
  20,000 files differ only in their number of files (the commit cost per file is what is measured).
"""

from __future__ import annotations

import random
from pathlib import Path

MONTHLY = ("ER_PRS_F", "ER_PHA_F", "ER_BIO_F", "KI_CCI_R", "T_MCOaaB", "T_MCOaaC", "T_MCOaaD",
           "ER_ARO_F", "ER_CAM_F", "ER_DCT_F", "ER_ETE_F", "ER_INV_F", "ER_RAT_F", "ER_TIP_F", "ER_TRS_F",
           "ER_UCD_F", "ER_DTR_F")
SNAPSHOTS = ("IR_PHA_R", "IR_BEN_R", "IR_IMB_R")


def demo_delivery(out: Path, years: tuple[int, int] = (2005, 2023), patients: int = 200) -> Path:
    from pds_kernel.snds.file_names import parse_delivery_name
    from pds_kernel.snds.generator import generate
    from pds_kernel.snds.tables import TABLES

    if not any(out.glob("*.csv")):
        generate(out, patients=patients, years=years, seed=11)
        for csv in out.glob("*.csv"):  # the profile's tables only: the 1,599 files of issue #17
            if parse_delivery_name(csv.name)[0] not in TABLES:
                csv.unlink()
    return out


def _months(count: int) -> list[str]:
    months, year, month = [], 2023, 12
    for _ in range(count):
        months.append(f"{year}{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def scale_delivery(out: Path, files: int, rows: int = 20) -> Path:
    """``files`` delivery files (snapshots included) in ``out``; kept when already there."""
    from pds_kernel.snds.schema_generator import _Context, generate_table

    if len(list(out.glob("*.csv"))) == files:
        return out
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Context(random.Random(7), "202312")
    for name in SNAPSHOTS:
        generate_table(out, name, rows=rows, period="202312", ctx=ctx)
    months = _months(-(-(files - len(SNAPSHOTS)) // len(MONTHLY)))
    written = len(SNAPSHOTS)
    for index, month in enumerate(months):
        for name in MONTHLY:
            if written == files:
                return out
            ctx.period = month
            generate_table(out, name, rows=rows, period=month, ctx=ctx, first_key=index * rows)
            written += 1
    return out
