"""The CLI reference page (``docs/cli.md``), generated from the ``pds`` command tree itself.

Usage, arguments and options come from the commands' own declarations, so the page cannot drift
from the code; only the examples are written by hand (:data:`EXAMPLES`), and a test parses every
example with the real command line parser. Regenerate after adding or changing a command::

    python -m pds_kernel.cli.reference --write docs/cli.md
    python -m pds_kernel.cli.reference --check docs/cli.md   # exit 1 when the page is stale
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: One example per command, keyed by the command path without ``pds``. Keep them runnable.
EXAMPLES: dict[str, str] = {
    "snds generate": "pds snds generate --out var/raw/delivery-2023 --patients 5000 --years 2022-2023 --seed 1",
    "snds tables": "pds snds tables ER_PRS_F",
    "snds cohort-list": "pds snds cohort-list --delivery var/raw/delivery-2023 --out outside/recruited.csv "
                        "--matched 40 --unmatched 10",
    "ingest": "pds ingest var/raw/delivery-2023",
    "lake history": "pds lake history ER_PRS_F",
    "lake diff": "pds lake diff ER_PRS_F 3 4",
    "lake upgrade": "pds lake upgrade",
    "lake expire": "pds lake expire --days 365 --dry-run",
    "audit verify": "pds audit verify",
    "audit show": "pds audit show --project diabetes-t2 --limit 20",
    "audit rotate-key": "pds audit rotate-key",
    "db upgrade": "pds db upgrade",
    "db status": "pds db status",
    "project apply": "pds project apply projects.yaml",
    "project list": "pds project list",
    "project show": "pds project show diabetes-t2",
    "project add-member": "pds project add-member diabetes-t2 alice --role researcher --expires 2026-12-31",
    "project approve-member": "pds project approve-member diabetes-t2 alice --role researcher",
    "project approve-admin": "pds project approve-admin ada",
    "project remove-member": "pds project remove-member diabetes-t2 alice --role researcher",
    "project close": "pds project close diabetes-t2 --reason 'study finished, report published'",
    "project halt": "pds project halt diabetes-t2 --reason 'suspected breach, ticket 4521'",
    "project resume": "pds project resume diabetes-t2 --reason 'breach ruled out'",
    "project purge": "pds project purge diabetes-t2 --yes",
    "project users": "pds project users",
    "project add-user": "pds project add-user alice --full-name 'Alice Martin' --email alice@example.org",
    "project disable-user": "pds project disable-user alice",
    "extract validate": "pds extract validate specs/diabetes-t2.yaml",
    "extract build": "pds extract build diabetes-t2 --spec specs/diabetes-t2.yaml",
    "extract check": "pds extract check diabetes-t2",
    "extract verify": "pds extract verify diabetes-t2",
    "extract show": "pds extract show diabetes-t2",
    "extract destroy-key": "pds extract destroy-key diabetes-t2 --yes",
    "sandbox exec": "pds sandbox exec diabetes-t2 --user alice -- python -c 'import os; print(os.listdir(\"/data\"))'",
    "sandbox show": "pds sandbox show diabetes-t2 --user alice",
    "sandbox probe": "pds sandbox probe diabetes-t2 --user alice",
    "hub run": "pds hub run --port 8000",
    "hub sync": "pds hub sync",
    "hub account add": "pds hub account add alice",
    "hub account approve": "pds hub account approve alice",
    "hub account revoke": "pds hub account revoke alice",
    "hub account unbind": "pds hub account unbind olga",
    "airlock list": "pds --as olga airlock list --scope queue --project diabetes-t2",
    "packages request": "pds --as alice packages request texttable --project diabetes-t2 --justification 'tables in logs'",
    "packages approve": "pds --as admin packages approve texttable==1.7.0",
    "packages revoke": "pds packages revoke texttable==1.7.0 --reason \"CVE-2026-0001 in its parser\"",
    "packages refuse": "pds --as admin packages refuse 0123456789abcdef0123456789abcdef --reason 'use tabulate'",
    "packages list": "pds --as alice packages list",
    "airlock show": "pds --as olga airlock show 3f2c9e0a7b6d4c1e9a8b7c6d5e4f3a2b",
    "airlock import": "pds --as alice airlock import diabetes-t2 analysis.zip atc_codes.csv "
                      "--justification 'our analysis code and the ATC nomenclature'",
    "airlock submit": "pds --as admin airlock submit --project diabetes-t2 --author alice "
                      "--why 'table 2 of the report' out/table2.csv",
    "airlock review": (
        "pds --as olga airlock review 3f2c9e0a7b6d4c1e9a8b7c6d5e4f3a2b --verdict 0=approve "
        "--verdict 1=request_changes:small-cells-in-row-3"),
    "airlock resubmit": "pds --as alice airlock resubmit 3f2c9e0a7b6d4c1e9a8b7c6d5e4f3a2b out/table2.csv "
                        "--why 'cells under 10 suppressed'",
    "airlock release": "pds --as olga airlock release 3f2c9e0a7b6d4c1e9a8b7c6d5e4f3a2b",
    "airlock withdraw": "pds --as alice airlock withdraw 3f2c9e0a7b6d4c1e9a8b7c6d5e4f3a2b --reason 'wrong file'",
    "airlock revoke": "pds --as olga airlock revoke 3f2c9e0a7b6d4c1e9a8b7c6d5e4f3a2b --reason 'cell of 3 missed'",
    "airlock download": "pds --as alice airlock download 3f2c9e0a7b6d4c1e9a8b7c6d5e4f3a2b --dest results/",
    "airlock diagram": "pds airlock diagram",
    "airlock check": "pds --as alice airlock check out/table2.csv out/analysis.ipynb --project diabetes-t2 --json",
    "airlock serve": "pds airlock serve",
    "demo run": "pds demo run --dir var/demo --patients 2000 --seed 42",
    "demo code": "pds demo code alice --dir var/demo",
}

BEGIN = "<!-- BEGIN GENERATED: python -m pds_kernel.cli.reference --write docs/cli.md -->"
END = "<!-- END GENERATED -->"


def root_command() -> Any:
    """The ``pds`` command tree as (typer's) click objects."""
    import typer.main

    from .app import app

    return typer.main.get_command(app)


def is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def iter_commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command with its path (without ``pds``), in the order of ``--help``."""
    if not is_group(command):
        yield path, command
        return
    for name in command.list_commands(None):
        sub = command.commands[name]
        if getattr(sub, "hidden", False):
            continue
        yield from iter_commands(sub, path + (name,))


def _first_paragraph(text: str | None) -> str:
    text = (text or "").strip()
    return " ".join(text.split("\n\n")[0].split())


def _usage(path: tuple[str, ...], command: Any) -> str:
    parts = ["pds", *path]
    if any(p.param_type_name == "option" for p in command.params):
        parts.append("[OPTIONS]")
    for p in command.params:
        if p.param_type_name == "argument":
            name = p.name.upper() + ("..." if p.nargs == -1 else "")
            parts.append(name if p.required else f"[{name}]")
    return " ".join(parts)


def _option_rows(command: Any) -> list[str]:
    rows = []
    for p in command.params:
        names = ", ".join(f"`{o}`" for o in (*p.opts, *getattr(p, "secondary_opts", ())))
        if p.param_type_name == "argument":
            names = f"`{p.name.upper()}`"
        help_text = " ".join((getattr(p, "help", None) or "").split()).replace("|", "\\|")
        notes = []
        if p.required:
            notes.append("required")
        default = p.default
        if p.param_type_name == "option" and not p.required and not callable(default) \
                and default is not None and default is not False and default not in ("", ()):
            notes.append(f"default: `{default}`")
        if notes:
            help_text = f"{help_text} ({', '.join(notes)})" if help_text else ", ".join(notes)
        rows.append(f"| {names} | {help_text} |")
    return rows


def render_cli_reference(root: Any | None = None) -> str:
    """The generated part of ``docs/cli.md`` (pure given the command tree)."""
    root = root if root is not None else root_command()
    lines = [BEGIN, "", "## Global options", "", "| option | meaning |", "| --- | --- |"]
    lines += _option_rows(root)
    groups: dict[str, list[tuple[tuple[str, ...], Any]]] = {}
    for path, command in iter_commands(root):
        groups.setdefault(path[0], []).append((path, command))
    for group, commands in groups.items():
        sub = root.commands[group]
        if lines[-1] != "":
            lines.append("")
        if is_group(sub):
            lines += [f"## `pds {group}`", "", _first_paragraph(sub.help), ""]
        for path, command in commands:
            key = " ".join(path)
            heading = "##" if len(path) == 1 else "###"
            lines += [f"{heading} `pds {key}`", "", _first_paragraph(command.help), "",
                      "```bash", f"{_usage(path, command)}", "", "# example", EXAMPLES.get(key, "# (no example yet)"),
                      "```", ""]
            rows = [r for r in _option_rows(command) if not r.startswith("| `--help`")]
            if rows:
                lines += ["| argument / option | meaning |", "| --- | --- |", *rows, ""]
    lines += [END]
    return "\n".join(lines).rstrip() + "\n"


def splice(page: str, generated: str) -> str:
    """Replace the generated block of ``page`` (between the markers) with ``generated``."""
    if BEGIN not in page or END not in page:
        return page.rstrip() + "\n\n" + generated
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + generated.rstrip("\n") + tail


def parse_example(example: str, root: Any | None = None) -> tuple[tuple[str, ...], Any]:
    """Parse ``example`` with the real parser (nothing runs); return the command path and context.

    Raises the parser's usage error on an unknown command, option or a missing argument."""
    root = root if root is not None else root_command()
    words = shlex.split(example)
    if not words or words[0] != "pds":
        raise ValueError(f"example does not start with pds: {example}")
    words = words[1:]
    takes_value = {o for p in root.params if p.param_type_name == "option" and not p.is_flag for o in p.opts}
    flags = {o for p in root.params if p.param_type_name == "option" and p.is_flag for o in p.opts}
    while words and words[0].startswith("-"):
        if words[0] in takes_value:
            words = words[2:]
        elif words[0] in flags:
            words = words[1:]
        else:
            raise ValueError(f"unknown global option {words[0]} in: {example}")
    command, path = root, ()
    while is_group(command):
        if not words or words[0] not in command.commands:
            raise ValueError(f"unknown command {' '.join(path + tuple(words[:1]))!r} in: {example}")
        path += (words[0],)
        command, words = command.commands[words[0]], words[1:]
    context = command.make_context(" ".join(("pds",) + path), list(words))
    return path, context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the CLI reference page from the pds command tree.")
    parser.add_argument("--write", type=Path, help="Rewrite the generated block of this page.")
    parser.add_argument("--check", type=Path, help="Exit 1 when this page's generated block is stale.")
    args = parser.parse_args(argv)
    generated = render_cli_reference()
    if args.write:
        page = args.write.read_text(encoding="utf-8") if args.write.exists() else ""
        args.write.write_text(splice(page, generated), encoding="utf-8")
        return 0
    if args.check:
        page = args.check.read_text(encoding="utf-8")
        if splice(page, generated) != page:
            print(f"{args.check} is stale: run python -m pds_kernel.cli.reference --write {args.check}",
                  file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
