"""``pds ingest``: load a delivery into the lake. Parses, calls the pipeline, renders."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .app import console

#: Exit code when the run completed but rows were quarantined or files refused.
EXIT_INCOMPLETE = 3


class _RichProgress:
    """One bar per file, advanced by bytes parsed (implements ``ingest.pipeline.Progress``)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def start(self, name: str, total_bytes: int) -> None:
        self.tasks[name] = self.progress.add_task(name, total=max(total_bytes, 1))

    def advance(self, name: str, nbytes: int) -> None:
        if name in self.tasks:
            self.progress.advance(self.tasks[name], nbytes)

    def done(self, result) -> None:
        task = self.tasks.get(result.name)
        if task is not None:
            total = self.progress.tasks[task].total
            self.progress.update(task, completed=total,
                                 description=f"{result.name} [{'green' if result.status == 'loaded' else 'yellow'}]{result.status}[/]")


def ingest(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="Delivery directory (NAME_YYYYMM.csv and NAME.csv files)."),
    dask: str | None = typer.Option(
        None, "--dask", metavar="ADDRESS",
        help="Spread the files over this Dask scheduler (e.g. tcp://10.0.0.5:8786); the workers must "
             "see the delivery and the lake at the same paths."),
    correction: bool = typer.Option(
        False, "--correction",
        help="The delivery corrects loaded files: each file replaces the loaded file of the same name "
             "in a new version of its table (the old version stays readable); a file that replaces "
             "nothing is refused."),
) -> None:
    """Load an SNDS delivery (CSV) into the lake (typed Parquet), with quarantine and a quality report.

    Every run is a commit: each table it changes gets a new version (pds lake history). Files already loaded with the same SHA-256 are skipped; a new month is appended; a changed monthly file is refused unless the delivery is a --correction; a new referential replaces the old one; a file with a header and no row is reported empty and not loaded (its month stays open). A replacement reports the rows it added, changed and removed, by primary key.

    Exit codes: 0 everything loaded cleanly; 3 the run completed but rows were quarantined, files refused or rows removed by a correction (the lake is consistent either way); 2 bad input (missing or empty directory, unreachable Dask scheduler).
    """
    from ..allocator import before_exit, for_large_files

    for_large_files()  # before polars loads: its allocator reads the settings then
    from ..ingest import Status, ingest_delivery

    state = ctx.obj
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bars:
        result = ingest_delivery(state.runtime, directory, actor=state.actor, dask_address=dask,
                                 progress=_RichProgress(bars), corrections=correction)
    before_exit()  # the process ends with this command
    table = Table("file", "table", "month", "status", "read", "loaded", "quarantined", "reason",
                  title=f"ingest run {result.run_id}")
    colours = {Status.LOADED: "green", Status.SKIPPED: "dim", Status.REFUSED: "red", Status.EMPTY: "yellow",
               Status.CORRECTED: "cyan"}
    for f in result.files:
        table.add_row(f.name, f.table or "", f.month or "", f"[{colours[f.status]}]{f.status}[/]",
                      f"{f.rows_read:,}", f"{f.rows_loaded:,}",
                      f"[yellow]{f.rows_quarantined:,}[/]" if f.rows_quarantined else "0", f.reason)
    console.print(table)
    totals = result.totals()
    console.print(f"rows read {totals['rows_read']:,} = loaded {totals['rows_loaded']:,} "
                  f"+ quarantined {totals['rows_quarantined']:,}")
    if result.corrections:
        changes = Table("file", "added", "changed", "removed", "columns changed", title="corrections (by primary key)")
        for f in result.corrections:
            c = f.correction
            changes.add_row(f.name, f"{c['added']:,}", f"{c['changed']:,}",
                            f"[yellow]{c['removed']:,}[/]" if c["removed"] else "0",
                            ", ".join(f"{k} ({v:,})" for k, v in sorted(c["columns_changed"].items())))
        console.print(changes)
    console.print(f"quality report: {result.report_html}")
    if not result.clean:
        console.print(f"[yellow]some rows were quarantined, files refused or rows removed by a correction: "
                      f"see the report and {state.settings.paths.lake / '_quarantine'}[/]")
        raise typer.Exit(EXIT_INCOMPLETE)
