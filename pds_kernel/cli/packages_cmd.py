"""``pds packages``: ask for a Python package, approve or refuse it (admins), list requests and the
approved packages. The acting identity is ``--as`` (or ``$PDS_ACTOR``); the rules are
:mod:`pds_kernel.packages.permissions`, applied by the service.
"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from .app import console

app = typer.Typer(help="Python packages of the workspaces: request, approve, refuse, revoke, list.", no_args_is_help=True)


def _service(ctx: typer.Context):
    from ..packages.service import PackageService

    return PackageService(ctx.obj.runtime)


@app.command("request")
def request(ctx: typer.Context,
            package: str = typer.Argument(..., help="NAME or NAME==VERSION (a Python Package Index project)."),
            project: str = typer.Option(..., help="The project that needs it (you must be one of its researchers)."),
            justification: str = typer.Option("", help="What it is for (the admin reads it).")) -> None:
    """Ask for a package: an admin approves it, then `pip install NAME` works in every workspace."""
    view = _service(ctx).request(ctx.obj.actor, project, package, justification)
    console.print(f"requested {escape(view.requirement)} for project {view.project} (request {view.id}); "
                  "an admin approves it with pds packages approve NAME==VERSION", highlight=False)


@app.command("approve")
def approve(ctx: typer.Context,
            package: str = typer.Argument(..., help="NAME==VERSION: the exact release to approve.")) -> None:
    """Download a release and its dependency closure as wheels, scan them for malware, serve them (admins)."""
    files = _service(ctx).approve(ctx.obj.actor, package)
    table = Table("file", "licence", "sha256", "size")
    for f in files:
        table.add_row(escape(f.file), escape(f.licence), f.sha256, str(f.size))
    console.print(table)
    console.print(f"approved {escape(package)}: {len(files)} wheel(s) served by the package index", highlight=False)


@app.command("refuse")
def refuse(ctx: typer.Context, request_id: str = typer.Argument(..., help="Request id (pds packages list)."),
           reason: str = typer.Option(..., help="Why (the researcher reads it).")) -> None:
    """Refuse a package request (admins)."""
    view = _service(ctx).refuse(ctx.obj.actor, request_id, reason)
    console.print(f"refused {escape(view.requirement)} (request {view.id})", highlight=False)


@app.command("revoke")
def revoke(ctx: typer.Context,
           package: str = typer.Argument(..., help="NAME==VERSION: the approved release to withdraw."),
           reason: str = typer.Option(..., help="Why (kept in the audit trail).")) -> None:
    """Withdraw an approved release: the index stops serving it, new installs fail (admins)."""
    files = _service(ctx).revoke(ctx.obj.actor, package, reason)
    console.print(f"revoked {escape(package)}: {len(files)} wheel(s) no longer served "
                  "(installed copies stay in homes; its dependencies stay approved)", highlight=False)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """The package requests you may see, and the approved packages every workspace can install."""
    service = _service(ctx)
    requests = Table("request", "package", "project", "by", "state", "decision", "created")
    for r in service.requests(ctx.obj.actor):
        requests.add_row(r.id, escape(r.requirement), r.project, r.requested_by, r.state, escape(r.decision),
                         r.created_at.isoformat()[:16])
    console.print(requests)
    approved = Table("package", "version", "file", "licence", "approved for", "by")
    for f in service.approved_files():
        approved.add_row(f.name, f.version, escape(f.file), escape(f.licence), escape(f.approved_for), f.approved_by)
    console.print(approved)
