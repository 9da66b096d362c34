"""``pds audit``: verify and show the audit trail."""

from __future__ import annotations

from difflib import get_close_matches

import typer
from rich.table import Table

from ..audit_actions import ACTIONS
from ..audit_forged import message as forged_message
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
    report = _runtime(ctx).audit.verify(ctx.obj.actor)
    _print_forged(report)
    if report.ok:
        anchored = report.anchored
        where = (f"head anchored at entry {anchored.seq} ({anchored.head[:16]}…, {anchored.time}) "
                 f"in {report.anchor_store}") if anchored else "nothing to anchor"
        unkeyed = (f"; entries 1..{report.keyed_from - 1} predate the key (unkeyed rule)"
                   if report.keyed_from and report.keyed_from > 1 else "")
        console.print(f"audit trail intact: {report.entries} entries, {where}{unkeyed}",
                      highlight=False, soft_wrap=True)
        _print_keys(report)
        return
    _print_keys(report)
    for problem in report.problems:
        console.print(f"[red]{problem.kind}[/]: {problem.message}", highlight=False, soft_wrap=True)
    if not report.problems:
        raise IntegrityError(forged_message(report.found_forged, report.anchor_store, report.forged_entry))
    raise IntegrityError(
        f"audit trail broken: {len(report.problems)} problem(s) in {report.entries} entries "
        f"(anchors: {report.anchor_store}); see docs/audit.md"
        + (f"; and {len(report.found_forged)} untrusted anchor line(s)" if report.found_forged else "")
    )


def _print_forged(report) -> None:
    for forged in report.forged:
        said = (f"recorded at entry {forged.recorded}" if forged.recorded is not None
                else f"recorded now at entry {report.forged_entry}" if report.forged_entry is not None else "")
        console.print(f"[red]forged anchor[/]: line {forged.line} of {report.anchor_store} is not trusted: "
                      f"{forged.why}" + (f" ({said})" if said else ""), highlight=False, soft_wrap=True)


def _print_keys(report) -> None:
    for rotation in report.rotations:
        console.print(f"key rotation at entry {rotation.seq}: key {rotation.from_key} signs up to it, "
                      f"key {rotation.to_key} from entry {rotation.seq + 1} on", highlight=False, soft_wrap=True)
    for first, last, key_id in report.unverifiable:
        console.print(f"[yellow]unverifiable[/]: entries {first}..{last} were signed with key {key_id}, which "
                      "the keyring lacks (a lost retired key): they are readable but cannot be checked",
                      highlight=False, soft_wrap=True)


@app.command("rotate-key")
def rotate_key(ctx: typer.Context) -> None:
    """Make the newest key of the audit keyring the one that signs, and seal again with it the
    registry's approvals and the hub's accounts the old key sealed (administrators only; audited).
    Add the new key at the end of the keyring first, in every process (docs/audit.md). Run again
    after an interruption: it finishes the re-sealing."""
    from ..rotate_audit_key import rotate_audit_key

    runtime = _runtime(ctx)
    done = rotate_audit_key(runtime, ctx.obj.actor)
    if done.rotation_seq is not None:
        console.print(f"rotated the audit key: entry {done.rotation_seq} is the last signed with key "
                      f"{done.from_key}; key {done.to_key} signs from now on", highlight=False, soft_wrap=True)
    else:
        console.print(f"key {done.to_key} already signs (rotated from key {done.from_key}): finished "
                      "the re-sealing", highlight=False, soft_wrap=True)
    for what, counts in (("registry approvals", done.registry), ("hub accounts", done.hub)):
        if counts is None:
            console.print(f"{what}: none here (no local hub database)", highlight=False)
            continue
        names = f" ({', '.join(counts['broken_names'])})" if counts.get("broken_names") else ""
        console.print(f"{what}: {counts['resealed']} re-sealed, {counts['already']} already sealed with the "
                      f"new key, {counts['broken']} with a broken seal left refused{names}",
                      highlight=False, soft_wrap=True)


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
