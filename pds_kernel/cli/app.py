"""Assembly of the ``pds`` command and its error handling."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from ..errors import PdsError
from ..runtime import Runtime
from ..settings import load_settings

err_console = Console(stderr=True)
console = Console()

app = typer.Typer(
    name="pds",
    help="PDS Workspace: a trusted research environment for SNDS-style health data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class State:
    """What the top-level callback parsed; sub-commands get it through ``ctx.obj``."""

    def __init__(self, config: Path | None, actor: str | None):
        self.config = config
        self._actor = actor
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(load_settings(self.config))
        return self._runtime

    @property
    def settings(self):
        return self.runtime.settings

    @property
    def actor(self) -> str:
        """Who runs the command: ``--as``, ``$PDS_ACTOR``, else the operating-system user."""
        if self._actor:
            return self._actor
        return os.environ.get("PDS_ACTOR") or f"os:{getpass.getuser()}"


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Configuration file (default: $PDS_CONFIG or ./pds.yaml)."
    ),
    actor: str | None = typer.Option(
        None, "--as", help="Identity recorded in the audit trail (default: $PDS_ACTOR or os:<user>)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(config, actor)


def _register() -> None:
    from . import audit_cmd, db_cmd, ingest_cmd, snds_cmd

    app.add_typer(snds_cmd.app, name="snds")
    app.command("ingest")(ingest_cmd.ingest)
    app.add_typer(audit_cmd.app, name="audit")
    app.add_typer(db_cmd.app, name="db")
    for module_name, group in (
        ("project_cmd", "project"),
        ("extract_cmd", "extract"),
        ("sandbox_cmd", "sandbox"),
        ("airlock_cmd", "airlock"),
        ("hub_cmd", "hub"),
        ("demo_cmd", "demo"),
        ("packages_cmd", "packages"),
    ):
        try:
            module = __import__(f"{__package__}.{module_name}", fromlist=["app"])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module_name}":
                raise
            continue
        app.add_typer(module.app, name=group)


_register()


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and a non-zero exit code."""
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except PdsError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # usage errors of click (or of the click copy typer vendors)
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Exit" and hasattr(exc, "exit_code"):
            sys.exit(exc.exit_code)
        raise
