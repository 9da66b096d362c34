"""``pds snds``: the synthetic SNDS delivery generator and the delivery profile.

Parse, call :func:`pds_kernel.snds.generator.generate`, render. The generator never touches the
registry, the lake or the audit trail: it only writes CSV files into the directory it is given.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import InvalidInput, NotFound
from ..snds.file_names import parse_delivery_name
from ..snds.periods import ANY_YEAR
from ..snds.tables import DCIR_KEYS, TABLES
from .app import console

app = typer.Typer(help="Synthetic SNDS deliveries (no real data, ever).", no_args_is_help=True)

_YEARS = re.compile(r"^\s*([0-9]{4})\s*(?:-\s*([0-9]{4}))?\s*$")


def parse_years(text: str) -> tuple[int, int]:
    """``"2022-2023"`` -> ``(2022, 2023)``; ``"2023"`` -> ``(2023, 2023)``."""
    m = _YEARS.match(text)
    if not m:
        raise InvalidInput(f"--years must look like 2022-2023 or 2023, got {text!r}")
    start = int(m.group(1))
    end = int(m.group(2) or start)
    if start > end:
        raise InvalidInput(f"--years {text}: the first year comes after the last")
    return start, end


def _clear_delivery(out: Path) -> int:
    """Remove the delivery files (and interrupted ``.part`` files) of ``out``; nothing else."""
    removed = 0
    for path in out.iterdir():
        name = path.name[:-5] if path.name.endswith(".part") else path.name
        try:
            parse_delivery_name(name, ANY_YEAR)  # a file of any year the generator once wrote
        except ValueError:
            continue
        if path.is_file():
            path.unlink()
            removed += 1
    return removed


@app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", help="Directory to write the delivery into (created if missing)."),
    patients: int = typer.Option(1000, "--patients", help="Number of people in the population."),
    years: str = typer.Option("2022-2023", "--years", help="Years covered, e.g. 2022-2023 or 2023 (from 2000 to last year: past years, whose rows pds ingest loads by default)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same bytes."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty directory, replacing "
                                                       "its delivery files (other files are kept)."),
) -> None:
    """Write a synthetic SNDS delivery: one ';'-separated Latin-1 CSV per table and month."""
    from ..snds.generator import GENERATED_TABLES, check_arguments
    from ..snds.generator import generate as run_generate

    span = parse_years(years)
    check_arguments(patients, span, seed)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InvalidInput(f"{out} is not empty (--force replaces its delivery files)")
        removed = _clear_delivery(out)
        if removed:
            console.print(f"removed {removed} delivery file(s) of a previous run in {out}")

    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("population", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=f"generating {what}")

        summary = run_generate(out, patients=patients, years=span, seed=seed, progress=progress)

    table = Table("table", "files", "rows", title=f"synthetic delivery in {out}")
    total_rows = 0
    for name in GENERATED_TABLES:
        files = [f for f in summary.files if parse_delivery_name(f, ANY_YEAR)[0] == name]
        rows = summary.rows(name)
        total_rows += rows
        table.add_row(name, str(len(files)), f"{rows:,}")
    table.add_row("total", str(len(summary.files)), f"{total_rows:,}", style="bold")
    console.print(table)
    console.print(f"{summary.patients:,} people ({summary.beneficiary_rows:,} beneficiary rows), "
                  f"years {span[0]}-{span[1]}, seed {seed}")


@app.command("cohort-list")
def cohort_list(
    ctx: typer.Context,
    delivery: Path = typer.Option(..., "--delivery", help="A delivery written by `pds snds generate`."),
    out: Path = typer.Option(..., "--out", help="The cohort list to write (CSV: NIR + study columns)."),
    matched: int = typer.Option(40, "--matched", help="People of the delivery in the list."),
    unmatched: int = typer.Option(10, "--unmatched", help="People with valid NIRs the SNDS does not know."),
    duplicated: int = typer.Option(2, "--duplicated", help="People listed twice."),
    invalid: int = typer.Option(3, "--invalid", help="Rows whose NIR has a wrong key."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write a synthetic external cohort list with a known match rate, and install the trusted third
    party's NIR correspondence of the delivery in paths.ttp (for cohort imports: docs/imports.md)."""
    from ..settings import check_private_place
    from ..snds.cohort_list import generate_cohort_list

    check_private_place(ctx.obj.settings.paths, "ttp")  # the NIR correspondence: never where a workspace reads
    made = generate_cohort_list(delivery, out, ctx.obj.settings.paths.ttp, matched=matched, unmatched=unmatched,
                                duplicated=duplicated, invalid=invalid, seed=seed)
    console.print(f"{made.path}: {made.rows} rows; a correct linkage reports matched {made.matched}, "
                  f"unmatched {made.unmatched}, duplicates {made.duplicates}, invalid {made.invalid}; "
                  f"correspondence in {made.correspondence}")


@app.command("tables")
def tables(
    name: str | None = typer.Argument(None, help="Show the columns of this table (default: list all tables)."),
    product: str | None = typer.Option(None, "--product", help="Only the tables of this product (DCIR, PMSI...)."),
) -> None:
    """List the ingestible tables: the profile and the SNDS catalogue (keys, file names, columns);
    or one table's columns, types, checks and nomenclatures."""
    from ..snds.catalogue import entries, ingestible_names, ingestible_table
    from ..snds.file_names import example_name

    if name is None:
        table = Table("table", "product", "source", "file name", "month from", "primary key", "columns",
                      title="ingestible SNDS tables")
        shown = 0
        for table_name in ingestible_names():
            t = ingestible_table(table_name)
            if product and t.group.upper() != product.upper() and (
                    table_name not in entries() or entries()[table_name].product != product.upper()):
                continue
            key = t.primary_key
            if key[:len(DCIR_KEYS)] == DCIR_KEYS:
                key = ("the 9 DCIR keys",) + key[len(DCIR_KEYS):]
            source = "profile" if table_name in TABLES else "catalogue"
            month_from = t.month_from or " + ".join(t.year_month_from or ())
            table.add_row(t.name, t.group, source, example_name(t.name), month_from,
                          " + ".join(key), str(len(t.columns)))
            shown += 1
        console.print(table)
        console.print(f"{shown} tables. DCIR keys: " + ", ".join(DCIR_KEYS))
        return
    try:
        t = ingestible_table(name)
    except KeyError:
        raise NotFound(f"unknown SNDS table {name!r}: see pds snds tables for the catalogue") from None
    table = Table("column", "lake type", "text format", "required", "key", "check", "nomenclature",
                  title=f"{t.name} ({example_name(t.name)})")
    for c in t.columns:
        check = ""
        if c.values is not None:
            check = "one of " + ", ".join(sorted(str(v) for v in c.values))
        elif c.pattern:
            check = f"matches {c.pattern}"
        elif c.references:
            check = f"in {c.references[0]}.{c.references[1]}"
        if c.length is not None:
            check = ", ".join(filter(None, (check, f"at most {c.length} characters")))
        table.add_row(c.name, c.type, c.fmt, "" if c.nullable else "yes",
                      "yes" if c.name in t.primary_key else "", check,
                      ":".join(c.nomenclature) if c.nomenclature else "")
    console.print(table)
    for columns, parent, parent_columns in t.foreign_keys:
        console.print(f"foreign key ({', '.join(columns)}) → {parent} ({', '.join(parent_columns)})")
