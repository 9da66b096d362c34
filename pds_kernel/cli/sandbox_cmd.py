"""``pds sandbox``: run a command in exactly the sandbox a workspace gets, or show it."""

from __future__ import annotations

import shlex
import subprocess
import sys

import typer
from rich.markup import escape
from rich.table import Table

from .app import console, err_console

app = typer.Typer(help="The local workspace sandbox (bubblewrap).", no_args_is_help=True)


@app.command("exec")
def exec_(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id: the sandbox of this project's workspace."),
    command: list[str] = typer.Argument(..., help="The command to run, after '--'."),
    user: str = typer.Option(..., "--user", "-u", help="Whose workspace (must be an active member)."),
    timeout: float = typer.Option(None, help="Kill the sandbox after this many seconds."),
) -> None:
    """Run COMMAND in USER's workspace sandbox of PROJECT and exit with its exit code.

    Example: pds sandbox exec demo-a --user alice -- python -c 'import os; print(os.listdir("/data"))'
    """
    from ..sandbox.exec import run_in_sandbox

    state = ctx.obj
    err_console.print(f"[dim]sandbox {project}/{user}: {shlex.join(command)}[/]", highlight=False)
    try:
        code = run_in_sandbox(state.runtime, user, project, command, actor=state.actor, timeout=timeout)
    except subprocess.TimeoutExpired:
        err_console.print(f"[bold red]error:[/] the sandbox was stopped after {timeout} seconds", highlight=False)
        code = 124
    # SystemExit, not typer.Exit: the entry point runs click with standalone_mode=False, where
    # typer.Exit's code is returned and dropped instead of becoming the process exit status.
    sys.exit(code)


@app.command("show")
def show(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    user: str = typer.Option(..., "--user", "-u", help="Whose workspace."),
    command: list[str] = typer.Argument(None, help="Command to show the sandbox line for (default: a shell)."),
) -> None:
    """Print the workspace spec (mounts, limits) and the full sandbox command line. Starts nothing."""
    from ..sandbox.exec import describe_sandbox

    spec, argv, allowed = describe_sandbox(ctx.obj.runtime, user, project, command or ["/bin/sh"])
    table = Table("mount", "host path", "inside", "access", title=f"workspace {project}/{user}")
    for mount in spec.mounts:
        table.add_row(mount.name, str(mount.host_path), mount.target, "read-only" if mount.read_only else "read-write")
    console.print(table)
    console.print(f"cpu limit: {spec.cpu_limit}  memory limit: {spec.mem_limit_mb} MB  "
                  f"dask workers: {spec.dask_workers}  egress: {spec.egress}")
    console.print("access now: " + ("[green]granted[/]" if allowed else "[red]refused[/]"))
    console.print(shlex.join(argv), highlight=False, soft_wrap=True)


@app.command("probe")
def probe(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id: probe the sandbox of this project's workspace."),
    user: str = typer.Option(..., "--user", "-u", help="Whose workspace (must be an active member)."),
) -> None:
    """Try every known way out of USER's workspace sandbox of PROJECT; exit 0 only if all fail.

    The sandbox is exactly the one the workspace gets (same access check, spec and command line);
    each escape attempt is printed, then `N attempts, K succeeded`. Run it as the hub's user
    (root for `make run`) to check a live system.
    """
    from ..sandbox.probing import run_probes

    results = run_probes(ctx.obj.runtime, user, project, actor=ctx.obj.actor)
    for result in results:
        mark = "[bold red]ESCAPED[/]" if result.succeeded else "[green]blocked[/]"
        console.print(f"{mark}  {escape(result.name)}: [dim]{escape(result.detail)}[/]", highlight=False)
    succeeded = sum(r.succeeded for r in results)
    console.print(f"{len(results)} attempts, {succeeded} succeeded", highlight=False)
    sys.exit(0 if succeeded == 0 else 1)
