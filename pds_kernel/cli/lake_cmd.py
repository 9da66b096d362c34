"""``pds lake``: the lake's table versions: history, diff, upgrade of an old lake, expiry."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from .app import console

app = typer.Typer(help="Versions of the lake's tables (Delta Lake): history, diff, upgrade, expiry.",
                  no_args_is_help=True)


@app.command("history")
def history(ctx: typer.Context, table: str = typer.Argument(..., help="SNDS table, e.g. ER_PRS_F.")) -> None:
    """Every version of TABLE: when, which run, which delivered files, and what each correction changed."""
    from ..lake import check_table_name
    from ..lake.versions import history as table_history

    check_table_name(table)
    versions = table_history(ctx.obj.settings.paths.lake, table)
    out = Table("version", "committed (UTC)", "run", "files", "corrections (added / changed / removed)",
                title=f"versions of {table}")
    for v in versions:
        files = ", ".join(v.files[:3]) + (f" … (+{len(v.files) - 3})" if len(v.files) > 3 else "")
        fixes = "; ".join(f"{name}: {c.get('added', 0):,} / {c.get('changed', 0):,} / {c.get('removed', 0):,}"
                          for name, c in sorted(v.corrections.items()))
        when = datetime.fromtimestamp(v.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
        out.add_row(str(v.version), when, v.run or v.operation.lower(), files or "—", fixes or "")
    console.print(out)


@app.command("diff")
def diff(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="SNDS table, e.g. ER_PRS_F."),
    old: str = typer.Argument(..., help="Earlier version of TABLE (see pds lake history TABLE)."),
    new: str = typer.Argument(..., help="Later version of TABLE."),
) -> None:
    """Rows added, changed and removed in TABLE between two of its versions, by primary key (counts only)."""
    from ..lake.diff import diff_versions
    from ..lake.versions import check_version

    result = diff_versions(ctx.obj.settings.paths.lake, table, check_version(old), check_version(new))
    out = Table("", "rows", title=f"{table}: version {result.old_version} → {result.new_version}",
                caption=f"rows matched by {', '.join(result.key) or 'whole row (no primary key)'}")
    out.add_row("added", f"[green]{result.added:,}[/]")
    out.add_row("changed", f"[cyan]{result.changed:,}[/]")
    out.add_row("removed", f"[yellow]{result.removed:,}[/]")
    out.add_row("unchanged", f"{result.unchanged:,}")
    console.print(out)
    if result.columns_changed:
        cols = Table("column", "rows changed", title="changed values per column")
        for column, n in sorted(result.columns_changed.items()):
            cols.add_row(column, f"{n:,}")
        console.print(cols)
    files = Table("file", "", title="files")
    for f in result.files_removed:
        files.add_row(f, "[yellow]removed[/]")
    for f in result.files_added:
        files.add_row(f, "[green]added[/]")
    if result.files_added or result.files_removed:
        console.print(files)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Convert a lake written before versions (its _manifest.json only) into versioned tables, in place.

    Nothing is rewritten: each table's current files become its version 1. Running it again does nothing."""
    from ..lake.upgrade import apply_upgrade

    done = apply_upgrade(ctx.obj.runtime, actor=ctx.obj.actor)
    if not done:
        console.print("the lake is already versioned: nothing to do")
        return
    out = Table("table", "files", "rows", "version", title="tables upgraded")
    for t in done:
        out.add_row(t.table, f"{t.files:,}", f"{t.rows:,}", str(t.version))
    console.print(out)


@app.command("expire")
def expire(
    ctx: typer.Context,
    days: float | None = typer.Option(None, "--days", help="Retention in days (default: ingest.version_retention_days)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the files that would be deleted, delete nothing."),
) -> None:
    """Apply the retention policy: delete files replaced longer ago than the retention (their versions become unreadable)."""
    from ..extract.pinning import pins_broken_by
    from ..lake.retention import apply_expiry

    runtime = ctx.obj.runtime
    planned = apply_expiry(runtime, actor=ctx.obj.actor, retention_days=days, dry_run=True)
    broken = pins_broken_by(runtime.settings, {e.table: e.files for e in planned})  # before any deletion
    result = planned if dry_run else apply_expiry(runtime, actor=ctx.obj.actor, retention_days=days)
    out = Table("table", "files", title="would be deleted" if dry_run else "deleted")
    for e in result:
        out.add_row(e.table, "\n".join(e.files))
    console.print(out if result else "no replaced file is older than the retention: nothing to delete")
    if broken:
        pins = Table("project", "table", "version", title="published extracts built on versions "
                     + ("this expiry would make" if dry_run else "this expiry made") + " unreadable")
        for project, table, version in broken:
            pins.add_row(project, table, str(version))
        console.print(pins)
        console.print("[yellow]their rebuild on the same versions (pds extract build --same-lake-version) "
                      f"{'would be' if dry_run else 'is'} refused; a build on the latest versions names what changed[/]")
