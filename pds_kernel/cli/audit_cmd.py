"""``pds audit``: verify and show the audit trail."""

from __future__ import annotations

from difflib import get_close_matches

import typer
from rich.table import Table

from ..audit_actions import ACTIONS
from ..db import check_database_exists
from ..errors import IntegrityError
from .app import console

app = typer.Typer(help="The append-only, keyed and anchored audit trail.", no_args_is_help=True)


def _runtime(ctx: typer.Context):
    """The runtime, once it is certain there is a database to read (never create an empty one)."""
    check_database_exists(ctx.obj.settings)
    return ctx.obj.runtime


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Check the keyed chain and its anchors; name every edited, deleted, reordered, inserted or
    rewritten entry. Anchors the head when the chain is intact."""
    report = _runtime(ctx).audit.verify()
    if report.ok:
        anchored = report.anchored
        where = (f"head anchored at entry {anchored.seq} ({anchored.head[:16]}…, {anchored.time}) "
                 f"in {report.anchor_store}") if anchored else "nothing to anchor"
        unkeyed = (f"; entries 1..{report.keyed_from - 1} predate the key (unkeyed rule)"
                   if report.keyed_from and report.keyed_from > 1 else "")
        console.print(f"audit trail intact: {report.entries} entries, {where}{unkeyed}",
                      highlight=False, soft_wrap=True)
        return
    for problem in report.problems:
        console.print(f"[red]{problem.kind}[/]: {problem.message}", highlight=False, soft_wrap=True)
    raise IntegrityError(
        f"audit trail broken: {len(report.problems)} problem(s) in {report.entries} entries "
        f"(anchors: {report.anchor_store}); see docs/audit.md"
    )


@app.command("show")
def show(
    ctx: typer.Context,
    project: str = typer.Option(None, help="Only entries of this project."),
    action: str = typer.Option(None, help="Only entries with this action (docs/reference/audit-actions.md)."),
    limit: int = typer.Option(50, help="The newest N entries (shown oldest first); 0 = all."),
) -> None:
    """List audit entries: the newest ``--limit`` of them, in chain order."""
    if action and action not in ACTIONS:  # entries of an older name may exist: show them, but say so
        near = get_close_matches(action, ACTIONS, n=3)
        console.print(f"note: {action!r} is not an action of this release (docs/reference/audit-actions.md)"
                      + (f"; did you mean {', '.join(near)}?" if near else ""), highlight=False, soft_wrap=True)
    table = Table("seq", "time", "actor", "action", "target", "project", "outcome")
    for e in _runtime(ctx).audit.entries(project=project, action=action, limit=limit or None, newest=True):
        table.add_row(str(e.seq), e.time[:19], e.actor, e.action, e.target, e.project, e.outcome)
    console.print(table)
