"""``pds project``: the project registry from the command line.

Parse, call :class:`pds_kernel.registry.Registry`, render. Every change goes through the registry
service, which writes it to the audit trail with ``ctx.obj.actor`` in the same transaction.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from .. import permissions
from ..audit import AuditEvent, Outcome
from ..errors import InvalidInput, NotFound, PermissionDenied
from ..registry.models import Role
from ..registry.names import check_new_user_name, check_project_id, check_user_name, is_label_safe_user_name
from ..registry.spec import load_registry_file
from .app import console

if TYPE_CHECKING:
    from ..registry.service import Registry

app = typer.Typer(help="Projects, users and memberships (the project registry).", no_args_is_help=True)


def _registry(ctx: typer.Context, action: str, target: str = "", project: str = "") -> Registry:
    """The registry, once the actor is known to be allowed to administer it
    (:func:`pds_kernel.permissions.check_administer_registry`; the registry service checks every
    write again). A refusal is audited."""
    from ..registry.service import Registry

    state = ctx.obj
    registry = Registry.from_runtime(state.runtime)
    actor = state.actor
    try:
        permissions.check_administer_registry(registry, actor)
    except PermissionDenied as exc:
        state.runtime.audit.record(AuditEvent(actor=actor, action=action, target=target, project=project,
                                              outcome=Outcome.DENIED, details={"reason": str(exc)}))
        raise
    return registry


def _table(*columns: str) -> Table:
    """A table whose first column (an id) and date-like columns never wrap; free text folds."""
    table = Table()
    for number, name in enumerate(columns):
        free_text = name in {"title", "full name", "email", "active projects"}
        table.add_column(name, no_wrap=not free_text and number == 0 or name in {"start", "end", "expires", "status"})
    return table


def _date(option: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(f"--role: {value!r} is not one of researcher, output-checker") from None


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Registry file (projects.yaml): users, projects, members."),
) -> None:
    """Make the registry match FILE (declarative) and print what changed.

    Members of a listed project that FILE does not list are removed; projects and users that FILE
    does not list are left alone."""
    from ..registry.service import Registry

    spec = load_registry_file(file)  # parse and validate each item before touching the registry
    registry = Registry.from_runtime(ctx.obj.runtime)  # the service checks the actor (and audits a refusal)
    changes = registry.apply(ctx.obj.actor, spec)  # checks references, then writes all or nothing
    for change in changes:
        console.print(f"  {change}", highlight=False, soft_wrap=True)
    console.print(f"{len(changes)} change(s) applied from {file}" if changes
                  else f"registry already matches {file}: nothing changed", highlight=False, soft_wrap=True)


@app.command("list")
def list_projects(ctx: typer.Context) -> None:
    """List every project with its status, dates and number of unexpired memberships (those
    waiting for a second administrator's approval counted apart)."""
    registry = _registry(ctx, "registry.read")
    today = date.today()
    table = _table("id", "title", "status", "start", "end", "open", "members")
    for p in registry.projects():
        unexpired = [m for m in registry.members(p.id) if m.expires_on >= today]
        pending = sum(1 for m in unexpired if m.pending)
        table.add_row(p.id, p.title, p.status.value, str(p.start_date), str(p.end_date),
                      "yes" if p.is_open(today) else "no",
                      str(len(unexpired) - pending) + (f" (+{pending} pending)" if pending else ""))
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, project: str = typer.Argument(..., help="Project id.")) -> None:
    """Show one project: its fields, limits and members (with their expiry, who granted them and
    who approved them; a pending membership grants nothing until approved)."""
    check_project_id(project)
    registry = _registry(ctx, "registry.read", target=f"project:{project}", project=project)
    p = registry.get_project(project)
    today = date.today()
    console.print(f"[bold]{p.id}[/]: {p.title}", highlight=False, soft_wrap=True)
    for label, value in (
        ("status", f"{p.status.value} ({'open' if p.is_open(today) else 'grants nothing today'})"),
        ("period", f"{p.start_date} to {p.end_date}"),
        ("purpose", p.purpose), ("data controller", p.data_controller), ("approval", p.approval_ref),
        ("disclosure", f"min_cell={p.min_cell if p.min_cell is not None else 'default'}, "
                       f"reviews_required={p.reviews_required if p.reviews_required is not None else 'default'}"),
        ("resources", f"cpu={p.cpu_limit:g}, memory={p.mem_limit_mb} MB, dask_workers={p.dask_workers}, "
                      f"gpu={'yes' if p.gpu else 'no'}"),
    ):
        console.print(f"  {label}: {value}", highlight=False, soft_wrap=True)
    table = _table("user", "role", "expires", "valid", "granted by", "approved by")
    for m in registry.members(project):
        valid = "expired" if m.expires_on < today else "pending" if m.pending else "yes"
        table.add_row(m.user_name, m.role.value, str(m.expires_on), valid, m.granted_by or "",
                      "pending: pds project approve-member" if m.pending else m.approved_by)
    console.print(table)


