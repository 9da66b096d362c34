"""Assembly of the ``pds`` command and its error handling."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from ..errors import PdsError
from ..runtime import Runtime
from ..settings import load_settings

#: Width of tables when the output is not a terminal (a pipe, a file): Rich would use 80 columns
#: and cut or fold the cells; $COLUMNS still wins when set.
PIPE_WIDTH = 240


def _width(stream) -> int | None:
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return PIPE_WIDTH


err_console = Console(stderr=True, width=_width(sys.stderr))
console = Console(width=_width(sys.stdout))


def fit_consoles() -> None:
    """Decide the widths for this run's streams ($COLUMNS, the terminal, else :data:`PIPE_WIDTH`),
    not only for the environment the module was first imported in."""
    console.width = _width(sys.stdout)  # type: ignore[assignment]  (None: Rich asks $COLUMNS or the terminal)
    err_console.width = _width(sys.stderr)  # type: ignore[assignment]

#: The root options (:func:`_root`): accepted anywhere on the line, as users type them
#: (``pds audit verify --config FILE``); name -> takes a value.
GLOBAL_OPTIONS = {"--config": True, "-c": True, "--as": True, "--verbose": False, "-v": False}


def hoist_global_options(argv: list[str]) -> list[str]:
    """``argv`` with the root options that come after the command moved before it.

    Click only reads an option at the level that declares it; no sub-command declares these
    names, so moving them is unambiguous. Everything after ``--`` is left alone; an option missing
    its value is left in place for click to report."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name]
            if takes_value and "=" not in arg:
                if i + 1 >= len(argv):
                    rest.append(arg)
                    break
                front.extend(argv[i:i + 2])
                i += 2
                continue
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest

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
        self._resolved: str | None = None

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
        """Who runs the command: the OS user mapped by ``cli.identities``; ``--as`` (or
        ``$PDS_ACTOR``) only for a platform administrator, audited (:mod:`.identity`)."""
        if self._resolved is None:
            from .identity import resolve_actor

            self._resolved = resolve_actor(self.runtime, self._actor or os.environ.get("PDS_ACTOR"))
        return self._resolved


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Configuration file (default: $PDS_CONFIG or ./pds.yaml)."
    ),
    actor: str | None = typer.Option(
        None, "--as", help="Act as this registry user: platform administrators only, audited as "
        "'<you> acting as <user>'; never reviews, approves, releases or downloads. Default: your OS "
        "user as mapped by cli.identities."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(config, actor)


def _register() -> None:
    from . import audit_cmd, db_cmd, ingest_cmd, lake_cmd, snds_cmd

    app.add_typer(snds_cmd.app, name="snds")
    app.command("ingest")(ingest_cmd.ingest)
    app.add_typer(lake_cmd.app, name="lake")
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
    fit_consoles()
    try:
        code = app(args=hoist_global_options(sys.argv[1:]), prog_name="pds", standalone_mode=False)
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
