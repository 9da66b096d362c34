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
from ..snds.tables import DCIR_KEYS, TABLES, parse_file_name
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
            parse_file_name(name)
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
    years: str = typer.Option("2022-2023", "--years", help="Years covered, e.g. 2022-2023 or 2023."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same bytes."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty directory, replacing "
                                                       "its delivery files (other files are kept)."),
) -> None:
    """Write a synthetic SNDS delivery: one ';'-separated Latin-1 CSV per table and month."""
    from ..snds.generator import check_arguments
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
    for name in TABLES:
        files = [f for f in summary.files if parse_file_name(f)[0] == name]
        rows = summary.rows(name)
        total_rows += rows
        table.add_row(name, str(len(files)), f"{rows:,}")
    table.add_row("total", str(len(summary.files)), f"{total_rows:,}", style="bold")
    console.print(table)
    console.print(f"{summary.patients:,} people ({summary.beneficiary_rows:,} beneficiary rows), "
                  f"years {span[0]}-{span[1]}, seed {seed}")


@app.command("tables")
def tables(
    name: str | None = typer.Argument(None, help="Show the columns of this table (default: list all tables)."),
) -> None:
    """List the delivery profile: tables, keys and file split; or one table's columns and types."""
    if name is None:
        table = Table("table", "group", "files", "month from", "primary key", "columns")
        for t in TABLES.values():
            files = "NAME.csv" if t.split == "snapshot" else "NAME_YYYYMM.csv"
            key = t.primary_key
            if key[:len(DCIR_KEYS)] == DCIR_KEYS:
                key = ("the 9 DCIR keys",) + key[len(DCIR_KEYS):]
            month_from = t.month_from or ("exit month" if t.group == "PMSI" else "")
            table.add_row(t.name, t.group, files, month_from, " + ".join(key), str(len(t.columns)))
        console.print(table)
        console.print("DCIR keys: " + ", ".join(DCIR_KEYS))
        return
    if name not in TABLES:
        raise NotFound(f"unknown SNDS table {name!r} (known: {', '.join(TABLES)})")
    t = TABLES[name]
    table = Table("column", "lake type", "text format", "required", "key", "check", title=t.name)
    for c in t.columns:
        check = ""
        if c.values is not None:
            check = "one of " + ", ".join(sorted(str(v) for v in c.values))
        elif c.pattern:
            check = f"matches {c.pattern}"
        elif c.references:
            check = f"in {c.references[0]}.{c.references[1]}"
        table.add_row(c.name, c.type, c.fmt, "" if c.nullable else "yes",
                      "yes" if c.name in t.primary_key else "", check)
    console.print(table)