@app.command("add-member")
def add_member(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    user: str = typer.Argument(..., help="Registry user name."),
    role: str = typer.Option(..., "--role", "-r", help="researcher or output-checker."),
    expires: str = typer.Option(..., "--expires", "-e", help="Last valid day (YYYY-MM-DD), at most the project end."),
) -> None:
    """Grant ROLE on PROJECT to USER until --expires (inclusive); re-run to change the expiry."""
    check_project_id(project)
    check_user_name(user)
    role_value, until = _role(role), _date("--expires", expires)
    registry = _registry(ctx, "registry.member.add", target=f"user:{user}", project=project)
    member = registry.add_member(ctx.obj.actor, project, user, role_value, until)
    if member.pending:
        console.print(f"{member.user_name} is {member.role.value} of {member.project_id} until {member.expires_on}, "
                      "pending: it grants nothing until a second administrator runs "
                      f"pds project approve-member {project} {user} --role {role_value.value}",
                      highlight=False, soft_wrap=True)
        return
    console.print(f"{member.user_name} is {member.role.value} of {member.project_id} until {member.expires_on}",
                  highlight=False, soft_wrap=True)


@app.command("approve-member")
def approve_member(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    user: str = typer.Argument(..., help="Registry user name."),
    role: str = typer.Option(..., "--role", "-r", help="researcher or output-checker."),
) -> None:
    """Approve the pending ROLE membership of USER in PROJECT (registry.membership_approvals: 2):
    a second administrator, who neither granted it nor holds it, personally (never with --as)."""
    from ..registry.service import Registry

    check_project_id(project)
    check_user_name(user)
    role_value = _role(role)
    registry = Registry.from_runtime(ctx.obj.runtime)  # the service checks the actor (and audits a refusal)
    member = registry.approve_member(ctx.obj.actor, project, user, role_value)
    console.print(f"{member.user_name} is {member.role.value} of {member.project_id} until {member.expires_on} "
                  f"(granted by {member.granted_by}, approved by {member.approved_by})",
                  highlight=False, soft_wrap=True)


@app.command("approve-admin")
def approve_admin(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="Registry user name."),
) -> None:
    """Approve USER as an administrator (registry.membership_approvals: 2): a second administrator,
    who did not make USER one and is not USER, personally (never with --as)."""
    from ..registry.service import Registry

    check_user_name(user)
    registry = Registry.from_runtime(ctx.obj.runtime)  # the service checks the actor (and audits a refusal)
    info = registry.approve_administrator(ctx.obj.actor, user)
    console.print(f"{info.name} is an administrator (made one by {info.admin_granted_by}, approved by "
                  f"{info.admin_approved_by})", highlight=False, soft_wrap=True)


@app.command("remove-member")
def remove_member(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    user: str = typer.Argument(..., help="Registry user name."),
    role: str | None = typer.Option(None, "--role", "-r", help="Only this role (default: every role)."),
) -> None:
    """Remove USER from PROJECT (one role, or all of them)."""
    check_project_id(project)
    check_user_name(user)
    role_value = _role(role) if role is not None else None
    registry = _registry(ctx, "registry.member.remove", target=f"user:{user}", project=project)
    removed = registry.remove_member(ctx.obj.actor, project, user, role_value)
    console.print(f"{user} removed from {project} ({removed} membership(s))", highlight=False, soft_wrap=True)


@app.command("close")
def close(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail)."),
) -> None:
    """Close PROJECT: from now on it grants nothing to anyone (workspaces, extracts, exports)."""
    check_project_id(project)
    if not reason.strip():
        raise InvalidInput("--reason must say why the project is closed")
    registry = _registry(ctx, "registry.project.close", target=f"project:{project}", project=project)
    info = registry.close_project(ctx.obj.actor, project, reason=reason.strip())
    due = permissions.purge_due(info, ctx.obj.settings.project_end.retention_days)
    console.print(f"project {info.id} is {info.status.value} since {info.closed_on}: its data may be purged "
                  f"from {due} (pds project purge, two administrators)", highlight=False, soft_wrap=True)


