"""The extract's tables for R, offline: ``python -m pds_kernel.rtables``.

Debian has no R binding of Arrow (``r-cran-arrow`` is not packaged), so the R helper
(``pds_kernel/r/pds.R``: ``pds_tables()``, ``pds_read()``) asks this module, in the same workspace,
to write one table (optionally some columns, optionally the first rows) as CSV into R's temporary
directory, and reads it with ``data.table::fread`` (ISO dates come back as dates). Table names are
checked by :mod:`pds_kernel.workspace` (the manifest), so a name never becomes a path.

    python -m pds_kernel.rtables --list
    python -m pds_kernel.rtables --table ER_PRS_F --out /tmp/x.csv [--columns A,B] [--limit N]
"""

from __future__ import annotations

import argparse
import sys

from . import workspace
from .errors import InvalidInput, PdsError


def write_csv(table: str, out: str, columns: list[str] | None = None, limit: int | None = None) -> int:
    """Write ``table`` (its ``columns``, its first ``limit`` rows) to ``out``; return the row count."""
    frame = workspace.open_table(table)
    if columns:
        missing = sorted(set(columns) - set(frame.collect_schema().names()))
        if missing:
            raise InvalidInput(f"table {table} has no column(s) {', '.join(missing)}")
        frame = frame.select(columns)
    if limit is not None:
        if limit < 0:
            raise InvalidInput("n_max must be positive")
        frame = frame.head(limit)
    data = frame.collect()
    data.write_csv(out)
    return data.height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pds_kernel.rtables", description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print the table names, one a line")
    parser.add_argument("--table")
    parser.add_argument("--out")
    parser.add_argument("--columns", default="")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    try:
        if args.list:
            print("\n".join(workspace.tables()))
            return 0
        if not args.table or not args.out:
            parser.error("give --table and --out (or --list)")
        write_csv(args.table, args.out, [c for c in args.columns.split(",") if c] or None, args.limit)
    except PdsError as exc:
        print(f"pds: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
