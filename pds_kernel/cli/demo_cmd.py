"""``pds demo``: the embedded default behind ``make run``, from synthetic data to a running hub."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import InvalidInput
from ..runtime import Runtime
from .app import console
from .identity import own_identity

if TYPE_CHECKING:
    from .. import demo

app = typer.Typer(help="The demo behind `make run`: synthetic data, projects, extracts and the local hub.",
                  no_args_is_help=True)

_STYLE = {"done": "green", "reused": "cyan", "skipped": "yellow"}


def _years(value: str) -> tuple[int, int]:
    first, _, last = value.partition("-")
    try:
        y0, y1 = int(first), int(last or first)
    except ValueError:
        raise InvalidInput(f"--years: {value!r} is not YYYY or YYYY-YYYY") from None
    if not 2000 <= y0 <= y1 <= 2100:
        raise InvalidInput(f"--years: {value!r} is not a range of years between 2000 and 2100")
    return y0, y1


def _run_step(title: str, work: Callable[[demo.Progress], demo.StepResult]) -> demo.StepResult:
    """Run one step under its own progress display, then print what it did (one line, coloured)."""
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(title, total=None)

        def progress(description: str, completed: float | None = None, total: float | None = None) -> None:
            bar.update(task, description=f"{title}: {description}", completed=completed or 0, total=total)

        result = work(progress)
    style = _STYLE.get(result.status, "white")
    label = f"{title} (skipped)" if result.status == "skipped" else title
    console.print(f"[{style}]{label}[/]: {result.message}", highlight=False, soft_wrap=True)
    for line in result.lines:
        console.print(f"    {line}", highlight=False, soft_wrap=True)
    return result


def _print_accounts(accounts: list[demo.Account], config: Path) -> None:
    if not accounts:
        return
    table = Table("user", "roles", "password", "TOTP secret (2nd factor)", title="demo accounts")
    for a in accounts:
        table.add_row(a.user, a.roles, a.password, a.totp_secret)
    console.print(table)
    console.print("[yellow]These passwords and secrets are shown once and kept nowhere in clear.[/] "
                  "Add the TOTP secret to an authenticator app, or get the current code with "
                  f"`pds demo code USER --dir {config.parent}`.", highlight=False, soft_wrap=True)


@app.command("run")
def run(
    ctx: typer.Context,
    directory: Path = typer.Option(Path("var/demo"), "--dir", help="Demo directory (its own pds.yaml, data, state)."),
    patients: int = typer.Option(2000, "--patients", help="Synthetic population size."),
    years: str = typer.Option("2022-2023", "--years", help="Years of the synthetic delivery (YYYY-YYYY)."),
    seed: int = typer.Option(42, "--seed", help="Random seed: the same seed gives the same delivery."),
    no_hub: bool = typer.Option(False, "--no-hub", help="Prepare everything but do not start JupyterHub."),
    port: int = typer.Option(8000, "--port", help="Public port of the hub (it also uses the next three)."),
) -> None:
    """Generate, ingest, register, extract, then serve JupyterHub on 127.0.0.1 (idempotent)."""
    from .. import demo

    options = demo.DemoOptions(directory=directory, patients=patients, years=_years(years), seed=seed, port=port)
    config, settings = demo.prepare(options)
    actor = own_identity(settings)  # the demo's own configuration maps the OS user (cli.identities)
    console.print(f"demo directory {config.parent} (configuration {config})", highlight=False, soft_wrap=True)
    _run_step("database", lambda p: demo.upgrade_database(settings, p))
    runtime = Runtime(settings)
    try:
        _run_step("synthetic delivery", lambda p: demo.generate_delivery(settings, options, p))
        _run_step("ingest", lambda p: demo.ingest(runtime, options, actor, p))
        _run_step("registry", lambda p: demo.register(runtime, actor))
        accounts: list[demo.Account] = []

        def make_accounts(_p: demo.Progress) -> demo.StepResult:
            # JupyterHub's database set-up reconfigures logging (alembic.ini) and logs its migrations
            # at INFO: noise here, so INFO is silenced for this step only.
            logging.disable(logging.INFO)
            try:
                result, created = demo.create_accounts(runtime, actor)
            finally:
                logging.disable(logging.NOTSET)
            accounts.extend(created)
            return result

        _run_step("hub accounts", make_accounts)
        _run_step("extracts", lambda p: demo.build_extracts(runtime, config.parent, options, actor, p))
        _run_step("packages", lambda p: demo.approve_packages(runtime, actor))
        _print_accounts(accounts, config)
    finally:
        runtime.close()
    console.print(f"audit trail: `pds --config {config} audit show`; registry: `pds --config {config} project list`",
                  highlight=False, soft_wrap=True)
    if no_hub:
        console.print(f"[yellow]hub not started (--no-hub)[/]: `pds --config {config} hub run` starts it",
                      highlight=False, soft_wrap=True)
        return
    _serve(config, replace(settings, hub=replace(settings.hub, port=port)), port)


def _serve(config: Path, settings, port: int) -> None:
    """Run the local JupyterHub in the foreground, as `pds hub run` does, on the demo's config."""
    try:
        from ..hub.local import hub_dir, public_host
        from .hub_cmd import hub_environment, run_hub_foreground
    except ImportError:
        console.print("[yellow]hub: skipped[/] JupyterHub is not installed (make venv installs it from uv.lock)")
        return
    console.print(f"[bold green]JupyterHub: {public_host(settings)}[/] (Ctrl-C stops it and every workspace)",
                  highlight=False, soft_wrap=True)
    raise typer.Exit(run_hub_foreground(hub_environment(config, port), hub_dir(settings)))


@app.command("code")
def code(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="Demo user."),
    directory: Path = typer.Option(Path("var/demo"), "--dir", help="Demo directory."),
) -> None:
    """Print the current two-factor code of a demo account (demo convenience: reads the hub database)."""
    from .. import demo
    from ..registry.names import check_user_name

    check_user_name(user)
    config = directory.resolve() / demo.CONFIG_NAME
    if not config.is_file():
        raise InvalidInput(f"no demo at {directory}: run `pds demo run --dir {directory}` first")
    from ..settings import load_settings

    console.print(demo.current_code(load_settings(config), user, ctx.obj.actor), highlight=False)