@app.command("halt")
def halt(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail)."),
) -> None:
    """Stop every workspace, Dask cluster and pending release of PROJECT at once, and refuse new ones
    until `pds project resume` (administrators)."""
    from ..project_end import ProjectEnd

    check_project_id(project)
    ProjectEnd(ctx.obj.runtime).halt(ctx.obj.actor, project, reason)
    console.print(f"project {project} is halted: running workspaces stop within "
                  f"{ctx.obj.settings.hub.membership_check_seconds:g} s", highlight=False, soft_wrap=True)


@app.command("resume")
def resume(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail)."),
) -> None:
    """Lift the halt of PROJECT (administrators)."""
    from ..project_end import ProjectEnd

    check_project_id(project)
    ProjectEnd(ctx.obj.runtime).resume(ctx.obj.actor, project, reason)
    console.print(f"project {project} runs again", highlight=False, soft_wrap=True)


@app.command("purge")
def purge(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: the data and the key are deleted for good."),
) -> None:
    """Delete everything of a closed PROJECT after its retention period: extract, imports, homes,
    staging, outbox, the key and its backups. Two different administrators each run it: the first
    approves, the second purges and writes the deletion certificate to the audit trail."""
    from ..project_end import ProjectEnd

    check_project_id(project)
    result = ProjectEnd(ctx.obj.runtime).purge(ctx.obj.actor, project, confirm=yes)
    if not result.done:
        console.print(f"purge of {project} approved by {ctx.obj.actor}: a second, different administrator "
                      "must run `pds project purge` to carry it out", highlight=False, soft_wrap=True)
        return
    for name, area in result.certificate["areas"].items():
        console.print(f"  {name}: {area['files']} file(s), {area['bytes']} bytes deleted "
                      f"(listing sha256 {area['listing_sha256'][:16]})", highlight=False, soft_wrap=True)
    console.print(f"project {project} purged; deletion certificate written to the audit trail "
                  "(action project.purge)", highlight=False, soft_wrap=True)


@app.command("users")
def users(ctx: typer.Context) -> None:
    """List registry users, their platform role (an administrator waiting for a second one's
    approval is marked pending) and the projects they may use today."""
    registry = _registry(ctx, "registry.read")
    table = _table("user", "full name", "email", "admin", "active", "active projects")
    for u in registry.users():
        projects = sorted({p.id for role in (Role.RESEARCHER, Role.OUTPUT_CHECKER)
                           for p in registry.active_projects(u.name, role)})
        admin = "pending: pds project approve-admin" if u.admin_pending and u.active else "yes" if u.is_admin else ""
        # a name made before new names had to end with a letter or digit: no Kubernetes pod
        name = u.name if is_label_safe_user_name(u.name) else f"{u.name} (cannot start on Kubernetes: rename)"
        table.add_row(name, u.full_name, u.email, admin, "yes" if u.active else "no",
                      ", ".join(projects))
    console.print(table)


@app.command("add-user")
def add_user(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="User name (lower case, as the hub normalises it)."),
    full_name: str = typer.Option("", "--full-name", help="Display name."),
    email: str = typer.Option("", "--email", help="Contact address."),
    admin: bool = typer.Option(False, "--admin", help="Platform administrator."),
) -> None:
    """Create a registry user (an account must still be created on the hub: `pds hub account add`)."""
    check_new_user_name(name)
    registry = _registry(ctx, "registry.user.create", target=f"user:{name}")
    try:
        registry.get_user(name)
    except NotFound:
        pass
    else:
        raise InvalidInput(f"user {name} already exists: change users through `pds project apply`")
    info = registry.upsert_user(ctx.obj.actor, name, full_name=full_name, email=email, is_admin=admin)
    console.print(f"user {name} created" + (
        f" (administrator, pending: it is none until a second administrator runs pds project approve-admin {name})"
        if info.admin_pending else " (administrator)" if admin else ""), highlight=False, soft_wrap=True)


@app.command("disable-user")
def disable_user(ctx: typer.Context, name: str = typer.Argument(..., help="User name.")) -> None:
    """Disable a user: they keep their memberships on record but are granted nothing."""
    check_user_name(name)
    registry = _registry(ctx, "registry.user.update", target=f"user:{name}")
    u = registry.get_user(name)
    registry.upsert_user(ctx.obj.actor, name, full_name=u.full_name, email=u.email, is_admin=u.is_admin,
                         active=False)
    console.print(f"user {name} disabled", highlight=False, soft_wrap=True)
