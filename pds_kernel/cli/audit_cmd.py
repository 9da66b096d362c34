"""``pds audit``: verify and show the audit trail."""

from __future__ import annotations

import typer
from rich.table import Table

from ..errors import IntegrityError
from .app import console

app = typer.Typer(help="The append-only, hash-chained audit trail.", no_args_is_help=True)


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Recompute the hash chain; name every edited, deleted or reordered entry."""
    report = ctx.obj.runtime.audit.verify()
    if report.ok:
        console.print(f"audit trail intact: {report.entries} entries, chain verified")
        return
    for problem in report.problems:
        console.print(f"[red]{problem.kind}[/]: {problem.message}")
    raise IntegrityError(
        f"audit trail broken: {len(report.problems)} problem(s) in {report.entries} entries"
    )


@app.command("show")
def show(
    ctx: typer.Context,
    project: str = typer.Option(None, help="Only entries of this project."),
    action: str = typer.Option(None, help="Only entries with this action."),
    limit: int = typer.Option(50, help="At most this many entries (oldest first)."),
) -> None:
    """List audit entries."""
    table = Table("seq", "time", "actor", "action", "target", "project", "outcome")
    for e in ctx.obj.runtime.audit.entries(project=project, action=action, limit=limit):
        table.add_row(str(e.seq), e.time[:19], e.actor, e.action, e.target, e.project, e.outcome)
    console.print(table)
